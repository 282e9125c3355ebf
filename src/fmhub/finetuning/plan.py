"""``fmhub.finetune_plan``: what a method would adapt, before anything trains."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import FineTuneError, did_you_mean
from ..spec import validate_model

if TYPE_CHECKING:
    from ..model import Model
    from .methods import FineTuneMethod, MethodOptions

__all__ = ["FineTunePlan", "finetune_plan", "get_method", "attach_head"]


@dataclass(frozen=True)
class FineTunePlan:
    method: str
    modules: list[str]
    head: list[str]
    trainable: int
    total: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        lines = [
            f"method: {self.method} {self.options or ''}".rstrip(),
            f"head (trained in full): {', '.join(self.head) or '-'}",
            f"adapted modules: {len(self.modules)}",
        ]
        lines += [f"  {m}" for m in self.modules[:50]]
        if len(self.modules) > 50:
            lines.append(f"  ... and {len(self.modules) - 50} more")
        lines.append(
            f"trainable parameters: {self.trainable:,} of {self.total:,} ({100 * self.fraction:.2f}%)"
        )
        return "\n".join(lines)


def get_method(model: Model, name: str, options: dict[str, Any]) -> tuple[FineTuneMethod, MethodOptions]:
    methods = model.hub.finetune_methods()
    method = methods.get(name)
    if method is None:
        raise FineTuneError(
            f"Unknown fine-tuning method {name!r}.{did_you_mean(name, methods)} "
            f"Registered methods: {', '.join(sorted(methods))}."
        )
    return method, validate_model(method.Options, options, f"options of method {name!r}")


def attach_head(model: Model, labels: list[str]) -> list[str]:
    """Ask the owner plugin for a head with ``len(labels)`` outputs; set task and labels."""
    head = model.hub.call("fmhub_attach_head", model.spec.plugin, model.spec.id,
                          model=model, labels=list(labels))
    if not head:
        raise FineTuneError(
            f"plugin {model.spec.plugin!r} cannot attach a classification head to {model.spec.id!r}."
        )
    model.task = "classification"
    model.labels = tuple(labels)
    model.module.to(device=model.device, dtype=model.dtype)
    return list(head)


def finetune_plan(model: Model, method: str = "lora", labels: list[str] | None = None,
                  method_options: dict[str, Any] | None = None, **_: Any) -> FineTunePlan:
    """Apply ``method`` to a copy of the model and count; the model itself is not touched."""
    m, opts = get_method(model, method, method_options or {})
    shadow = copy.copy(model)
    shadow.module = copy.deepcopy(model.module)
    shadow.processor = copy.copy(model.processor)  # a head hook may adjust the processor
    shadow.info = dict(model.info)
    from .loop import is_generative

    head = [] if is_generative(shadow) else attach_head(shadow, labels or ["0", "1"])
    modules = m.targets(shadow, head, opts)
    m.apply(shadow, head, opts)
    params = list(shadow.module.parameters())
    return FineTunePlan(
        method=method,
        modules=modules,
        head=head,
        trainable=sum(p.numel() for p in params if p.requires_grad),
        total=sum(p.numel() for p in params),
        options=opts.model_dump(exclude_defaults=True),
    )
