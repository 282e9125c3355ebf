"""``fmhub finetune NAME [--plan] --train DATA [--eval DATA] --output DIR [-c KEY=VALUE ...]``.

Every argument, data file and the output folder are checked before the model loads.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from .._clikit import (
    UsageError,
    add_command,
    add_launch_options,
    add_load_options,
    check_input_file,
    check_model_name,
    key_values,
    load_options,
    subcommand,
    verbosity,
)
from ..errors import FmhubError
from .distributed import current, launch, under_launcher

ADAPTER = "adapter"  # the adapter goes to OUTPUT/adapter, checkpoints to OUTPUT/checkpoint


def _config(pairs: list[str] | None) -> dict:
    return key_values(pairs, "--config")


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Check the command line and the data files; return the fine-tuning config. Raises
    :class:`fmhub.cli.UsageError` (exit status 2) for anything wrong, without loading a model."""
    from ..spec import validate_model
    from .config import FineTuneConfig
    from .data import as_examples

    config = _config(args.config)
    for flag, key in (
        ("--text-column", "text_column"),
        ("--label-column", "label_column"),
        ("--encoding", "encoding"),
    ):
        value = getattr(args, key)
        if value is not None:
            if key in config and config[key] != value:
                raise UsageError(f"{flag} and -c {key}= disagree; give one.")
            config[key] = value
    check_model_name(args.name)
    if "output_dir" in config:
        raise UsageError("give the output folder with --output, not -c output_dir=.")
    if not args.output and (config.get("checkpoint_every") or config.get("resume")):
        raise UsageError("checkpoint_every and resume need --output DIR.")
    try:
        cfg = validate_model(
            FineTuneConfig,
            {
                "method": args.method,
                **config,
                **({"output_dir": args.output} if args.output else {}),
            },
            "fine-tuning config",
        )
    except FmhubError as exc:
        raise UsageError(str(exc)) from None
    _check_method(args.method, cfg.method_options)
    if args.plan:
        return config
    if not args.train:
        raise UsageError("fmhub finetune needs --train DATA (or --plan to only show the plan)")
    data = {
        "text_column": cfg.text_column,
        "label_column": cfg.label_column,
        "encoding": cfg.encoding,
    }
    try:
        check_input_file(args.train, "--train")
        train = as_examples(args.train, cfg.labels, **data)
        if args.eval:
            check_input_file(args.eval, "--eval")
            as_examples(args.eval, train.labels, **data)
    except FmhubError as exc:
        raise UsageError(str(exc)) from None
    if args.output:
        out = Path(args.output)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--output {args.output!r} is a file; give a folder.")
        existing = next(p for p in (out, *out.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise UsageError(f"--output {args.output!r}: {str(existing)!r} is a file.")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"--output {args.output!r}: cannot write in {str(existing)!r}.")
        if (out / ADAPTER).exists() and not args.overwrite:
            raise UsageError(
                f"--output {args.output!r} already holds an adapter ({out / ADAPTER}); pass "
                "--overwrite to replace it, or choose another --output."
            )
    return config


def _check_method(name: str, options: dict[str, Any]) -> None:
    """The method is registered and its options are valid (no model needed)."""
    from .. import get_hub
    from ..errors import did_you_mean
    from ..spec import validate_model

    methods = get_hub().finetune_methods()
    method = methods.get(name)
    if method is None:
        raise UsageError(
            f"Unknown fine-tuning method {name!r}.{did_you_mean(name, methods)} "
            f"Registered methods: {', '.join(sorted(methods))}."
        )
    try:
        validate_model(method.Options, options, f"options of method {name!r}")
    except FmhubError as exc:
        raise UsageError(str(exc)) from None


def run(model: Any, args: argparse.Namespace, config: dict[str, Any] | None = None) -> int:
    """Plan or fine-tune ``model`` (loaded after :func:`check` passed) and print the result."""
    from . import finetune, finetune_plan

    if config is None:
        config = check(args)
    if args.plan:
        print(finetune_plan(model, args.method, **config))
        return 0
    if "progress" not in config:
        config["progress"] = verbosity(args) >= 0  # a bar on a terminal, else a line every 30 s
    checkpoints = bool(config.get("checkpoint_every") or config.get("resume"))
    if args.output and checkpoints:  # the trainer writes OUTPUT/checkpoint and OUTPUT/adapter
        config["output_dir"] = args.output
        config.setdefault("overwrite", bool(args.overwrite))
    result = finetune(model, args.train, eval=args.eval, method=args.method, **config)
    adapter = result.adapter_path
    dist = current()  # set when torchrun started this process
    is_main = dist is None or dist.is_main
    if args.output and not checkpoints:
        adapter = Path(args.output) / ADAPTER
        if is_main:  # only rank 0 writes; the others wait for it
            adapter = model.save(adapter, overwrite=args.overwrite)
        if dist:
            dist.barrier("waiting for rank 0 to save the adapter")
    if not is_main:
        return 0
    evaluation = _final_evaluation(model, args, config) if args.eval else None
    print(
        json.dumps(
            {
                "steps": result.steps,
                "seconds": round(result.seconds, 2),
                "train_loss": result.train_loss,
                "metrics": result.metrics,
                "best": result.best,
                "stopped_early": result.stopped_early,
                "adapter": str(adapter) if adapter else None,
                "evaluation": evaluation,
            },
            indent=2,
        )
    )
    return 0


def _final_evaluation(model: Any, args: argparse.Namespace, config: dict[str, Any]) -> dict:
    """Measure the fine-tuned model on --eval with the code of ``fmhub eval``: its table goes to
    stderr, its JSON into the summary."""
    import sys

    from ..evaluation import evaluate
    from ..evaluation.data import LabelNames
    from .data import as_examples

    data = {k: config[k] for k in ("text_column", "label_column", "encoding") if k in config}
    examples = as_examples(args.eval, list(model.labels), **data)
    report = evaluate(
        model,
        LabelNames(examples, examples.labels),
        batch_size=config.get("batch_size"),
        progress=False,
    )
    report = report.model_copy(update={"data": str(args.eval)})
    print(report, file=sys.stderr)
    return report.model_dump(mode="json")


def cmd_finetune(args: argparse.Namespace) -> int:
    from .. import load

    config = check(args)
    options = load_options(args)
    if args.nproc_per_node and not under_launcher():  # start torchrun, which runs this again
        if args.plan:
            raise UsageError("--plan runs in one process; drop --nproc-per-node.")
        if args.nproc_per_node < 1 or args.nnodes < 1:
            raise UsageError("--nproc-per-node and --nnodes must be at least 1.")
        return launch(
            args.argv, args.nproc_per_node, args.nnodes, args.rdzv_endpoint, args.node_rank
        )
    model = load(args.name, **options)
    return run(model, args, config)


@subcommand
def _finetune_command(sub: Any) -> None:
    p = add_command(
        sub, "finetune", cmd_finetune, help="fine-tune a model (or --plan: show what would train)"
    )
    p.add_argument("name", help="model id, alias or local folder")
    p.add_argument("--plan", action="store_true", help="list matched modules and parameter counts")
    p.add_argument("--method", default="lora", help="lora (default), ia3, bitfit, head, full, ...")
    p.add_argument(
        "--train",
        metavar="DATA",
        help="training data: CSV/TSV/JSONL file or class-per-folder directory",
    )
    p.add_argument("--eval", metavar="DATA", help="evaluation data, same forms as --train")
    p.add_argument(
        "--text-column",
        metavar="NAME",
        help="CSV/JSONL column holding the inputs (default: text, sentence or input)",
    )
    p.add_argument(
        "--label-column",
        metavar="NAME",
        help="CSV/JSONL column holding the labels (default: label, labels or class)",
    )
    p.add_argument("--encoding", help="encoding of CSV/JSONL files (default utf-8)")
    p.add_argument(
        "--output",
        metavar="DIR",
        help="output folder: the adapter goes to DIR/adapter (checkpoints to DIR/checkpoint)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an adapter already in --output (refused otherwise)",
    )
    p.add_argument(
        "--config",
        "-c",
        action="append",
        metavar="KEY=VALUE",
        help="a FineTuneConfig field, repeatable (epochs=3, learning_rate=1e-4, ...)",
    )
    add_load_options(p)
    add_launch_options(p)
