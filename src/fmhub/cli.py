"""The ``fmhub`` command. ``--help``, ``--version``, ``list``, ``info`` and ``plugins`` never import
torch.

Exit status: 0 done; 1 the work failed (a model that cannot load, an input a model cannot take, a
training run that stopped); 2 the command line is wrong (bad arguments, a missing or unreadable
file, an unknown model or option, an output that exists) -- always found before a model loads;
130 interrupted (Ctrl-C); 141 the reader of stdout went away (``fmhub list | head -3``), silently.

Adding a subcommand: write a function taking the sub-parsers object, decorate it with
:func:`subcommand`, and in it call :func:`add_command` (which adds ``-q``/``-v`` and the handler)::

    @subcommand
    def _eval_command(sub) -> None:
        p = add_command(sub, "eval", cmd_eval, help="score a model on labelled data")
        p.add_argument("name")
        add_load_options(p)

A handler ``cmd_x(args) -> int`` checks every argument and file first (raise :class:`UsageError`,
exit 2), then loads and works (an :class:`fmhub.FmhubError` then exits 1). Keep imports of torch
and of fmhub.model inside handlers so that ``fmhub --help`` stays instant. The function may live in
another module, which imports these helpers from :mod:`fmhub._clikit` (never from this
module): import that module at the bottom of this file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from ._clikit import (  # noqa: F401 - re-exported: the public names of the command-line kit
    _COMMON,
    _REGISTRARS,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PIPE,
    EXIT_USAGE,
    INPUT_FIELDS,
    USAGE_ERRORS,
    UsageError,
    _codec,
    _decode_message,
    _parse_value,
    _verbosity_parent,
    add_command,
    add_launch_options,
    add_load_options,
    check_input_file,
    check_model_name,
    json_default,
    key_values,
    load_options,
    read_inputs,
    subcommand,
    verbosity,
    write_jsonl,
)
from ._snapshot import fast_command, plugin_row, print_models, print_plugins
from .errors import FmhubError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the fast path of `fmhub list` imports this module

if TYPE_CHECKING:
    from typing import Any, TextIO

__all__ = ["build_parser", "main"]


def cmd_list(args: argparse.Namespace) -> int:
    from . import list_models

    specs = list_models(args.pattern)
    rows = [s.model_dump(mode="json", exclude_none=True) for s in specs]
    print_models(rows, args.pattern, args.json)
    _write_snapshot()
    return 0


def _write_snapshot() -> None:
    """After a full ``list`` / ``info`` / ``plugins``: save what they need for the next run's fast path."""
    from ._hub import get_hub
    from ._snapshot import write_snapshot

    try:
        write_snapshot(get_hub())
    except Exception:  # noqa: BLE001 - an optimisation only: the command itself has succeeded
        pass


@subcommand
def _list_command(sub: Any) -> None:
    p = add_command(sub, "list", cmd_list, help="list registered models (wildcards: 'hf:*bert*')")
    p.add_argument(
        "pattern",
        nargs="?",
        help="shell wildcards over ids and aliases; no wildcard: a substring (any case)",
    )
    p.add_argument("--json", action="store_true", help="print the full specs as JSON")


def cmd_info(args: argparse.Namespace) -> int:
    from . import model_info

    print(json.dumps(model_info(args.name).model_dump(mode="json", exclude_none=True), indent=2))
    _write_snapshot()
    return 0


@subcommand
def _info_command(sub: Any) -> None:
    p = add_command(sub, "info", cmd_info, help="show what a name resolves to")
    p.add_argument("name", help="model id, alias or local folder")


def cmd_plugins(args: argparse.Namespace) -> int:
    from . import plugins

    print_plugins([plugin_row(r) for r in plugins()], args.json)
    _write_snapshot()
    return 0


@subcommand
def _plugins_command(sub: Any) -> None:
    p = add_command(sub, "plugins", cmd_plugins, help="list plugins with their status and errors")
    p.add_argument("--json", action="store_true", help="print the records as JSON")


# ---------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------

#: Fields of a JSON Lines input object that hold the input, in order of preference.


def cmd_predict(args: argparse.Namespace) -> int:
    if args.output is not None:  # a data set to a file: streamed, resumable, sharded
        from .batch import cmd_predict_file

        return cmd_predict_file(args)
    # 1. Everything the command line says is checked before the model loads.
    if args.inputs and args.input is not None:
        raise UsageError("give inputs as arguments or with --input, not both.")
    if not args.inputs and args.input is None:
        raise UsageError("no inputs: give them as arguments, or --input FILE (- for stdin).")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}.")
    options = load_options(args)
    check_model_name(args.name)
    if args.input is not None:
        items = read_inputs(args.input, args.format, args.encoding)
    else:
        items = [(x, {}) for x in args.inputs]
    if not items:
        return 0
    # 2. The work.
    from . import load
    from ._progress import progress_bar
    from .results import to_jsonable

    model = load(args.name, **options)
    bs = args.batch_size or model.default_batch_size
    chunk = max(bs * 16, 512)  # results stream out chunk by chunk
    bar = progress_bar(
        len(items), desc="predict", unit="input", enabled=verbosity(args) >= 0, delay=2.0
    )
    try:
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            results = model.predict([x for x, _ in part], batch_size=bs, progress=False)
            for (x, extra), r in zip(part, results):
                write_jsonl({**extra, "input": x, "result": to_jsonable(r)})
            sys.stdout.flush()
            if bar is not None:
                bar.update(len(part))
    finally:
        if bar is not None:
            bar.close()
    return 0


