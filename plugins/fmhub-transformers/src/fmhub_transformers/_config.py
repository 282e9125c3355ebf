"""Reading a checkpoint's JSON files as untrusted input, and deciding its task.

Nothing here imports torch or transformers: ``fmhub_claim_path`` and task detection run on plain
JSON. Every file is size-capped and validated with a pydantic model (:func:`read_config`: a missing
field or a value of the wrong type is a :class:`fmhub.ManifestError` naming the file and the field);
nothing in it is executed or imported.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, field_validator

import fmhub
from fmhub.manifest import read_config as _read_config

__all__ = [
    "AUDIO_TASKS",
    "IMAGE_CLASSIFIERS",
    "IMAGE_TEXT",
    "Labels",
    "Template",
    "TASKS",
    "CheckpointConfig",
    "check_labels",
    "check_template",
    "detect_audio_task",
    "is_audio_config",
    "Pooling",
    "detect_task",
    "is_image_model",
    "is_repo_id",
    "read_config",
    "read_json",
    "read_pooling",
    "sentence_modules",
]

#: The tasks this plugin serves, and the transformers auto class that loads each.
TASKS: dict[str, str] = {
    "embedding": "AutoModel",
    "classification": "AutoModelForSequenceClassification",
    "fill-mask": "AutoModelForMaskedLM",
    "token-classification": "AutoModelForTokenClassification",
    "text-generation": "AutoModelForCausalLM",
    "text2text": "AutoModelForSeq2SeqLM",
    "transcription": "AutoModelForSpeechSeq2Seq",
    "zero-shot-classification": "AutoModel",
}
#: Tasks whose models generate (their stages are in ``_stages_generate`` / ``_stages_speech``).
GENERATIVE = ("text-generation", "text2text", "transcription")
#: Image-text models (an image tower and a text tower in one space); their stages are in
#: ``_stages_clip``. They do ``zero-shot-classification`` (the default) and ``embedding``.
IMAGE_TEXT = ("clip", "siglip", "siglip2", "chinese_clip")
#: The tasks an image-text model does.
IMAGE_TEXT_TASKS = ("zero-shot-classification", "embedding")

#: The tasks of the audio encoders (wav2vec 2.0, HuBERT, WavLM, AST...) and their auto classes;
#: their stages are in ``_stages_audio`` (Whisper is the separate ``_stages_speech``).
AUDIO_TASKS: dict[str, str] = {
    "transcription": "AutoModelForCTC",
    "classification": "AutoModelForAudioClassification",
    "embedding": "AutoModel",
}
#: ``model_type`` of the audio encoders served through AUDIO_TASKS: waveform models with a
#: convolutional front end, and the spectrogram transformer AST.
AUDIO_MODEL_TYPES = frozenset(
    {
        "wav2vec2",
        "wav2vec2-conformer",
        "hubert",
        "wavlm",
        "data2vec-audio",
        "sew",
        "sew-d",
        "unispeech",
        "unispeech-sat",
        "audio-spectrogram-transformer",
    }
)

#: Pooling modes, in the order sentence-transformers concatenates them.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
#: sentence-transformers modules fmhub reproduces exactly; any other module is refused.
_ST_SUPPORTED = {"Transformer", "Pooling", "Normalize"}

_MAX_JSON_BYTES = 32 * 1024 * 1024
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")


def is_repo_id(name: str) -> bool:
    """Whether ``name`` is a well-formed hub repo id (``name`` or ``org/name``)."""
    return (
        bool(_REPO_ID.match(name))
        and ".." not in name
        and "--" not in name
        and not name.endswith(".")
    )


def read_json(path: str, what: str, *, expect: type = dict) -> Any:
    """Parse ``path`` as JSON data of type ``expect``; raise a clear error on anything else."""
    try:
        size = os.path.getsize(path)
        if size > _MAX_JSON_BYTES:
            raise fmhub.ManifestError(
                f"{what} {path!r} is {size} bytes; refusing JSON over 32 MiB."
            )
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise fmhub.ManifestError(f"Cannot read {what} {path!r}: {exc}") from None
    if not isinstance(data, expect):
        raise fmhub.ManifestError(
            f"{what} {path!r} holds a JSON {type(data).__name__}, expected a {expect.__name__}."
        )
    return data


_M = TypeVar("_M", bound=BaseModel)


def read_config(path: str, model: type[_M]) -> _M:
    """Read the checkpoint JSON file at ``path`` into ``model`` (size-capped as :func:`read_json`)."""
    return _read_config(path, model, max_bytes=_MAX_JSON_BYTES)


class CheckpointConfig(BaseModel):
    """The facts fmhub reads from ``config.json``, validated (other keys are transformers')."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model_type: str = Field(min_length=1, description="Transformers' architecture family.")
    architectures: tuple[str, ...] | None = None
    id2label: dict[int, str] | None = None
    auto_map: dict[str, Any] | None = None

    @field_validator("id2label")
    @classmethod
    def _numbered(cls, v: dict[int, str] | None) -> dict[int, str] | None:
        if v is not None and sorted(v) != list(range(len(v))):
            raise ValueError("id2label must number classes 0..N-1")
        return v

    @property
    def labels(self) -> tuple[str, ...] | None:
        """Class names in index order, or None."""
        return (
            None
            if self.id2label is None
            else tuple(self.id2label[i] for i in sorted(self.id2label))
        )

    @property
    def architecture_names(self) -> tuple[str, ...]:
        return self.architectures or ()


class SentenceModule(BaseModel):
    """One entry of sentence-transformers' ``modules.json``."""

    model_config = ConfigDict(extra="allow")

    type: str
    path: str = ""


class SentenceModules(RootModel[list[SentenceModule]]):
    """sentence-transformers' ``modules.json``: the module pipeline, in order."""


class SentenceBertConfig(BaseModel):
    """sentence-transformers' ``sentence_bert_config.json``."""

    model_config = ConfigDict(extra="allow")

    max_seq_length: int | None = Field(None, ge=1)
    do_lower_case: bool = False


class PoolingConfig(BaseModel):
    """sentence-transformers' pooling ``config.json`` (new ``pooling_mode`` or legacy flags)."""

    model_config = ConfigDict(extra="allow")

    pooling_mode: str | list[str] | None = None
    include_prompt: bool = True
    pooling_mode_cls_token: bool = False
    pooling_mode_max_tokens: bool = False
    pooling_mode_mean_tokens: bool = False
    pooling_mode_mean_sqrt_len_tokens: bool = False
    pooling_mode_weightedmean_tokens: bool = False
    pooling_mode_lasttoken: bool = False


def is_audio_config(config: CheckpointConfig) -> bool:
    """Whether ``config.json`` describes one of the audio encoders of :data:`AUDIO_TASKS` (by its
    ``model_type``, or a CTC / audio-classification model class): such a checkpoint's
    ``*ForSequenceClassification`` classifies recordings, not texts."""
    if config.model_type in AUDIO_MODEL_TYPES:
        return True
    return config.model_type != "whisper" and any(
        a.endswith(("ForCTC", "ForAudioClassification")) for a in config.architecture_names
    )


def detect_audio_task(config: CheckpointConfig) -> str:
    """An audio encoder's task from its model class: CTC transcribes, a sequence / audio
    classifier classifies, anything else (a bare or pretraining encoder) embeds."""
    for arch in config.architecture_names:
        if arch.endswith("ForCTC"):
            return "transcription"
        if arch.endswith(("ForSequenceClassification", "ForAudioClassification")):
            return "classification"
    return "embedding"


def sentence_modules(normalize: bool) -> list[dict[str, Any]]:
    """The ``modules.json`` of a sentence-transformers folder fmhub writes: the Transformer, its
    pooling (``1_Pooling``) and, for normalised embeddings, ``2_Normalize``."""
    names = ["Transformer", "Pooling"] + (["Normalize"] if normalize else [])
    paths = ["", "1_Pooling", "2_Normalize"]
    return [
        {"idx": i, "name": str(i), "path": paths[i], "type": f"sentence_transformers.models.{n}"}
        for i, n in enumerate(names)
    ]


def detect_task(config: CheckpointConfig, sentence_transformers: bool) -> str:
    """The task a checkpoint was trained for: sentence-transformers layouts embed; otherwise the
    model class in ``architectures`` decides (a bare encoder embeds)."""
    if sentence_transformers:
        return "embedding"
    if config.model_type == "whisper":
        return "transcription"
    if config.model_type in IMAGE_TEXT:
        return "zero-shot-classification"
    if is_audio_config(config):
        return detect_audio_task(config)
    for arch in config.architecture_names:
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "text-generation"
        if arch.endswith(("ForConditionalGeneration", "MTModel")):
            return "text2text"
        if arch.endswith("ForSequenceClassification"):
            return "classification"
        if arch.endswith(IMAGE_CLASSIFIERS):
            return "classification"
        if arch.endswith("ForTokenClassification"):
            return "token-classification"
        if arch.endswith("ForMaskedLM"):
            return "fill-mask"
        if arch.endswith("ForPreTraining") and not arch.startswith(
            "Electra"
        ):  # Electra's: a discriminator
            return "fill-mask"
    return "embedding"


def check_labels(labels: Any) -> tuple[str, ...]:
    """Candidate labels as a tuple of distinct non-empty strings (ValueError otherwise)."""
    if isinstance(labels, str):
        raise ValueError(f"labels is one string ({labels!r:.40}); pass a list: labels=[{labels!r}]")
    labels = tuple(labels)
    if not labels:
        raise ValueError("labels is empty; give at least one, e.g. labels=['a cat', 'a dog']")
    bad = [x for x in labels if not isinstance(x, str) or not x.strip()]
    if bad:
        raise ValueError(f"every label must be a non-empty str, got {bad[0]!r}")
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"labels must be distinct; {dup[0]!r} is given twice")
    return labels


