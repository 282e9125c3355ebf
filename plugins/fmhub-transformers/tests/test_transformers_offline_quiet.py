"""Offline is fast and loading is quiet.

A cached model loads without the hub's minutes of retries when the hub cannot be reached (a short
connection probe, then cache only), and the known third-party warnings (torch's ``_pytree`` notes
when transformers imports torchao, PEFT's ``is_gradient_checkpointing`` FutureWarning, PEFT's
"could not find a config file") do not reach the user unless asked for (``fmhub -v``). Import-time
warnings and huggingface_hub's settings are per process, so the end-to-end checks run the real
command in a fresh process.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

import fmhub
from fmhub_transformers import _load

ROOT = Path(tempfile.gettempdir()) / f"fmhub-tf-tests-{os.getpid()}"  # see conftest
REPO = "tiny-org/bert-st"  # in ROOT/hub
NOISE = (
    "torch/utils/_pytree.py",
    "is an Enum subclass",
    "is_gradient_checkpointing",
    "Could not find a config file",
)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable_hub_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "FMHUB_SHOW_WARNINGS", "FMHUB_HF_PROBE_TIMEOUT")
    }
    env.update(
        HF_HUB_CACHE=str(ROOT / "hub"), HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", **extra
    )
    return env


def test_a_cached_model_loads_without_retries_when_the_hub_is_unreachable(quiet_finetune):
    """Without the probe this load spends about four minutes in the hub client's retries (every
    file of the repo, five times, with back-off); the timeout is the failure bound. The run is
    ``fmhub finetune hf:REPO`` with the hub unreachable (not offline): it loads the cached model
    and runs it forward and backward (one launch shared with the quietness test)."""
    proc = quiet_finetune
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"train_loss"' in proc.stdout  # the loaded model ran
    assert "Retrying" not in proc.stderr and "127.0.0.1" not in proc.stderr, proc.stderr[-3000:]


def test_the_probe(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(_load, "_probes", {})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert _load.hub_unreachable()
    with socket.socket() as server:  # something listening: reachable
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert not _load.hub_unreachable()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # offline already: no probe needed
    monkeypatch.setattr(_load, "_probes", {})
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert not _load.hub_unreachable() and _load._probes == {}
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv(_load.PROBE_TIMEOUT_ENV, "0")  # probe turned off
    assert not _load.hub_unreachable() and _load._probes == {}


def test_an_uncached_model_with_the_hub_unreachable_is_a_quick_clear_error(monkeypatch, tiny_zoo):
    from fmhub_transformers.testing import hub_cache_env

    with hub_cache_env(ROOT / "hub", offline=False):
        from huggingface_hub import constants

        monkeypatch.setattr(_load, "_probes", {})
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
        with pytest.raises(
            fmhub.PluginError,
            match=r"not in the local Hugging Face cache and the "
            r"hub \(http://127\.0\.0\.1:\d+\) cannot be reached",
        ):
            fmhub.load("hf:tiny-org/not-cached")


def run_finetune(
    tmp_path, *flags: str, offline: bool = True, timeout: int = 300
) -> subprocess.CompletedProcess:
    data = tmp_path / "train.csv"
    data.write_text(
        "text,label\n"
        + "".join(
            f"{t},{'pos' if i % 2 else 'neg'}\n"
            for i, t in enumerate(
                [
                    "A man is eating food.",
                    "A monkey is playing drums.",
                    "Short.",
                    "The girl is carrying a baby.",
                    "A woman is playing violin.",
                    "It was the best.",
                ]
            )
        )
    )
    env = unreachable_hub_env(**({"HF_HUB_OFFLINE": "1"} if offline else {}))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fmhub",
            *flags,
            "finetune",
            f"hf:{REPO}",
            "--train",
            str(data),
            "--output",
            str(tmp_path / f"out{len(flags)}"),
            "-c",
            "epochs=1",
            "-c",
            "batch_size=3",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def quiet_finetune(tiny_zoo, tmp_path_factory) -> subprocess.CompletedProcess:
    """``fmhub finetune hf:REPO`` (LoRA), the hub unreachable and not declared offline."""
    return run_finetune(tmp_path_factory.mktemp("quiet"), offline=False, timeout=120)


def test_load_and_lora_finetune_are_quiet_and_dash_v_shows_the_warnings(quiet_finetune, tmp_path):
    quiet = quiet_finetune
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert [n for n in NOISE if n in quiet.stderr] == [], quiet.stderr[-3000:]
    assert '"train_loss"' in quiet.stdout
    loud = run_finetune(tmp_path, "-v")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert "is_gradient_checkpointing" in loud.stderr  # the filter, not luck, kept them out
    if importlib.util.find_spec("torchao") is not None:
        assert "torch/utils/_pytree.py" in loud.stderr and "is an Enum subclass" in loud.stderr
    assert "Could not find a config file" not in loud.stderr  # no longer triggered at all


def test_library_finetune_hides_only_the_known_warnings(tiny_zoo, monkeypatch, tmp_path):
    data = [("A man is eating food.", "a"), ("Short.", "b")] * 2
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model = fmhub.load(str(tiny_zoo["bert-st"]))
        fmhub.finetune(model, data, epochs=1, progress=False, output_dir=str(tmp_path / "a"))
        warnings.warn("a warning of the caller's own", UserWarning, stacklevel=1)
    texts = [str(w.message) for w in seen]
    assert not [t for t in texts if any(n in t for n in NOISE)], texts
    assert "a warning of the caller's own" in texts  # not a global mute
    monkeypatch.setenv("FMHUB_SHOW_WARNINGS", "1")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fmhub.finetune(fmhub.load(str(tiny_zoo["bert-st"])), data, epochs=1, progress=False)
    assert any("is_gradient_checkpointing" in str(w.message) for w in seen)
