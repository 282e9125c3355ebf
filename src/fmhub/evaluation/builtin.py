"""The built-in metrics, as registered by the core's own plugin. Their accumulators live in
:mod:`fmhub.evaluation.metrics` and are imported (with numpy) only when an evaluation starts."""

from __future__ import annotations

from typing import Any

from .base import Accumulator, EvalContext, Metric

__all__ = ["BUILTIN_METRICS"]


def _lazy(name: str, *args: Any):
    def make(context: EvalContext) -> Accumulator:
        from . import metrics

        return getattr(metrics, name)(context, *args)

    make.__name__ = make.__qualname__ = name
    return make


_GEN = ("text-generation", "text2text")

#: The metrics the core registers through its own plugin.
BUILTIN_METRICS: tuple[Metric, ...] = (
    Metric(
        "accuracy",
        ("classification",),
        _lazy("_Accuracy"),
        "share of examples whose top class is right",
    ),
    Metric(
        "top_k_accuracy",
        ("classification",),
        _lazy("_TopK"),
        "share whose gold class is among the k best (option k, default 5)",
    ),
    Metric(
        "f1",
        ("classification",),
        _lazy("_PRF"),
        "precision, recall, F1 per class; macro, weighted and micro averages",
    ),
    Metric(
        "confusion_matrix",
        ("classification",),
        _lazy("_ConfusionMatrix"),
        "counts, rows gold, columns predicted",
    ),
    Metric("log_loss", ("classification",), _lazy("_LogLoss"), "mean -log p(gold class)"),
    Metric(
        "ece",
        ("classification",),
        _lazy("_ECE"),
        "expected calibration error, equal-width bins (option bins, default 15)",
    ),
    Metric(
        "entity_f1",
        ("token-classification",),
        _lazy("_Entities"),
        "entity-level precision, recall, F1 (exact type and span), per type and averaged",
    ),
    Metric(
        "top_k_accuracy",
        ("fill-mask",),
        _lazy("_FillMaskTopK"),
        "top-1 and top-k accuracy of the masked token (option k, default 5)",
    ),
    Metric(
        "recall", ("retrieval",), _lazy("_Recall"), "recall@k for k in option ks (default 1, 5, 10)"
    ),
    Metric(
        "mrr", ("retrieval",), _lazy("_MRR"), "mean reciprocal rank of the first relevant, cut at k"
    ),
    Metric("ndcg", ("retrieval",), _lazy("_NDCG"), "normalised discounted cumulative gain at k"),
    Metric(
        "spearman",
        ("sts",),
        _lazy("_Spearman"),
        "Spearman correlation of cosine with the gold score",
    ),
    Metric(
        "pearson", ("sts",), _lazy("_Pearson"), "Pearson correlation of cosine with the gold score"
    ),
    Metric("wer", ("transcription",), _lazy("_ErrorRate", "wer"), "word error rate"),
    Metric("cer", ("transcription",), _lazy("_ErrorRate", "cer"), "character error rate"),
    Metric("exact_match", _GEN, _lazy("_ExactMatch"), "share of outputs equal to the reference"),
    Metric("chrf", _GEN, _lazy("_Chrf"), "corpus chrF (character 6-grams, beta 2), 0-100"),
    Metric(
        "perplexity",
        _GEN,
        _lazy("_Perplexity"),
        "exp(mean token NLL); needs the model to report token log-likelihoods",
        default=False,
    ),
)
