"""The Hub: one pluggy plugin manager, the plugins it discovered, and the registry they filled."""

from __future__ import annotations

import contextvars
import fnmatch
import importlib
import importlib.metadata as md
import inspect
import json
import os
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import PrivateAttr

from . import hookspecs
from .errors import (
    AmbiguousModelError,
    FmhubError,
    ManifestError,
    PluginError,
    UnknownModelError,
    UnknownNamespaceError,
    did_you_mean,
)
from .manifest import MANIFEST
from .spec import NAMESPACE_CHARS, ModelSpec, Namespace

if TYPE_CHECKING:
    from .evaluation.base import Metric
    from .finetuning.methods import FineTuneMethod
    from .model import Model

__all__ = ["Hub", "PluginRecord", "FmhubPluginWarning", "get_hub", "set_hub"]

ENTRY_POINT_GROUP = "fmhub"
#: Namespaces of first-party plugins, so a missing one can be named.
KNOWN_DISTRIBUTIONS = {
    "hf": "fmhub-transformers",
    "timm": "fmhub-timm",
    "torchaudio": "fmhub-torchaudio",
}


class FmhubPluginWarning(UserWarning):
    """A plugin failed to import or register and was skipped."""


@dataclass
class PluginRecord:
    """One plugin as ``fmhub plugins`` lists it."""

    name: str
    distribution: str | None = None
    version: str | None = None
    status: str = "ok"  # ok | failed | disabled
    error: str | None = None
    plugin: Any = field(default=None, repr=False)
    #: The namespaces it serves (empty for a cross-cutting plugin), filled in by ``Hub.plugins()``.
    namespaces: tuple[str, ...] = ()


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


