"""``fmhub generate`` and ``fmhub chat``: text from a generative model, streamed as it is decoded."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._clikit import UsageError, add_command, key_values, subcommand, verbosity

__all__ = ["cmd_chat", "cmd_generate"]


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--option",
        "-o",
        action="append",
        metavar="KEY=VALUE",
        help="generation option, repeatable (max_new_tokens=64, temperature=0.7, "
        "seed=1, stop='\\n', ...); VALUE is read as JSON when it parses",
    )
    p.add_argument(
        "--load-option",
        "-l",
        action="append",
        metavar="KEY=VALUE",
        help="load option, repeatable (device=cpu, dtype=bfloat16, ...)",
    )


def _load(args: argparse.Namespace):
    from . import load
    from ._clikit import check_model_name
    from ._quiet import known_warnings_hidden

    check_model_name(args.name)
    options = key_values(args.option, "--option")
    load_opts = key_values(args.load_option, "--load-option")
    with known_warnings_hidden():
        model = load(args.name, **load_opts)
    if model.call_options is None:
        raise UsageError(
            f"{args.name!r} (task {model.task}) does not generate text; use 'fmhub predict'."
        )
    model.parse_options(**options)  # a bad option is reported before any output
    return model, options


def _stream(model: Any, x: Any, options: dict[str, Any], args: argparse.Namespace) -> str:
    stream = model.stream(x, **options)
    with stream:
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    r = stream.result
    if r is not None and verbosity(args) > 0:
        print(
            f"[{r.finish_reason}: {r.prompt_tokens} prompt + {r.completion_tokens} generated "
            "tokens]",
            file=sys.stderr,
        )
    return getattr(r, "text", "")


def cmd_generate(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise UsageError("the prompt is empty; give some text (or '-' to read it from stdin).")
    model, options = _load(args)
    _stream(model, prompt, options, args)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    model, options = _load(args)
    tty = sys.stdin.isatty()
    messages: list[dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    if tty:
        print(f"Chatting with {model.spec.id}; Ctrl-D ends.", file=sys.stderr)
    while True:
        if tty:
            sys.stderr.write("> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:  # Ctrl-D / end of input
            if tty:
                sys.stderr.write("\n")
            return 0
        text = line.rstrip("\n")
        if not text.strip():
            continue
        messages.append({"role": "user", "content": text})
        reply = _stream(model, list(messages), options, args)
        messages.append({"role": "assistant", "content": reply})


@subcommand
def _generate_command(sub: Any) -> None:
    p = add_command(
        sub,
        "generate",
        cmd_generate,
        help="continue a prompt with a generative model, streaming the text",
    )
    p.add_argument("name", help="model id, alias or local folder")
    p.add_argument("prompt", help="the prompt ('-' reads it from stdin)")
    _add_options(p)


@subcommand
def _chat_command(sub: Any) -> None:
    p = add_command(
        sub,
        "chat",
        cmd_chat,
        help="chat with a model that has a chat template (one line a turn; Ctrl-D ends)",
    )
    p.add_argument("name", help="model id, alias or local folder")
    p.add_argument("--system", help="a system message that opens the conversation")
    _add_options(p)
