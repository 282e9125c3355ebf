"""Reading a checkpoint's JSON files as untrusted input, and deciding its task.

Nothing here imports torch or transformers: ``fmhub_claim_path`` and task detection run on plain
JSON. Every file is size-capped and type-checked; nothing in it is executed or imported.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import fmhub

__all__ = [
    "TASKS",
    "CheckpointConfig",
    "Pooling",
    "detect_task",
    "is_repo_id",
    "read_json",
    "read_pooling",
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
}
#: Tasks whose models generate (their stages are in ``_stages_generate`` / ``_stages_speech``).
GENERATIVE = ("text-generation", "text2text", "transcription")

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
    return bool(_REPO_ID.match(name)) and ".." not in name and "--" not in name and not name.endswith(".")


def read_json(path: str, what: str, *, expect: type = dict) -> Any:
    """Parse ``path`` as JSON data of type ``expect``; raise a clear error on anything else."""
    try:
        size = os.path.getsize(path)
        if size > _MAX_JSON_BYTES:
            raise fmhub.ManifestError(f"{what} {path!r} is {size} bytes; refusing JSON over 32 MiB.")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise fmhub.ManifestError(f"Cannot read {what} {path!r}: {exc}") from None
    if not isinstance(data, expect):
        raise fmhub.ManifestError(
            f"{what} {path!r} holds a JSON {type(data).__name__}, expected a {expect.__name__}."
        )
    return data


@dataclass(frozen=True)
class CheckpointConfig:
    """The facts fmhub reads from ``config.json``, validated."""

    model_type: str
    architectures: tuple[str, ...]
    labels: tuple[str, ...] | None
    auto_map: bool

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> CheckpointConfig:
        model_type = data.get("model_type")
        if not isinstance(model_type, str) or not model_type:
            raise fmhub.ManifestError(
                f"config.json of {where} has no 'model_type'; it is not a Transformers checkpoint."
            )
        archs = data.get("architectures")
        archs = [] if archs is None else archs
        if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
            raise fmhub.ManifestError(f"config.json of {where}: 'architectures' must be a list of names.")
        return cls(model_type, tuple(archs), _labels(data.get("id2label"), where),
                   bool(data.get("auto_map")))


def _labels(id2label: Any, where: str) -> tuple[str, ...] | None:
    if id2label is None:
        return None
    if not isinstance(id2label, dict):
        raise fmhub.ManifestError(f"config.json of {where}: 'id2label' must be an object.")
    try:
        pairs = sorted((int(k), str(v)) for k, v in id2label.items())
    except (TypeError, ValueError):
        raise fmhub.ManifestError(f"config.json of {where}: 'id2label' keys must be integers.") from None
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise fmhub.ManifestError(f"config.json of {where}: 'id2label' must number classes 0..N-1.")
    return tuple(name for _, name in pairs)


def detect_task(config: CheckpointConfig, sentence_transformers: bool) -> str:
    """The task a checkpoint was trained for: sentence-transformers layouts embed; otherwise the
    model class in ``architectures`` decides (a bare encoder embeds)."""
    if sentence_transformers:
        return "embedding"
    if config.model_type == "whisper":
        return "transcription"
    for arch in config.architectures:
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "text-generation"
        if arch.endswith(("ForConditionalGeneration", "MTModel")):
            return "text2text"
        if arch.endswith("ForSequenceClassification"):
            return "classification"
        if arch.endswith("ForTokenClassification"):
            return "token-classification"
        if arch.endswith("ForMaskedLM"):
            return "fill-mask"
        if arch.endswith("ForPreTraining") and not arch.startswith("Electra"):  # Electra's: a discriminator
            return "fill-mask"
    return "embedding"


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
    modules = read_json(files["modules.json"], "modules.json", expect=list)
    kinds = []
    for m in modules:
        kind = str(m.get("type", "")).rsplit(".", 1)[-1] if isinstance(m, dict) else ""
        if kind not in _ST_SUPPORTED:
            raise fmhub.PluginError(
                f"{where} is a sentence-transformers model with a {kind or repr(m)!r} module, which "
                f"fmhub does not reproduce (it runs {', '.join(sorted(_ST_SUPPORTED))}); load it "
                "with sentence-transformers, or pass task= to use the bare encoder."
            )
        kinds.append(kind)
    modes: tuple[str, ...] = ("mean",)
    if files.get("pooling"):
        modes = _pooling_modes(read_json(files["pooling"], "pooling config"), where)
    bert: dict[str, Any] = {}
    if files.get("sentence_bert_config.json"):
        bert = read_json(files["sentence_bert_config.json"], "sentence_bert_config.json")
    max_len = bert.get("max_seq_length")
    if max_len is not None and (not isinstance(max_len, int) or max_len < 1):
        raise fmhub.ManifestError(f"{where}: max_seq_length must be a positive integer, got {max_len!r}.")
    return Pooling(modes=modes, normalize="Normalize" in kinds, max_seq_length=max_len,
                   do_lower_case=bool(bert.get("do_lower_case", False)),
                   from_sentence_transformers=True)


def _pooling_modes(cfg: dict[str, Any], where: str) -> tuple[str, ...]:
    if "pooling_mode" in cfg:
        raw = cfg["pooling_mode"]
        modes = (raw,) if isinstance(raw, str) else tuple(raw) if isinstance(raw, list) else ()
    else:
        modes = tuple(mode for key, mode in _LEGACY_POOLING.items() if cfg.get(key) is True)
    bad = [m for m in modes if m not in POOLING_MODES]
    if not modes or bad:
        raise fmhub.ManifestError(
            f"{where}: unsupported pooling configuration {cfg!r}; valid modes are {POOLING_MODES}."
        )
    if cfg.get("include_prompt") is False:
        raise fmhub.PluginError(f"{where}: pooling that excludes the prompt is not supported by fmhub.")
    return modes  # concatenated in this order, as sentence-transformers does
