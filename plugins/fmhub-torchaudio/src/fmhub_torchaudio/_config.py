"""The JSON file this plugin writes into a saved folder (``torchaudio.json``), as pydantic models.

:func:`fmhub.manifest.read_config` reads it: a missing field or a value of the wrong type is a
:class:`fmhub.ManifestError` naming the file and the field, before any of it reaches torchaudio.
Nothing here imports torch or torchaudio.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Architecture", "Head", "SavedConfig"]


class Architecture(BaseModel):
    """How to rebuild the module: ``torchaudio.models.<factory>(**kwargs)``."""

    model_config = ConfigDict(extra="forbid")

    factory: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kwargs: dict[str, Any]


class Head(BaseModel):
    """The classification head: ``nn.Linear(in, out)``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    in_features: int = Field(alias="in", gt=0)
    out_features: int = Field(alias="out", gt=0)


class SavedConfig(BaseModel):
    """``torchaudio.json``: architecture, labels and preprocessing of a saved model."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1]
    config: Architecture
    family: Literal["wav2vec2", "hubert", "wavlm"]
    sample_rate: int = Field(gt=0)
    normalize_waveform: bool
    ctc_labels: list[str] | None
    layer: int | None
    head: Head | None = None
    class_labels: list[str] | None = None
    info: dict[str, str] = Field(default_factory=dict)