class Hub:
    """A plugin manager with its plugins and the models, namespaces and methods they registered.

    ``Hub()`` discovers plugins through the ``fmhub`` entry-point group (honouring
    ``FMHUB_LOAD_PLUGINS`` and ``FMHUB_DISABLE_PLUGINS``); ``Hub(entry_points=False)`` starts with
    the built-in plugins only, and :meth:`register` adds more (handy in tests).
    """

    def __init__(self, *, entry_points: bool = True, plugins: dict[str, Any] | None = None):
        self._pm = pluggy.PluginManager("fmhub")
        self._pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        #: entry-point plugins registered from the cache, not imported yet: name -> entry point
        self._lazy: dict[str, Any] = {}
        #: what each lazy plugin registered (from the cache): name -> {hook: [items]}
        self._lazy_items: dict[str, dict[str, list]] = {}
        #: entry-point plugins imported in this hub whose registration may be cached: name -> key
        self._cacheable: dict[str, tuple[str, str]] = {}
        #: the namespaces a lazy plugin registered, once imported: name -> Namespace
        self._real_namespaces: dict[str, Namespace] = {}
        self._registry: _Registry | None = None
        self._callers: dict[tuple[str, str | None], Any] = {}
        #: every entry point of the ``fmhub`` group seen by discovery (enabled or not)
        self._entry_points: list[Any] = []
        #: whether what this hub lists is exactly what its entry points registered, with nothing
        #: warned about: only then may ``fmhub list`` save its start-up snapshot (fmhub._snapshot)
        self._snapshot_ok = entry_points and not plugins
        from . import _builtin

        version = getattr(importlib.import_module("fmhub"), "__version__", None)
        self._version = version
        self._add("fmhub", _builtin, distribution="fmhub", version=version, strict=True)
        if entry_points:
            self._discover()
        for name, plugin in (plugins or {}).items():
            self.register(plugin, name=name)

    # -- plugins --------------------------------------------------------------------------------

    @property
    def pm(self) -> pluggy.PluginManager:
        """The pluggy plugin manager, with every plugin imported (a plugin registered from the
        registration cache is imported here, on first use)."""
        if self._lazy:
            self._materialize(list(self._lazy))
        return self._pm

    def _materialize(self, names: list[str]) -> None:
        """Import the lazy plugins ``names`` (in discovery order) and register them for real; one
        that now fails is recorded and warned about like at discovery, and leaves the registry."""
        failed = False
        for name in [n for n in self.records if n in names and n in self._lazy]:
            ep = self._lazy.pop(name)
            self._lazy_items.pop(name, None)
            dist, version = ep.dist.name, ep.dist.version
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # noqa: BLE001
                self._fail(name, dist, version, f"import failed: {_exc_text(exc)}")
                failed = True
                continue
            try:
                self._add(name, plugin, distribution=dist, version=version, strict=False)
            except PluginError as exc:
                self._fail(name, dist, version, str(exc))
                failed = True
                continue
            for impl in self._pm.hook.fmhub_register_namespaces.get_hookimpls():
                if impl.plugin is plugin:
                    items: list = []
                    try:
                        _call_registration(impl, items.append)
                    except (Exception, SystemExit):  # noqa: BLE001 - the registry rebuild says so
                        failed = True
                    for ns in items:
                        if isinstance(ns, Namespace):
                            self._real_namespaces[ns.name] = ns
        self._callers.clear()
        if failed:
            self._registry = None

    def _lazy_owner(self, owner: str | None) -> list[str]:
        """The lazy plugins a hook call for ``owner`` reaches: the owner and those serving no
        namespace (every one for a broadcast, ``owner=None``)."""
        if owner is None:
            return list(self._lazy)
        return [
            n
            for n, items in self._lazy_items.items()
            if n == owner or not items.get("fmhub_register_namespaces")
        ]

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Add a plugin object (a module or an instance with hook implementations).

        Unlike entry-point plugins, an explicitly registered one that is broken raises (a
        misspelled hook, or an error in one of its registration hooks) and is not kept.
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        self._snapshot_ok = False
        if self._lazy:  # keep the hook order of discovery: entry-point plugins first
            self._materialize(list(self._lazy))
        self._add(name, plugin, distribution=None, strict=True)
        self._registry = None
        self._callers.clear()
        try:
            self.registry  # noqa: B018 (runs its registration hooks now: a failure surfaces here)
        except PluginError:
            self.unregister(name)
            raise

    def unregister(self, name: str) -> None:
        self._snapshot_ok = False
        rec = self.records.pop(name, None)
        self._lazy.pop(name, None)
        self._lazy_items.pop(name, None)
        if rec is not None and rec.plugin is not None and self._pm.is_registered(rec.plugin):
            self._pm.unregister(rec.plugin)
        self._registry = None
        self._callers.clear()

    def _discover(self) -> None:
        from ._plugincache import cache_enabled, cache_key, read_entry

        use_cache = cache_enabled()
        only, blocked = _env_list("FMHUB_LOAD_PLUGINS"), _env_list("FMHUB_DISABLE_PLUGINS") or set()
        eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        self._entry_points = eps
        if _check_env_names(eps, only, blocked):
            self._snapshot_ok = False
        for ep in eps:
            if ep.name in self.records:
                continue
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            names = {ep.name, dist} - {None}
            if (only is not None and not names & only) or names & blocked:
                self.records[ep.name] = PluginRecord(ep.name, dist, version, status="disabled")
                continue
            key = None
            if use_cache:
                key = cache_key(ep, self._version)
                items = read_entry(ep.name, dist, key) if key else None
                if items is not None and (decoded := _decode(self, ep.name, items)) is not None:
                    self.records[ep.name] = PluginRecord(ep.name, dist, version)
                    self._lazy[ep.name], self._lazy_items[ep.name] = ep, decoded
                    continue
            try:
                plugin = ep.load()
            # a broken plugin, even one calling sys.exit(), must not stop fmhub
            except (Exception, SystemExit) as exc:  # noqa: BLE001
                self._fail(ep.name, dist, version, f"import failed: {_exc_text(exc)}")
                continue
            try:
                self._add(ep.name, plugin, distribution=dist, version=version, strict=False)
            except PluginError as exc:
                self._fail(ep.name, dist, version, str(exc))
                continue
            if key:
                self._cacheable[ep.name] = (dist, key)

    def _fail(self, name: str, dist: str | None, version: str | None, error: str) -> None:
        self._snapshot_ok = False
        self.records[name] = PluginRecord(name, dist, version, status="failed", error=error)
        warnings.warn(
            f"fmhub plugin {name!r} ({dist or 'unknown distribution'}) was skipped: {error}. "
            "Run 'fmhub plugins' to see every plugin's status.",
            FmhubPluginWarning,
            stacklevel=3,
        )

    def _add(self, name, plugin, *, distribution, version=None, strict) -> None:
        _check_hook_names(self._pm, name, plugin)
        try:
            self._pm.register(plugin, name=name)
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            if self._pm.is_registered(plugin):
                self._pm.unregister(plugin)
            detail = " ".join(str(exc).split())
            raise PluginError(
                f"plugin {name!r} is invalid: {detail}. "
                "See docs/hooks.md for each hook's arguments."
            ) from None
        except ValueError as exc:  # already registered
            raise PluginError(f"plugin {name!r} cannot be registered: {exc}") from None
        self.records[name] = PluginRecord(name, distribution, version, plugin=plugin)

    def plugins(self) -> list[PluginRecord]:
        """Every plugin seen, with its status (``ok``, ``failed``, ``disabled``), error and the
        namespaces it serves."""
        reg = self.registry  # registration failures are recorded on first use
        for rec in self.records.values():
            served = (n for n, ns in reg.namespaces.items() if ns.plugin == rec.name)
            rec.namespaces = tuple(sorted(served))
        return sorted(self.records.values(), key=lambda r: r.name)

    # -- registry -------------------------------------------------------------------------------

    @property
    def registry(self) -> _Registry:
        if self._registry is None:
            self._registry = _Registry.build(self)
            if self._cacheable:
                self._write_cache(self._registry)
        return self._registry

    def _write_cache(self, reg: _Registry) -> None:
        """Cache what the entry-point plugins imported in this hub registered (plain data only)."""
        from ._plugincache import write_entry

        for name, (dist, key) in list(self._cacheable.items()):
            self._cacheable.pop(name)
            rec = self.records.get(name)
            items = reg.items.get(name, {})
            if rec is None or rec.status != "ok" or name in reg.dropped:
                continue
            if items.get("fmhub_register_finetune_methods") or items.get("fmhub_register_metrics"):
                continue  # objects with code: this plugin is always imported
            encoded = _encode(items)
            if encoded is not None and _decode(self, name, encoded) is not None:
                write_entry(name, dist, key, encoded)

    def caller(self, hook: str, owner: str | None):
        """The hook caller for ``hook`` that skips the plugins owning other namespaces.

        ``owner=None`` gives the caller of every plugin (for broadcast hooks).
        """
        key = (hook, owner)
        if self._lazy and (lazy := self._lazy_owner(owner)):
            self._materialize(lazy)
        caller = self._callers.get(key)
        if caller is None and owner is None:
            caller = self._callers[key] = getattr(self._pm.hook, hook)
        elif caller is None:
            owners = self.registry.owner_plugins
            others = [self._pm.get_plugin(n) for n in owners if n != owner]
            caller = self._pm.subset_hook_caller(hook, [p for p in others if p is not None])
            self._callers[key] = caller
        return caller

    def call(self, hook: str, owner: str | None, model_id: str | None = None, **kwargs):
        """Call an owner-dispatched hook, naming plugin and stage in any error it raises.

        The plugin named is the one whose hook implementation raised (a cross-cutting wrapper, say),
        found from the traceback; the owner when that cannot be told.
        """
        caller = self.caller(hook, owner)
        try:
            return caller(**kwargs)
        except (Exception, SystemExit) as exc:  # a hook calling sys.exit() must not end the program
            raise plugin_error(exc, self._culprit(exc, caller) or owner, hook, model_id) from exc

    def broadcast(self, hook: str, **kwargs) -> list[tuple[str, Any]]:
        """Call a broadcast hook on every plugin, one at a time: ``[(plugin, result), ...]`` for the
        non-None results. An error names the plugin that raised it."""
        out = []
        if self._lazy:
            self._materialize(list(self._lazy))
        for impl in reversed(getattr(self._pm.hook, hook).get_hookimpls()):
            name = self._pm.get_name(impl.plugin) or impl.plugin_name
            try:
                result = impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except (Exception, SystemExit) as exc:
                raise plugin_error(exc, name, hook, None) from exc
            if result is not None:
                if hook == "fmhub_claim_path":
                    _check_spec(result, name, hook)
                out.append((name, result))
        return out

    def _culprit(self, exc: BaseException, caller) -> str | None:
        """The plugin whose hook implementation is the innermost one in ``exc``'s traceback."""
        codes = {}
        for impl in caller.get_hookimpls():
            code = getattr(inspect.unwrap(impl.function), "__code__", None)
            if code is not None:
                codes[code] = self._pm.get_name(impl.plugin) or impl.plugin_name
        tb, found = exc.__traceback__, None
        while tb is not None:
            found = codes.get(tb.tb_frame.f_code, found)
            tb = tb.tb_next
        return found

    # -- names ----------------------------------------------------------------------------------

    def list_models(self, pattern: str | None = None) -> list[ModelSpec]:
        """Registered models whose id or alias matches ``pattern`` (shell wildcards, any case)."""
        specs = self.registry.specs.values()
        if pattern:
            pat = pattern.lower()
            if not any(ch in pat for ch in "*?["):
                pat = f"*{pat}*"
            specs = [
                s
                for s in specs
                if any(fnmatch.fnmatchcase(n.lower(), pat) for n in (s.id, *s.aliases))
            ]
        return sorted(specs, key=lambda s: s.id)

    def resolve(self, name: str | os.PathLike) -> ModelSpec:
        """Turn a name (id, alias or local path) into a spec, without importing torch."""
        return self.registry.resolve(os.fspath(name) if isinstance(name, os.PathLike) else name)

    def model_info(self, name: str) -> ModelSpec:
        return self.resolve(name)

    def finetune_methods(self) -> dict[str, FineTuneMethod]:
        return dict(self.registry.methods)

    def metrics(self, task: str) -> dict[str, Metric]:
        """The metrics registered for an evaluation task, by name."""
        return dict(self.registry.metrics.get(task, {}))

    # -- loading --------------------------------------------------------------------------------

    def load(self, name: str, *, verify: bool = True, **options: Any) -> Model:
        """Load a model; a folder fmhub saved is verified first unless ``verify=False``."""
        from ._quiet import known_warnings_hidden
        from .manifest import saved_folder

        with known_warnings_hidden():  # third-party noise of the libraries plugins import
            from .model import load_model

            folder = saved_folder(self, name)
            if folder is not None:
                return load_saved(self, folder, options, verify=verify)
            return load_model(self, self.resolve(name), options)


