"""The fine-tuning method contract: :class:`FineTuneMethod`, its options base :class:`MethodOptions`
and :class:`Adapter`, the record the core keeps of what a method adapted.

A method is an object registered through ``fmhub_register_finetune_methods`` (or passed to
``fmhub.finetune(method=...)``); the built-in ones (:mod:`fmhub.finetuning.builtin`) are
registered by the core's own plugin exactly as a third party's would be. This module imports
neither torch nor any other part of fmhub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from ..model import Model

__all__ = ["Adapter", "FineTuneMethod", "MethodOptions"]


class MethodOptions(BaseModel):
    """Base of every method's options: a frozen pydantic model, unknown fields are errors.

    Subclass it with the method's own fields (``r: int = 8``); users pass them as
    ``method_options={...}`` and get an :class:`fmhub.InvalidOptionError` naming a bad one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class FineTuneMethod:
    """A way to choose and adapt the trainable part of a model.

    Subclasses set ``name``, ``description`` and ``Options`` and implement :meth:`targets` and
    :meth:`apply`. ``head`` is the list of head module names returned by the plugin's
    ``fmhub_attach_head``: they are always trained in full and never wrapped. The core calls
    ``targets`` then ``apply`` once the head is attached, and records what was adapted in
    ``model.adapter`` (an :class:`Adapter`): a method never sets ``model.adapter`` itself.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    #: True when :meth:`apply` wraps the module with PEFT and returns the ``PeftModel``: the
    #: adapter is then saved in PEFT's layout (``adapter_config.json`` +
    #: ``adapter_model.safetensors``); otherwise the trainable tensors go to
    #: ``adapter.safetensors``.
    uses_peft: ClassVar[bool] = False

    def targets(self, model: Model, head: list[str], options: MethodOptions) -> list[str]:
        """Names of the modules this method adapts (recorded, shown by plans, fingerprinted)."""
        raise NotImplementedError(f"fine-tuning method {self.name!r} does not implement targets()")

    def apply(self, model: Model, head: list[str], options: MethodOptions) -> Any:
        """Make exactly the method's parameters (and the head's) trainable, in place.

        It may add modules inside ``model.module`` (adapter layers). Must be deterministic given
        the torch seed: loading a saved adapter calls it again on a fresh base, then fills in
        the saved tensors. Return value: the ``PeftModel`` when :attr:`uses_peft`, else None.
        """
        raise NotImplementedError(f"fine-tuning method {self.name!r} does not implement apply()")

    def __repr__(self) -> str:
        return f"<FineTuneMethod {self.name}>"


@dataclass
class Adapter:
    """What fine-tuning adapted in a model: ``model.adapter``, set by the core after
    :meth:`FineTuneMethod.apply` (by ``fmhub.finetune`` and by loading an adapter folder), None
    on a model that is not fine-tuned or was merged.

    :param method: The method's registered name.
    :param options: The method's validated options, as JSON-ready values.
    :param head: The head modules (``fmhub_attach_head``), trained and saved in full.
    :param modules: The modules the method adapted (``FineTuneMethod.targets``).
    :param fingerprint: Names, shapes and hash of the adapted modules' and head's parameters in
        the base, checked before an adapter is loaded onto a base.
    :param peft: The ``peft.PeftModel`` wrapping ``model.module`` when the method uses PEFT.
    :param training: Facts of the run that produced it (``steps``, ``best``, ``metrics``).
    :param extra: Other fields of the manifest's ``adapter`` record, kept as they are.
    """

    method: str
    options: dict[str, Any] = field(default_factory=dict)
    head: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    fingerprint: dict[str, Any] | None = None
    peft: Any = field(default=None, repr=False)
    training: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def uses_peft(self) -> bool:
        return self.peft is not None

    def to_manifest(self) -> dict[str, Any]:
        """The JSON-ready form written as ``fmhub.json``'s ``adapter`` field (no PEFT object)."""
        out = {
            **self.extra,
            "method": self.method,
            "options": self.options,
            "head": list(self.head),
            "modules": list(self.modules),
            "fingerprint": self.fingerprint,
        }
        if self.training:
            out["training"] = self.training
        return out

    @classmethod
    def from_manifest(cls, data: dict[str, Any]) -> Adapter:
        """The adapter recorded in a manifest (its PEFT model, if any, is attached on load)."""
        known = {"method", "options", "head", "modules", "fingerprint", "training"}
        extra = {k: v for k, v in data.items() if k not in known and k != "peft"}
        return cls(**{k: v for k, v in data.items() if k in known}, extra=extra)
