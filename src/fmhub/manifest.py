"""Folders written by fmhub: a versioned ``fmhub.json`` manifest beside the family's own files.

Three guarantees live here (see docs/reliability.md):

- **Saving never destroys what fmhub did not write.** :func:`check_destination` refuses an existing
  file, a non-empty folder that is not an fmhub folder (or holds files its manifest does not
  list), the working folder and an empty path; an fmhub folder is replaced only with
  ``overwrite=True``.
- **Saves are atomic.** :func:`atomic_folder` writes a hidden temporary sibling, fsyncs it, then
  swaps it into place with one ``renameat2(RENAME_EXCHANGE)`` where Linux offers it (two renames
  otherwise) and fsyncs the parent folder. A kill at any point leaves the old complete folder or
  the new complete one; a complete old folder parked between the two renames is put back by
  :func:`recover` on the next access, and leftovers are cleaned by the next save.
- **Loads are verified.** The manifest records the size and SHA-256 of every file in the folder and
  a hash of its own content; :func:`verify_folder` checks both (streamed) before a plugin reads a
  byte, and refuses unlisted files. Options replayed from a manifest never grant what the caller did
  not (:func:`replayable_options`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, RootModel, ValidationError

from .errors import DestinationError, InputError, ManifestError
from .spec import ModelSpec

if TYPE_CHECKING:
    from ._hub import Hub
    from .model import Model

__all__ = [
    "CONSENT_OPTIONS",
    "MANIFEST",
    "FileEntry",
    "Manifest",
    "atomic_folder",
    "check_destination",
    "read_config",
    "read_manifest",
    "recover",
    "replayable_options",
    "save_model",
    "seal",
    "verify_folder",
    "verify_hashes",
    "versions",
]

MANIFEST = "fmhub.json"
FORMAT_VERSION = 2
#: fmhub.json larger than this, or nested deeper, is refused before it is parsed.
MAX_MANIFEST_BYTES = 8 * 2**20
MAX_JSON_DEPTH = 64
#: Load options a manifest may never replay: they run code, read other files or widen what loads.
#: A plugin marks more with ``Field(..., json_schema_extra={"consent": True})``.
CONSENT_OPTIONS = frozenset({"trust_remote_code", "device_map", "checkpoint", "use_safetensors"})
TMP_TAG = ".fmhub-tmp-"
OLD_TAG = ".fmhub-old-"
_CHUNK = 1 << 20


class FileEntry(BaseModel):
    """Size and SHA-256 of one file of a saved folder."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """``fmhub.json``: what a saved folder holds and what it needs to load."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    kind: Literal["model", "adapter", "checkpoint"] = "model"
    spec: dict[str, Any]
    task: str
    labels: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    plugin: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    info: dict[str, Any] = Field(default_factory=dict)
    adapter: dict[str, Any] | None = None
    #: Adapters: what training did (data, config, final metrics); the model card says the same.
    training: dict[str, Any] | None = None
    #: Every other file of the folder (POSIX path relative to it) -> size and SHA-256.
    files: dict[str, FileEntry] = Field(default_factory=dict)
    #: SHA-256 of this manifest's canonical JSON without this field.
    content_sha256: str | None = None
    _raw_sha256: str | None = PrivateAttr(None)  # hash of the JSON as read, set by read_manifest

    def spec_for(self, path: Path, consent: frozenset[str] = CONSENT_OPTIONS) -> ModelSpec:
        """The spec of the saved model, loading from ``path`` (the base model's, for adapters).

        Options named in ``consent`` are never replayed: the caller passes them again if wanted.
        """
        data = dict(self.spec)
        data["options"] = replayable_options(data.get("options") or {}, consent)
        spec = ModelSpec(**data)
        if self.kind == "adapter":
            return spec
        opts = {**spec.options, **replayable_options(self.options, consent)}
        return spec.model_copy(update={"path": str(path), "options": opts, "task": self.task})