#: The adapter folder whose base model is being loaded (an adapter's base may not be an adapter).
_loading_adapter: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "fmhub_loading_adapter", default=None
)

#: The longest model name taken (Linux's PATH_MAX); longer ones are refused before any file look-up.
MAX_NAME_LENGTH = 4096


def _exists(path: Path, check: str = "exists") -> bool:
    """``path.exists()`` / ``is_file()`` that answers False for a name the OS cannot look up
    (a component over 255 bytes, a NUL byte...) instead of raising."""
    try:
        return getattr(path, check)()
    except (OSError, ValueError):
        return False


def load_saved(hub: Hub, folder: Path, options: dict[str, Any], verify: bool = True) -> Model:
    """Load a folder fmhub wrote: verified, never replaying options that need consent.

    The cheap checks (manifest hash, sizes, unlisted files) come first. An adapter folder is then
    hashed completely before its base model is built; a model folder is hashed alongside the
    plugin's load (a second thread: hashlib releases the GIL), and the model is returned only
    when every file matched; on a mismatch the load's result, or its error, gives way to the
    ManifestError.
    """
    from .manifest import (
        CONSENT_OPTIONS,
        consent_options,
        read_manifest,
        replayable_options,
        verify_folder,
        verify_hashes,
    )
    from .model import load_model

    manifest = read_manifest(folder)
    if verify:
        verify_folder(folder, manifest, hashes=manifest.kind != "model")
    if manifest.kind == "adapter":
        from .finetuning.adapter import load_adapter

        outer = _loading_adapter.get()
        if outer is not None:  # an adapter's base is being loaded, and it is an adapter too
            same = "its own folder" if outer == folder.resolve() else f"{str(folder)!r}"
            raise ManifestError(
                f"The adapter {str(outer)!r} names {same} as its base model, which is an "
                "adapter folder; an adapter's base must be a model (an id or a folder written "
                "by model.save). Fix the base in its fmhub.json."
            )
        token = _loading_adapter.set(folder.resolve())
        try:
            if options.get("runtime") == "onnxruntime":  # the merged model, run on ONNX Runtime
                from .export import attach_onnx

                model = load_adapter(
                    hub,
                    folder,
                    {**options, "runtime": "torch", "quantize": None},
                    manifest=manifest,
                    verify=verify,
                )
                return attach_onnx(model, source=str(folder), quantize=options.get("quantize"))
            return load_adapter(hub, folder, options, manifest=manifest, verify=verify)
        finally:
            _loading_adapter.reset(token)
    if manifest.kind == "checkpoint":
        raise ManifestError(
            f"{str(folder)!r} is a fine-tuning checkpoint, not a model; continue it with "
            "fmhub.finetune(..., output_dir=<its parent>, resume=True), or load the adapter folder."
        )
    spec = hub.registry.with_owner(manifest.spec_for(folder))
    ns = hub.registry.namespaces.get(spec.namespace)
    consent = consent_options(ns.options) if ns is not None else CONSENT_OPTIONS
    spec = spec.model_copy(update={"options": replayable_options(spec.options, consent)})
    if not verify:
        return load_model(hub, spec, options)
    return _alongside(
        lambda: verify_hashes(folder, manifest), lambda: load_model(hub, spec, options)
    )


