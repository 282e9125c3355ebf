"""The toy plugin as classes, and variants of it with one defect each, for the conformance kit's own
tests: the kit must pass :class:`Toy` and fail every other class here.

Register one in place of the toy plugin: ``fmhub.Hub(entry_points=False, plugins={"toy": Toy()})``.
Nothing here is installed as an entry point.
"""

from __future__ import annotations

import fmhub
from fmhub import hookimpl

from . import (
    fmhub_attach_head,
    fmhub_claim_path,
    fmhub_finetune_targets,
    fmhub_load,
    fmhub_postprocess,
    fmhub_preprocess,
    fmhub_register_models,
    fmhub_register_namespaces,
    fmhub_save,
    fmhub_training_loss,
)

__all__ = [
    "BROKEN",
    "BadLowPrecision",
    "ConstantOutput",
    "IgnoresSavedFolder",
    "LabelsMismatch",
    "NoFineTuneHooks",
    "NoTrainingLoss",
    "Toy",
    "ToyWithoutFineTuning",
]


class ToyWithoutFineTuning:
    """The toy plugin's registration and stage hooks, calling the module's own functions."""

    @hookimpl
    def fmhub_register_namespaces(self, register):
        fmhub_register_namespaces(register)

    @hookimpl
    def fmhub_register_models(self, register):
        fmhub_register_models(register)

    @hookimpl
    def fmhub_claim_path(self, path):
        return fmhub_claim_path(path)

    @hookimpl
    def fmhub_load(self, spec, options):
        return fmhub_load(spec, options)

    @hookimpl
    def fmhub_preprocess(self, model, inputs):
        return fmhub_preprocess(model, inputs)

    @hookimpl
    def fmhub_forward(self, model, batch):
        return model.module(batch["x"])

    @hookimpl
    def fmhub_postprocess(self, model, outputs, batch):
        return fmhub_postprocess(model, outputs, batch)

    @hookimpl
    def fmhub_save(self, model, path):
        return fmhub_save(model, path)


class _Loss:
    @hookimpl
    def fmhub_training_loss(self, model, outputs, targets):
        return fmhub_training_loss(model, outputs, targets)


class _HeadAndTargets:
    @hookimpl
    def fmhub_finetune_targets(self, model, method):
        return fmhub_finetune_targets(model, method)

    @hookimpl
    def fmhub_attach_head(self, model, labels):
        return fmhub_attach_head(model, labels)


class Toy(ToyWithoutFineTuning, _HeadAndTargets, _Loss):
    """The intact toy plugin."""


#: Defect: none of the three fine-tuning hooks.
NoFineTuneHooks = ToyWithoutFineTuning


class NoTrainingLoss(ToyWithoutFineTuning, _HeadAndTargets):
    """Defect: a head and targets but no ``fmhub_training_loss``."""


class IgnoresSavedFolder(Toy):
    """Defect: the loader ignores ``spec.path`` and builds the seeded weights again."""

    @hookimpl
    def fmhub_load(self, spec, options):
        if spec.path:
            spec = spec.model_copy(update={"path": None, "task": spec.task or "embedding"})
        return fmhub_load(spec, options)


class ConstantOutput(Toy):
    """Defect: forward ignores its input, so every input gets the same output."""

    @hookimpl
    def fmhub_forward(self, model, batch):
        return model.module(batch["x"] * 0)


class LabelsMismatch(Toy):
    """Defect: the classifier reports two labels for its three outputs."""

    @hookimpl
    def fmhub_load(self, spec, options):
        loaded = fmhub_load(spec, options)
        if loaded.labels:
            loaded.labels = tuple(loaded.labels)[:2]
        return loaded

    @hookimpl
    def fmhub_postprocess(self, model, outputs, batch):
        from fmhub.results import top_k_classification

        if model.task == "classification":
            return top_k_classification(
                outputs.float()[:, : len(model.labels)].softmax(-1), model.labels, k=2
            )
        return fmhub_postprocess(model, outputs, batch)


class BadLowPrecision(Toy):
    """Defect: in bfloat16 the outputs are garbage of the right shape and dtype."""

    @hookimpl
    def fmhub_forward(self, model, batch):
        import torch

        out = model.module(batch["x"])
        if out.dtype == torch.bfloat16:
            gen = torch.Generator().manual_seed(0)
            return torch.randn(out.shape, generator=gen).to(out.dtype) * 10
        return out


#: Every broken variant, by the defect the kit must report.
BROKEN = {
    "no-finetune-hooks": NoFineTuneHooks,
    "no-training-loss": NoTrainingLoss,
    "ignores-saved-folder": IgnoresSavedFolder,
    "constant-output": ConstantOutput,
    "labels-mismatch": LabelsMismatch,
    "bad-low-precision": BadLowPrecision,
}


def hub(variant: type = Toy) -> fmhub.Hub:
    """A hub whose ``toy:`` namespace is served by ``variant`` (no entry points)."""
    return fmhub.Hub(entry_points=False, plugins={"toy": variant()})
