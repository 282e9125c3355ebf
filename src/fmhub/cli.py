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
another module: import that module at the bottom of this file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import FmhubError, InvalidOptionError, UnknownModelError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PIPE",
    "EXIT_USAGE",
    "UsageError",
    "add_command",
    "add_load_options",
    "build_parser",
    "load_options",
    "main",
    "subcommand",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141  # 128 + SIGPIPE, what a C tool killed by the closed pipe would report

#: Errors that mean "the command line names something wrong": exit status 2.
USAGE_ERRORS: tuple[type[BaseException], ...] = (UnknownModelError, InvalidOptionError)


class UsageError(FmhubError, ValueError):
    """The command line is wrong: a bad or missing argument, an unreadable file, an output that
    exists. Exit status 2, found before any model loads."""


# ---------------------------------------------------------------------------------------------
# Registry of subcommands and shared argument helpers.
# ---------------------------------------------------------------------------------------------

_REGISTRARS: list[Callable[[Any], None]] = []


def subcommand(register: Callable[[Any], None]) -> Callable[[Any], None]:
    """Decorator: ``register(sub)`` adds one subcommand to the sub-parsers ``sub``. Commands
    appear in ``fmhub --help`` in the order they were registered."""
    _REGISTRARS.append(register)
    return register


def _verbosity_parent() -> argparse.ArgumentParser:
    # SUPPRESS: a subcommand's -q/-v do not reset what was given before the subcommand.
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="print only results and errors: no warnings, no progress")
    g.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="also show third-party library warnings that fmhub hides by default")
    return p


_COMMON = _verbosity_parent()


def add_command(sub: Any, name: str, func: Callable[[argparse.Namespace], int], *,
                help: str, description: str | None = None) -> argparse.ArgumentParser:
    """Add subcommand ``name`` handled by ``func(args) -> exit status``, with ``-q``/``-v``."""
    p = sub.add_parser(name, help=help, description=description or help, parents=[_COMMON])
    p.set_defaults(func=func)
    return p


def add_load_options(p: argparse.ArgumentParser) -> None:
    """``-o/--option KEY=VALUE`` (repeatable): options passed to ``fmhub.load``."""
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE",
                   help="load option, repeatable (device=cpu, dtype=bfloat16, ...); VALUE is "
                   "read as JSON when it parses, else as a string")


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def key_values(pairs: list[str] | None, flag: str = "--option") -> dict[str, Any]:
    """``["a=1", "b-c=x"]`` -> ``{"a": 1, "b_c": "x"}``; values read as JSON when they parse."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes KEY=VALUE, got {pair!r}")
        out[key.replace("-", "_")] = _parse_value(value)
    return out


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``-o KEY=VALUE`` options of ``args`` as keyword arguments for ``fmhub.load``."""
    return key_values(getattr(args, "option", None))


_options = load_options  # the name older code used


def add_launch_options(p: argparse.ArgumentParser) -> None:
    """``--nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT --node-rank R]``: start the
    command on several processes through torchrun (see docs/distributed.md)."""
    g = p.add_argument_group("distributed (torchrun)")
    g.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                   help="run on N processes on this machine (one per GPU on CUDA; gloo on CPU)")
    g.add_argument("--nnodes", type=int, default=1, metavar="M",
                   help="number of machines; run the same command on each (needs --rdzv-endpoint)")
    g.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                   help="rendezvous address every machine can reach (e.g. the first node's)")
    g.add_argument("--node-rank", type=int, default=None, metavar="R",
                   help="this machine's rank (optional with the c10d rendezvous)")


def check_model_name(name: str) -> None:
    """Resolve ``name`` without loading anything (an unknown name is exit status 2)."""
    from . import model_info

    model_info(name)