def _alongside(check: Callable[[], None], work: Callable[[], Any]) -> Any:
    """Run ``check`` in a thread while ``work`` runs here; ``check``'s error wins over both
    ``work``'s result and ``work``'s error."""
    import threading

    failure: list[BaseException] = []

    def run() -> None:
        try:
            check()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="fmhub-verify", daemon=True)
    thread.start()
    try:
        result = work()
    except BaseException:
        thread.join()
        if failure:
            raise failure[0] from None
        raise
    thread.join()
    if failure:
        raise failure[0]
    return result


def _check_env_names(eps: list[Any], only: set[str] | None, blocked: set[str]) -> bool:
    """Warn about a name in FMHUB_LOAD_PLUGINS / FMHUB_DISABLE_PLUGINS that no plugin has; True
    when it warned."""
    known = {ep.name for ep in eps} | {ep.dist.name for ep in eps if ep.dist}
    warned = False
    for var, names in (("FMHUB_LOAD_PLUGINS", only or set()), ("FMHUB_DISABLE_PLUGINS", blocked)):
        for name in sorted(names - known):
            warned = True
            warnings.warn(
                f"{var} names {name!r}, which is no installed fmhub plugin."
                f"{did_you_mean(name, known)}"
                f" Installed: {', '.join(sorted(ep.name for ep in eps)) or 'none'}.",
                FmhubPluginWarning,
                stacklevel=4,
            )
    return warned


