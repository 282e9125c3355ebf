"""Parameter-efficient fine-tuning, one API for every family."""

from __future__ import annotations

from typing import Any

__all__ = ["finetune", "finetune_plan"]


def finetune(model, train, eval=None, **config: Any):
    from .._quiet import known_warnings_hidden

    with known_warnings_hidden():  # PEFT's and transformers' known noise
        from .loop import finetune as _finetune

        return _finetune(model, train, eval=eval, **config)


def finetune_plan(model, method: str = "lora", **config: Any):
    from .plan import finetune_plan as _plan

    return _plan(model, method, **config)