def check_input_file(path: str, what: str) -> Path:
    """``path`` exists and is a readable file (or folder, for ``what`` that allows one)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} {path!r} does not exist.")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{what} {path!r} is not readable.")
    return p


def verbosity(args: argparse.Namespace) -> int:
    """-1 with -q, 0 by default, the number of -v otherwise."""
    if getattr(args, "quiet", False):
        return -1
    return int(getattr(args, "verbose", 0) or 0)


# ---------------------------------------------------------------------------------------------
# list, info, plugins
# ---------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from . import list_models

    specs = list_models(args.pattern)
    if args.json:
        print(json.dumps([s.model_dump(mode="json", exclude_none=True) for s in specs], indent=2))
        return 0
    if not specs:
        print(f"No registered model matches {args.pattern!r}." if args.pattern else "No models.")
        return 0
    width = max(len(s.id) for s in specs)
    for s in specs:
        aliases = f"  (aliases: {', '.join(s.aliases)})" if s.aliases else ""
        print(f"{s.id:<{width}}  {s.task or '-':<22} {s.modality or '-':<6}{aliases}")
    return 0


@subcommand
def _list_command(sub: Any) -> None:
    p = add_command(sub, "list", cmd_list, help="list registered models (wildcards: 'hf:*bert*')")
    p.add_argument("pattern", nargs="?", help="shell wildcards over ids and aliases; no wildcard: "
                   "a substring (any case)")
    p.add_argument("--json", action="store_true", help="print the full specs as JSON")


def cmd_info(args: argparse.Namespace) -> int:
    from . import model_info

    print(json.dumps(model_info(args.name).model_dump(mode="json", exclude_none=True), indent=2))
    return 0


@subcommand
def _info_command(sub: Any) -> None:
    p = add_command(sub, "info", cmd_info, help="show what a name resolves to")
    p.add_argument("name", help="model id, alias or local folder")


def cmd_plugins(args: argparse.Namespace) -> int:
    from . import plugins

    recs = plugins()
    if args.json:
        print(json.dumps([
            {"name": r.name, "distribution": r.distribution, "version": r.version,
             "status": r.status, "namespaces": list(r.namespaces), "error": r.error}
            for r in recs], indent=2))
        return 0
    width = max(14, *(len(r.name) + 1 for r in recs))
    for r in recs:
        dist = f"{r.distribution or '-'} {r.version or ''}".rstrip()
        serves = ", ".join(n + ":" for n in r.namespaces) if r.status == "ok" else ""
        line = f"{r.name:<{width}} {r.status:<9} {dist:<28} {serves}".rstrip()
        print(line + (f"\n{'':{width}} error: {r.error}" if r.error else ""))
    return 0


@subcommand
def _plugins_command(sub: Any) -> None:
    p = add_command(sub, "plugins", cmd_plugins,
                    help="list plugins with their status and errors")
    p.add_argument("--json", action="store_true", help="print the records as JSON")


# ---------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------

#: Fields of a JSON Lines input object that hold the input, in order of preference.
INPUT_FIELDS = ("text", "path", "input")


def read_inputs(source: str, fmt: str | None, encoding: str) -> list[tuple[Any, dict[str, Any]]]:
    """``(input, fields to echo)`` for every input in ``source`` (a file, or ``-`` for stdin).

    ``lines``: one input per line, blank lines skipped. ``jsonl``: one JSON object per line with a
    ``text``, ``path`` or ``input`` field (or a bare JSON string); an ``id`` field is echoed.
    """
    name = "stdin" if source == "-" else repr(source)
    if fmt is None:
        fmt = "jsonl" if source.endswith((".jsonl", ".ndjson")) else "lines"
    try:
        if source == "-":
            stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else None
            raw = stream.read() if stream is not None else sys.stdin.read().encode()
        else:
            check_input_file(source, "--input")
            if Path(source).is_dir():
                raise UsageError(f"--input {source!r} is a folder; give a file of inputs.")
            raw = Path(source).read_bytes()
        text = raw.decode(_codec(encoding))
    except UnicodeDecodeError as exc:
        raise UsageError(_decode_message(name, exc, encoding)) from None
    except LookupError:
        raise UsageError(f"--encoding {encoding!r} is not an encoding Python knows "
                         "(utf-8, latin-1, cp1252, utf-16, ...).") from None
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}.") from None
    out: list[tuple[Any, dict[str, Any]]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if fmt == "lines":
            out.append((line, {}))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{name} line {lineno} is not JSON ({exc.msg}); --format jsonl takes "
                             "one JSON object per line, --format lines one input per line.") from None
        if isinstance(obj, str):
            out.append((obj, {}))
            continue
        field = next((f for f in INPUT_FIELDS if isinstance(obj, dict) and f in obj), None)
        if field is None:
            raise UsageError(f"{name} line {lineno} has no {'/'.join(INPUT_FIELDS)} field: "
                             f"{line[:80]!r}.")
        out.append((obj[field], {"id": obj["id"]} if "id" in obj else {}))
    return out


def _codec(encoding: str) -> str:
    """utf-8 also reads a file that starts with a byte-order mark (as Excel writes them)."""
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _decode_message(name: str, exc: UnicodeDecodeError, encoding: str) -> str:
    return (f"{name} is not {encoding} text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); pass its encoding, e.g. --encoding cp1252 or --encoding latin-1.")


def json_default(obj: Any) -> Any:
    """JSON form of what ``json`` does not know: numpy values, paths, dataclasses, sets."""
    import dataclasses

    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "model_dump"):  # pydantic
        return obj.model_dump(mode="json")
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, tensors
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_jsonl(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, default=json_default) + "\n")


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
    bar = progress_bar(len(items), desc="predict", unit="input",
                       enabled=verbosity(args) >= 0, delay=2.0)
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
    p = add_command(sub, "predict", cmd_predict,
                    help="run a model on inputs, print one JSON line per input")
    p.add_argument("name", help="model id, alias or local folder")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="text, or a path to an image/audio file (or use --input)")
    p.add_argument("--input", "-i", metavar="FILE",
                   help="read inputs from FILE, '-' for stdin (one per line, or JSON Lines)")
    p.add_argument("--format", choices=("lines", "jsonl", "csv", "tsv"), default=None,
                   help="--input format: 'lines' (one input per line) or 'jsonl' (objects with "
                   "a text/path/input field); with --output also csv/tsv; default: jsonl for "
                   "*.jsonl files, csv/tsv by suffix, else lines")
    p.add_argument("--encoding", default="utf-8", help="--input text encoding (default utf-8)")
    add_load_options(p)
    p.add_argument("--batch-size", type=int, default=None, help="inputs per batch (default 32)")
    p.add_argument("--output", metavar="FILE",
                   help="write results to FILE (JSON Lines, or .npy for embeddings) instead of "
                   "stdout: --input streamed (a file, or a folder of images/audio), resumable "
                   "(rerun the same command after an interruption), shardable over processes")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    p.add_argument("--column", metavar="NAME",
                   help="with --output: the CSV column / JSONL field holding the inputs")
    p.add_argument("--chunk-size", type=int, default=512, metavar="N",
                   help="with --output: inputs per resumable chunk (default 512)")
    add_launch_options(p)


# ---------------------------------------------------------------------------------------------
# The command itself.
# ---------------------------------------------------------------------------------------------


def _version() -> str:
    from . import __version__

    return f"fmhub {__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmhub", description="Pretrained models of every family behind one contract.",
        parents=[_COMMON],
        epilog="Exit status: 0 done, 1 the work failed, 2 bad command line (found before any "
        "model loads), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command. An expected failure is one line on stderr (with the plugin and stage it
    came from), never a traceback: exit status 2 for a bad command line, 1 for failed work."""
    args = build_parser().parse_args(argv)  # --help, --version: exit 0; usage errors: exit 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a torchrun re-launch
    level = verbosity(args)
    from ._quiet import show_known_warnings

    try:
        with warnings.catch_warnings(), show_known_warnings(level > 0):
            if level < 0:
                warnings.simplefilter("ignore")
            warnings.showwarning = _show_warning
            code = args.func(args)
            sys.stdout.flush()
            return code
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A skipped plugin is one line on stderr, not a source location and a code excerpt."""
    from ._hub import FmhubPluginWarning

    if issubclass(category, FmhubPluginWarning):
        print(f"fmhub: warning: {message}", file=sys.stderr)
    else:
        _original_showwarning(message, category, filename, lineno, file, line)


# Subcommands defined in other modules register themselves when imported here.
from .finetuning import cli as _finetune_cli  # noqa: F401

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