def _check_hook_names(pm: pluggy.PluginManager, name: str, plugin: Any) -> None:
    """A function named like a hook that is not one is a misspelling, and a hook function without
    ``@fmhub.hookimpl`` would never be called: name it and the fix."""
    known = {n for n in dir(hookspecs) if n.startswith("fmhub_")}
    for attr in dir(plugin):
        if not attr.startswith("fmhub_"):
            continue
        value = inspect.getattr_static(plugin, attr, None)
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if not callable(value):
            continue
        if attr not in known:
            raise PluginError(
                f"plugin {name!r} defines {attr!r}, which is not an fmhub hook."
                f"{did_you_mean(attr, known)} See docs/hooks.md for the hook list."
            )
        if pm.parse_hookimpl_opts(plugin, attr) is None:
            raise PluginError(
                f"plugin {name!r} defines {attr!r} without the @fmhub.hookimpl decorator, so it "
                "would never be called; decorate it with @fmhub.hookimpl."
            )


def plugin_error(exc: BaseException, plugin: str | None, hook: str, model_id: str | None):
    """Say which plugin and stage an error came from; fmhub's own errors keep their type."""
    stage = hook.removeprefix("fmhub_")
    where = f"plugin {plugin!r}, stage {stage!r}" + (f", model {model_id!r}" if model_id else "")
    if isinstance(exc, FmhubError):
        if exc.plugin is None:
            exc.plugin, exc.stage = plugin, stage
            exc.add_note(f"(raised in {where})")
        return exc
    err = PluginError(f"{where} failed: {_exc_text(exc)}")
    err.plugin, err.stage = plugin, stage
    return err


def _check_spec(result: Any, plugin: str, hook: str) -> None:
    """A resolution hook must return an ``fmhub.ModelSpec`` (or None): name the plugin otherwise."""
    if isinstance(result, ModelSpec):
        return
    text = repr(result)
    text = text if len(text) <= 60 else text[:57] + "..."
    err = PluginError(
        f"plugin {plugin!r} returned {type(result).__name__} {text}, not an fmhub.ModelSpec or "
        f"None (stage {hook.removeprefix('fmhub_')!r}); see docs/hooks.md#{hook}."
    )
    err.plugin, err.stage = plugin, hook.removeprefix("fmhub_")
    raise err


