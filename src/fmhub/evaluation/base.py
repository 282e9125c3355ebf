"""What a metric is, without numpy or torch (registration must stay cheap).

A :class:`Metric` is registered for one or more *evaluation tasks* through the
``fmhub_register_metrics`` hook. ``Metric.start(context)`` gives a fresh :class:`Accumulator`;
``update(batch)`` takes one batch (a dict whose keys depend on the task, below); ``result()``
gives a :class:`MetricResult`. An accumulator keeps counts and sums, never every output.

Evaluation tasks and what a batch holds (one entry per example):

==========================  ==============================================================
task                        batch keys
==========================  ==============================================================
``classification``          ``probs`` (n, classes) float64 numpy array (NaN for a class the
                            model did not score), ``targets`` (n,) int numpy array
``token-classification``    ``gold`` / ``pred``: one set of ``(type, start, end)`` each
``fill-mask``               ``candidates`` (token strings, best first), ``gold`` strings
``retrieval``               ``ranked`` (document ids, best first, at least max(ks) of them),
                            ``relevant`` (dict document id -> grade > 0)
``sts``                     ``cosine`` (n,), ``gold`` (n,) float64 numpy arrays
``transcription``           ``hyp``, ``ref`` strings
``text-generation``         ``hyp``, ``ref`` strings; optional ``nll`` (summed token negative
                            log-likelihood, nats) and ``tokens`` (token counts) per example
``text2text``               same as ``text-generation``
==========================  ==============================================================

Every batch also carries ``inputs`` and ``results`` (the model's typed results), for third-party
metrics that need more. A task fmhub does not know can be evaluated once a plugin registers
metrics for it: its data are ``(input, expected)`` pairs and its batches hold ``inputs``,
``expected`` and ``results``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EVAL_TASKS", "Accumulator", "EvalContext", "Metric", "MetricResult"]

EVAL_TASKS = (
    "classification",
    "token-classification",
    "fill-mask",
    "retrieval",
    "sts",
    "transcription",
    "text-generation",
    "text2text",
)


@dataclass
class EvalContext:
    """What an accumulator knows before the first batch."""

    task: str
    labels: tuple[str, ...] | None = None
    #: evaluation options: k (top-k), bins (ECE), ks (retrieval cut-offs), normalize (WER/CER),
    #: plus ``metric_options`` for third-party metrics.
    options: Any = None


@dataclass
class MetricResult:
    """What one metric reports: scalar ``values`` (merged into ``report.metrics``), optional
    ``per_class`` rows (label -> column -> value) and JSON-ready ``details`` (matrices, curves)."""

    values: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Accumulator:
    """Streaming state of one metric over one evaluation."""

    def update(self, batch: dict[str, Any]) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def result(self) -> MetricResult:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Metric:
    """A named metric for some evaluation tasks.

    :param name: What ``metrics=[...]`` picks it by (unique per task).
    :param tasks: The evaluation tasks it applies to (see :data:`EVAL_TASKS`, or a third party's).
    :param make: ``make(context) -> Accumulator``, called once per evaluation.
    :param description: One line for ``fmhub eval --help`` style listings and the docs.
    :param default: Computed when ``metrics`` is not given.
    """

    name: str
    tasks: tuple[str, ...]
    make: Callable[[EvalContext], Accumulator]
    description: str = ""
    default: bool = True

    def start(self, context: EvalContext) -> Accumulator:
        return self.make(context)
