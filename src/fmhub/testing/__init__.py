"""``fmhub.testing``: the conformance kit for plugin authors (and the core's own tests).

Subclass :class:`ConformanceSuite` in a test module and list your models as
:class:`ConformanceCase` objects; pytest (through the ``fmhub`` pytest plugin that fmhub installs)
generates the contract tests for each::

    from fmhub.testing import ConformanceCase, ConformanceSuite

    class TestMyPlugin(ConformanceSuite):
        cases = [ConformanceCase(model="mine:tiny", inputs=["a", "b", "c"],
                                 heavy_modules=("torch", "mylib"))]

The suite checks: registration imports nothing heavy; load -> predict end to end; results have the
task's typed shape; the model object (eval mode, device, module) and the stages run by hand give
what predict gives; batched equals one-by-one; different inputs give different outputs; a
classifier has one label per output; dtype/device moves, with bfloat16 results close to
float32's; save -> load of perturbed weights gives them back; fine-tuning (a head for two labels,
the default targets of each PEFT method, LoRA steps that change the outputs, adapter save ->
load); bad inputs raise :class:`fmhub.InputError`. Each check is also a ``check_*`` function. For a generative model (its per-call
options are :class:`fmhub.GenerationOptions`) it also checks that greedy output is deterministic,
streamed pieces add up to the text, ``max_new_tokens`` and stop strings are honoured, and (through
the checks above, with ``ConformanceCase.call_options``) that batch equals one-by-one and a save ->
load round trip generates the same tokens. Class-level fixtures (for instance an
``autouse`` one that builds a tiny model into a hub cache) run before every generated test.
"""

from __future__ import annotations

from typing import Any

from .hf import hf_hub_cache

__all__ = [
    "FINETUNE_HOOKS",
    "ConformanceCase",
    "ConformanceSuite",
    "assert_results_close",
    "check_different_inputs_differ",
    "check_finetune",
    "check_labels_match_outputs",
    "check_low_precision",
    "check_save_load",
    "hf_hub_cache",
    "imported_after",
    "imported_after_each",
]


def __getattr__(name: str) -> Any:
    # The suite needs pytest; hf_hub_cache (used by plugins' test helpers and the demo) does not.
    if name in __all__ and name != "hf_hub_cache":
        from . import suite

        return getattr(suite, name)
    raise AttributeError(f"module 'fmhub.testing' has no attribute {name!r}")