def check_template(template: str) -> str:
    """A prompt template with one ``{}`` (ValueError otherwise)."""
    try:
        filled = template.format("\x00")
    except (IndexError, KeyError, ValueError) as exc:
        raise ValueError(
            f"template {template!r} is not a format string with one '{{}}' ({exc}); "
            "write braces that are not the label as '{{' and '}}'"
        ) from None
    if filled.count("\x00") != 1:
        raise ValueError(
            f"template {template!r} must hold the label once as '{{}}', e.g. 'a photo of {{}}.'"
        )
    return template


#: Candidate labels of a zero-shot model as a load or call option, validated by
#: :func:`check_labels`.
Labels = Annotated[tuple[str, ...], AfterValidator(check_labels)]
#: A zero-shot prompt template as a load or call option, validated by :func:`check_template`.
Template = Annotated[str, AfterValidator(check_template)]


#: Image model classes (``architectures``) that classify: an image classification checkpoint.
IMAGE_CLASSIFIERS = ("ForImageClassification", "ForImageClassificationWithTeacher")

#: ``model_type`` values of image-only models (``AutoModel`` / ``AutoModelForImageClassification``
#: with ``AutoImageProcessor``); their stages are in ``_stages_vision``.
IMAGE_MODEL_TYPES = frozenset(
    {
        "vit",
        "deit",
        "beit",
        "data2vec-vision",
        "dinov2",
        "dinov2_with_registers",
        "dinov3_vit",
        "dinov3_convnext",
        "convnext",
        "convnextv2",
        "swin",
        "swinv2",
        "resnet",
        "regnet",
        "bit",
        "efficientnet",
        "mobilenet_v1",
        "mobilenet_v2",
        "mobilevit",
        "mobilevitv2",
        "levit",
        "poolformer",
        "pvt",
        "pvt_v2",
        "cvt",
        "focalnet",
        "hiera",
        "ijepa",
        "vit_msn",
        "van",
        "dinat",
        "nat",
        "swiftformer",
        "efficientformer",
        "textnet",
    }
)


