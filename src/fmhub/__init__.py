"""fmhub: pretrained models of every family behind one contract.

``import fmhub`` is cheap: it imports neither torch nor any plugin's library (those load when a model
is loaded), nor even pydantic or pluggy: every public name is imported on first use (PEP 562).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing alone costs milliseconds

if TYPE_CHECKING:
    from typing import Any

    from ._hub import FmhubPluginWarning, Hub, PluginRecord, get_hub, set_hub
    from .errors import (
        AmbiguousModelError,
        DestinationError,
        DeviceError,
        DistributedError,
        ExportError,
        FmhubError,
        InputError,
        InvalidOptionError,
        ManifestError,
        NonFiniteLossError,
        NonFiniteOutputError,
        PluginError,
        UnknownModelError,
        UnknownNamespaceError,
    )
    from .evaluation.report import EvalReport
    from .export import ExportSpec
    from .finetuning import FineTuneConfig, FineTunePlan, FineTuneResult
    from .finetuning.methods import Adapter, FineTuneMethod, MethodOptions
    from .generation import CallOptionError, CallOptions, GenerationOptions, TextStream
    from .hookspecs import hookimpl
    from .model import Loaded, Model
    from .results import Generation, Transcription
    from .spec import LoadOptions, ModelSpec, Namespace, Preprocessing

__version__ = "0.1.0"

__all__ = [
    "Adapter",
    "AmbiguousModelError",
    "CallOptionError",
    "CallOptions",
    "DestinationError",
    "DeviceError",
    "EvalReport",
    "ExportError",
    "ExportSpec",
    "DistributedError",
    "FineTuneConfig",
    "FineTuneError",
    "FineTuneMethod",
    "FineTunePlan",
    "FineTuneResult",
    "FmhubError",
    "FmhubPluginWarning",
    "Generation",
    "GenerationOptions",
    "Hub",
    "InputError",
    "InvalidOptionError",
    "LoadOptions",
    "Loaded",
    "ManifestError",
    "MethodOptions",
    "Model",
    "ModelSpec",
    "Namespace",
    "NonFiniteLossError",
    "NonFiniteOutputError",
    "PluginError",
    "PluginRecord",
    "Preprocessing",
    "TextStream",
    "Transcription",
    "UnknownModelError",
    "UnknownNamespaceError",
    "evaluate",
    "finetune",
    "finetune_plan",
    "get_hub",
    "hookimpl",
    "list_models",
    "load",
    "model_info",
    "plugins",
    "set_hub",
]


def load(name: str, *, verify: bool = True, **options: Any) -> Model:
    """Load a model by id (``hf:org/repo``), alias (``bert-base``) or local folder.

    ``options`` are validated against the namespace's options model: ``device``, ``dtype``,
    ``task``, ``quantize`` for every model, plus the plugin's own (``revision``, ``checkpoint``...).
    A folder saved by fmhub is verified against the sizes and SHA-256 hashes in its ``fmhub.json``
    first (``verify=False`` skips that); options it recorded that need consent
    (``trust_remote_code``, ``device_map``, paths...) are never replayed: pass them again.
    """
    from ._hub import get_hub

    return get_hub().load(name, verify=verify, **options)


def list_models(pattern: str | None = None) -> list[ModelSpec]:
    """Registered models whose id or an alias matches ``pattern`` (``*`` and ``?`` wildcards)."""
    from ._hub import get_hub

    return get_hub().list_models(pattern)


def model_info(name: str) -> ModelSpec:
    """The spec a name resolves to, without loading anything heavy."""
    from ._hub import get_hub

    return get_hub().model_info(name)


def plugins() -> list[PluginRecord]:
    """Every discovered plugin with its status and error, as ``fmhub plugins`` lists them."""
    from ._hub import get_hub

    return get_hub().plugins()


def finetune(model: Model, train: Any, eval: Any = None, **config: Any) -> FineTuneResult:
    """Fine-tune ``model`` on ``train`` (see :class:`fmhub.FineTuneConfig` for the options).

    ``method`` is a registered method's name or a :class:`fmhub.FineTuneMethod` instance.
    """
    from .finetuning import finetune as _finetune

    return _finetune(model, train, eval=eval, **config)


def evaluate(
    model: Model,
    data: Any,
    metrics: list[str] | None = None,
    batch_size: int | None = None,
    **options: Any,
) -> EvalReport:
    """Measure ``model`` on labelled ``data``: streaming metrics for its task, an :class:`EvalReport`.

    ``metrics`` picks by name (default: the task's default metrics); ``options``: ``k``, ``bins``,
    ``ks``, ``normalize``, ``task``, ``progress`` (see docs/evaluation.md).
    """
    from .evaluation import evaluate as _evaluate

    return _evaluate(model, data, metrics=metrics, batch_size=batch_size, **options)


def finetune_plan(
    model: Model, method: str | FineTuneMethod = "lora", **config: Any
) -> FineTunePlan:
    """What ``finetune`` would adapt: matched modules and trainable/total parameters."""
    from .finetuning import finetune_plan as _plan

    return _plan(model, method, **config)


_LAZY = {
    "FmhubPluginWarning": ("_hub", "FmhubPluginWarning"),
    "Hub": ("_hub", "Hub"),
    "PluginRecord": ("_hub", "PluginRecord"),
    "get_hub": ("_hub", "get_hub"),
    "set_hub": ("_hub", "set_hub"),
    **{
        name: ("errors", name)
        for name in (
            "AmbiguousModelError",
            "DestinationError",
            "DeviceError",
            "DistributedError",
            "ExportError",
            "FineTuneError",
            "FmhubError",
            "InputError",
            "InvalidOptionError",
            "ManifestError",
            "NonFiniteLossError",
            "NonFiniteOutputError",
            "PluginError",
            "UnknownModelError",
            "UnknownNamespaceError",
        )
    },
    "CallOptionError": ("generation", "CallOptionError"),
    "CallOptions": ("generation", "CallOptions"),
    "GenerationOptions": ("generation", "GenerationOptions"),
    "TextStream": ("generation", "TextStream"),
    "hookimpl": ("hookspecs", "hookimpl"),
    "LoadOptions": ("spec", "LoadOptions"),
    "ModelSpec": ("spec", "ModelSpec"),
    "Namespace": ("spec", "Namespace"),
    "Preprocessing": ("spec", "Preprocessing"),
    "Model": ("model", "Model"),
    "Loaded": ("model", "Loaded"),
    "ExportSpec": ("export", "ExportSpec"),
    "FineTuneConfig": ("finetuning.config", "FineTuneConfig"),
    "FineTunePlan": ("finetuning.plan", "FineTunePlan"),
    "FineTuneResult": ("finetuning.loop", "FineTuneResult"),
    "FineTuneMethod": ("finetuning.methods", "FineTuneMethod"),
    "MethodOptions": ("finetuning.methods", "MethodOptions"),
    "Adapter": ("finetuning.methods", "Adapter"),
    "Generation": ("results", "Generation"),
    "Transcription": ("results", "Transcription"),
    "EvalReport": ("evaluation.report", "EvalReport"),
}

#: Submodules reachable as attributes after a bare ``import fmhub`` (``fmhub.errors.InputError``),
#: as they were when the package imported them eagerly.
_SUBMODULES = frozenset(
    {"errors", "evaluation", "finetuning", "generation", "hookspecs", "inputs", "results", "spec"}
)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None and name not in _SUBMODULES:
        raise AttributeError(f"module 'fmhub' has no attribute {name!r}")
    import importlib

    if target is None:
        return importlib.import_module(f".{name}", __name__)
    value = getattr(importlib.import_module(f".{target[0]}", __name__), target[1])
    globals()[name] = value  # the next access is a plain global
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