def _exc_text(exc: BaseException) -> str:
    """``Type: message``; a ``SystemExit`` says that the plugin called ``sys.exit()``."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


class _Registry:
    """Namespaces, models, aliases and fine-tune methods, with the conflicts between plugins."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.namespaces: dict[str, Namespace] = {}
        self.specs: dict[str, ModelSpec] = {}
        self.aliases: dict[str, str] = {}
        self.methods: dict[str, FineTuneMethod] = {}
        #: evaluation task -> metric name -> Metric
        self.metrics: dict[str, dict[str, Metric]] = {}
        #: name -> [(plugin, what it registered)] for every name two plugins claim
        self.conflicts: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.owner_plugins: set[str] = set()
        self.dropped: set[str] = set()
        self._registrant: dict[str, str] = {}
        #: plugin -> registration hook -> what it registered (for the registration cache)
        self.items: dict[str, dict[str, list]] = {}

    @classmethod
    def build(cls, hub: Hub) -> _Registry:
        reg = cls(hub)
        collected: dict[str, list] = {h: [] for h in hookspecs.REGISTRATION}
        place = {n: i for i, n in enumerate(hub.records)}
        for hook in hookspecs.REGISTRATION:
            sources: list[tuple[str, Any]] = [
                (hub._pm.get_name(impl.plugin), impl)
                for impl in reversed(getattr(hub._pm.hook, hook).get_hookimpls())
            ]
            if hub._lazy_items:  # plugins known from the cache take their place in discovery order
                sources += [(n, list(items.get(hook, ()))) for n, items in hub._lazy_items.items()]
                sources.sort(key=lambda s: place.get(s[0], len(place)))
            for name, impl in sources:
                if isinstance(impl, list):
                    items = impl
                else:
                    items = []
                    try:
                        _call_registration(impl, items.append)
                    except (Exception, SystemExit) as exc:  # noqa: BLE001 - isolate a broken plugin
                        reg._drop(name, f"{hook} raised {_exc_text(exc)}")
                        continue
                reg.items.setdefault(name, {}).setdefault(hook, []).extend(items)
                collected[hook].extend((name, item) for item in items)
        valid = {
            "fmhub_register_namespaces": Namespace,
            "fmhub_register_models": ModelSpec,
            "fmhub_register_finetune_methods": _is_method,
            "fmhub_register_metrics": _is_metric,
        }
        for hook, check in valid.items():  # a plugin registering junk is dropped whole
            for plugin, item in collected[hook]:
                ok = isinstance(item, check) if isinstance(check, type) else check(item)
                if not ok and plugin not in reg.dropped:
                    what = check.__name__ if isinstance(check, type) else check.__doc__
                    reg._drop(plugin, f"{hook} registered {item!r}, not an fmhub.{what}")

        def keep(hook: str) -> list:
            return [(p, x) for p, x in collected[hook] if p not in reg.dropped]

        for plugin, ns in keep("fmhub_register_namespaces"):
            reg._add_namespace(plugin, ns)
        for plugin, spec in keep("fmhub_register_models"):
            reg._add_spec(plugin, spec)
        for _plugin, method in keep("fmhub_register_finetune_methods"):
            reg.methods.setdefault(method.name, method)
        for _plugin, metric in keep("fmhub_register_metrics"):
            for task in metric.tasks:
                reg.metrics.setdefault(task, {}).setdefault(metric.name, metric)
        return reg

    def _drop(self, plugin: str, error: str) -> None:
        rec = self.hub.records.get(plugin)
        if plugin == "fmhub" or (rec is not None and rec.distribution is None):
            # the built-in plugin, or one registered explicitly with Hub.register: fail loudly
            raise PluginError(f"plugin {plugin!r} failed while registering: {error}")
        self.dropped.add(plugin)
        self.hub._callers.clear()
        self.hub._lazy.pop(plugin, None)
        self.hub._lazy_items.pop(plugin, None)
        if rec is not None:
            if rec.plugin is not None and self.hub._pm.is_registered(rec.plugin):
                self.hub._pm.unregister(rec.plugin)
            self.hub._fail(plugin, rec.distribution, rec.version, error)

    def _add_namespace(self, plugin: str, ns: Namespace) -> None:
        ns = ns.model_copy(update={"plugin": plugin})
        # a plugin that claims a namespace is a model plugin even when it loses the namespace to
        # another: it must not be treated as cross-cutting and called for every model
        self.owner_plugins.add(plugin)
        other = self.namespaces.get(ns.name)
        if other is not None and other.plugin != plugin:
            self.conflicts[ns.name + ":"] += [(other.plugin, "namespace"), (plugin, "namespace")]
            return
        self.namespaces[ns.name] = ns

    def _add_spec(self, plugin: str, spec: ModelSpec) -> None:
        other = self.specs.get(spec.id)
        if other is not None:
            self.conflicts[spec.id] += [(self._registrant[spec.id], spec.id), (plugin, spec.id)]
            return
        self._registrant[spec.id] = plugin
        self.specs[spec.id] = spec
        for alias in spec.aliases:
            prior = self.aliases.get(alias)
            if prior is not None and prior != spec.id:
                self.conflicts[alias] += [(self._registrant[prior], prior), (plugin, spec.id)]
            else:
                self.aliases[alias] = spec.id

    # -- resolution -----------------------------------------------------------------------------

    def _check_conflict(self, name: str) -> None:
        claims = self.conflicts.get(name)
        if claims:
            seen = list(dict.fromkeys(claims))
            who = " and ".join(f"plugin {p!r} ({what})" for p, what in seen)
            ids = [w for _, w in seen if w != "namespace"]
            how = (
                f"use the full id, e.g. {ids[0]!r}, or disable a plugin with FMHUB_DISABLE_PLUGINS"
                if ids
                else "disable one of them with FMHUB_DISABLE_PLUGINS=<plugin>"
            )
            raise AmbiguousModelError(f"{name!r} is claimed by {who}; {how}.")

    def with_owner(self, spec: ModelSpec) -> ModelSpec:
        self._check_conflict(spec.namespace + ":")
        ns = self.namespaces.get(spec.namespace)
        if ns is None:
            raise self._no_namespace(spec.namespace)
        if spec.plugin == ns.plugin:
            return spec
        return spec.model_copy(update={"plugin": ns.plugin})

    def _no_namespace(self, namespace: str) -> UnknownNamespaceError:
        dist = KNOWN_DISTRIBUTIONS.get(namespace, f"fmhub-{namespace}")
        rec = next((r for r in self.hub.records.values() if r.distribution == dist), None)
        extra = ""
        if rec is not None and rec.status != "ok":
            why = rec.error or "see FMHUB_LOAD_PLUGINS / FMHUB_DISABLE_PLUGINS"
            extra = f" ({dist} is installed but {rec.status}: {why})"
        known = ", ".join(sorted(n + ":" for n in self.namespaces)) or "none"
        return UnknownNamespaceError(
            f"No installed plugin serves {namespace + ':'!r} models; install {dist}{extra}. "
            f"Served namespaces: {known}. Run 'fmhub plugins' to see installed plugins."
        )

    def resolve(self, name: str) -> ModelSpec:
        if not isinstance(name, str) or not name.strip():
            raise UnknownModelError(
                f"A model name must be a non-empty string, got {_short(name)}; pass an id like "
                "'hf:org/repo', an alias (see 'fmhub list') or a folder path."
            )
        if len(name) > MAX_NAME_LENGTH:
            raise UnknownModelError(
                f"A model name of {len(name):,} characters ({_short(name)}) is longer than any id, "
                f"alias or path ({MAX_NAME_LENGTH:,} at most); pass an id like 'hf:org/repo', an "
                "alias (see 'fmhub list') or a folder path."
            )
        if any(not ch.isprintable() for ch in name):
            raise UnknownModelError(
                f"The model name {_short(name)} holds control characters (a NUL, a newline...); "
                "pass an id like 'hf:org/repo', an alias or a folder path."
            )
        self._check_conflict(name)
        if name in self.specs:
            return self.with_owner(self.specs[name])
        if name in self.aliases:
            return self.with_owner(self.specs[self.aliases[name]])
        ns, sep, rest = name.partition(":")
        if sep and rest and (ns in self.namespaces or ns + ":" in self.conflicts):
            return self._resolve_in_namespace(ns, rest)
        try:
            path = Path(name).expanduser()
        except RuntimeError:  # '~nosuchuser/...'
            path = Path(name)
        if _exists(path):
            return self.resolve_path(path)
        if sep and rest and ns and set(ns) <= NAMESPACE_CHARS and len(ns) > 1:
            raise self._no_namespace(ns)
        candidates = list(self.specs) + list(self.aliases)
        hint = did_you_mean(name, candidates) if len(name) <= 200 else ""
        raise UnknownModelError(
            f"Unknown model {_short(name)}.{hint} "
            "Run 'fmhub list' to see models, or use 'namespace:name' (e.g. 'hf:org/repo') "
            "or the path of a local folder."
        )

    def _resolve_in_namespace(self, ns: str, rest: str) -> ModelSpec:
        self._check_conflict(ns + ":")
        namespace = self.namespaces[ns]
        try:
            path = Path(rest).expanduser()
        except RuntimeError:  # '~nosuchuser/...'
            path = Path(rest)
        if rest.startswith(("/", ".", "~")) and _exists(path):
            claims = self.hub.broadcast("fmhub_claim_path", path=str(path.resolve()))
            spec = next((s for _, s in claims if s.namespace == ns), None)
            if spec is None:
                raise UnknownModelError(
                    f"Plugin {namespace.plugin!r} does not recognise {rest!r} as a {ns}: model "
                    "folder; check the path, or drop the prefix to let any plugin claim it."
                )
            return self.with_owner(spec)
        spec = None
        if namespace.open:
            spec = self.hub.call(
                "fmhub_resolve_model", namespace.plugin, f"{ns}:{rest}", namespace=ns, name=rest
            )
            if spec is not None:
                _check_spec(spec, namespace.plugin, "fmhub_resolve_model")
        if spec is None:
            same = [i for i in self.specs if i.startswith(ns + ":")]
            raise UnknownModelError(
                f"Unknown model {_short(ns + ':' + rest)}.{did_you_mean(ns + ':' + rest, same)} "
                f"Run 'fmhub list {ns}:*' to see the {ns}: models."
            )
        return self.with_owner(spec)

    def resolve_path(self, path: Path) -> ModelSpec:
        path = path.resolve()
        manifest = path / MANIFEST if path.is_dir() else None
        if manifest is not None and manifest.is_file():
            from .manifest import consent_options, read_manifest, replayable_options

            spec = self.with_owner(read_manifest(path).spec_for(path))
            ns = self.namespaces.get(spec.namespace)
            allowed = replayable_options(spec.options, consent_options(ns.options if ns else None))
            return spec.model_copy(update={"options": allowed})
        claims = [s for _, s in self.hub.broadcast("fmhub_claim_path", path=str(path))]
        if not claims:
            raise UnknownModelError(
                f"No installed plugin recognises the local path {str(path)!r}: it has no "
                f"{MANIFEST} (written by model.save) and is not in a format a plugin claims. "
                "Run 'fmhub plugins' to see installed plugins."
            )
        if len(claims) > 1:
            who = " and ".join(
                f"plugin {self.namespaces[s.namespace].plugin!r} ({s.namespace}:)"
                if s.namespace in self.namespaces
                else f"{s.namespace}:"
                for s in claims
            )
            raise AmbiguousModelError(
                f"The local path {str(path)!r} is claimed by {who}; prefix it with a namespace, "
                f"e.g. '{claims[0].namespace}:{path}'."
            )
        return self.with_owner(claims[0])


