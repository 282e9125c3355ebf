"""A cache of what each installed plugin registered, so listing and resolving names need not import
plugin modules.

One JSON file per entry point under ``<cache>/plugins`` (``FMHUB_CACHE``, else
``$XDG_CACHE_HOME/fmhub``, else ``~/.cache/fmhub``), valid while the *key* is unchanged: fmhub's
version, Python's, the distribution's name and version, the entry point's name and value, and the
size and modification time of every ``.py`` file of the plugin's top-level package (so an editable
install invalidates on any edit), and the modification times of fmhub's spec.py and _hub.py. A plugin is cached only when its registration is plain data
(namespaces and model specs; one registering fine-tune methods or metrics is always imported).
A missing, stale or unreadable file is ignored and rewritten. ``FMHUB_PLUGIN_CACHE=0`` turns the
cache off.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["cache_enabled", "cache_key", "plugin_cache_dir", "read_entry", "write_entry"]

#: Bumped when the file layout changes.
FORMAT = 1


def cache_enabled() -> bool:
    return os.environ.get("FMHUB_PLUGIN_CACHE", "1").strip().lower() not in {
        "0",
        "false",
        "no",
        "off",
    }


def plugin_cache_dir() -> Path:
    root = os.environ.get("FMHUB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fmhub"
    )
    return Path(root) / "plugins"


def _sources(module: str) -> list[str]:
    """``path:size:mtime_ns`` of every .py file of the top-level package of ``module``, found
    without importing it; empty when it cannot be found."""
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    files: list[str] = []
    roots = list(spec.submodule_search_locations or [])
    if roots:
        for root in roots:
            for folder, dirs, names in os.walk(root):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                files += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py")]
    elif spec.origin and os.path.isfile(spec.origin):
        files.append(spec.origin)
    out = []
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            continue
        out.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return out


def cache_key(ep: Any, fmhub_version: str | None) -> str | None:
    """The key of an entry point's cached registration, or None when it cannot be cached (no
    distribution, or its source cannot be found)."""
    dist = ep.dist
    if dist is None or not dist.name:
        return None
    sources = _sources(ep.module)
    if not sources:
        return None
    core = Path(__file__).parent  # the types the entries are read back into
    mine = [f"{f.name}:{f.stat().st_mtime_ns}" for f in (core / "spec.py", core / "_hub.py")]
    parts = [
        str(FORMAT),
        fmhub_version or "",
        sys.version,
        *mine,
        dist.name,
        dist.version or "",
        ep.name,
        ep.value,
        *sources,
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _file(name: str, dist: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{dist}__{name}")
    return plugin_cache_dir() / f"{safe}.json"


def read_entry(name: str, dist: str, key: str) -> dict[str, Any] | None:
    """The cached registration ``{"namespaces": [...], "models": [...]}``, or None (missing,
    stale or corrupt)."""
    try:
        data = json.loads(_file(name, dist).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    items = data.get("items")
    if not isinstance(items, dict) or not all(
        isinstance(items.get(k), list) for k in ("namespaces", "models")
    ):
        return None
    return items


def write_entry(name: str, dist: str, key: str, items: dict[str, Any]) -> None:
    """Write one entry atomically; a cache that cannot be written is silently skipped."""
    path = _file(name, dist)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "items": items}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
