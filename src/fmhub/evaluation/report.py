"""``EvalReport``: what an evaluation measured, as JSON, Markdown, a terminal table and plots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EvalReport"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


class EvalReport(BaseModel):
    """The result of :func:`fmhub.evaluate`.

    ``metrics`` holds every scalar (``accuracy``, ``macro_f1``, ``recall@10``, ``wer`` ...);
    ``per_class`` the rows per class or entity type (precision, recall, f1, support);
    ``details`` the larger pieces (``confusion_matrix``, ``reliability`` bins, ``recall_at_k``).
    """

    model_config = ConfigDict(frozen=True)

    model: str = Field(description="The model id evaluated.")
    adapter: dict[str, Any] | None = Field(
        None, description="The adapter (method, options) if any."
    )
    task: str = Field(description="The evaluation task.")
    n_examples: int
    metrics: dict[str, float]
    per_class: dict[str, dict[str, int | float]] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    labels: list[str] | None = None
    seconds: float
    examples_per_second: float
    data: str | None = None
    metric_names: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)

    # -- output ---------------------------------------------------------------------------------

    def to_json(self, indent: int | None = 2) -> str:
        """The whole report as JSON."""
        return json.dumps(self.model_dump(mode="json"), indent=indent)

    def _title(self) -> str:
        adapter = f" + {self.adapter['method']} adapter" if self.adapter else ""
        return f"{self.model}{adapter} on {self.data or 'data'}"

    def _summary(self) -> str:
        return (
            f"{self.task}: {self.n_examples} examples in {self.seconds:.2f}s "
            f"({self.examples_per_second:.1f}/s)"
        )

    def to_markdown(self) -> str:
        """A Markdown page: summary, metrics table, per-class table, confusion matrix."""
        out = [
            f"## Evaluation of {self._title()}",
            "",
            self._summary(),
            "",
            "| metric | value |",
            "| --- | ---: |",
        ]
        out += [f"| {k} | {_fmt(v)} |" for k, v in self.metrics.items()]
        if self.per_class:
            cols = list(next(iter(self.per_class.values())))
            out += ["", "| class | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
            out += [
                f"| {name} | " + " | ".join(_fmt(row.get(c, "")) for c in cols) + " |"
                for name, row in self.per_class.items()
            ]
        cm = self.details.get("confusion_matrix")
        if cm:
            labels = cm["labels"]
            out += [
                "",
                "Confusion matrix (rows: gold, columns: predicted)",
                "",
                "| gold \\ predicted | " + " | ".join(labels) + " |",
                "| --- |" + " ---: |" * len(labels),
            ]
            out += [
                f"| {g} | " + " | ".join(str(v) for v in row) + " |"
                for g, row in zip(labels, cm["matrix"])
            ]
        return "\n".join(out) + "\n"

    def __str__(self) -> str:
        lines = [f"Evaluation of {self._title()}", self._summary(), ""]
        width = max((len(k) for k in self.metrics), default=6)
        lines += [f"  {k:<{width}}  {_fmt(v):>10}" for k, v in self.metrics.items()]
        if self.per_class:
            cols = list(next(iter(self.per_class.values())))
            name_w = max(5, *(len(n) for n in self.per_class))
            lines += ["", f"  {'class':<{name_w}}" + "".join(f"  {c:>10}" for c in cols)]
            lines += [
                f"  {n:<{name_w}}" + "".join(f"  {_fmt(r.get(c, '')):>10}" for c in cols)
                for n, r in self.per_class.items()
            ]
        cm = self.details.get("confusion_matrix")
        if cm and len(cm["labels"]) <= 20:
            labels = cm["labels"]
            w = max(6, *(len(x) for x in labels), *(len(str(v)) for r in cm["matrix"] for v in r))
            lines += [
                "",
                "  confusion matrix (rows gold, columns predicted)",
                f"  {'':<{w}}" + "".join(f"  {x:>{w}}" for x in labels),
            ]
            lines += [
                f"  {g:<{w}}" + "".join(f"  {v:>{w}}" for v in row)
                for g, row in zip(labels, cm["matrix"])
            ]
        return "\n".join(lines)

    def plot(self, folder: str | os.PathLike) -> list[Path]:
        """Write the report's plots as PNG files into ``folder`` (made if missing); returns their
        paths. Needs matplotlib: ``pip install 'fmhub[plots]'``."""
        from .plots import write_plots

        return write_plots(self, Path(folder))
