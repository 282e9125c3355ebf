"""The start-up snapshot: ``fmhub list``, ``fmhub info NAME`` and ``fmhub plugins`` answered from one
JSON file, without importing pydantic, pluggy, ``importlib.metadata`` or any plugin.

A full run of ``fmhub list`` / ``info`` / ``plugins`` (the hub built from the installed entry
points, every plugin fine, nothing warned) writes ``<cache>/snapshot-<key>.json`` (the cache folder
of :mod:`fmhub._plugincache`): every registered model as ``list --json`` prints it, what each id
and alias resolves to (``info``) and every plugin's record (``plugins``). The file name hashes what
selects the set of plugins: fmhub's version, the interpreter, ``sys.path`` (and the working folder
when an entry is relative) and ``FMHUB_LOAD_PLUGINS`` / ``FMHUB_DISABLE_PLUGINS``. The snapshot is
used only while what it recorded is unchanged (a file's size and modification time, a folder's
names other than ``__pycache__``: Python writing bytecode into a folder changes its modification
time, not what it holds):

* the distributions in every ``sys.path`` folder: the names in the folder (an entry added or
  removed), else its ``.dist-info`` / ``.egg-info`` entries with their modification times (so a
  file written next to them, as
  ``python -m fmhub list > out.txt`` does in the working folder, does not count): installing,
  upgrading or removing a distribution adds, replaces or removes one;
* the ``.dist-info`` folder, ``METADATA`` and ``entry_points.txt`` of every distribution with an
  ``fmhub`` entry point (a version rewritten in place);
* every ``.py`` file and folder of each plugin's top-level package (an editable install's edits);
* every ``.py`` file and folder of fmhub itself.

No file modified within :data:`RACY_NS` of the run's start is trusted (the run may have read it
before the change), and the ``sys.path`` folders must be as the run found them at its start: else no
snapshot is written. Anything else (another option, a name that is no
registered id or alias, a stale or unreadable file) falls through to the full command, which
rewrites the snapshot. ``FMHUB_PLUGIN_CACHE=0`` turns it off with the registration cache.
"""

from __future__ import annotations

import json
import os
import sys
import time
from stat import S_ISDIR

#: When this process started working (this module is imported by ``fmhub.cli``).
_START_NS = time.time_ns()
#: The ``sys.path`` folders as the command found them when it started (see :func:`fast_command`):
#: a snapshot is written only if they are the same when it ends.
_folders_at_start: list[list[str]] | None = None

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: this module must import nothing it need not

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._hub import Hub, PluginRecord

__all__ = ["fast_command", "plugin_row", "print_models", "print_plugins", "write_snapshot"]

#: Bumped when the file layout changes.
FORMAT = 1
#: Snapshots kept per cache folder (one per interpreter, sys.path and plugin selection).
KEEP = 16
#: A path modified this close to (or after) the start of the run that read it is not trusted: the
#: run may have read the version before the change (file systems store coarse times).
RACY_NS = 2 * 10**9


def _enabled() -> bool:
    value = os.environ.get("FMHUB_PLUGIN_CACHE", "1").strip().lower()
    return value not in {"0", "false", "no", "off"}


def _cache_dir() -> str:
    root = os.environ.get("FMHUB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fmhub"
    )
    return os.path.join(root, "plugins")


def _key() -> list[Any]:
    from . import __version__

    relative = any(not os.path.isabs(entry) for entry in sys.path)
    try:
        cwd = os.getcwd() if relative else None
    except OSError:  # the working folder was removed
        cwd = "?"
    return [
        FORMAT,
        __version__,
        sys.version,
        sys.executable,
        list(sys.path),
        cwd,  # '' and relative entries are relative to it
        os.environ.get("FMHUB_LOAD_PLUGINS"),
        os.environ.get("FMHUB_DISABLE_PLUGINS"),
    ]


def _path(key: list[Any]) -> str:
    import zlib  # not hashlib, whose OpenSSL costs milliseconds: the file holds the full key

    digest = zlib.crc32(json.dumps(key).encode())
    return os.path.join(_cache_dir(), f"snapshot-{digest:08x}.json")


def _stat(path: str) -> str:
    """``size:mtime_ns`` of a file; of a folder, a checksum of the names in it bar ``__pycache__``
    (not its modification time, which changes when Python first writes bytecode there); ``-`` when
    missing."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return "-"
    if S_ISDIR(st.st_mode):
        try:
            names = sorted(n for n in os.listdir(path) if n != "__pycache__")
        except OSError:
            return "-"
        import zlib

        return f"d{zlib.crc32(chr(0).join(names).encode('utf-8', 'surrogateescape')):08x}"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _racy(path: str, folders: bool = False) -> bool:
    """Whether ``path`` changed so recently that this run may have read it before the change. A
    folder counts only with ``folders``: a watched folder's signature is its names, exact whatever
    the clock (a file added to it is new, and racy itself)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    return (folders or not S_ISDIR(st.st_mode)) and st.st_mtime_ns >= _START_NS - RACY_NS


