"""A model loaded with ``checkpoint=`` saves and loads back its own (perturbed) weights: the
replayed ``checkpoint`` option must not override the saved folder (timm, torchaudio)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmhub.testing import ConformanceCase, check_save_load

_rng = np.random.default_rng(0)


def test_timm_checkpoint_option_does_not_override_the_saved_folder(tmp_path, fmhub_hub):
    vt = pytest.importorskip("fmhub_timm.testing")
    ckpt = vt.write_checkpoint(tmp_path / "w.safetensors", "test_resnet", seed=2, num_classes=4)
    photos = vt.photos()
    case = ConformanceCase(
        model="timm:test_resnet",
        inputs=[photos["chelsea"], photos["coffee"]],
        options={"checkpoint": str(ckpt), "pretrained": False},
        atol=1e-4,
    )
    check_save_load(case, tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "saved" / "fmhub.json").read_text())
    assert manifest["options"]["checkpoint"] == str(ckpt)


def test_torchaudio_checkpoint_option_does_not_override_the_saved_folder(tmp_path, fmhub_hub):
    at = pytest.importorskip("fmhub_torchaudio.testing")
    ckpt = at.write_checkpoint(tmp_path / "w.pt", seed=3)
    waves = [(_rng.standard_normal(8000).astype(np.float32) * 0.1, 16000) for _ in range(2)]
    case = ConformanceCase(
        model="torchaudio:models.wav2vec2_model",
        inputs=waves,
        options=at.tiny_options(checkpoint=ckpt),
    )
    check_save_load(case, tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "saved" / "fmhub.json").read_text())
    assert manifest["options"]["checkpoint"] == str(ckpt)
