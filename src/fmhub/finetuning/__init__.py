"""Parameter-efficient fine-tuning, one API for every family.

The method contract (:class:`FineTuneMethod`, :class:`MethodOptions`, :class:`Adapter`) is
importable from here and from :mod:`fmhub`; it imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .methods import Adapter, FineTuneMethod, MethodOptions

if TYPE_CHECKING:
    from ..model import Model
    from .loop import FineTuneResult
    from .plan import FineTunePlan

__all__ = ["Adapter", "FineTuneMethod", "MethodOptions", "finetune", "finetune_plan"]


def finetune(model: Model, train: Any, eval: Any = None, **config: Any) -> FineTuneResult:
    from .._quiet import known_warnings_hidden

    with known_warnings_hidden():  # PEFT's and transformers' known noise
        from .loop import finetune as _finetune

        return _finetune(model, train, eval=eval, **config)


def finetune_plan(
    model: Model, method: str | FineTuneMethod = "lora", **config: Any
) -> FineTunePlan:
    from .plan import finetune_plan as _plan

    return _plan(model, method, **config)
