"""The building blocks of fmhub's command line, shared by every module that adds a subcommand
(see :mod:`fmhub.cli`): exit codes, :class:`UsageError`, the subcommand registry, argument and
input helpers. Importing it imports no torch and no subcommand module."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import FmhubError, InvalidOptionError, UnknownModelError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `fmhub list` imports this module, keep it light

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

__all__ = [
    "add_launch_options",
    "USAGE_ERRORS",
    "check_input_file",
    "check_model_name",
    "json_default",
    "key_values",
    "read_inputs",
    "verbosity",
    "write_jsonl",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PIPE",
    "EXIT_USAGE",
    "UsageError",
    "add_command",
    "add_load_options",
    "load_options",
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
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print only results and errors: no warnings, no progress",
    )
    g.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="also show third-party library warnings that fmhub hides by default",
    )
    return p


_COMMON = _verbosity_parent()


def add_command(
    sub: Any,
    name: str,
    func: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` handled by ``func(args) -> exit status``, with ``-q``/``-v``."""
    p = sub.add_parser(name, help=help, description=description or help, parents=[_COMMON])
    p.set_defaults(func=func)
    return p


def add_load_options(p: argparse.ArgumentParser) -> None:
    """``-o/--option KEY=VALUE`` (repeatable): options passed to ``fmhub.load``."""
    p.add_argument(
        "--option",
        "-o",
        action="append",
        metavar="KEY=VALUE",
        help="load option, repeatable (device=cpu, dtype=bfloat16, ...); VALUE is "
        "read as JSON when it parses, else as a string",
    )


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


def add_launch_options(p: argparse.ArgumentParser) -> None:
    """``--nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT --node-rank R]``: start the
    command on several processes through torchrun (see docs/distributed.md)."""
    g = p.add_argument_group("distributed (torchrun)")
    g.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        metavar="N",
        help="run on N processes on this machine (one per GPU on CUDA; gloo on CPU)",
    )
    g.add_argument(
        "--nnodes",
        type=int,
        default=1,
        metavar="M",
        help="number of machines; run the same command on each (needs --rdzv-endpoint)",
    )
    g.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="rendezvous address every machine can reach (e.g. the first node's)",
    )
    g.add_argument(
        "--node-rank",
        type=int,
        default=None,
        metavar="R",
        help="this machine's rank (optional with the c10d rendezvous)",
    )


def check_model_name(name: str) -> None:
    """Resolve ``name`` without loading anything (an unknown name is exit status 2)."""
    from . import model_info

    model_info(name)


def check_input_file(path: str, what: str) -> Path:
    """``path`` exists and is a readable file (or folder, for ``what`` that allows one)."""
    from pathlib import Path

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


#: The JSONL fields an input is read from, in order.
INPUT_FIELDS = ("text", "path", "input")


def read_inputs(source: str, fmt: str | None, encoding: str) -> list[tuple[Any, dict[str, Any]]]:
    """``(input, fields to echo)`` for every input in ``source`` (a file, or ``-`` for stdin).

    ``lines``: one input per line, blank lines skipped. ``jsonl``: one JSON object per line with a
    ``text``, ``path`` or ``input`` field (or a bare JSON string); an ``id`` field is echoed.
    """
    from pathlib import Path

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
        raise UsageError(
            f"--encoding {encoding!r} is not an encoding Python knows "
            "(utf-8, latin-1, cp1252, utf-16, ...)."
        ) from None
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
            raise UsageError(
                f"{name} line {lineno} is not JSON ({exc.msg}); --format jsonl takes "
                "one JSON object per line, --format lines one input per line."
            ) from None
        if isinstance(obj, str):
            out.append((obj, {}))
            continue
        field = next((f for f in INPUT_FIELDS if isinstance(obj, dict) and f in obj), None)
        if field is None:
            raise UsageError(
                f"{name} line {lineno} has no {'/'.join(INPUT_FIELDS)} field: {line[:80]!r}."
            )
        out.append((obj[field], {"id": obj["id"]} if "id" in obj else {}))
    return out


def _codec(encoding: str) -> str:
    """utf-8 also reads a file that starts with a byte-order mark (as Excel writes them)."""
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _decode_message(name: str, exc: UnicodeDecodeError, encoding: str) -> str:
    return (
        f"{name} is not {encoding} text (byte 0x{exc.object[exc.start]:02x} at offset "
        f"{exc.start}); pass its encoding, e.g. --encoding cp1252 or --encoding latin-1."
    )


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