def replayable_options(options: dict[str, Any], consent: frozenset[str] = CONSENT_OPTIONS) -> dict:
    """``options`` without those that need the caller's consent."""
    return {k: v for k, v in options.items() if k not in consent}


def consent_options(options_cls: Any) -> frozenset[str]:
    """:data:`CONSENT_OPTIONS` plus the fields an options class marks ``{"consent": True}``."""
    marked = set()
    for name, f in getattr(options_cls, "model_fields", {}).items():
        extra = f.json_schema_extra
        if isinstance(extra, dict) and extra.get("consent"):
            marked.add(name)
    return CONSENT_OPTIONS | marked


# -- reading and verifying -----------------------------------------------------------------------


def _canonical(data: dict[str, Any]) -> bytes:
    body = {k: v for k, v in data.items() if k != "content_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _json_depth(text: str) -> int:
    """The nesting depth of JSON ``text``, counted without parsing it (strings ignored)."""
    depth = deepest = 0
    for ch in re.findall(r"[\[\]{}]", re.sub(r'"(?:[^"\\]|\\.)*"', "", text)):
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def read_manifest(path: Path) -> Manifest:
    """Parse ``path/fmhub.json`` (size and depth capped); any problem is a ManifestError."""
    file = Path(path) / MANIFEST
    try:
        size = file.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(
                f"{str(file)!r} is {size} bytes, more than the {MAX_MANIFEST_BYTES} an fmhub "
                "manifest may have; it was not written by fmhub."
            )
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"{str(path)!r} has no {MANIFEST}; it was not saved by fmhub."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"Cannot read {str(file)!r}: {exc}") from None
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ManifestError(
            f"{str(file)!r} is nested {depth} levels deep (at most {MAX_JSON_DEPTH}); it was not "
            "written by fmhub."
        )
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ManifestError(f"Cannot read {str(file)!r}: {exc}") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ManifestError(
            f"{str(file)!r} has format_version {version}, newer than this fmhub reads "
            f"({FORMAT_VERSION}); upgrade fmhub."
        )
    if not isinstance(data, dict):
        raise ManifestError(f"Invalid manifest {str(file)!r}: not a JSON object.")
    try:
        manifest = Manifest(**data)
    except (ValidationError, TypeError) as exc:
        raise ManifestError(f"Invalid manifest {str(file)!r}: {exc}") from None
    manifest._raw_sha256 = hashlib.sha256(_canonical(data)).hexdigest()
    return manifest


def verify_folder(path: Path, manifest: Manifest, hashes: bool = True) -> None:
    """Check the manifest's own hash, every listed file's size and (``hashes``) SHA-256, streamed,
    and that the folder holds no file the manifest does not list. Raises ManifestError naming
    the file. ``hashes=False`` does the cheap checks only (see :func:`verify_hashes`)."""
    folder = Path(path)
    if manifest.content_sha256 is None:
        raise ManifestError(
            f"{str(folder / MANIFEST)!r} records no file hashes (written by an older fmhub or by "
            f"hand), so its weights cannot be verified{_HOW}"
        )
    if manifest._raw_sha256 != manifest.content_sha256:
        raise ManifestError(
            f"{str(folder / MANIFEST)!r} was edited after fmhub wrote it (its content hash does not "
            f"match){_HOW}"
        )
    for file, entry in _listed(folder, manifest):
        try:
            size = file.stat().st_size
        except OSError:
            raise ManifestError(
                f"{str(folder)!r} lacks {file.relative_to(folder.resolve()).as_posix()!r}, which its "
                f"manifest lists{_HOW}"
            ) from None
        if size != entry.size:
            raise ManifestError(
                f"{str(file)!r} has {size} bytes, the manifest says {entry.size}: the file is "
                f"truncated or changed{_HOW}"
            )
    extra = sorted(set(_listing(folder)) - set(manifest.files))
    if extra:
        raise ManifestError(
            f"{str(folder)!r} holds files its manifest does not list: {extra[:5]}; a loader could "
            f"read them. Remove them{_HOW.removeprefix(';')}"
        )
    if hashes:
        verify_hashes(folder, manifest)


