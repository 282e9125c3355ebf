"""The fmhub conformance kit on torchaudio models: tiny factory models of each front end and
family, and one real pipeline bundle loaded through ``bundle.get_model()`` from TORCH_HOME."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmhub.testing import ConformanceCase, ConformanceSuite
from fmhub_torchaudio.testing import tiny_options

DATA = Path(__file__).parent / "data"
FILES = [
    str(DATA / f)
    for f in ("hello_22k.flac", "yes_stereo_22k.ogg", "seven_8k.wav", "seven_48k.flac")
]
HEAVY = ("torch", "torchaudio", "soundfile")
_rng = np.random.default_rng(0)
ARRAYS = [
    (_rng.standard_normal(12_000).astype(np.float32) * 0.1, 16000),
    {"array": _rng.standard_normal((2, 7_000)).astype(np.float32) * 0.1, "sampling_rate": 8000},
    (_rng.standard_normal((30_000, 2)).astype(np.float32) * 0.1, 44100),
]
BAD = [
    np.zeros(16000, np.float32),  # no sample rate
    (np.zeros(0, np.float32), 16000),  # empty
    (np.zeros(200, np.float32), 16000),  # shorter than the receptive field
    (np.zeros((2, 3, 4000), np.float32), 16000),  # 3-D
    str(DATA / "missing.wav"),
    str(DATA / "README.md"),  # not audio
]


class TestTinyFactories(ConformanceSuite):
    cases = [
        ConformanceCase(
            model="torchaudio:models.wav2vec2_model",
            id="tiny-asr-layer-norm",
            options=tiny_options(asr=True),
            inputs=FILES,
            task="transcription",
            heavy_modules=HEAVY,
            bad_inputs=BAD,
        ),
        ConformanceCase(
            model="torchaudio:models.wav2vec2_model",
            id="tiny-embed-group-norm",
            options=tiny_options(extractor_mode="group_norm"),
            inputs=FILES + ARRAYS,
            task="embedding",
            heavy_modules=HEAVY,
            bad_inputs=BAD[:3],
            atol=1e-5,
        ),
        ConformanceCase(
            model="torchaudio:models.wavlm_model",
            id="tiny-wavlm-embed",
            options=tiny_options(family="wavlm"),
            inputs=ARRAYS + FILES[:2],
            task="embedding",
            heavy_modules=HEAVY,
            bad_inputs=BAD[:2],
        ),
        ConformanceCase(
            model="torchaudio:models.wav2vec2_model",
            id="tiny-embed-normalized",
            options={**tiny_options(), "normalize_waveform": True, "layer": 1},
            inputs=ARRAYS,
            task="embedding",
            heavy_modules=HEAVY,
        ),
    ]


TINY_BUNDLES = ("wav2vec2_asr_base_960h", "hubert_asr_large", "wavlm_base_plus")


@pytest.mark.usefixtures("tiny_bundle_home")
class TestTinyBundles(ConformanceSuite):
    """Real bundle ids through the bundles' own loading path (``get_model()`` reading the torch
    hub cache), with shrunk architectures so the whole kit runs in seconds; the full-size path is
    checked in test_torchaudio_fidelity.py."""

    bundles = TINY_BUNDLES
    cases = [
        ConformanceCase(
            model="wav2vec2-asr-base-960h",
            inputs=FILES[:3],
            task="transcription",
            heavy_modules=HEAVY,
            bad_inputs=BAD[:3],
        ),
        ConformanceCase(
            model="torchaudio:hubert_asr_large",
            inputs=FILES + ARRAYS[:1],
            task="transcription",
            heavy_modules=HEAVY,
        ),
        ConformanceCase(
            model="wavlm-base-plus",
            options={"layer": -2},
            inputs=FILES[:2] + ARRAYS[1:],
            task="embedding",
            heavy_modules=HEAVY,
        ),
    ]