def _tree(root: str) -> list[str]:
    """Every folder (bar ``__pycache__``) and ``.py`` file under ``root``, or ``root`` itself."""
    if not os.path.isdir(root):
        return [root]
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        out.append(folder)
        out += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py")]
    return out


def _listing(folder: str) -> list[list[str]] | None:
    """The distributions installed in ``folder`` (a ``sys.path`` entry): each ``.dist-info`` /
    ``.egg-info`` entry with its modification time; None when it is no readable folder."""
    try:
        entries = os.scandir(folder)
    except (OSError, ValueError):
        return None
    out = []
    with entries:
        for entry in entries:
            if entry.name.lower().endswith((".dist-info", ".egg-info")):
                try:
                    out.append([entry.name, str(entry.stat().st_mtime_ns)])
                except OSError:
                    continue
    return sorted(out)


def _folders() -> list[str]:
    """The ``sys.path`` entries, where ``importlib.metadata`` finds distributions."""
    return list(dict.fromkeys(entry or os.curdir for entry in sys.path))


def _watched(hub: Hub) -> list[str] | None:
    """The files and folders (besides the ``sys.path`` entries) whose change invalidates a
    snapshot of ``hub``, or None when the hub's plugins cannot all be located."""
    import importlib.util

    paths = _tree(os.path.dirname(os.path.abspath(__file__)))
    for ep in hub._entry_points:
        dist = ep.dist
        info = getattr(dist, "_path", None)  # a PathDistribution's .dist-info folder
        if dist is None or info is None:
            return None
        info = str(info)
        paths += [info, os.path.join(info, "METADATA"), os.path.join(info, "entry_points.txt")]
        try:
            spec = importlib.util.find_spec(ep.module.split(".")[0])
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return None
        roots = list(spec.submodule_search_locations or [])
        if not roots and not (spec.origin and os.path.isfile(spec.origin)):
            return None
        for root in roots or [spec.origin]:
            paths += _tree(root)
    return list(dict.fromkeys(paths))


def match(pattern: str | None, names: list[str]) -> bool:
    """``Hub.list_models``'s rule: shell wildcards over id and aliases, any case; no wildcard:
    a substring."""
    if not pattern:
        return True
    import fnmatch

    pat = pattern.lower()
    if not any(ch in pat for ch in "*?["):
        pat = f"*{pat}*"
    return any(fnmatch.fnmatchcase(n.lower(), pat) for n in names)


def plugin_row(rec: PluginRecord) -> dict[str, Any]:
    """A plugin record as ``fmhub plugins --json`` prints it."""
    return {
        "name": rec.name,
        "distribution": rec.distribution,
        "version": rec.version,
        "status": rec.status,
        "namespaces": list(rec.namespaces),
        "error": rec.error,
    }


def print_models(specs: list[dict[str, Any]], pattern: str | None, as_json: bool) -> None:
    """What ``fmhub list`` prints for ``specs`` (each as ``ModelSpec.model_dump(mode="json",
    exclude_none=True)``): the JSON list, or one row per model."""
    if as_json:
        print(json.dumps(specs, indent=2))
        return
    if not specs:
        print(f"No registered model matches {pattern!r}." if pattern else "No models.")
        return
    width = max(len(s["id"]) for s in specs)
    for s in specs:
        aliases = f"  (aliases: {', '.join(s['aliases'])})" if s.get("aliases") else ""
        task, modality = s.get("task") or "-", s.get("modality") or "-"
        print(f"{s['id']:<{width}}  {task:<22} {modality:<6}{aliases}")


def print_plugins(recs: list[dict[str, Any]], as_json: bool) -> None:
    """What ``fmhub plugins`` prints for ``recs`` (each as ``--json`` shows it)."""
    if as_json:
        print(json.dumps(recs, indent=2))
        return
    width = max(14, *(len(r["name"]) + 1 for r in recs))
    for r in recs:
        dist = f"{r['distribution'] or '-'} {r['version'] or ''}".rstrip()
        serves = ", ".join(n + ":" for n in r["namespaces"]) if r["status"] == "ok" else ""
        line = f"{r['name']:<{width}} {r['status']:<9} {dist:<28} {serves}".rstrip()
        print(line + (f"\n{'':{width}} error: {r['error']}" if r["error"] else ""))


