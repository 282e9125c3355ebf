"""PNG plots of an :class:`~fmhub.evaluation.EvalReport` (matplotlib, the ``plots`` extra).

Written when the report holds what they need: ``confusion_matrix.png`` and ``reliability.png``
(classification), ``per_class_f1.png`` (classification, token classification), ``recall_at_k.png``
(retrieval). Files are written to a temporary name and renamed, so a plot is never half written.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FmhubError

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.figure import Figure

    from .report import EvalReport

__all__ = ["write_plots"]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise FmhubError(
            "plots need matplotlib: pip install 'fmhub[plots]' (or pip install matplotlib)."
        ) from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    os.replace(tmp, path)
    return path


def _confusion(plt: ModuleType, report: EvalReport, folder: Path) -> Path:
    import numpy as np

    cm = report.details["confusion_matrix"]
    labels, m = cm["labels"], np.asarray(cm["matrix"])
    n = len(labels)
    size = min(2.0 + 0.6 * n, 14)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    rows = m.sum(1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m, dtype=float), where=rows > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the gold class")
    ax.set_xticks(range(n), labels, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(m[i, j]),
                    ha="center",
                    va="center",
                    color="white" if share[i, j] > 0.5 else "black",
                    fontsize=9,
                )
    acc = report.metrics.get("accuracy")
    title = "Confusion matrix" + (f" (accuracy {acc:.3f})" if acc is not None else "")
    ax.set_title(f"{title}\n{report.model}", fontsize=10)
    path = _save(fig, folder / "confusion_matrix.png")
    plt.close(fig)
    return path


def _reliability(plt: ModuleType, report: EvalReport, folder: Path) -> Path:
    rel = report.details["reliability"]
    edges, count = rel["edges"], rel["count"]
    centers = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    width = edges[1] - edges[0]
    keep = [i for i, c in enumerate(count) if c > 0]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar(
        [centers[i] for i in keep],
        [rel["accuracy"][i] for i in keep],
        width=width * 0.95,
        color="tab:blue",
        alpha=0.8,
        label="accuracy in bin",
    )
    ax.plot(
        [rel["confidence"][i] for i in keep],
        [rel["accuracy"][i] for i in keep],
        "o",
        color="tab:red",
        label="mean confidence in bin",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ece = report.metrics.get("ece")
    ax.set_title("Reliability diagram" + (f" (ECE {ece:.3f})" if ece is not None else ""))
    ax.legend(loc="upper left", fontsize=8)
    path = _save(fig, folder / "reliability.png")
    plt.close(fig)
    return path


def _per_class_f1(plt: ModuleType, report: EvalReport, folder: Path) -> Path:
    names = list(report.per_class)
    f1 = [report.per_class[n].get("f1", 0.0) for n in names]
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(names) + 2), 4))
    bars = ax.bar(range(len(names)), f1, color="tab:green")
    for b, v in zip(bars, f1):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    ax.set_xticks(
        range(len(names)),
        names,
        rotation=45 if len(names) > 5 else 0,
        ha="right" if len(names) > 5 else "center",
    )
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("F1")
    macro = report.metrics.get("macro_f1")
    ax.set_title("F1 per class" + (f" (macro {macro:.3f})" if macro is not None else ""))
    path = _save(fig, folder / "per_class_f1.png")
    plt.close(fig)
    return path


def _recall_at_k(plt: ModuleType, report: EvalReport, folder: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for key, label in (("recall_at_k", "recall@k"), ("ndcg_at_k", "nDCG@k"), ("mrr_at_k", "MRR@k")):
        curve = report.details.get(key)
        if curve:
            ax.plot(curve["k"], curve["value"], "o-", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Retrieval quality at k ({report.n_examples} queries)")
    ax.legend()
    ax.grid(alpha=0.3)
    path = _save(fig, folder / "recall_at_k.png")
    plt.close(fig)
    return path


def write_plots(report: EvalReport, folder: Path) -> list[Path]:
    """Every plot the report has data for; an empty list when it has none (e.g. WER)."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    if "confusion_matrix" in report.details:
        out.append(_confusion(plt, report, folder))
    if "reliability" in report.details:
        out.append(_reliability(plt, report, folder))
    if report.per_class and any("f1" in r for r in report.per_class.values()):
        out.append(_per_class_f1(plt, report, folder))
    if "recall_at_k" in report.details:
        out.append(_recall_at_k(plt, report, folder))
    return out