def is_image_processor(data: dict[str, Any] | None) -> bool:
    """Whether a ``preprocessor_config.json`` describes an image processor (not an audio feature
    extractor): it names one, or has the image keys every image processor saves."""
    if not isinstance(data, dict):
        return False
    if isinstance(data.get("image_processor_type"), str):
        return True
    kind = data.get("feature_extractor_type")
    if isinstance(kind, str) and kind.endswith(("ImageProcessor", "ImageProcessorFast")):
        return True
    return "sampling_rate" not in data and any(k in data for k in ("image_mean", "do_resize"))


def is_image_model(
    config: CheckpointConfig, preprocessor: dict[str, Any] | None, has_tokenizer: bool
) -> bool:
    """An image-only checkpoint: an image classifier class in ``architectures``, a known image
    ``model_type``, or an image processor beside no tokenizer."""
    if any(a.endswith(IMAGE_CLASSIFIERS) for a in config.architecture_names):
        return True
    if config.model_type in IMAGE_MODEL_TYPES:
        return True
    return is_image_processor(preprocessor) and not has_tokenizer


@dataclass(frozen=True)
class Pooling:
    """How token vectors become one sentence vector (sentence-transformers semantics)."""

    modes: tuple[str, ...] = ("mean",)
    normalize: bool = False
    max_seq_length: int | None = None
    do_lower_case: bool = False
    from_sentence_transformers: bool = False


