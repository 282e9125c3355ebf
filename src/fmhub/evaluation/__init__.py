"""Evaluation: ``fmhub.evaluate(model, data)`` and streaming metrics for every task.

Importing this package is cheap (no numpy, no torch): :class:`Metric` and friends are what a plugin
registers through ``fmhub_register_metrics``. ``evaluate`` and ``EvalReport`` load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import EVAL_TASKS, Accumulator, EvalContext, Metric, MetricResult

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..model import Model
    from .report import EvalReport
    from .run import EvalOptions

__all__ = [
    "EVAL_TASKS",
    "Accumulator",
    "EvalContext",
    "EvalOptions",
    "EvalReport",
    "Metric",
    "MetricResult",
    "evaluate",
]


def evaluate(
    model: Model,
    data: Any,
    metrics: Sequence[str] | None = None,
    batch_size: int | None = None,
    **options: Any,
) -> EvalReport:
    """See :func:`fmhub.evaluate`."""
    from .run import evaluate as _evaluate

    return _evaluate(model, data, metrics=metrics, batch_size=batch_size, **options)


def __getattr__(name: str) -> Any:
    if name == "EvalReport":
        from .report import EvalReport

        return EvalReport
    if name == "EvalOptions":
        from .run import EvalOptions

        return EvalOptions
    raise AttributeError(f"module 'fmhub.evaluation' has no attribute {name!r}")
