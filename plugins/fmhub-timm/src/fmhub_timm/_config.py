"""The JSON files of a timm folder (timm's ``config.json``, fmhub's ``fmhub_timm.json``), as
pydantic models.

:func:`fmhub.manifest.read_config` reads them before timm does: a missing field or a value of the
wrong type is a :class:`fmhub.ManifestError` naming the file and the field, never a timm
traceback. ``config.json`` is timm's own format (``save_config_for_hf``), so keys fmhub does not
read are kept; ``fmhub_timm.json`` is fmhub's and admits nothing else. Nothing here imports torch
or timm.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FeaturesConfig", "PretrainedConfig", "TimmConfig"]


class PretrainedConfig(BaseModel):
    """The ``pretrained_cfg`` fields fmhub's preprocessing reads (timm fills in the rest)."""

    model_config = ConfigDict(extra="allow")

    input_size: tuple[int, int, int] | None = None
    interpolation: str | None = None
    crop_pct: float | None = Field(None, gt=0)
    crop_mode: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    num_classes: int | None = Field(None, ge=0)


class TimmConfig(BaseModel):
    """timm's ``config.json``: the architecture, its arguments and its pretrained config."""

    model_config = ConfigDict(extra="allow")

    architecture: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    num_classes: int | None = Field(None, ge=0)
    num_features: int | None = Field(None, gt=0)
    label_names: list[str] | None = None
    label_descriptions: dict[str, str] | None = None
    model_args: dict[str, Any] = Field(default_factory=dict)
    pretrained_cfg: PretrainedConfig = Field(default_factory=PretrainedConfig)


class FeaturesConfig(BaseModel):
    """``fmhub_timm.json``, written beside ``config.json`` for feature-map models."""

    model_config = ConfigDict(extra="forbid")

    features_only: Literal[True]
    out_indices: tuple[int, ...] = Field(min_length=1)