class _CachedNamespace(Namespace):
    """A namespace known from the registration cache: everything but its options class is data;
    reading ``options`` imports the plugin (the options class is its code)."""

    _hub: Any = PrivateAttr(None)
    _owner: str | None = PrivateAttr(None)

    def __getattribute__(self, name: str) -> Any:
        if name == "options":
            private = object.__getattribute__(self, "__pydantic_private__") or {}
            hub, owner = private.get("_hub"), private.get("_owner")
            ns_name = object.__getattribute__(self, "__dict__")["name"]
            if hub is not None:
                hub._materialize([owner])
                real = hub._real_namespaces.get(ns_name)
                if real is None:
                    rec = hub.records.get(owner)
                    raise PluginError(
                        f"plugin {owner!r} no longer registers the namespace {ns_name!r} "
                        f"({rec.error if rec and rec.error else 'its registration changed'}); "
                        "run 'fmhub plugins'."
                    )
                return real.options
        return super().__getattribute__(name)


def _encode(items: dict[str, list]) -> dict[str, Any] | None:
    """A plugin's registered namespaces and model specs as JSON data, or None when they are not
    plain data (a namespace's options class is recorded by name: it is code)."""
    try:
        namespaces = []
        for ns in items.get("fmhub_register_namespaces", []):
            data = ns.model_dump(mode="json", exclude={"options"})
            data["options_class"] = f"{ns.options.__module__}:{ns.options.__qualname__}"
            namespaces.append(data)
        models = [s.model_dump(mode="json") for s in items.get("fmhub_register_models", [])]
        encoded = {"namespaces": namespaces, "models": models}
        json.dumps(encoded)
    except (TypeError, ValueError):
        return None
    originals = items.get("fmhub_register_models", [])
    decoded = [ModelSpec.model_validate(m) for m in models]
    if decoded != list(originals):
        return None
    return encoded


