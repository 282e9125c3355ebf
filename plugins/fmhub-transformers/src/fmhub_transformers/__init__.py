"""fmhub-transformers: Hugging Face Transformers text, generation, audio, image and image-text models.

Serves the open ``hf:`` namespace (any hub repo id ``hf:org/name``, any local checkpoint folder)
plus aliases for well-known checkpoints (``bert-base``, ``all-MiniLM-L6-v2``...). Tasks:
``embedding``, ``classification``, ``fill-mask``, ``token-classification``, detected from the
checkpoint's ``config.json`` / sentence-transformers files and overridable with ``task=``; audio
encoders (wav2vec 2.0, HuBERT, WavLM, AST) do ``transcription`` (CTC), ``classification`` and
``embedding`` through ``_load_audio`` / ``_stages_audio``; image checkpoints (ViT, DeiT, BEiT,
DINOv2, ConvNeXt, Swin, ResNet...: ``_load_vision`` / ``_stages_vision``) do ``classification``
and ``embedding``; CLIP / SigLIP (``_stages_clip``) do ``zero-shot-classification`` and
``embedding``.

Registration and name resolution import neither torch nor transformers: the hooks below import
the private implementation modules only when a model is loaded or run. See
``docs/plugins/transformers.md``.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

import fmhub
from fmhub import hookimpl

from ._catalog import ROWS, Row
from ._config import (
    AUDIO_TASKS,
    GENERATIVE,
    IMAGE_CLASSIFIERS,
    IMAGE_MODEL_TYPES,
    IMAGE_TEXT,
    IMAGE_TEXT_TASKS,
    TASKS,
    CheckpointConfig,
    Labels,
    Template,
    detect_task,
    is_audio_config,
    is_image_processor,
    is_repo_id,
    read_config,
    read_json,
)

__all__ = ["ALIASES", "TransformersOptions"]

DISTRIBUTION = "fmhub-transformers"


class TransformersOptions(fmhub.LoadOptions):
    """Load options of ``hf:`` models (on top of ``device``, ``dtype``, ``task``, ``quantize``)."""

    revision: str | None = Field(
        None, description="Hub branch, tag or commit to load (ignored for local folders)."
    )
    trust_remote_code: bool = Field(
        False,
        description="Run Python code shipped in the repo (only for repos you trust).",
        json_schema_extra={"consent": True},
    )
    device_map: str | dict[str, int | str] | None = Field(
        None,
        description="Spread the model with accelerate ('auto', 'balanced', {module: device}); "
        "the model is then never moved by fmhub.",
    )
    use_safetensors: bool | None = Field(
        None, description="None: prefer .safetensors, fall back to .bin; True: safetensors only."
    )
    max_length: int | None = Field(
        None, ge=2, description="Truncate inputs to this many tokens (at most the model's limit)."
    )
    truncation: Literal["warn", "silent", "error"] = Field(
        "warn",
        description="What an input longer than max_length does: truncated with a warning, "
        "truncated silently, or refused with fmhub.InputError.",
    )
    pooling: (
        Literal["mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"] | None
    ) = Field(
        None,
        description="Embedding pooling; None: the checkpoint's sentence-transformers "
        "config, else mean over the attention mask.",
    )
    normalize: bool | None = Field(
        None, description="L2-normalise embeddings; None: as the checkpoint's config says."
    )
    top_k: int = Field(
        5, ge=1, description="Labels kept in Classification.top_k / fill-mask candidates."
    )
    labels: Labels | None = Field(
        None,
        description="Zero-shot image classification (CLIP, SigLIP): the candidate labels of "
        "every call that names none.",
    )
    template: Template | None = Field(
        None,
        description="Zero-shot image classification: the prompt a label goes into, '{}' "
        "marking it; None: 'This is a photo of {}.' (the transformers pipeline's).",
    )
    aggregation: Literal["simple", "none"] = Field(
        "simple",
        description="Token classification: 'simple' merges adjacent B-/I- tokens into "
        "entities (pipeline 'simple'); 'none' returns one entity per token.",
    )
    input_sample_rate: int | None = Field(
        None, gt=0, description="Audio models: sample rate (Hz) of bare arrays; None refuses them."
    )
    chunk_seconds: float | None = Field(
        None,
        gt=0,
        description="Audio models: longer recordings are processed in chunks of this length; "
        "None: 30 s (wav2vec 2.0-style), the feature extractor's window (AST, 10.24 s).",
    )
    chunk_context_seconds: float = Field(
        2.0, ge=0, description="Audio models: audio each chunk sees on each side of its frames."
    )
    chunk_batch: int = Field(4, ge=1, description="Audio models: chunks run through at once.")


#: The tasks of image models (ViT, DINOv2, ConvNeXt...: ``_stages_vision``).
IMAGE_TASKS = ("classification", "embedding")

#: alias -> catalog row (the table itself is ``_catalog.ROWS``).
ALIASES: dict[str, Row] = {alias: row for row in ROWS for alias in row.aliases}


def _spec(repo_id: str, modality: str | None = "text", **fields) -> fmhub.ModelSpec:
    return fmhub.ModelSpec(
        id=f"hf:{repo_id}",
        modality=modality,
        tasks=(
            IMAGE_TEXT_TASKS
            if modality == "image-text"
            else tuple(AUDIO_TASKS)
            if modality == "audio"
            else IMAGE_TASKS
            if modality == "image"
            else tuple(TASKS)
        ),
        source=f"https://huggingface.co/{repo_id}",
        **fields,
    )


@hookimpl
def fmhub_register_namespaces(register):
    register(
        fmhub.Namespace(
            name="hf",
            distribution=DISTRIBUTION,
            open=True,
            options=TransformersOptions,
            description="Hugging Face Transformers text, generation, audio, image and image-text "
            "models: any hub repo id or local folder.",
        )
    )


@hookimpl
def fmhub_register_models(register):
    for row in ROWS:
        register(
            _spec(
                row.id,
                aliases=row.aliases,
                task=row.task,
                license=row.license,
                description=row.description,
                architecture=row.architecture,
                modality=row.modality,
                preprocessing=fmhub.Preprocessing(
                    max_tokens=row.max_tokens,
                    sample_rate=row.sample_rate,
                    input_size=row.input_size,
                ),
            )
        )


@hookimpl
def fmhub_resolve_model(namespace, name):
    if "@" in name:
        raise fmhub.UnknownModelError(
            f"'hf:{name}' is not a hub repo id; pass the revision as an option: "
            f"fmhub.load('hf:{name.partition('@')[0]}', revision={name.partition('@')[2]!r})."
        )
    if not is_repo_id(name):
        return None
    return _spec(  # text, image or audio: known once its config is read at load
        name,
        modality=None,
        description="Hugging Face hub model (task and modality detected from its config at load).",
    )


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "spm.model",
)


@hookimpl
def fmhub_claim_path(path):
    """A folder with a Transformers ``config.json`` (has ``model_type``) and a tokenizer; or,
    without a tokenizer, an audio encoder's with its feature extractor
    (``preprocessor_config.json``), or an image model's (an image processor's
    ``preprocessor_config.json``, or an image model's config)."""
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return None
    tokenizer = any(os.path.isfile(os.path.join(path, f)) for f in _TOKENIZER_FILES)
    extractor = os.path.isfile(os.path.join(path, "preprocessor_config.json"))
    try:
        data = read_json(config, "config.json")
    except fmhub.FmhubError:
        return None  # not JSON data: not a checkpoint we can tell apart
    if not isinstance(data.get("model_type"), str):
        return None  # another family's config.json
    try:  # ours: a config with other problems is claimed, and load reports them precisely
        cfg = read_config(config, CheckpointConfig)
        task, arch = (
            detect_task(cfg, os.path.isfile(os.path.join(path, "modules.json"))),
            cfg.model_type,
        )
        audio = is_audio_config(cfg)
    except fmhub.FmhubError:
        task, arch, audio = None, None, False
    image = False
    if not tokenizer and not (audio and extractor):  # an image model's folder, or not ours
        if audio or not (_has_image_processor(path) or _image_config(data)):
            return None  # neither a tokenizer nor a feature extractor / image processor we know
        image = True
    if arch in IMAGE_TEXT:
        modality, tasks = "image-text", IMAGE_TEXT_TASKS
    elif audio or task == "transcription":
        modality, tasks = "audio", tuple(AUDIO_TASKS) if audio else tuple(TASKS)
    elif image:
        modality, tasks = "image", IMAGE_TASKS
    else:
        modality, tasks = "text", tuple(TASKS)
    return fmhub.ModelSpec(
        id=f"hf:{os.path.basename(os.path.normpath(path)) or 'local'}",
        path=path,
        modality=modality,
        task=task,
        tasks=tasks,
        architecture=arch,
        source=path,
        description="Local Transformers checkpoint folder.",
    )


