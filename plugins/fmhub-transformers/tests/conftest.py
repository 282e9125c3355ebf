"""Tiny checkpoints for the fmhub-transformers tests, built once per session (about a second).

Test modules name them by path or repo id at import time, so the session folder is a fixed
function of the process id (see ``ROOT`` in each module). Modules that load by repo id enter
``hub_cache_env`` in a module-scoped fixture, so the offline hub cache never leaks into other
plugins' tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(tempfile.gettempdir()) / f"fmhub-tf-tests-{os.getpid()}"

#: name -> (arch, task, build options, hub repo id or None for a local folder only)
ZOO = {
    "bert-st": (
        "bert",
        "embedding",
        {"pooling": "mean", "normalize": True, "max_seq_length": 32},
        "tiny-org/bert-st",
    ),
    "distilbert-mlm": ("distilbert", "fill-mask", {}, "tiny-org/distilbert-mlm"),
    "deberta-cls": ("deberta-v2", "classification", {}, "tiny-org/deberta-cls"),
    "roberta-cls": ("roberta", "classification", {"labels": ["sad", "neutral", "happy"]}, None),
    "electra-ner": ("electra", "token-classification", {}, None),
    "mpnet-emb": ("mpnet", "embedding", {}, None),
    "xlmr-mlm": ("xlm-roberta", "fill-mask", {}, None),
}

#: Generative models: name -> (arch, hub repo id or None for a local folder only)
GEN_ZOO = {
    "gpt2-lm": ("gpt2", None),
    "llama-lm": ("llama", "tiny-org/llama-lm"),
    "t5-s2s": ("t5", "tiny-org/t5-s2s"),
    "bart-s2s": ("bart", None),
}


#: Audio encoders: name -> (arch, task, hub repo id or None for a local folder only)
AUDIO_ZOO = {
    "w2v-ctc": ("wav2vec2", "transcription", "tiny-org/w2v-ctc"),
    "hubert-ctc": ("hubert", "transcription", None),
    "wavlm-ks": ("wavlm", "classification", "tiny-org/wavlm-ks"),
    "ast-cls": ("ast", "classification", "tiny-org/ast-cls"),
    "w2v-emb": ("wav2vec2", "embedding", None),
    "hubert-emb": ("hubert", "embedding", "tiny-org/hubert-emb"),
    "ast-emb": ("ast", "embedding", None),
}


@pytest.fixture(scope="session", autouse=True)
def tiny_zoo():
    """Build every ZOO model under ROOT and install the hub ones into ROOT/hub."""
    from fmhub_transformers.testing import build_tiny_model, install_in_hub_cache

    ROOT.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (arch, task, opts, repo) in ZOO.items():
        paths[name] = build_tiny_model(ROOT / name, arch=arch, task=task, **opts)
        if repo:
            install_in_hub_cache(ROOT / "hub", repo, paths[name])
    from fmhub_transformers.testing import build_tiny_generative

    for name, (arch, repo) in GEN_ZOO.items():
        paths[name] = build_tiny_generative(ROOT / name, arch)
        if repo:
            install_in_hub_cache(ROOT / "hub", repo, paths[name])
    from fmhub_transformers.testing import build_tiny_whisper

    paths["whisper-asr"] = build_tiny_whisper(ROOT / "whisper-asr")
    install_in_hub_cache(ROOT / "hub", "tiny-org/whisper-asr", paths["whisper-asr"])
    from fmhub_transformers.testing import build_tiny_audio

    for name, (arch, task, repo) in AUDIO_ZOO.items():
        paths[name] = build_tiny_audio(ROOT / name, arch, task)
        if repo:
            install_in_hub_cache(ROOT / "hub", repo, paths[name])
    yield paths
    shutil.rmtree(ROOT, ignore_errors=True)


@pytest.fixture(scope="module")
def offline_hub(tiny_zoo):
    """HF_HUB_CACHE=ROOT/hub and HF_HUB_OFFLINE=1 for one test module."""
    from fmhub_transformers.testing import hub_cache_env

    with hub_cache_env(ROOT / "hub") as cache:
        yield cache


def pytest_make_parametrize_id(config, val, argname):
    """Test ids name a tiny model's folder relative to ROOT: ROOT holds the process id, and the
    pytest-xdist workers must collect identical ids."""
    if isinstance(val, str) and val.startswith(str(ROOT)):
        return "ROOT" + val[len(str(ROOT)) :]
    return None