def write_snapshot(hub: Hub) -> None:
    """Write the snapshot of ``hub`` when it is the default hub of the installed entry points and
    nothing about it warned or failed (so the fast path would print exactly what this run did).
    A snapshot that cannot be written is skipped silently."""
    from ._hub import get_hub
    from .errors import FmhubError

    if not _enabled() or hub is not get_hub() or not hub._snapshot_ok:
        return
    reg = hub.registry
    if reg.dropped or any(r.status == "failed" for r in hub.records.values()):
        return
    key = _key()
    watched = _watched(hub)
    if watched is None or any(_racy(p) for p in watched):
        return
    folders = [[f, _stat(f), _listing(f)] for f in _folders()]
    if _folders_at_start != [[f, sig] for f, sig, _ in folders]:
        return  # a distribution installed or removed while this run went on (or no start seen)
    for folder, _, listing in folders:  # ... or just before
        if any(_racy(os.path.join(folder, name), folders=True) for name, _ in listing or ()):
            return
    specs = [s.model_dump(mode="json", exclude_none=True) for s in hub.list_models()]
    resolved: dict[str, Any] = {}
    for spec in hub.list_models():
        for name in (spec.id, *spec.aliases):
            try:
                resolved[name] = hub.model_info(name).model_dump(mode="json", exclude_none=True)
            except FmhubError:  # a conflict, say: the full command raises it every time
                continue
    plugins = [plugin_row(r) for r in hub.plugins()]
    data = {
        "key": key,
        "folders": folders,
        "stats": [[p, _stat(p)] for p in watched],
        "specs": specs,
        "resolved": resolved,
        "plugins": plugins,
    }
    path = _path(key)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
        _prune(os.path.dirname(path))
    except OSError:
        pass


def _prune(folder: str) -> None:
    """Keep the :data:`KEEP` most recently written snapshots (only files fmhub wrote)."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith("snapshot-") and n.endswith(".json")]
        if len(names) <= KEEP:
            return
        paths = sorted((os.path.join(folder, n) for n in names), key=os.path.getmtime)
        for path in paths[:-KEEP]:
            os.unlink(path)
    except OSError:
        pass


def read_snapshot() -> dict[str, Any] | None:
    """The snapshot for this interpreter and environment, or None (none, stale or unreadable)."""
    if not _enabled():
        return None
    key = _key()
    try:
        with open(_path(key), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    try:
        if data["key"] != key or not all(_stat(p) == sig for p, sig in data["stats"]):
            return None
        for folder, sig, listing in data["folders"]:
            # a changed folder is fine while its distributions are (a file written next to them)
            if _stat(folder) != sig and (listing is None or _listing(folder) != listing):
                return None
        if not isinstance(data["specs"], list) or not isinstance(data["resolved"], dict):
            return None
        if not isinstance(data["plugins"], list):
            return None
    except (TypeError, KeyError, ValueError):
        return None
    return data


def fast_command(argv: list[str]) -> Callable[[], None] | None:
    """The printing of ``fmhub list [PATTERN] [--json]``, ``fmhub info NAME`` or ``fmhub plugins
    [--json]`` from a valid snapshot, or None: then the full command runs (any other command, option
    or name, no snapshot)."""
    global _folders_at_start
    _folders_at_start = None
    if not argv or argv[0] not in ("list", "info", "plugins") or not _enabled():
        return None
    _folders_at_start = [[f, _stat(f)] for f in _folders()]
    command, rest = argv[0], argv[1:]
    if any(a.startswith("-") and a != "--json" for a in rest):
        return None  # --help, -v, '--', a prefix of --json...: argparse's business
    as_json = "--json" in rest
    positional = [a for a in rest if a != "--json"]
    if rest.count("--json") > 1:
        return None
    if command == "info" and (as_json or len(positional) != 1):
        return None
    if (command == "list" and len(positional) > 1) or (command == "plugins" and positional):
        return None
    if "fmhub._hub" in sys.modules and sys.modules["fmhub._hub"]._default is not None:
        return None  # this process made or set a hub of its own: it decides
    data = read_snapshot()
    if data is None:
        return None
    if command == "info":
        spec = data["resolved"].get(positional[0])
        if not isinstance(spec, dict):
            return None
        return lambda: print(json.dumps(spec, indent=2))
    if command == "plugins":

        def show_plugins() -> None:
            print_plugins(data["plugins"], as_json)

        return show_plugins
    pattern = positional[0] if positional else None
    specs = [s for s in data["specs"] if match(pattern, [s["id"], *s.get("aliases", ())])]

    def show() -> None:
        print_models(specs, pattern, as_json)

    return show