@subcommand
def _predict_command(sub: Any) -> None:
    p = add_command(
        sub, "predict", cmd_predict, help="run a model on inputs, print one JSON line per input"
    )
    p.add_argument("name", help="model id, alias or local folder")
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="text, or a path to an image/audio file (or use --input)",
    )
    p.add_argument(
        "--input",
        "-i",
        metavar="FILE",
        help="read inputs from FILE, '-' for stdin (one per line, or JSON Lines)",
    )
    p.add_argument(
        "--format",
        choices=("lines", "jsonl", "csv", "tsv"),
        default=None,
        help="--input format: 'lines' (one input per line) or 'jsonl' (objects with "
        "a text/path/input field); with --output also csv/tsv; default: jsonl for "
        "*.jsonl files, csv/tsv by suffix, else lines",
    )
    p.add_argument("--encoding", default="utf-8", help="--input text encoding (default utf-8)")
    add_load_options(p)
    p.add_argument("--batch-size", type=int, default=None, help="inputs per batch (default 32)")
    p.add_argument(
        "--output",
        metavar="FILE",
        help="write results to FILE (JSON Lines, or .npy for embeddings) instead of "
        "stdout: --input streamed (a file, or a folder of images/audio), resumable "
        "(rerun the same command after an interruption), shardable over processes",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument(
        "--column",
        metavar="NAME",
        help="with --output: the CSV column / JSONL field holding the inputs",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=512,
        metavar="N",
        help="with --output: inputs per resumable chunk (default 512)",
    )
    add_launch_options(p)


# ---------------------------------------------------------------------------------------------
# The command itself.
# ---------------------------------------------------------------------------------------------


def _version() -> str:
    from . import __version__

    return f"fmhub {__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmhub",
        description="Pretrained models of every family behind one contract.",
        parents=[_COMMON],
        epilog="Exit status: 0 done, 1 the work failed, 2 bad command line (found before any "
        "model loads), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _import_subcommands()
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command. An expected failure is one line on stderr (with the plugin and stage it
    came from), never a traceback: exit status 2 for a bad command line, 1 for failed work."""
    fast = fast_command(list(sys.argv[1:] if argv is None else argv))
    if fast is not None:  # list / info / plugins from the start-up snapshot: no pydantic, no plugin
        return _run(fast)
    args = build_parser().parse_args(argv)  # --help, --version: exit 0; usage errors: exit 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a torchrun re-launch
    level = verbosity(args)
    from ._quiet import show_known_warnings

    def work() -> int:
        with warnings.catch_warnings(), show_known_warnings(level > 0):
            if level < 0:
                warnings.simplefilter("ignore")
            warnings.showwarning = _show_warning
            return args.func(args)

    return _run(work)


def _run(work: Any) -> int:
    """Run ``work()`` (its exit status, or None for 0), turning the expected failures into one
    line on stderr and an exit status."""
    try:
        code = work()
        sys.stdout.flush()
        return EXIT_OK if code is None else code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE
    except KeyboardInterrupt:
        print("fmhub: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except FmhubError as exc:
        _print_error(exc)
        return EXIT_USAGE if isinstance(exc, (UsageError, *USAGE_ERRORS)) else EXIT_FAILURE
    except OSError as exc:  # a full disk, a folder that vanished, a permission taken away
        where = f": {exc.filename!r}" if exc.filename else ""
        _print_error(f"{exc.strerror or exc}{where}")
        return EXIT_FAILURE


def _print_error(exc: BaseException | str) -> None:
    notes = "".join(f" {n}" for n in getattr(exc, "__notes__", ()))
    try:
        print(f"fmhub: error: {exc}{notes}", file=sys.stderr)
    except BrokenPipeError:  # pragma: no cover - stderr closed too
        pass


def _silence_stdout() -> None:
    """After the reader closed the pipe: point stdout at /dev/null so that the interpreter's final
    flush does not raise again (and print a traceback) on the way out."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests)
        pass


_original_showwarning = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A skipped plugin is one line on stderr, not a source location and a code excerpt."""
    from ._hub import FmhubPluginWarning

    if issubclass(category, FmhubPluginWarning):
        print(f"fmhub: warning: {message}", file=sys.stderr)
    else:
        _original_showwarning(message, category, filename, lineno, file, line)


def _import_subcommands() -> None:
    """Subcommands defined in other modules register themselves when imported (here, when the
    parser is built: the fast path of ``list`` / ``info`` needs none of them)."""
    from . import _deploy_cli, _generate_cli  # noqa: F401
    from .evaluation import cli as _evaluation_cli  # noqa: F401
    from .finetuning import cli as _finetune_cli  # noqa: F401


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
