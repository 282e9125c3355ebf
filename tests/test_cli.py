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
    code, out, _ = run(capsys, "predict", "toy-classifier", "3,1,-2,0.5", "-o", "seed=2",
                       "--option", "device=cpu", "--batch-size", "1")
    (row,) = jsonl(out)
    expected = fmhub.load("toy-classifier", seed=2)([3, 1, -2, 0.5])
    assert code == 0 and row["result"]["label"] == expected.label
    assert row["result"]["score"] == pytest.approx(expected.score)
    assert [t["label"] for t in row["result"]["top_k"]] == [t.label for t in expected.top_k]


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["predict", "toy:embed", "1,2"], 1,
         "input 0 is [1.0, 2.0]. (raised in plugin 'toy', stage 'preprocess', model 'toy:embed')"),
        (["predict", "toy:embed", "1,2,3,4", "-o", "sede=1"], 2, "unknown option 'sede'"),
        (["predict", "toy:embed", "1,2,3,4", "-o", "seed"], 2, "--option takes KEY=VALUE"),
        (["predict", "toy:embed", "1,2,3,4", "-o", "dtype=float16", "-o", "device=cpu"], 1,
         "not supported on CPU"),
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


def imports_of(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "fmhub", *argv],
                          capture_output=True, text=True, env=env, timeout=120)
    modules = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    return proc, modules


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["plugins"], ["info", "toy-embed"],
                                  ["list", "toy:*", "--json"]])
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
        heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "transformers", "timm",
                                                                  "torchaudio"))
        assert heavy == [], f"fmhub {' '.join(argv)} imported {heavy[:5]}"


def test_import_fmhub_imports_no_torch():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import fmhub; fmhub.list_models(); fmhub.model_info('toy-embed')"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FMHUB_LOAD_PLUGINS": "toy"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "fmhub" in modules and "pluggy" in modules
    assert not any(m == "torch" or m.startswith("torch.") for m in modules)


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("fmhub")
    proc = subprocess.run([str(script), "list", "toy:*"], capture_output=True, text=True,
                          env={**os.environ, "FMHUB_LOAD_PLUGINS": "toy"}, timeout=120)
    assert proc.returncode == 0 and "toy:embed" in proc.stdout


def test_real_command_lists_a_broken_plugin_and_warns_in_one_line(install_plugin):
    site, _ = install_plugin("broken", "import not_installed_lib\n")
    env = {**os.environ, "PYTHONPATH": str(site), "FMHUB_LOAD_PLUGINS": "toy,broken"}
    proc = subprocess.run([sys.executable, "-m", "fmhub", "plugins"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "fmhub: warning: fmhub plugin 'broken' (fmhub-broken) was skipped: import failed: "
        "ModuleNotFoundError: No module named 'not_installed_lib'. Run 'fmhub plugins' to see "
        "every plugin's status."]
    lines = proc.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("broken "))
    assert lines[i].split()[:2] == ["broken", "failed"] and "not_installed_lib" in lines[i + 1]
    assert any(line.split()[:2] == ["toy", "ok"] for line in lines)
    proc = subprocess.run([sys.executable, "-m", "fmhub", "list"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "toy:embed" in proc.stdout  # the others work