def _has_image_processor(path: str) -> bool:
    pre = os.path.join(path, "preprocessor_config.json")
    if not os.path.isfile(pre):
        return False
    try:
        return is_image_processor(read_json(pre, "preprocessor_config.json"))
    except fmhub.FmhubError:
        return False


def _image_config(data: dict) -> bool:
    """The config of an image model (a claimed folder without an image processor is then
    refused at load with the file it lacks)."""
    archs = data.get("architectures")
    archs = [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []
    return data["model_type"] in IMAGE_MODEL_TYPES or any(
        a.endswith(IMAGE_CLASSIFIERS) for a in archs
    )


def _is_image(model) -> bool:
    """An image model (its processor is ``_stages_vision.VisionProcessor``)."""
    return getattr(model.processor, "modality", None) == "image"


@hookimpl
def fmhub_load(spec, options):
    from ._load import load

    return load(spec, options)


def _image_text(model) -> bool:
    """A CLIP/SigLIP model (zero-shot, embedding, or its image tower fine-tuned as a classifier)."""
    return getattr(model.processor, "kind", None) == "image-text"


def _audio(model) -> bool:
    """An audio encoder (wav2vec 2.0, HuBERT, WavLM, AST...): its stages are ``_stages_audio``."""
    return getattr(model.processor, "modality", None) == "audio"


def _generative(model) -> bool:
    """Generates text token by token (a CTC "transcription" model does not)."""
    return model.task in GENERATIVE and not _audio(model)


def _stage_module(model):
    """The module implementing the stages of this model's task."""
    if _image_text(model):
        from . import _stages_clip

        return _stages_clip
    if _audio(model):
        from . import _stages_audio

        return _stages_audio
    if _is_image(model):
        from . import _stages_vision

        return _stages_vision
    if model.task == "transcription":
        from . import _stages_speech

        return _stages_speech
    if model.task in GENERATIVE:
        from . import _stages_generate

        return _stages_generate
    from . import _stages

    return _stages


@hookimpl
def fmhub_batch_order(model, inputs):
    if _generative(model) or _is_image(model):
        return None  # one generate call per batch / images are all resized to one size
    return _stage_module(model).batch_order(model, inputs)


@hookimpl
def fmhub_preprocess(model, inputs, options):
    stages = _stage_module(model)
    if _generative(model) or _image_text(model):
        return stages.preprocess(model, inputs, options)
    return stages.preprocess(model, inputs)


@hookimpl
def fmhub_forward(model, batch, options, stream):
    if _generative(model) and isinstance(batch, dict) and "labels" in batch:
        from ._finetune import training_forward

        return training_forward(model, batch)
    stages = _stage_module(model)
    if _generative(model):
        return stages.forward(model, batch, options, stream)
    if _image_text(model):
        return stages.forward(model, batch, options)
    return stages.forward(model, batch)


@hookimpl
def fmhub_postprocess(model, outputs, batch, options):
    stages = _stage_module(model)
    if _generative(model) or _image_text(model):
        return stages.postprocess(model, outputs, batch, options)
    return stages.postprocess(model, outputs, batch)


@hookimpl
def fmhub_save(model, path):
    from ._load import save

    save(model, path)
    return True


@hookimpl
def fmhub_finetune_targets(model, method):
    from ._finetune import finetune_targets

    return finetune_targets(model, method)


@hookimpl
def fmhub_attach_head(model, labels):
    from ._finetune import attach_head

    return attach_head(model, labels)


@hookimpl
def fmhub_training_batch(model, examples):
    if not _generative(model):
        return None
    from ._finetune import training_batch

    return training_batch(model, examples)


@hookimpl
def fmhub_training_loss(model, outputs, targets):
    from ._finetune import training_loss

    return training_loss(model, outputs, targets)


@hookimpl
def fmhub_export_spec(model):
    if _image_text(model):
        raise fmhub.ExportError(
            f"{model.spec.id} is an image-text model; fmhub exports its text, image and audio encoder tasks only."
        )
    if _audio(model):
        from ._stages_audio import export_spec as audio_export_spec

        return audio_export_spec(model)
    if _is_image(model):
        from ._stages_vision import export_spec as image_export_spec

        return image_export_spec(model)
    from ._stages import export_spec

    return export_spec(model)
