"""The core's own plugin: it registers the built-in fine-tuning methods and evaluation metrics the
way a third party would."""

from __future__ import annotations

from .hookspecs import hookimpl


@hookimpl
def fmhub_register_finetune_methods(register):
    from .finetuning.builtin import BUILTIN_METHODS

    for method in BUILTIN_METHODS:
        register(method)


@hookimpl
def fmhub_register_metrics(register):
    from .evaluation.builtin import BUILTIN_METRICS

    for metric in BUILTIN_METRICS:
        register(metric)