def _decode(hub: Hub, plugin: str, encoded: dict[str, Any]) -> dict[str, list] | None:
    """The registration items of a cache entry, or None if it does not validate."""
    try:
        namespaces = []
        for data in encoded["namespaces"]:
            data = {k: v for k, v in data.items() if k != "options_class"}
            ns = _CachedNamespace.model_validate(data)
            ns._hub, ns._owner = hub, plugin
            namespaces.append(ns)
        models = [ModelSpec.model_validate(m) for m in encoded["models"]]
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    return {"fmhub_register_namespaces": namespaces, "fmhub_register_models": models}


def _call_registration(impl: Any, register: Any) -> None:
    """Call one plugin's registration hook with the arguments it declares."""
    kwargs = {"register": register} if "register" in impl.argnames else {}
    result = impl.function(**kwargs)
    if inspect.isgenerator(result):  # a wrapper has nothing to wrap at registration
        result.close()


def _is_method(item: Any) -> bool:
    """FineTuneMethod"""
    from .finetuning.methods import FineTuneMethod

    return isinstance(item, FineTuneMethod)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-1]}"


def _is_metric(item: Any) -> bool:
    """evaluation.Metric"""
    from .evaluation.base import Metric

    return isinstance(item, Metric)


_default: Hub | None = None


def get_hub() -> Hub:
    """The default hub, created on first use from the installed entry points."""
    global _default
    if _default is None:
        _default = Hub()
    return _default


def set_hub(hub: Hub | None) -> Hub | None:
    """Replace the default hub (None: make a fresh one on next use); returns the previous one."""
    global _default
    previous, _default = _default, hub
    return previous
