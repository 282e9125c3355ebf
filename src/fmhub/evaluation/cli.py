"""``fmhub eval NAME|FOLDER --data FILE|DIR [--metrics ...] [--json] [--plots DIR]``.

Every argument is checked before the model loads (exit status 2); bad rows found while evaluating
are exit status 1, with the row named.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._clikit import (
    UsageError,
    add_command,
    add_load_options,
    check_input_file,
    check_model_name,
    key_values,
    load_options,
    subcommand,
    verbosity,
)
from ..errors import FmhubError, did_you_mean

__all__ = ["check", "cmd_eval"]


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Check the command line without loading a model; return the evaluation options."""
    from .. import get_hub
    from ..manifest import saved_folder
    from ..spec import validate_model
    from .run import EvalOptions

    if saved_folder(get_hub(), args.name) is None:  # a folder fmhub saved is checked on load
        check_model_name(args.name)
    check_input_file(args.data, "--data")
    options = key_values(args.eval_option, "--set")
    if args.task:
        options["task"] = args.task
    if verbosity(args) < 0:
        options.setdefault("progress", False)
    try:
        validate_model(EvalOptions, options, "evaluation options")
    except FmhubError as exc:
        raise UsageError(str(exc)) from None
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be a positive integer, got {args.batch_size}.")
    known = {name for per_task in get_hub().registry.metrics.values() for name in per_task}
    for name in args.metrics or ():
        if name not in known:
            raise UsageError(
                f"unknown metric {name!r}.{did_you_mean(name, known)} Known "
                f"metrics: {', '.join(sorted(known))}."
            )
    return options


def cmd_eval(args: argparse.Namespace) -> int:
    from .. import load
    from .run import evaluate

    options = check(args)
    model = load(args.name, **load_options(args))
    report = evaluate(model, args.data, metrics=args.metrics, batch_size=args.batch_size, **options)
    if args.plots:
        for path in report.plot(args.plots):
            print(f"plot: {path}", file=sys.stderr)
    if args.json:
        print(report.to_json())
    elif args.markdown:
        print(report.to_markdown())
    else:
        print(report)
    return 0


@subcommand
def _eval_command(sub: Any) -> None:
    p = add_command(
        sub, "eval", cmd_eval, help="measure a model (or an adapter folder) on labelled data"
    )
    p.add_argument("name", help="model id, alias, local folder or adapter folder")
    p.add_argument(
        "--data",
        required=True,
        metavar="DATA",
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
    add_load_options(p)
