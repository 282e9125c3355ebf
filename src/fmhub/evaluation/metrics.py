"""The built-in streaming metrics: each keeps counts and sums (never every logit) and is fed one
batch at a time. They are registered (see :mod:`fmhub.evaluation.builtin`) through the core's own
plugin, exactly as a third party's metrics are.

Evaluation tasks and what a batch holds (numpy arrays, lists, one entry per example):

==========================  ==============================================================
task                        batch keys
==========================  ==============================================================
``classification``          ``probs`` (n, classes) float64, ``targets`` (n,) int
``token-classification``    ``gold`` / ``pred``: one set of ``(label, start, end)`` each
``fill-mask``               ``candidates`` (best first token strings), ``gold`` strings
``retrieval``               ``ranked`` (top doc ids, best first), ``relevant`` dict id->grade
``sts``                     ``cosine`` (n,), ``gold`` (n,) float64
``transcription``           ``hyp``, ``ref`` strings
``text-generation``         ``hyp``, ``ref`` strings; optional ``nll`` and ``tokens`` (n,)
``text2text``               same as ``text-generation``
==========================  ==============================================================

Every batch also carries ``results`` (the model's typed results) and ``inputs``, for third-party
metrics that need more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from . import text as T
from .base import Accumulator, EvalContext, MetricResult

__all__ = ["perplexity", "prf_from_confusion"]


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def _opt(context: EvalContext, name: str, default: Any) -> Any:
    return getattr(context.options, name, default) if context.options is not None else default


# -- classification ------------------------------------------------------------------------------


class _Confusion(Accumulator):
    """A classes x classes count matrix (rows gold, columns predicted): every averaged metric of
    a single-label classifier comes from it."""

    def __init__(self, context: EvalContext):
        self.labels = list(context.labels or ())
        n = len(self.labels)
        self.matrix = np.zeros((n, n), dtype=np.int64)

    def update(self, batch: dict[str, Any]) -> None:
        probs, targets = batch["probs"], batch["targets"]
        pred = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1)
        np.add.at(self.matrix, (targets, pred), 1)


class _Accuracy(_Confusion):
    def result(self) -> MetricResult:
        return MetricResult({"accuracy": _div(np.trace(self.matrix), self.matrix.sum())})


def prf_from_confusion(matrix: np.ndarray, labels: Sequence[str]) -> MetricResult:
    """Precision, recall, F1 and support per class; macro, weighted and micro averages.

    Averages run over the classes that occur in the gold labels or the predictions (scikit-learn's
    default); a class with no prediction has precision 0, one with no gold example recall 0.
    """
    tp = np.diag(matrix).astype(np.float64)
    pred_n, gold_n = matrix.sum(0).astype(np.float64), matrix.sum(1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_n > 0, tp / pred_n, 0.0)
        recall = np.where(gold_n > 0, tp / gold_n, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    present = (pred_n + gold_n) > 0
    total = gold_n.sum()
    values: dict[str, float] = {}
    for name, col in (("precision", precision), ("recall", recall), ("f1", f1)):
        values[f"macro_{name}"] = float(col[present].mean()) if present.any() else 0.0
        values[f"weighted_{name}"] = _div((col * gold_n).sum(), total)
    micro = _div(tp.sum(), total)
    values.update(micro_precision=micro, micro_recall=micro, micro_f1=micro)
    per_class = {
        str(label): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(gold_n[i]),
        }
        for i, label in enumerate(labels)
    }
    return MetricResult(values, per_class)


class _PRF(_Confusion):
    def result(self) -> MetricResult:
        return prf_from_confusion(self.matrix, self.labels)


class _ConfusionMatrix(_Confusion):
    def result(self) -> MetricResult:
        return MetricResult(
            details={"confusion_matrix": {"labels": self.labels, "matrix": self.matrix.tolist()}}
        )


class _TopK(Accumulator):
    def __init__(self, context: EvalContext):
        self.k = int(_opt(context, "k", 5))
        self.classes = len(context.labels or ())
        self.hits = self.n = 0

    def update(self, batch: dict[str, Any]) -> None:
        probs, targets = batch["probs"], batch["targets"]
        self.classes = probs.shape[1]
        gold = probs[np.arange(len(targets)), targets]
        known = np.isfinite(gold)
        # rank of the gold class = classes scored strictly higher; an unknown gold score (the
        # plugin returned fewer classes) means the gold class was outside what it returned
        above = (np.nan_to_num(probs, nan=-np.inf) > gold[:, None]).sum(1)
        returned = np.isfinite(probs).sum(1)
        if (~known & (returned < self.k) & (returned < probs.shape[1])).any():
            raise InputError(
                f"top_{self.k}_accuracy needs the {self.k} best classes of every example but the "
                f"model returned only {int(returned.min())}; pass a smaller k."
            )
        self.hits += int(((above < self.k) & known).sum())
        self.n += len(targets)

    def result(self) -> MetricResult:
        if self.k >= self.classes:  # trivially 1: not worth a line in the report
            return MetricResult()
        return MetricResult({f"top_{self.k}_accuracy": _div(self.hits, self.n)})


class _LogLoss(Accumulator):
    """Mean negative log-probability of the gold class; probabilities clipped to [eps, 1] with
    eps the float64 machine epsilon (scikit-learn's ``log_loss``)."""

    def __init__(self, context: EvalContext):
        self.total, self.n = 0.0, 0

    def update(self, batch: dict[str, Any]) -> None:
        probs, targets = batch["probs"], batch["targets"]
        gold = probs[np.arange(len(targets)), targets]
        if not np.isfinite(gold).all():
            raise InputError(
                "log_loss needs every class's probability, but the model returned only its best "
                "classes; its plugin should build results with fmhub.results.top_k_classification, "
                "or leave log_loss out of metrics=[...]."
            )
        # rows renormalised as scikit-learn does, then clipped
        sums = np.nansum(probs, axis=1)
        gold = gold / np.where(sums > 0, sums, 1.0)
        eps = np.finfo(np.float64).eps
        self.total += float(-np.log(np.clip(gold, eps, 1.0)).sum())
        self.n += len(targets)

    def result(self) -> MetricResult:
        return MetricResult({"log_loss": _div(self.total, self.n)})


class _ECE(Accumulator):
    """Expected calibration error over ``bins`` equal-width confidence bins (top-1 probability);
    bin b holds confidences in (b/B, (b+1)/B], the first also 0."""

    def __init__(self, context: EvalContext):
        self.bins = int(_opt(context, "bins", 15))
        self.count = np.zeros(self.bins, dtype=np.int64)
        self.conf = np.zeros(self.bins)
        self.correct = np.zeros(self.bins)

    def update(self, batch: dict[str, Any]) -> None:
        probs, targets = np.nan_to_num(batch["probs"], nan=-1.0), batch["targets"]
        pred = probs.argmax(1)
        conf = probs[np.arange(len(pred)), pred]
        b = np.clip(np.ceil(conf * self.bins).astype(np.int64) - 1, 0, self.bins - 1)
        np.add.at(self.count, b, 1)
        np.add.at(self.conf, b, conf)
        np.add.at(self.correct, b, (pred == targets).astype(np.float64))

    def result(self) -> MetricResult:
        n = self.count.sum()
        safe = np.maximum(self.count, 1)
        gap = np.abs(self.correct / safe - self.conf / safe)
        ece = float((self.count * gap).sum() / n) if n else 0.0
        bins = {
            "edges": np.linspace(0, 1, self.bins + 1).tolist(),
            "count": self.count.tolist(),
            "confidence": (self.conf / safe).tolist(),
            "accuracy": (self.correct / safe).tolist(),
        }
        return MetricResult({"ece": ece}, details={"reliability": bins})


# -- token classification ------------------------------------------------------------------------


class _Entities(Accumulator):
    """Entity-level precision / recall / F1: an entity counts when its type, start and end all
    match exactly (seqeval's strict mode); averages like seqeval's classification_report."""

    def __init__(self, context: EvalContext):
        self.tp: dict[str, int] = {}
        self.pred: dict[str, int] = {}
        self.gold: dict[str, int] = {}

    def update(self, batch: dict[str, Any]) -> None:
        for gold, pred in zip(batch["gold"], batch["pred"], strict=True):
            for lab, *_ in gold:
                self.gold[lab] = self.gold.get(lab, 0) + 1
            for lab, *_ in pred:
                self.pred[lab] = self.pred.get(lab, 0) + 1
            for lab, *_ in set(gold) & set(pred):
                self.tp[lab] = self.tp.get(lab, 0) + 1

    def result(self) -> MetricResult:
        types = sorted(set(self.gold) | set(self.pred))
        rows, values = {}, {}
        for t in types:
            tp, p, g = self.tp.get(t, 0), self.pred.get(t, 0), self.gold.get(t, 0)
            prec, rec = _div(tp, p), _div(tp, g)
            rows[t] = {
                "precision": prec,
                "recall": rec,
                "f1": _div(2 * prec * rec, prec + rec),
                "support": g,
            }
        tp, p, g = sum(self.tp.values()), sum(self.pred.values()), sum(self.gold.values())
        prec, rec = _div(tp, p), _div(tp, g)
        values.update(precision=prec, recall=rec, f1=_div(2 * prec * rec, prec + rec))
        for col in ("precision", "recall", "f1"):
            values[f"macro_{col}"] = (
                float(np.mean([r[col] for r in rows.values()])) if rows else 0.0
            )
            values[f"weighted_{col}"] = _div(sum(r[col] * r["support"] for r in rows.values()), g)
        return MetricResult(values, rows)


# -- fill-mask ---------------------------------------------------------------------------------


def _token(text: str) -> str:
    return text.strip().removeprefix("##").removeprefix("\u0120").removeprefix("\u2581").strip()


class _FillMaskTopK(Accumulator):
    def __init__(self, context: EvalContext):
        self.k = int(_opt(context, "k", 5))
        self.top1 = self.topk = self.n = 0

    def update(self, batch: dict[str, Any]) -> None:
        for cands, gold in zip(batch["candidates"], batch["gold"], strict=True):
            cands = [_token(c) for c in cands]
            gold = _token(gold)
            self.top1 += bool(cands) and cands[0] == gold
            self.topk += gold in cands[: self.k]
            self.n += 1

    def result(self) -> MetricResult:
        return MetricResult(
            {
                "top_1_accuracy": _div(self.top1, self.n),
                f"top_{self.k}_accuracy": _div(self.topk, self.n),
            }
        )


# -- retrieval ---------------------------------------------------------------------------------


class _Ranking(Accumulator):
    """recall@k, MRR@k and nDCG@k for each cut-off k, summed over queries then averaged.

    recall@k = relevant documents in the top k / relevant documents; MRR@k = 1 / rank of the first
    relevant document in the top k (0 if none); nDCG@k with linear gains (the grade) and a
    log2(rank + 1) discount, as scikit-learn's ``ndcg_score``.
    """

    kind = ""

    def __init__(self, context: EvalContext):
        self.ks = sorted({int(k) for k in _opt(context, "ks", (1, 5, 10))})
        self.sums = np.zeros(len(self.ks))
        self.n = 0

    def update(self, batch: dict[str, Any]) -> None:
        for ranked, relevant in zip(batch["ranked"], batch["relevant"], strict=True):
            self.sums += [self.score(list(ranked[:k]), relevant, k) for k in self.ks]
            self.n += 1

    def result(self) -> MetricResult:
        values = {f"{self.kind}@{k}": _div(s, self.n) for k, s in zip(self.ks, self.sums)}
        return MetricResult(
            values,
            details={
                f"{self.kind}_at_k": {"k": self.ks, "value": [_div(s, self.n) for s in self.sums]}
            },
        )


class _Recall(_Ranking):
    kind = "recall"

    def score(self, top: list, relevant: dict, k: int) -> float:
        wanted = {d for d, g in relevant.items() if g > 0}
        return _div(len(wanted.intersection(top)), len(wanted))


class _MRR(_Ranking):
    kind = "mrr"

    def score(self, top: list, relevant: dict, k: int) -> float:
        for rank, doc in enumerate(top, 1):
            if relevant.get(doc, 0) > 0:
                return 1.0 / rank
        return 0.0


class _NDCG(_Ranking):
    kind = "ndcg"

    def score(self, top: list, relevant: dict, k: int) -> float:
        dcg = sum(relevant.get(d, 0) / math.log2(r + 1) for r, d in enumerate(top, 1))
        ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
        idcg = sum(g / math.log2(r + 1) for r, g in enumerate(ideal, 1))
        return _div(dcg, idcg)


# -- semantic similarity -----------------------------------------------------------------------


class _Pearson(Accumulator):
    """Pearson correlation from running means and co-moments (Chan et al.'s batch merge)."""

    def __init__(self, context: EvalContext):
        self.n, self.mx, self.my = 0, 0.0, 0.0
        self.sxx = self.syy = self.sxy = 0.0

    def update(self, batch: dict[str, Any]) -> None:
        x, y = np.asarray(batch["cosine"], np.float64), np.asarray(batch["gold"], np.float64)
        m = len(x)
        if not m:
            return
        bx, by = x.mean(), y.mean()
        dx, dy = x - bx, y - by
        n = self.n + m
        ddx, ddy = bx - self.mx, by - self.my
        self.sxx += (dx * dx).sum() + ddx * ddx * self.n * m / n
        self.syy += (dy * dy).sum() + ddy * ddy * self.n * m / n
        self.sxy += (dx * dy).sum() + ddx * ddy * self.n * m / n
        self.mx += ddx * m / n
        self.my += ddy * m / n
        self.n = n

    def result(self) -> MetricResult:
        den = math.sqrt(self.sxx * self.syy)
        return MetricResult({"pearson": self.sxy / den if den > 0 else 0.0})


class _Spearman(Accumulator):
    """Spearman's rank correlation (average ranks for ties). Ranks need the whole set, so this
    keeps two float64 numbers per pair (the cosine and the gold score), never an embedding."""

    def __init__(self, context: EvalContext):
        self.x: list[np.ndarray] = []
        self.y: list[np.ndarray] = []

    def update(self, batch: dict[str, Any]) -> None:
        self.x.append(np.asarray(batch["cosine"], np.float64))
        self.y.append(np.asarray(batch["gold"], np.float64))

    def result(self) -> MetricResult:
        x, y = np.concatenate(self.x), np.concatenate(self.y)
        rx, ry = _rank(x), _rank(y)
        rx, ry = rx - rx.mean(), ry - ry.mean()
        den = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
        return MetricResult({"spearman": float((rx * ry).sum()) / den if den > 0 else 0.0})


def _rank(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    starts = np.r_[True, sorted_a[1:] != sorted_a[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    sizes = np.diff(np.r_[first, len(a)])
    avg = first + (sizes + 1) / 2.0
    ranks = np.empty(len(a))
    ranks[order] = avg[group]
    return ranks


# -- transcription and generation --------------------------------------------------------------


class _ErrorRate(Accumulator):
    def __init__(self, context: EvalContext, unit: str):
        self.unit = unit
        self.normalize = bool(_opt(context, "normalize", True))
        self.edits = self.length = 0

    def update(self, batch: dict[str, Any]) -> None:
        counts = T.wer_counts if self.unit == "wer" else T.cer_counts
        for ref, hyp in zip(batch["ref"], batch["hyp"], strict=True):
            e, n = counts(ref, hyp, self.normalize)
            self.edits += e
            self.length += n

    def result(self) -> MetricResult:
        rate = self.edits / self.length if self.length else float(self.edits > 0)
        return MetricResult({self.unit: rate})


class _ExactMatch(Accumulator):
    def __init__(self, context: EvalContext):
        self.hits = self.n = 0
        self.normalize = bool(_opt(context, "normalize", False))

    def update(self, batch: dict[str, Any]) -> None:
        for ref, hyp in zip(batch["ref"], batch["hyp"], strict=True):
            self.hits += T.exact_match(ref, hyp, normalize=self.normalize)
            self.n += 1

    def result(self) -> MetricResult:
        return MetricResult({"exact_match": _div(self.hits, self.n)})


class _Chrf(Accumulator):
    def __init__(self, context: EvalContext):
        self.stats = T.ChrfStats()

    def update(self, batch: dict[str, Any]) -> None:
        for ref, hyp in zip(batch["ref"], batch["hyp"], strict=True):
            self.stats.add(ref, hyp)

    def result(self) -> MetricResult:
        return MetricResult({"chrf": self.stats.score()})


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(total negative log-likelihood in nats / number of predicted tokens)."""
    return math.exp(nll_sum / tokens) if tokens else float("nan")


class _Perplexity(Accumulator):
    """Perplexity from the summed token negative log-likelihood (nats) and the token count that a
    generation model's evaluation batch carries as ``nll`` and ``tokens``."""

    def __init__(self, context: EvalContext):
        self.nll, self.tokens = 0.0, 0

    def update(self, batch: dict[str, Any]) -> None:
        if batch.get("nll") is None or batch.get("tokens") is None:
            raise InputError(
                "perplexity needs the model's token log-likelihoods (batch keys 'nll' and "
                "'tokens'), which this model's evaluation does not provide; leave perplexity out "
                "of metrics=[...]."
            )
        self.nll += float(np.sum(batch["nll"]))
        self.tokens += int(np.sum(batch["tokens"]))

    def result(self) -> MetricResult:
        return MetricResult({"perplexity": perplexity(self.nll, self.tokens)})
