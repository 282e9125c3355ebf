"""``fmhub generate`` streams a continuation; ``fmhub chat`` keeps the conversation and ends at
end of input (Ctrl-D); stdin piped, in process. The real stdin pipe of a fresh ``fmhub chat``
process is tests/test_cli.py's test_chat_as_a_subprocess_with_stdin_piped (a library-free
generative plugin: the chat loop is the core's, and a fresh process importing Transformers costs
seconds)."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import fmhub
from fmhub import hookimpl
from fmhub.cli import main

ROOT = Path(tempfile.gettempdir()) / f"fmhub-tf-tests-{os.getpid()}"  # as in conftest.py


class Spy:
    """Cross-cutting: records what each preprocess call received."""

    def __init__(self):
        self.inputs = []

    @hookimpl(wrapper=True)
    def fmhub_preprocess(self, model, inputs):
        self.inputs.append(list(inputs))
        return (yield)


def test_generate_streams_the_same_text_as_the_api(tiny_zoo, capsys):
    folder = str(ROOT / "gpt2-lm")
    rc = main(
        [
            "generate",
            folder,
            "The quick brown fox",
            "-o",
            "max_new_tokens=8",
            "-o",
            "min_new_tokens=8",
        ]
    )
    out = capsys.readouterr().out
    expected = fmhub.load(folder)("The quick brown fox", max_new_tokens=8, min_new_tokens=8).text
    assert rc == 0 and out == expected + "\n"


def test_generate_refuses_bad_options_and_non_generative_models(tiny_zoo, capsys):
    folder = str(ROOT / "gpt2-lm")
    assert main(["generate", folder, "x", "-o", "max_tokens=3"]) == 2
    assert "Valid options" in capsys.readouterr().err
    assert main(["generate", folder, "   "]) == 2
    assert main(["generate", str(ROOT / "bert-st"), "hello"]) == 2
    assert "does not generate" in capsys.readouterr().err


def test_chat_keeps_the_conversation_and_ends_at_end_of_input(tiny_zoo, capsys, monkeypatch):
    spy = Spy()
    hub = fmhub.Hub()
    hub.register(spy, name="spy")
    previous = fmhub.set_hub(hub)
    try:
        monkeypatch.setattr(sys, "stdin", io.StringIO("Hello\n\nAnd then?\n"))
        rc = main(
            [
                "chat",
                str(ROOT / "llama-lm"),
                "--system",
                "Be brief.",
                "-o",
                "max_new_tokens=5",
                "-o",
                "min_new_tokens=5",
            ]
        )
    finally:
        fmhub.set_hub(previous)
    out = capsys.readouterr().out.split("\n")
    assert rc == 0 and len(out) == 3 and out[2] == ""  # two replies, blank line skipped
    first, second = spy.inputs[0][0], spy.inputs[1][0]
    assert [m["role"] for m in first] == ["system", "user"]
    assert second == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": out[0]},
        {"role": "user", "content": "And then?"},
    ]


def test_chat_with_a_model_without_a_chat_template_is_a_clear_error(tiny_zoo, capsys, monkeypatch):
    """In process: tests/test_cli.py's subprocess test covers the real stdin pipe."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello\n"))
    assert main(["chat", str(ROOT / "gpt2-lm")]) == 1
    assert "no chat template" in capsys.readouterr().err
