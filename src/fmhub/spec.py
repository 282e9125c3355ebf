"""Typed, frozen descriptions of models and namespaces, and the base of every load-options model.

A :class:`ModelSpec` is one representation of a model: where its weights are, what task it does, its
preprocessing contract and its provenance. Plugins build them at registration time, which must stay
cheap: nothing here imports torch or a model library.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InvalidOptionError, did_you_mean

__all__ = [
    "NAMESPACE_CHARS",
    "LoadOptions",
    "ModelSpec",
    "Namespace",
    "Preprocessing",
    "validate_model",
]

#: The characters a namespace may use (the part of a model id before the colon).
NAMESPACE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Preprocessing(_Frozen):
    """The preprocessing contract of a model: what its inputs must look like.

    Every field is optional; a plugin fills in those that apply to its modality.
    """

    max_tokens: int | None = Field(None, description="Longest token sequence the model takes.")
    input_size: tuple[int, ...] | None = Field(None, description="Image input (C, H, W).")
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    crop_mode: str | None = None
    sample_rate: int | None = Field(None, description="Audio sample rate in Hz.")
    normalize_waveform: bool | None = None


class ModelSpec(_Frozen):
    """What fmhub knows about a model before loading it.

    ``id`` is ``namespace:name``; ``namespace`` is derived from it. ``plugin`` is filled in by the
    core with the name of the plugin that serves the namespace; plugins leave it empty.
    """

    id: str
    aliases: tuple[str, ...] = ()
    task: str | None = Field(None, description="Default task; None means detected at load time.")
    tasks: tuple[str, ...] = ()
    modality: str | None = None
    architecture: str | None = None
    description: str = ""
    license: str | None = None
    source: str | None = Field(None, description="Where the weights come from (URL or hub id).")
    paper: str | None = None
    preprocessing: Preprocessing = Preprocessing()
    options: dict[str, Any] = Field(default_factory=dict, description="Default load options.")
    path: str | None = Field(None, description="Local folder or file the model is loaded from.")
    plugin: str | None = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        ns, sep, name = value.partition(":")
        if not sep or not ns or not name:
            raise ValueError(f"model id {value!r} must look like 'namespace:name'")
        if not set(ns) <= NAMESPACE_CHARS:
            raise ValueError(f"namespace {ns!r} may use only a-z, 0-9, '_' and '-'")
        return value

    @property
    def namespace(self) -> str:
        return self.id.partition(":")[0]

    @property
    def name(self) -> str:
        return self.id.partition(":")[2]


class LoadOptions(_Frozen):
    """Options every model takes. Plugins subclass this to add their own (``extra`` is forbidden).

    ``device``: ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
    ``"mps"``. ``dtype``: ``"auto"`` (float32 on CPU and MPS, bfloat16 on CUDA where supported, else
    float16), ``"float32"``, ``"bfloat16"``, ``"float16"`` (refused on CPU). ``task``: override the
    detected task. ``quantize``: ``"int8"`` (or the faster, less accurate ``"int8-fast"``) for
    int8 inference on CPU, see docs/quantization.md. ``runtime``: ``"onnxruntime"`` runs the
    forward stage on ONNX Runtime (exported to a cache on first use, see docs/export.md).
    """

    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    task: str | None = None
    quantize: Literal["int8", "int8-fast"] | None = None
    runtime: Literal["torch", "onnxruntime"] = "torch"

    @field_validator("device", mode="before")
    @classmethod
    def _check_device(cls, value: Any) -> Any:
        if type(value).__name__ == "device" and hasattr(value, "type"):  # a torch.device
            value = str(value)
        if isinstance(value, str) and not _DEVICE.fullmatch(value):
            raise ValueError("valid devices are 'auto', 'cpu', 'cuda', 'cuda:N' and 'mps'")
        return value

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype_name(cls, value: Any) -> Any:
        if type(value).__name__ == "dtype" and str(value).startswith("torch."):  # a torch.dtype
            return str(value).removeprefix("torch.")
        return value


class Namespace(_Frozen):
    """A ``namespace:`` that a plugin serves, with the options its models take.

    ``open`` namespaces accept names beyond the registered ones (any hub repo id, any timm name):
    the owner's ``fmhub_resolve_model`` hook turns such names into specs.
    """

    name: str
    distribution: str | None = Field(None, description="The distribution that provides it.")
    description: str = ""
    open: bool = False
    options: type[LoadOptions] = LoadOptions
    plugin: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not value or not set(value) <= NAMESPACE_CHARS:
            raise ValueError(f"namespace {value!r} may use only a-z, 0-9, '_' and '-'")
        return value


def validate_model(cls: type[BaseModel], data: dict[str, Any], what: str) -> Any:
    """Build ``cls(**data)``; on failure raise :class:`InvalidOptionError` naming each bad field.

    Unknown fields get a close match and the list of valid fields; invalid values get pydantic's
    own description (for literals it lists the valid choices).
    """
    try:
        return cls(**data)
    except ValidationError as exc:
        raise InvalidOptionError(describe_validation_error(exc, cls, what)) from None


def describe_validation_error(exc: ValidationError, cls: type[BaseModel], what: str) -> str:
    fields = sorted(cls.model_fields)
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(input)"
        if err["type"] == "extra_forbidden":
            problems.append(
                f"unknown option {loc!r}.{did_you_mean(str(err['loc'][-1]), fields)}"
                f" Valid options: {', '.join(fields)}."
            )
        else:
            problems.append(f"{loc!r}: {err['msg']} (got {err.get('input')!r})")
    return f"Invalid {what}: " + "; ".join(problems)
