"""The built-in methods: ``lora`` and ``ia3`` through PEFT, ``bitfit``, ``head`` and ``full``.

They are written against the public contract of :mod:`fmhub.finetuning.methods` only, and the
core's own plugin registers :data:`BUILTIN_METHODS` through ``fmhub_register_finetune_methods``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..errors import FineTuneError
from .methods import FineTuneMethod, MethodOptions

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from ..model import Model


def in_head(name: str, head: list[str]) -> bool:
    return any(name == h or name.startswith(h + ".") for h in head)


def matched_modules(
    model: Model, head: list[str], suffixes: list[str] | None, kinds: tuple[type, ...] | None = None
) -> list[str]:
    """Full names of modules whose name ends with one of ``suffixes`` (PEFT's rule), outside the
    head; with ``suffixes=None`` every module of one of ``kinds`` (default ``nn.Linear``)."""
    from torch import nn

    kinds = kinds or (nn.Linear,)
    out = []
    for name, mod in model.module.named_modules():
        if not name or in_head(name, head):
            continue
        if suffixes is None:
            ok = isinstance(mod, kinds)
        else:
            ok = any(name == s or name.endswith("." + s) for s in suffixes)
            ok = (
                ok
                and isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding))
                or (ok and type(mod).__name__ == "Conv1D")
            )
        if ok:
            out.append(name)
    return out


def _require_peft():
    try:
        import peft
    except ImportError:
        raise FineTuneError(
            "The 'lora' and 'ia3' methods need the peft library: pip install 'fmhub[finetune]'."
        ) from None
    return peft


def _set_trainable(model: Model, predicate: Callable[[str], bool]) -> None:
    for name, p in model.module.named_parameters():
        p.requires_grad_(bool(predicate(name)))


class _PeftMethod(FineTuneMethod):
    uses_peft = True

    def targets(self, model: Model, head: list[str], options: MethodOptions) -> list[str]:
        suffixes = (
            options.targets if options.targets is not None else model.finetune_targets(self.name)
        )
        names = matched_modules(model, head, suffixes)
        if not names:
            raise FineTuneError(
                f"{self.name}: no module of {model.spec.id!r} matches targets {suffixes!r} "
                "(outside the head); pass targets=[...] with module-name suffixes, see "
                "fmhub.finetune_plan(model).modules for what exists."
            )
        return names

    def apply(self, model: Model, head: list[str], options: MethodOptions) -> Any:
        peft = _require_peft()
        config = self.peft_config(peft, self.targets(model, head, options), head, options)
        model.module.requires_grad_(False)
        peft_model = peft.get_peft_model(model.module, config)
        for name, p in model.module.named_parameters():  # the head copy PEFT made stays trainable
            if "modules_to_save" in name:
                p.requires_grad_(True)
        return peft_model


class LoRAOptions(MethodOptions):
    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[str] | None = Field(None, description="Module-name suffixes; None: the plugin's.")
    bias: Literal["none", "all", "lora_only"] = "none"


class LoRA(_PeftMethod):
    name = "lora"
    description = "Low-rank adapters on the targeted layers (PEFT LoRA)."
    Options = LoRAOptions

    def peft_config(
        self, peft: ModuleType, names: list[str], head: list[str], o: LoRAOptions
    ) -> Any:
        return peft.LoraConfig(
            r=o.r,
            lora_alpha=o.alpha,
            lora_dropout=o.dropout,
            target_modules=names,
            modules_to_save=list(head) or None,
            bias=o.bias,
        )


class IA3Options(MethodOptions):
    targets: list[str] | None = None
    feedforward: list[str] = Field(
        default_factory=list, description="Targets whose inputs (not outputs) are scaled."
    )


class IA3(_PeftMethod):
    name = "ia3"
    description = "Learned rescaling vectors on the targeted layers (PEFT IA3)."
    Options = IA3Options

    def peft_config(
        self, peft: ModuleType, names: list[str], head: list[str], o: IA3Options
    ) -> Any:
        ff = [n for n in names if any(n == s or n.endswith("." + s) for s in o.feedforward)]
        return peft.IA3Config(
            target_modules=names, feedforward_modules=ff, modules_to_save=list(head) or None
        )


class BitFit(FineTuneMethod):
    name = "bitfit"
    description = "Train only the biases (and the head)."

    def targets(self, model: Model, head: list[str], options: MethodOptions) -> list[str]:
        return sorted(
            {
                n.rpartition(".")[0]
                for n, _ in model.module.named_parameters()
                if n.endswith("bias") and not in_head(n, head)
            }
        )

    def apply(self, model: Model, head: list[str], options: MethodOptions) -> None:
        _set_trainable(model, lambda n: n.endswith("bias") or in_head(n, head))


class HeadOnly(FineTuneMethod):
    name = "head"
    description = "Freeze the backbone, train the head only (linear probing)."

    def targets(self, model: Model, head: list[str], options: MethodOptions) -> list[str]:
        return []

    def apply(self, model: Model, head: list[str], options: MethodOptions) -> None:
        _set_trainable(model, lambda n: in_head(n, head))


class Full(FineTuneMethod):
    name = "full"
    description = "Train every parameter."

    def targets(self, model: Model, head: list[str], options: MethodOptions) -> list[str]:
        return sorted(
            {
                n.rpartition(".")[0]
                for n, _ in model.module.named_parameters()
                if not in_head(n, head)
            }
        )

    def apply(self, model: Model, head: list[str], options: MethodOptions) -> None:
        _set_trainable(model, lambda n: True)


#: The built-in methods, registered by the core's own plugin (``fmhub._builtin``).
BUILTIN_METHODS: tuple[FineTuneMethod, ...] = (LoRA(), IA3(), BitFit(), HeadOnly(), Full())