def read_pooling(files: dict[str, str | None], where: str) -> Pooling:
    """Read the sentence-transformers files (paths or None) of a checkpoint into a :class:`Pooling`.

    ``files`` maps ``modules.json``, ``sentence_bert_config.json`` and the pooling config path to
    local paths (None when absent). Without ``modules.json`` the default is mean pooling.
    """
    if not files.get("modules.json"):
        return Pooling()
    kinds = []
    for m in read_config(files["modules.json"], SentenceModules).root:
        kind = m.type.rsplit(".", 1)[-1]
        if kind not in _ST_SUPPORTED:
            raise fmhub.PluginError(
                f"{where} is a sentence-transformers model with a {kind or repr(m.type)!r} module, "
                f"which fmhub does not reproduce (it runs {', '.join(sorted(_ST_SUPPORTED))}); load "
                "it with sentence-transformers, or pass task= to use the bare encoder."
            )
        kinds.append(kind)
    modes: tuple[str, ...] = ("mean",)
    if files.get("pooling"):
        modes = _pooling_modes(read_config(files["pooling"], PoolingConfig), where)
    bert = SentenceBertConfig()
    if files.get("sentence_bert_config.json"):
        bert = read_config(files["sentence_bert_config.json"], SentenceBertConfig)
    return Pooling(
        modes=modes,
        normalize="Normalize" in kinds,
        max_seq_length=bert.max_seq_length,
        do_lower_case=bert.do_lower_case,
        from_sentence_transformers=True,
    )


def _pooling_modes(cfg: PoolingConfig, where: str) -> tuple[str, ...]:
    if cfg.pooling_mode is not None:
        raw = cfg.pooling_mode
        modes = (raw,) if isinstance(raw, str) else tuple(raw)
    else:
        modes = tuple(mode for key, mode in _LEGACY_POOLING.items() if getattr(cfg, key))
    bad = [m for m in modes if m not in POOLING_MODES]
    if not modes or bad:
        raise fmhub.ManifestError(
            f"{where}: unsupported pooling configuration {cfg.model_dump(exclude_unset=True)!r}; "
            f"valid modes are {POOLING_MODES}."
        )
    if cfg.include_prompt is False:
        raise fmhub.PluginError(
            f"{where}: pooling that excludes the prompt is not supported by fmhub."
        )
    return modes  # concatenated in this order, as sentence-transformers does
