"""Folders written by fmhub: a versioned ``fmhub.json`` manifest beside the family's own files.

Writes are atomic: everything goes into a temporary sibling folder that is renamed into place, so an
interrupted save never leaves a half-written folder where a good one was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ManifestError
from .spec import ModelSpec

if TYPE_CHECKING:
    from .model import Model

__all__ = ["MANIFEST", "Manifest", "atomic_folder", "read_manifest", "save_model", "versions"]

MANIFEST = "fmhub.json"
FORMAT_VERSION = 1


class Manifest(BaseModel):
    """``fmhub.json``: what a saved folder holds and what it needs to load."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    kind: Literal["model", "adapter"] = "model"
    spec: dict[str, Any]
    task: str
    labels: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    plugin: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    info: dict[str, Any] = Field(default_factory=dict)
    adapter: dict[str, Any] | None = None

    def spec_for(self, path: Path) -> ModelSpec:
        """The spec of the saved model, loading from ``path`` (the base model's, for adapters)."""
        spec = ModelSpec(**self.spec)
        if self.kind == "adapter":
            return spec
        opts = {**spec.options, **self.options}
        return spec.model_copy(update={"path": str(path), "options": opts, "task": self.task})


def read_manifest(path: Path) -> Manifest:
    file = Path(path) / MANIFEST
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{str(path)!r} has no {MANIFEST}; it was not saved by fmhub.") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"Cannot read {str(file)!r}: {exc}") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ManifestError(
            f"{str(file)!r} has format_version {version}, newer than this fmhub reads "
            f"({FORMAT_VERSION}); upgrade fmhub."
        )
    try:
        return Manifest(**data)
    except (ValidationError, TypeError) as exc:
        raise ManifestError(f"Invalid manifest {str(file)!r}: {exc}") from None


def versions(*dists: str) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are left out)."""
    import importlib.metadata as md

    out = {}
    for d in dists:
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    return out


def atomic_folder(dest: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary sibling of ``dest``, then swap it into place.

    An existing ``dest`` is replaced only after the new folder is complete.
    """
    dest = Path(dest).absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        write(tmp)
        _fsync_tree(tmp)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / "x")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _fsync_tree(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_manifest(folder: Path, manifest: Manifest) -> None:
    (folder / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")


def model_manifest(model: Model, kind: str = "model", **extra: Any) -> Manifest:
    rec = model.hub.records.get(model.spec.plugin or "")
    dists = ["fmhub", "torch"] + ([rec.distribution] if rec and rec.distribution else [])
    if kind == "adapter":
        dists.append("peft")
    options = model.options.model_dump(exclude={"device", "dtype", "quantize"}, exclude_defaults=True)
    spec = model.spec.model_dump(exclude={"path", "plugin"}, exclude_defaults=True)
    if model.spec.path and kind == "adapter":
        spec["path"] = model.spec.path
    return Manifest(
        kind=kind,
        spec=spec,
        task=model.task,
        labels=list(model.labels) if model.labels is not None else None,
        options=options,
        plugin=model.spec.plugin,
        versions=versions(*dists),
        info=model.info,
        **extra,
    )


def save_model(model: Model, dest: Path) -> Path:
    """Write a plain (not fine-tuned) model: the plugin's files (``fmhub_save``) and the manifest.

    A model with an adapter is written by :func:`fmhub.finetuning.adapter.save_adapter` instead
    (``Model.save`` chooses).
    """

    def write(tmp: Path) -> None:
        model._save_files(str(tmp))
        write_manifest(tmp, model_manifest(model))

    return atomic_folder(dest, write)