def verify_hashes(path: Path, manifest: Manifest) -> None:
    """Compare every listed file's SHA-256 with the manifest (streamed, 1 MiB at a time)."""
    for file, entry in _listed(Path(path), manifest):
        if sha256_file(file) != entry.sha256:
            raise ManifestError(
                f"{str(file)!r} does not match the SHA-256 in {MANIFEST}: the file is corrupt or "
                f"changed{_HOW}"
            )


_HOW = "; save it again from a trusted copy, or load with verify=False if you must."


def _listed(folder: Path, manifest: Manifest) -> list[tuple[Path, FileEntry]]:
    root = folder.resolve()
    out = []
    for rel, entry in manifest.files.items():
        file = _inside(root, rel)
        if file is None:
            raise ManifestError(f"{str(folder / MANIFEST)!r} lists {rel!r}, outside the folder.")
        out.append((file, entry))
    return out


def _inside(root: Path, rel: str) -> Path | None:
    if not rel or rel.startswith("/") or "\\" in rel or ".." in rel.split("/"):
        return None
    file = (root / rel).resolve()
    return file if file.is_relative_to(root) else None


def sha256_file(file: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(file, "rb") as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _listing(folder: Path) -> list[str]:
    """Every non-directory entry below ``folder`` but the manifest, as POSIX relative paths."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = Path(dirpath, name).relative_to(folder).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def is_fmhub_folder(path: Path) -> bool:
    """True for a folder whose manifest parses and lists every file it holds (nothing foreign)."""
    try:
        manifest = read_manifest(path)
    except ManifestError:
        return False
    return set(_listing(Path(path))) <= set(manifest.files)


# -- writing -------------------------------------------------------------------------------------


def seal(folder: Path, manifest: Manifest) -> Manifest:
    """Record every file of ``folder`` and the manifest's own hash, then write ``fmhub.json``."""
    folder = Path(folder)
    files = {
        rel: FileEntry(size=(folder / rel).stat().st_size, sha256=sha256_file(folder / rel))
        for rel in _listing(folder)
    }
    manifest = manifest.model_copy(
        update={"files": files, "content_sha256": None, "format_version": FORMAT_VERSION}
    )
    data = json.loads(manifest.model_dump_json(exclude={"content_sha256"}))
    data["content_sha256"] = hashlib.sha256(_canonical(data)).hexdigest()
    (folder / MANIFEST).write_text(
        json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return Manifest(**data)


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Seal ``folder`` with ``manifest`` (kept for callers of the earlier name)."""
    seal(folder, manifest)


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


def as_destination(path: Any, what: str = "save path") -> Path:
    """``path`` as an absolute Path; a non-path, an empty path or an over-long name is an
    InputError."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise InputError(
            f"The {what} must be a str or os.PathLike naming a folder, got {type(path).__name__} "
            f"({path!r:.80})."
        )
    raw = os.fspath(path)
    if not isinstance(raw, str) or not raw.strip():
        raise InputError(f"The {what} is empty; name the folder to write, e.g. 'my-model'.")
    dest = Path(raw).expanduser().absolute()
    if len(os.fsencode(dest.name)) + len(TMP_TAG) + 10 > 255:
        raise InputError(
            f"The {what}'s folder name is {len(dest.name)} characters long; file systems allow "
            f"255 bytes, and fmhub needs {len(TMP_TAG) + 10} of them for its temporary sibling. "
            "Use a shorter name."
        )
    return dest


def check_destination(path: Any, overwrite: bool = False, what: str = "save path") -> Path:
    """Refuse a destination whose replacement would lose something fmhub did not write.

    Allowed: a missing path, an empty folder, and (with ``overwrite=True``) an fmhub folder that
    holds only what its manifest lists. Returns the absolute destination.
    """
    dest = as_destination(path, what)
    real = Path(os.path.realpath(dest))
    cwd = Path.cwd().resolve()
    if real == cwd or cwd.is_relative_to(real) or real == Path(real.anchor):
        raise DestinationError(
            f"The {what} {str(path)!r} is the working folder (or holds it); fmhub never replaces "
            "it. Name a new sub-folder, e.g. './my-model'."
        )
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise DestinationError(
            f"The {what} {str(path)!r} is an existing file or link; fmhub writes folders "
            "and never replaces one. Choose another path."
        )
    if dest.is_dir() and any(dest.iterdir()):
        if not is_fmhub_folder(dest):
            raise DestinationError(
                f"The {what} {str(path)!r} is a folder that holds files fmhub did not write; "
                "fmhub never replaces it. Choose a new or empty folder."
            )
        if not overwrite:
            raise DestinationError(
                f"The {what} {str(path)!r} already holds a folder saved by fmhub; pass "
                "overwrite=True (CLI: --overwrite) to replace it, or choose another path."
            )
    return dest


@contextlib.contextmanager
def _locked(parent: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``parent`` (flock on the folder itself), where available."""
    try:
        import fcntl

        fd = os.open(parent, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def _siblings(dest: Path, tag: str) -> list[Path]:
    prefix = f".{dest.name}{tag}"
    try:
        return [p for p in dest.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return []


def recover(path: Any) -> bool:
    """Put back a complete folder parked by an interrupted two-rename swap; True if one was.

    Cheap when nothing is missing: called before every load and save of a path.
    """
    try:
        dest = Path(os.fspath(path)).expanduser().absolute()
        if (
            not dest.name
            or dest.exists()
            or not dest.parent.is_dir()
            or not _siblings(dest, OLD_TAG)
        ):
            return False
    except (TypeError, ValueError, OSError, RuntimeError):
        return False
    with _locked(dest.parent):
        return _recover_locked(dest)


def _recover_locked(dest: Path) -> bool:
    if dest.exists():
        return False
    parked = sorted(_siblings(dest, OLD_TAG), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in parked:
        try:
            read_manifest(old)
        except ManifestError:
            continue
        os.rename(old, dest)
        _fsync_dir(dest.parent)
        return True
    return False


def _clean(dest: Path) -> None:
    """Remove temporary folders of earlier interrupted saves of ``dest`` (it exists or never
    did: a parked complete folder has been put back first)."""
    for p in _siblings(dest, TMP_TAG) + (_siblings(dest, OLD_TAG) if dest.exists() else []):
        shutil.rmtree(p, ignore_errors=True)


def atomic_folder(
    dest: Path, write: Callable[[Path], None], overwrite: bool = False, what: str = "save path"
) -> Path:
    """Call ``write(tmp)`` on a fresh temporary sibling of ``dest``, then swap it into place.

    ``dest`` is checked with :func:`check_destination` (before and again under the lock). An
    existing ``dest`` stays until the new folder is complete and fsynced.
    """
    dest = check_destination(dest, overwrite, what)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest.parent):
        _recover_locked(dest)
        check_destination(dest, overwrite, what)
        _clean(dest)
        tmp = dest.parent / f".{dest.name}{TMP_TAG}{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            write(tmp)
            _fsync_tree(tmp)
            _swap(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def _swap(tmp: Path, dest: Path) -> None:
    parent = dest.parent
    if not dest.exists():
        os.rename(tmp, dest)
        _fsync_dir(parent)
        return
    if dest.is_dir() and not any(dest.iterdir()):
        os.rmdir(dest)  # an empty folder: nothing to keep
        os.rename(tmp, dest)
        _fsync_dir(parent)
        return
    if _exchange(tmp, dest):  # one atomic step: tmp now holds the old folder
        _fsync_dir(parent)
        shutil.rmtree(tmp)
        return
    old = parent / f".{dest.name}{OLD_TAG}{secrets.token_hex(4)}"
    os.rename(dest, old)  # a kill from here to the next rename leaves old complete: recover()
    _fsync_dir(parent)
    os.rename(tmp, dest)
    _fsync_dir(parent)
    shutil.rmtree(old)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux ``renameat2(RENAME_EXCHANGE)``; False where the
    system or file system does not offer it."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import errno

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


# -- models ----------------------------------------------------------------------------------------


def model_manifest(model: Model, kind: str = "model", **extra: Any) -> Manifest:
    rec = model.hub.records.get(model.spec.plugin or "")
    dists = ["fmhub", "torch"] + ([rec.distribution] if rec and rec.distribution else [])
    if kind == "adapter":
        dists.append("peft")
    options = model.options.model_dump(
        exclude={"device", "dtype", "quantize"}, exclude_defaults=True
    )
    spec = model.spec.model_dump(exclude={"path", "plugin"}, exclude_defaults=True)
    if model.spec.path and kind != "model":
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


def save_model(model: Model, dest: Any, overwrite: bool = False) -> Path:
    """Write a plain (not fine-tuned) model: the plugin's files (``fmhub_save``) and the sealed
    manifest. A model with an adapter is written by
    :func:`fmhub.finetuning.adapter.save_adapter` instead (``Model.save`` chooses)."""

    def write(tmp: Path) -> None:
        model._save_files(str(tmp))
        seal(tmp, model_manifest(model))

    return atomic_folder(dest, write, overwrite=overwrite)


def saved_folder(hub: Hub, name: Any) -> Path | None:
    """The folder ``name`` names when it is a local folder with an fmhub manifest (after putting
    back one an interrupted save parked); None for ids, aliases and everything else."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name:
        return None
    reg = hub.registry
    if name in reg.specs or name in reg.aliases:
        return None
    ns, sep, rest = name.partition(":")
    if sep and rest and ns in reg.namespaces:
        return None
    try:
        path = Path(name).expanduser()
        recover(path)
        return path.resolve() if (path / MANIFEST).is_file() else None
    except (OSError, ValueError, RuntimeError):  # too long, NUL byte, ~user unknown: not a folder
        return None


_Config = TypeVar("_Config", bound=BaseModel)


def read_config(
    path: str | os.PathLike[str], model: type[_Config], *, max_bytes: int = MAX_MANIFEST_BYTES
) -> _Config:
    """Read a JSON config file of a model folder (one a plugin wrote, or one it reads, such as
    ``torchaudio.json`` or a checkpoint's ``config.json``) into the pydantic ``model``.

    Any problem is a :class:`ManifestError` naming the file and, for a bad value, each field by
    its dotted path: the file is missing or unreadable, larger than ``max_bytes`` or nested deeper
    than a manifest may be, not JSON, not a JSON object (unless ``model`` is a pydantic
    ``RootModel``, e.g. of a list), or a field is missing or of the wrong type.
    """
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > max_bytes:
            raise ManifestError(
                f"{str(file)!r} is {size} bytes; refusing a config over {max_bytes}."
            )
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{str(file)!r} is missing; restore the folder's files.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"Cannot read {str(file)!r}: {exc}") from None
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ManifestError(
            f"{str(file)!r} is nested {depth} levels deep (at most {MAX_JSON_DEPTH})."
        )
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ManifestError(f"Cannot read {str(file)!r}: not JSON ({exc}).") from None
    if not isinstance(data, dict) and not issubclass(model, RootModel):
        raise ManifestError(f"Invalid {str(file)!r}: a JSON {type(data).__name__}, not an object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(file)"
            got = "" if err["type"] == "missing" else f" (got {err.get('input')!r:.80})"
            problems.append(f"field {loc!r}: {err['msg']}{got}")
        raise ManifestError(f"Invalid {str(file)!r}: " + "; ".join(problems)) from None
