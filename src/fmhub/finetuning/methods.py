"""Fine-tuning methods. Each is an object registered through ``fmhub_register_finetune_methods``;
the built-in ones are registered by the core's own plugin exactly as a third party's would be."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from ..model import Model

__all__ = ["BUILTIN_METHODS", "FineTuneMethod", "MethodOptions"]


class MethodOptions(BaseModel):
    """Base of every method's options (unknown fields are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FineTuneMethod:
    """A way to choose and adapt the trainable part of a model.

    Subclasses set ``name``, ``description`` and ``Options`` and implement :meth:`targets` and
    :meth:`apply`. ``head`` is the list of head module names returned by the plugin's
    ``fmhub_attach_head``: they are always trained in full and never wrapped.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    #: True when :meth:`apply` wraps the module with PEFT (adapters saved in PEFT's layout).
    uses_peft: ClassVar[bool] = False

    def targets(self, model: Model, head: list[str], options: MethodOptions) -> list[str]:
        """Names of the modules this method adapts (for plans and fingerprints)."""
        raise NotImplementedError

    def apply(self, model: Model, head: list[str], options: MethodOptions) -> None:
        """Make exactly the method's parameters (and the head's) trainable, in place."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<FineTuneMethod {self.name}>"


def _builtin() -> list[FineTuneMethod]:
    from .builtin import BitFit, Full, HeadOnly, IA3, LoRA

    return [LoRA(), IA3(), BitFit(), HeadOnly(), Full()]


class _Lazy(list):
    """The built-in methods, built on first use so importing this module stays cheap."""

    def __iter__(self):
        if not super().__len__():
            self.extend(_builtin())
        return super().__iter__()


BUILTIN_METHODS: list[Any] = _Lazy()
