"""``fmhub.finetune_plan``: what a method would adapt, before anything trains."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import FineTuneError, did_you_mean
from ..spec import validate_model
from .methods import FineTuneMethod, MethodOptions

if TYPE_CHECKING:
    from ..model import Model

__all__ = ["FineTunePlan", "finetune_plan", "get_method"]


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


def get_method(
    model: Model, method: str | FineTuneMethod, options: dict[str, Any]
) -> tuple[FineTuneMethod, MethodOptions]:
    """The method (a registered name, or an instance) and its validated options."""
    methods = model.hub.finetune_methods()
    if isinstance(method, FineTuneMethod):
        check_instance(method, methods)
        name, found = method.name, method
    elif isinstance(method, str):
        name, found = method, methods.get(method)
    else:
        raise FineTuneError(
            f"method must be a registered method's name or a fmhub.FineTuneMethod instance, got "
            f"{type(method).__name__}."
        )
    if found is None:
        raise FineTuneError(
            f"Unknown fine-tuning method {name!r}.{did_you_mean(name, methods)} "
            f"Registered methods: {', '.join(sorted(methods))}."
        )
    return found, validate_model(found.Options, options, f"options of method {name!r}")


def check_instance(method: FineTuneMethod, registered: dict[str, FineTuneMethod]) -> None:
    """An unregistered method instance must be well formed and must not take another method's
    name (a saved adapter is reloaded by its method's registered name)."""
    if not isinstance(method.name, str) or not method.name:
        raise FineTuneError(f"{type(method).__name__} has no name: set the class attribute name.")
    if not (isinstance(method.Options, type) and issubclass(method.Options, MethodOptions)):
        raise FineTuneError(f"{type(method).__name__}.Options must subclass fmhub.MethodOptions.")
    other = registered.get(method.name)
    if other is not None and type(other) is not type(method):
        raise FineTuneError(
            f"method {method.name!r} ({type(method).__qualname__}) has the name of the registered "
            f"method {type(other).__qualname__}; give it another name."
        )


def finetune_plan(
    model: Model,
    method: str | FineTuneMethod = "lora",
    labels: list[str] | None = None,
    method_options: dict[str, Any] | None = None,
    **_: Any,
) -> FineTunePlan:
    """Apply ``method`` to a copy of the model and count; the model itself is not touched."""
    m, opts = get_method(model, method, method_options or {})
    shadow = copy.copy(model)
    shadow.module = copy.deepcopy(model.module)
    shadow.processor = copy.copy(model.processor)  # a head hook may adjust the processor
    shadow.info = dict(model.info)
    from ..generation import GENERATION_TASKS

    generative = shadow.task in GENERATION_TASKS  # trained on texts to produce: no head
    head = [] if generative else shadow.attach_head(labels or ["0", "1"])
    modules = m.targets(shadow, head, opts)
    m.apply(shadow, head, opts)
    params = list(shadow.module.parameters())
    return FineTunePlan(
        method=m.name,
        modules=modules,
        head=head,
        trainable=sum(p.numel() for p in params if p.requires_grad),
        total=sum(p.numel() for p in params),
        options=opts.model_dump(exclude_defaults=True),
    )
