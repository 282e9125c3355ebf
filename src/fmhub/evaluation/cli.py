"""``fmhub eval NAME|FOLDER --data FILE|DIR [--metrics ...] [--json] [--plots DIR]``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import FmhubError

__all__ = ["add_parser", "run"]


def _pairs(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FmhubError(f"{flag} takes KEY=VALUE, got {pair!r}")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def add_parser(sub: Any, func: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an ``add_subparsers()`` object."""
    p = sub.add_parser("eval", help="measure a model (or an adapter folder) on labelled data")
    p.add_argument("name", help="model id, alias, local folder or adapter folder")
    p.add_argument(
        "--data",
        required=True,
        help="labelled data: CSV/TSV/JSONL file, class-per-folder or retrieval folder",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        metavar="METRIC",
        help="metrics to compute (default: the task's default metrics)",
    )
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--markdown", action="store_true", help="print the report as Markdown")
    p.add_argument("--plots", metavar="DIR", help="write the report's plots as PNG into DIR")
    p.add_argument("--batch-size", type=int, default=None, help="inputs per batch (default 32)")
    p.add_argument("--task", help="evaluation task (default: from the model and the data)")
    p.add_argument(
        "--set",
        "-s",
        action="append",
        metavar="KEY=VALUE",
        dest="eval_option",
        help="evaluation option, repeatable: k=3, bins=10, ks=[1,10], normalize=false",
    )
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE", help="load option")
    p.set_defaults(func=func)
    return p


def run(args: argparse.Namespace) -> int:
    from .. import load
    from .run import evaluate

    options = _pairs(getattr(args, "option", None), "--option")
    model = load(args.name, **options)
    eval_options = _pairs(args.eval_option, "--set")
    if args.task:
        eval_options["task"] = args.task
    report = evaluate(
        model, args.data, metrics=args.metrics, batch_size=args.batch_size, **eval_options
    )
    if args.plots:
        written = report.plot(args.plots)
        for path in written:
            print(f"plot: {path}", file=sys.stderr)
    if args.json:
        print(report.to_json())
    elif args.markdown:
        print(report.to_markdown())
    else:
        print(report)
    return 0
