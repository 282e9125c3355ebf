"""The ``fmhub`` command, in process (output, exit status) and as a real process (what it imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fmhub
from fmhub.cli import main

HEAVY = ("torch", "numpy", "transformers", "timm", "torchaudio", "fmhub.model")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def jsonl(text: str) -> list:
    return [json.loads(line) for line in text.splitlines()]


def test_list(toy_hub, capsys):
    code, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].split()[:3] == ["toy:classify", "classification", "vector"]
    assert "(aliases: toy-embed)" in lines[1]


def test_list_pattern_and_json(toy_hub, capsys):
    code, out, _ = run(capsys, "list", "toy:c*")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["toy:classify"]
    code, out, _ = run(capsys, "list", "*embed*", "--json")
    data = json.loads(out)
    assert [d["id"] for d in data] == ["toy:embed"] and data[0]["aliases"] == ["toy-embed"]
    code, out, _ = run(capsys, "list", "nothing*")
    assert code == 0 and out.strip() == "No registered model matches 'nothing*'."


def test_info(toy_hub, capsys):
    code, out, _ = run(capsys, "info", "toy-classifier")
    info = json.loads(out)
    assert code == 0 and info["id"] == "toy:classify" and info["plugin"] == "toy"
    assert info["task"] == "classification" and info["license"] == "MIT"


def test_info_unknown_name_is_a_one_line_error(toy_hub, capsys):
    code, out, err = run(capsys, "info", "toy:embd")
    assert code == 2 and out == ""  # a usage error: the name on the command line is wrong
    assert err.startswith("fmhub: error: Unknown model 'toy:embd'. Did you mean 'toy:embed'?")


def test_plugins_lists_status_namespaces_and_errors(install_plugin, monkeypatch, use_hub, capsys):
    install_plugin("broken", "raise RuntimeError('needs libfoo')\n")
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "toy,broken")
    with pytest.warns(fmhub.FmhubPluginWarning):
        use_hub(fmhub.Hub())
    code, out, _ = run(capsys, "plugins")
    lines = out.splitlines()
    assert code == 0
    broken = next(i for i, line in enumerate(lines) if line.startswith("broken "))
    assert lines[broken].split()[:3] == ["broken", "failed", "fmhub-broken"]
    assert "error: import failed: RuntimeError: needs libfoo" in lines[broken + 1]
    toy = next(line for line in lines if line.startswith("toy "))
    assert toy.split() == ["toy", "ok", "fmhub-toy", "0.1.0", "toy:"]
    code, out, _ = run(capsys, "plugins", "--json")
    recs = {r["name"]: r for r in json.loads(out)}
    assert recs["broken"]["status"] == "failed" and "libfoo" in recs["broken"]["error"]
    assert recs["toy"]["namespaces"] == ["toy"]


def test_predict_prints_json_results(toy_hub, capsys):
    code, out, _ = run(capsys, "predict", "toy:embed", "0.1,0.2,0.3,0.4", "1,-1,0.5,2")
    data = jsonl(out)
    expected = fmhub.load("toy:embed").predict([[0.1, 0.2, 0.3, 0.4], [1, -1, 0.5, 2]])
    assert code == 0 and [d["input"] for d in data] == ["0.1,0.2,0.3,0.4", "1,-1,0.5,2"]
    np.testing.assert_allclose([d["result"] for d in data], np.stack(expected), rtol=1e-6)


def test_predict_classification_with_options(toy_hub, capsys):
    code, out, _ = run(
        capsys,
        "predict",
        "toy-classifier",
        "3,1,-2,0.5",
        "-o",
        "seed=2",
        "--option",
        "device=cpu",
        "--batch-size",
        "1",
    )
    (row,) = jsonl(out)
    expected = fmhub.load("toy-classifier", seed=2)([3, 1, -2, 0.5])
    assert code == 0 and row["result"]["label"] == expected.label
    assert row["result"]["score"] == pytest.approx(expected.score)
    assert [t["label"] for t in row["result"]["top_k"]] == [t.label for t in expected.top_k]


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (
            ["predict", "toy:embed", "1,2"],
            1,
            "Input 0: toy models take 4 numbers per input, got [1.0, 2.0]. "
            "(raised in plugin 'toy', stage 'preprocess', model 'toy:embed')",
        ),
        (["predict", "toy:embed", "1,2,3,4", "-o", "sede=1"], 2, "unknown option 'sede'"),
        (["predict", "toy:embed", "1,2,3,4", "-o", "seed"], 2, "--option takes KEY=VALUE"),
        (
            ["predict", "toy:embed", "1,2,3,4", "-o", "dtype=float16", "-o", "device=cpu"],
            1,
            "not supported on CPU",
        ),
        (["predict", "timm:resnet18", "cat.png"], 2, "install fmhub-timm"),
    ],
)
def test_predict_errors_are_messages_not_tracebacks(toy_hub, capsys, argv, status, message):
    code, out, err = run(capsys, *argv)
    assert code == status and out == "" and err.startswith("fmhub: error: ") and message in err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for command in ("list", "info", "plugins", "predict"):
        assert command in out


# ---------------------------------------------------------------------------------------------
# The real command in a fresh process: what it imports (python -X importtime shows every import).
# ---------------------------------------------------------------------------------------------


def imports_of(
    argv: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fmhub", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    modules = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    return proc, modules


@pytest.mark.parametrize(
    "argv", [["--help"], ["list"], ["plugins"], ["info", "toy-embed"], ["list", "toy:*", "--json"]]
)
def test_command_imports_no_torch(argv):
    env = {**os.environ, "FMHUB_LOAD_PLUGINS": "toy"}
    proc, modules = imports_of(argv, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fmhub.cli" in modules  # the probe works
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY) == []


def test_command_with_every_installed_plugin_imports_no_family_library():
    """``fmhub list`` and ``fmhub plugins`` with the first-party plugins installed (whatever is
    installed in this environment) import none of torch, transformers, timm, torchaudio."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMHUB_")}
    for argv in (["list"], ["plugins"]):
        proc, modules = imports_of(argv, env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        heavy = sorted(
            m for m in modules if m.split(".")[0] in ("torch", "transformers", "timm", "torchaudio")
        )
        assert heavy == [], f"fmhub {' '.join(argv)} imported {heavy[:5]}"


def test_import_fmhub_imports_no_torch():
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import fmhub; fmhub.list_models(); fmhub.model_info('toy-embed')",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FMHUB_LOAD_PLUGINS": "toy"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "fmhub" in modules and "pluggy" in modules
    assert not any(m == "torch" or m.startswith("torch.") for m in modules)


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("fmhub")
    proc = subprocess.run(
        [str(script), "list", "toy:*"],
        capture_output=True,
        text=True,
        env={**os.environ, "FMHUB_LOAD_PLUGINS": "toy"},
        timeout=120,
    )
    assert proc.returncode == 0 and "toy:embed" in proc.stdout


def test_real_command_lists_a_broken_plugin_and_warns_in_one_line(install_plugin):
    site, _ = install_plugin("broken", "import not_installed_lib\n")
    env = {**os.environ, "PYTHONPATH": str(site), "FMHUB_LOAD_PLUGINS": "toy,broken"}
    proc = subprocess.run(
        [sys.executable, "-m", "fmhub", "plugins"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "fmhub: warning: fmhub plugin 'broken' (fmhub-broken) was skipped: import failed: "
        "ModuleNotFoundError: No module named 'not_installed_lib'. Run 'fmhub plugins' to see "
        "every plugin's status."
    ]
    lines = proc.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("broken "))
    assert lines[i].split()[:2] == ["broken", "failed"] and "not_installed_lib" in lines[i + 1]
    assert any(line.split()[:2] == ["toy", "ok"] for line in lines)
    proc = subprocess.run(
        [sys.executable, "-m", "fmhub", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0 and "toy:embed" in proc.stdout  # the others work


# ---------------------------------------------------------------------------------------------
# A Unix tool: exit statuses, --version, inputs from files and stdin, JSON Lines, broken pipes.
# ---------------------------------------------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"fmhub {fmhub.__version__}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "toy:embed"], "no inputs"),
        (["predict", "toy:embed", "1,2,3,4", "--input", "-"], "not both"),
        (["predict", "toy:embed", "--input", "missing.txt"], "'missing.txt' does not exist"),
        (["predict", "toy:embed", "--input", "in.txt", "--encoding", "nope"], "--encoding 'nope'"),
        (["predict", "toy:embd", "--input", "in.txt"], "Did you mean 'toy:embed'?"),
        (["predict", "toy:embed", "--input", "in.jsonl"], "line 2 is not JSON"),
        (["predict", "toy:embed", "1,2,3,4", "--batch-size", "0"], "--batch-size must be"),
    ],
)
def test_usage_errors_exit_2_before_any_model_loads(
    toy_hub, capsys, monkeypatch, tmp_path, argv, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("1,2,3,4\n")
    (tmp_path / "in.jsonl").write_text('{"text": "1,2,3,4"}\n{"text": \n')
    monkeypatch.setattr(fmhub.Hub, "load", lambda *a, **k: pytest.fail("a model was loaded"))
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and message in err
    assert err.startswith("fmhub: error: ") and err.count("\n") == 1


def test_argparse_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict"])
    assert exit_.value.code == 2 and "usage: fmhub predict" in capsys.readouterr().err


def test_predict_reads_a_file_of_lines_and_writes_json_lines(toy_hub, capsys, tmp_path):
    xs = [f"{i},{-i},0.5,{i / 10}" for i in range(70)]
    (tmp_path / "in.txt").write_text("\n".join(xs[:40]) + "\n\n" + "\r\n".join(xs[40:]) + "\n")
    code, out, _ = run(
        capsys, "predict", "toy:embed", "--input", str(tmp_path / "in.txt"), "--batch-size", "8"
    )
    rows = jsonl(out)
    assert code == 0 and [r["input"] for r in rows] == xs  # one line per input, in order
    expected = fmhub.load("toy:embed").predict([[float(v) for v in x.split(",")] for x in xs])
    np.testing.assert_allclose([r["result"] for r in rows], np.stack(expected), rtol=1e-6)


def test_predict_reads_jsonl_from_stdin(toy_hub, capsys, monkeypatch):
    import io

    lines = ['{"id": 7, "text": "3,1,-2,0.5"}', '"1,1,1,1"', '{"input": "0,0,1,0"}']
    stdin = io.TextIOWrapper(io.BytesIO(("\n".join(lines) + "\n").encode()))
    monkeypatch.setattr("sys.stdin", stdin)
    code, out, _ = run(capsys, "predict", "toy-classifier", "--input", "-", "--format", "jsonl")
    rows = jsonl(out)
    model = fmhub.load("toy-classifier")
    assert code == 0 and [r.get("id") for r in rows] == [7, None, None]
    assert [r["input"] for r in rows] == ["3,1,-2,0.5", "1,1,1,1", "0,0,1,0"]
    for row, x in zip(rows, ([3, 1, -2, 0.5], [1, 1, 1, 1], [0, 0, 1, 0])):
        expected = model(x)
        assert row["result"]["label"] == expected.label
        assert row["result"]["score"] == pytest.approx(expected.score)
        assert [t["index"] for t in row["result"]["top_k"]] == [t.index for t in expected.top_k]


def test_predict_non_utf8_input_is_one_line_naming_encoding(toy_hub, capsys, tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes("1,2,3,4 # caf\xe9\n".encode("latin-1"))
    code, out, err = run(capsys, "predict", "toy:embed", "--input", str(path))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "is not utf-8 text (byte 0xe9" in err and "--encoding" in err


def test_a_failure_while_working_exits_1(toy_hub, capsys, tmp_path):
    (tmp_path / "in.txt").write_text("1,2,3,4\n1,2\n")
    code, out, err = run(capsys, "predict", "toy:embed", "--input", str(tmp_path / "in.txt"))
    assert code == 1 and out == "" and err.startswith("fmhub: error: ")
    assert "Input 1: toy models take 4 numbers per input, got [1.0, 2.0]" in err


def test_predict_progress_lines_away_from_a_terminal(toy_hub, capsys, monkeypatch):
    from fmhub import _progress

    monkeypatch.setenv(_progress.INTERVAL_ENV, "0.0001")
    code, _, err = run(capsys, "predict", "toy:embed", *["1,2,3,4"] * 600)
    lines = [line for line in err.splitlines() if line.startswith("predict: ")]
    assert code == 0 and lines and lines[-1].startswith("predict: 600/600 inputs (100%)")
    code, _, err = run(capsys, "-q", "predict", "toy:embed", *["1,2,3,4"] * 600)
    assert code == 0 and err == ""


def test_heartbeat_prints_at_a_steady_interval():
    import io
    import time

    from fmhub._progress import Heartbeat

    buf = io.StringIO()
    hb = Heartbeat(total=10, desc="fine-tune", unit="step", interval=0.02, stream=buf)
    hb.update(3)
    hb.set_postfix(loss="0.5000")
    deadline = time.monotonic() + 30
    while buf.getvalue().count("\n") < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    hb.update(7)
    hb.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) >= 4  # three while running, one at the end
    assert lines[0].startswith("fine-tune: 3/10 steps (30%), loss=0.5000, ")
    assert "elapsed" in lines[0] and "left" in lines[0]
    assert lines[-1].startswith("fine-tune: 10/10 steps (100%), loss=0.5000, ")


def many_models_plugin(install_plugin, n: int = 4000) -> Path:
    site, _ = install_plugin(
        "many",
        f"""
        import fmhub
        from fmhub import hookimpl

        @hookimpl
        def fmhub_register_namespaces(register):
            register(fmhub.Namespace(name="many", distribution="fmhub-many"))

        @hookimpl
        def fmhub_register_models(register):
            for i in range({n}):
                register(fmhub.ModelSpec(id=f"many:model-{{i:05d}}", task="embedding",
                                         modality="vector"))
        """,
    )
    return site


@pytest.mark.parametrize("argv", [["list"], ["predict", "toy:embed", "--input", "-"]])
def test_a_closed_pipe_ends_the_command_quietly(install_plugin, argv):
    """``fmhub list | head -3``: the reader goes away; no traceback, exit status 141."""
    site = many_models_plugin(install_plugin)
    env = {
        **os.environ,
        "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "FMHUB_LOAD_PLUGINS": "toy,many",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmhub", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    if argv[0] == "predict":  # far more output than a pipe holds
        proc.stdin.write(b"1,2,3,4\n" * 5000)
    proc.stdin.close()
    head = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    try:
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    assert all(head) and (argv[0] != "list" or head[0].startswith(b"many:model-00000"))
    assert err == "" and code == 141


#: A generative plugin without a library: replies "turnN: <the last message's words>" (N: the
#: number of messages it got, so the history shows), one word a streamed piece, at most
#: max_new_tokens words. The real chat loop in a fresh process costs torch's import, no more.
ECHO = """
import fmhub
from fmhub import hookimpl
from fmhub.results import Generation


@hookimpl
def fmhub_register_namespaces(register):
    register(fmhub.Namespace(name="echo", distribution="fmhub-echo"))


@hookimpl
def fmhub_register_models(register):
    register(fmhub.ModelSpec(id="echo:chat", task="text-generation"))


@hookimpl
def fmhub_load(spec, options):
    import torch

    return fmhub.Loaded(module=torch.nn.Identity(), task="text-generation")


@hookimpl
def fmhub_preprocess(model, inputs, options):
    import torch

    return {
        "turns": torch.tensor([len(messages) for messages in inputs]),
        "last": [messages[-1]["content"] for messages in inputs],
    }


@hookimpl
def fmhub_forward(model, batch, options, stream):
    out = []
    for i, (turns, last) in enumerate(zip(batch["turns"].tolist(), batch["last"])):
        words = [f"turn{turns}:", *last.split()]
        words = words[: options.max_new_tokens]
        for k, word in enumerate(words):
            if stream is not None:
                stream(i, (" " if k else "") + word)
        out.append(words)
    return {"turns": model.module(batch["turns"]), "words": out}


@hookimpl
def fmhub_postprocess(model, outputs, batch, options):
    return [
        Generation(" ".join(w), "length", len(last.split()), len(w))
        for w, last in zip(outputs["words"], batch["last"])
    ]
"""


def test_chat_as_a_subprocess_with_stdin_piped(install_plugin):
    """``printf 'Hello\\nBye\\n' | fmhub chat MODEL``: one streamed reply a line, the history
    kept, the end of input ends the chat (exit 0). The real stdin pipe of a fresh process, with a
    library-free generative plugin; the Transformers chat models' conversation is
    fmhub-transformers' test_transformers_generate_cli (in process)."""
    site, _ = install_plugin("echo", ECHO, dist="fmhub-echo")
    env = {
        **os.environ,
        "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "FMHUB_LOAD_PLUGINS": "echo",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "fmhub", "chat", "echo:chat", "-o", "max_new_tokens=4"],
        input="Hello there\n\nBye now, said the man\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # the blank line skipped; turn 3 = user, assistant, user: the reply came back into the history
    assert proc.stdout == "turn1: Hello there\nturn3: Bye now, said\n"
    assert "Ctrl-D" not in proc.stderr  # not a terminal: no prompt


def test_known_warnings_are_hidden_only_inside_the_block_and_nest(monkeypatch):
    import logging
    import threading
    import warnings

    from fmhub._quiet import known_warnings_hidden, show_known_warnings

    monkeypatch.delenv("FMHUB_SHOW_WARNINGS", raising=False)
    pytree = logging.getLogger("torch.utils._pytree")
    note = (
        "<enum 'KernelPreference'> is an Enum subclass and is now natively supported by "
        "torch.compile as an opaque value type."
    )

    def emit() -> list[str]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.filterwarnings("always", append=True)  # after fmhub's entries
            warnings.warn_explicit(
                "`is_gradient_checkpointing` is deprecated and will be removed",
                FutureWarning,
                "modeling_utils.py",
                1,
                module="transformers.modeling_utils",
            )
            warnings.warn("something else", UserWarning, stacklevel=1)
        records: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda r: records.append(r.getMessage())
        pytree.addHandler(handler)
        try:
            pytree.warning(note)
        finally:
            pytree.removeHandler(handler)
        return [str(w.message) for w in seen] + records

    before = list(warnings.filters)
    assert len(emit()) == 3
    with show_known_warnings(), known_warnings_hidden():  # fmhub -v
        assert len(emit()) == 3
    with known_warnings_hidden():
        with known_warnings_hidden():
            assert emit() == ["something else"]
        warnings.filterwarnings("ignore", message="installed by a library meanwhile")
        assert emit() == ["something else"]
        done = threading.Event()

        def other_thread() -> None:
            with known_warnings_hidden():
                pass
            done.set()

        threading.Thread(target=other_thread).start()
        assert done.wait(30) and emit() == ["something else"]  # its block did not end ours
    assert len(emit()) == 3
    # ours are gone, the filter a library installed inside the block stays
    assert warnings.filters[0][1].pattern == "installed by a library meanwhile"
    warnings.filters.remove(warnings.filters[0])
    assert warnings.filters == before


def test_an_os_error_while_working_is_one_line_exit_1(toy_hub, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/data/out")

    monkeypatch.setattr(fmhub.Hub, "load", fail)
    code, out, err = run(capsys, "predict", "toy:embed", "1,2,3,4")
    assert (code, out, err) == (1, "", "fmhub: error: Permission denied: '/data/out'\n")


def test_verbosity_flags_go_before_or_after_the_subcommand(toy_hub, capsys, monkeypatch):
    from fmhub import cli

    seen = []
    monkeypatch.setattr(cli, "cmd_list", lambda args: seen.append(cli.verbosity(args)) or 0)
    for argv, level in (
        (["list"], 0),
        (["-v", "list"], 1),
        (["list", "-v", "-v"], 2),
        (["-q", "list"], -1),
        (["list", "--quiet"], -1),
    ):
        seen.clear()
        assert main(argv) == 0 and seen == [level], argv


def test_import_fmhub_imports_neither_pydantic_nor_pluggy_and_every_name_resolves():
    code = (
        "import sys, fmhub\n"
        "early = sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pluggy') "
        "or m.startswith(('fmhub.', 'importlib.metadata')))\n"
        "assert early == [], early\n"
        "from fmhub import ModelSpec, hookimpl, InputError\n"
        "assert fmhub.errors.InputError is InputError and ModelSpec.__module__ == 'fmhub.spec'\n"
        "missing = [n for n in fmhub.__all__ if not hasattr(fmhub, n)]\n"
        "assert missing == [], missing\n"
        "assert set(fmhub.__all__) <= set(dir(fmhub))\n"
        "try:\n"
        "    fmhub.no_such_name\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_name' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
