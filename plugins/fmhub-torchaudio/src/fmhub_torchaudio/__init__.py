"""fmhub-torchaudio: torchaudio's wav2vec 2.0, HuBERT and WavLM speech models behind fmhub.

``torchaudio:<bundle>`` ids (``torchaudio:wav2vec2_asr_base_960h``, ``torchaudio:hubert_base``...)
load the ``torchaudio.pipelines`` bundles through their own path (the torch hub checkpoint cache
under ``TORCH_HOME``), ``torchaudio:models.<factory>`` builds a ``torchaudio.models`` architecture
for training from scratch. Registration imports neither torch nor torchaudio: what it needs is the
static table in :mod:`fmhub_torchaudio._catalog`. See ``docs/plugins/torchaudio.md``.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field

import fmhub
from fmhub import hookimpl

from ._catalog import BUNDLES, FACTORIES, Row, bundle_by_file

__all__ = ["TorchaudioOptions"]

NAMESPACE = "torchaudio"
DISTRIBUTION = "fmhub-torchaudio"


class TorchaudioOptions(fmhub.LoadOptions):
    """Load options of ``torchaudio:`` models (on top of device, dtype, task, quantize)."""

    checkpoint: str | None = Field(
        None,
        description="Local state-dict file (.pt/.pth, read with weights_only=True) used "
        "instead of the torch hub cache; for models.* it holds the factory model's weights.",
    )
    layer: int | None = Field(
        None,
        description="Transformer layer whose features are pooled for embeddings and "
        "classification: 1-based, negative counts from the end; None: the last layer.",
    )
    input_sample_rate: int | None = Field(
        None, gt=0, description="Sample rate (Hz) of bare arrays/tensors; None refuses them."
    )
    chunk_seconds: float = Field(
        30.0, gt=0, description="Recordings longer than this are processed in chunks."
    )
    chunk_context_seconds: float = Field(
        2.0, ge=0, description="Audio each chunk sees on each side of the frames it keeps."
    )
    chunk_batch: int = Field(4, ge=1, description="Chunks run through the model at once.")
    top_k: int = Field(5, ge=1, description="How many labels a classification result lists.")
    config: dict[str, Any] = Field(
        default_factory=dict, description="models.* only: keyword arguments of the factory."
    )
    labels: list[str] | None = Field(
        None, description="models.* only: CTC labels, blank first, one per aux_num_out output."
    )
    sample_rate: int = Field(16000, gt=0, description="models.* only: the model's sample rate.")
    normalize_waveform: bool = Field(
        False, description="models.* only: layer-normalise each waveform before the model."
    )
    seed: int = Field(0, description="models.* only: seed of the random initialisation.")


@hookimpl
def fmhub_register_namespaces(register):
    register(
        fmhub.Namespace(
            name=NAMESPACE,
            distribution=DISTRIBUTION,
            options=TorchaudioOptions,
            description="torchaudio wav2vec 2.0 / HuBERT / WavLM bundles and model factories.",
        )
    )


def _bundle_spec(info: Row) -> fmhub.ModelSpec:
    tasks = (
        ("transcription", "embedding", "classification")
        if info.asr
        else ("embedding", "classification")
    )
    return fmhub.ModelSpec(
        id=f"{NAMESPACE}:{info.id}",
        aliases=info.aliases,
        task=info.task,
        tasks=tasks,
        modality="audio",
        architecture=info.architecture,
        description=info.description,
        license=info.license,
        source=info.source,
        preprocessing=fmhub.Preprocessing(
            sample_rate=info.sample_rate, normalize_waveform=info.normalize_waveform
        ),
    )


@hookimpl
def fmhub_register_models(register):
    for info in BUNDLES.values():
        register(_bundle_spec(info))
    for factory, family in FACTORIES.items():
        register(
            fmhub.ModelSpec(
                id=f"{NAMESPACE}:models.{factory}",
                task="embedding",
                tasks=("embedding", "transcription", "classification"),
                modality="audio",
                architecture=family,
                license="BSD-2-Clause",
                description=f"torchaudio.models.{factory}(**config) with random weights (or a local "
                "checkpoint), for training from scratch.",
                source="torchaudio.models",
                preprocessing=fmhub.Preprocessing(sample_rate=16000),
            )
        )


@hookimpl
def fmhub_claim_path(path):
    """A checkpoint file named like a bundle's (a copied ``wav2vec2_fairseq_base_ls960.pth``)."""
    if not os.path.isfile(path):
        return None
    info = bundle_by_file(os.path.basename(path))
    if info is None:
        return None
    return _bundle_spec(info).model_copy(update={"path": path, "aliases": ()})


@hookimpl
def fmhub_load(spec, options):
    from ._load import load

    return load(spec, options)


@hookimpl
def fmhub_batch_order(model, inputs):
    from fmhub.inputs import audio_duration

    rate = model.options.input_sample_rate
    lengths = [audio_duration(x, rate) for x in inputs]
    return sorted(range(len(inputs)), key=lambda i: -lengths[i])


@hookimpl
def fmhub_preprocess(model, inputs):
    from ._stages import preprocess

    return preprocess(model, inputs)


@hookimpl
def fmhub_forward(model, batch):
    from ._stages import forward

    return forward(model, batch)


@hookimpl
def fmhub_postprocess(model, outputs, batch):
    from ._stages import postprocess

    return postprocess(model, outputs, batch)


@hookimpl
def fmhub_save(model, path):
    from ._load import save

    save(model, path)
    return True


@hookimpl
def fmhub_finetune_targets(model, method):
    from ._finetune import targets

    return targets(model, method)


@hookimpl
def fmhub_attach_head(model, labels):
    from ._finetune import attach_head

    return attach_head(model, labels)


@hookimpl
def fmhub_training_loss(model, outputs, targets):
    from ._finetune import loss

    return loss(model, outputs, targets)


@hookimpl
def fmhub_export_spec(model):
    from ._stages import export_spec

    return export_spec(model)
