"""fmhub: pretrained models of every family behind one contract.

``import fmhub`` is cheap: it imports neither torch nor any plugin's library. Those load when a model
is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._hub import FmhubPluginWarning, Hub, PluginRecord, get_hub, set_hub
from .errors import (
    AmbiguousModelError,
    DeviceError,
    DistributedError,
    FineTuneError,
    FmhubError,
    InputError,
    InvalidOptionError,
    ManifestError,
    NonFiniteLossError,
    PluginError,
    UnknownModelError,
    UnknownNamespaceError,
)
from .hookspecs import hookimpl
from .spec import LoadOptions, ModelSpec, Namespace, Preprocessing

if TYPE_CHECKING:
    from .finetuning import FineTuneConfig, FineTunePlan, FineTuneResult
    from .model import Loaded, Model

__version__ = "0.1.0"

__all__ = [
    "AmbiguousModelError",
    "DeviceError",
    "DistributedError",
    "FineTuneConfig",
    "FineTuneError",
    "FineTunePlan",
    "FineTuneResult",
    "FmhubError",
    "FmhubPluginWarning",
    "Hub",
    "InputError",
    "InvalidOptionError",
    "LoadOptions",
    "Loaded",
    "ManifestError",
    "Model",
    "ModelSpec",
    "Namespace",
    "NonFiniteLossError",
    "PluginError",
    "PluginRecord",
    "Preprocessing",
    "UnknownModelError",
    "UnknownNamespaceError",
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


def load(name: str, **options: Any) -> Model:
    """Load a model by id (``hf:org/repo``), alias (``bert-base``) or local folder.

    ``options`` are validated against the namespace's options model: ``device``, ``dtype``,
    ``task``, ``quantize`` for every model, plus the plugin's own (``revision``, ``checkpoint``...).
    """
    return get_hub().load(name, **options)


def list_models(pattern: str | None = None) -> list[ModelSpec]:
    """Registered models whose id or an alias matches ``pattern`` (``*`` and ``?`` wildcards)."""
    return get_hub().list_models(pattern)


def model_info(name: str) -> ModelSpec:
    """The spec a name resolves to, without loading anything heavy."""
    return get_hub().model_info(name)


def plugins() -> list[PluginRecord]:
    """Every discovered plugin with its status and error, as ``fmhub plugins`` lists them."""
    return get_hub().plugins()


def finetune(model: Model, train: Any, eval: Any = None, **config: Any) -> FineTuneResult:
    """Fine-tune ``model`` on ``train`` (see :class:`fmhub.FineTuneConfig` for the options)."""
    from .finetuning import finetune as _finetune

    return _finetune(model, train, eval=eval, **config)


def finetune_plan(model: Model, method: str = "lora", **config: Any) -> FineTunePlan:
    """What ``finetune`` would adapt: matched modules and trainable/total parameters."""
    from .finetuning import finetune_plan as _plan

    return _plan(model, method, **config)


_LAZY = {
    "Model": ("model", "Model"),
    "Loaded": ("model", "Loaded"),
    "FineTuneConfig": ("finetuning.config", "FineTuneConfig"),
    "FineTunePlan": ("finetuning.plan", "FineTunePlan"),
    "FineTuneResult": ("finetuning.loop", "FineTuneResult"),
    "results": ("results", None),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'fmhub' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f".{target[0]}", __name__)
    return module if target[1] is None else getattr(module, target[1])
