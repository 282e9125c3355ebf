"""Fidelity: fmhub's emissions and features equal the bundle's own model run directly on the same
resampled waveform (1e-5), on a full-size bundle loaded offline from TORCH_HOME, and on the
spoken-word fixtures (22.05 kHz mono, stereo, 8 kHz and 48 kHz)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import fmhub

DATA = Path(__file__).parent / "data"
FILES = [
    str(DATA / f)
    for f in ("hello_22k.flac", "yes_stereo_22k.ogg", "seven_8k.wav", "seven_48k.flac")
]
ATOL = 1e-5


def reference_waveform(path: str):
    """What a careful caller would do by hand: soundfile, average channels, torchaudio resample."""
    import torch
    import torchaudio.functional as AF

    data, rate = sf.read(path, dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(axis=1))
    return AF.resample(wave, rate, 16000)[None]


def reference_ctc(emissions, labels) -> str:
    """Independent greedy CTC decoding: best label per frame, collapse runs, drop blanks."""
    best = emissions.argmax(-1).tolist()
    chars = [labels[k] for k, _ in itertools.groupby(best) if k != 0]
    return " ".join("".join(chars).replace("|", " ").split())


@pytest.mark.usefixtures("use_torchaudio_home")
class TestFullSizeBundle:
    """torchaudio:wav2vec2_asr_base_960h at full size (95M random weights) via get_model()."""

    @pytest.fixture(scope="class")
    @classmethod
    def direct(cls):
        import torchaudio

        return torchaudio.pipelines.WAV2VEC2_ASR_BASE_960H.get_model()

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls):
        return fmhub.load("torchaudio:wav2vec2_asr_base_960h")

    def test_emissions_and_text_equal_the_bundle_used_directly(self, model, direct):
        """Two recordings of different lengths (a padded batch; one stereo): what the full-size
        network adds. Decoding and resampling each of FILES (8 and 48 kHz too) are the same code
        at every size, checked against the same reference_waveform on tiny models below."""
        import torch

        files = FILES[:2]
        batch = model.preprocess(files)
        assert len(set(batch["lengths"].tolist())) == 2  # padded
        out = model.forward(batch)
        texts = model.postprocess(out, batch)
        labels = torchaudio_labels()
        for j, path in enumerate(files):
            with torch.inference_mode():
                ref, _ = direct(reference_waveform(path))
            n = int(out["frames"][j])
            assert n == ref.shape[1]
            torch.testing.assert_close(out["emissions"][j, :n], ref[0], atol=ATOL, rtol=0)
            assert texts[j].text == reference_ctc(ref[0], labels)

    def test_features_equal_the_bundle_used_directly(self, direct):
        import torch

        model = fmhub.load("wav2vec2-asr-base-960h", task="embedding", layer=6)
        assert model.task == "embedding" and model.processor.layer == 6
        vectors = model.predict(FILES[1:2])  # the stereo one
        for path, vec in zip(FILES[1:2], vectors):
            with torch.inference_mode():
                feats, _ = direct.extract_features(reference_waveform(path), num_layers=6)
            np.testing.assert_allclose(vec, feats[-1][0].mean(0).numpy(), atol=ATOL, rtol=0)


def torchaudio_labels():
    import torchaudio

    return torchaudio.pipelines.WAV2VEC2_ASR_BASE_960H.get_labels()


def test_normalizing_models_match_torchaudios_wrapper():
    """Models trained on normalised waveforms: fmhub normalises each recording like torchaudio's
    wrapper does for a batch of one (and so stays right for padded batches)."""
    import torch
    from torchaudio.pipelines._wav2vec2.utils import _extend_model

    from fmhub_torchaudio.testing import tiny_options

    model = fmhub.load(
        "torchaudio:models.wav2vec2_model", normalize_waveform=True, **tiny_options(asr=True)
    )
    wrapped = _extend_model(model.module.model, normalize_waveform=True)
    batch = model.preprocess(FILES)
    out = model.forward(batch)
    for j, path in enumerate(FILES):
        with torch.inference_mode():
            ref, _ = wrapped(reference_waveform(path))
        n = int(out["frames"][j])
        torch.testing.assert_close(out["emissions"][j, :n], ref[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "family,mode",
    [
        ("wav2vec2", "layer_norm"),
        ("wav2vec2", "group_norm"),
        ("wavlm", "group_norm"),
        ("wavlm", "layer_norm"),
    ],
)
def test_padded_batches_equal_single_recordings(family, mode):
    """Padding with lengths where the architecture allows it, equal-length groups where not."""
    import torch

    from fmhub_torchaudio.testing import tiny_options

    model = fmhub.load(
        f"torchaudio:models.{family}_model",
        **tiny_options(family=family, extractor_mode=mode, asr=True),
    )
    batch = model.preprocess(FILES)
    assert batch["waveforms"].shape == (4, int(batch["lengths"].max()))
    calls = []
    hook = model.module.model.encoder.register_forward_pre_hook(
        lambda mod, args: calls.append(args[0].shape[0])
    )
    out = model.forward(batch)
    hook.remove()
    # one padded encoder batch, except for WavLM, whose attention takes no padding mask: one
    # batch per distinct length there (both "seven" files are 0.74 s once at 16 kHz)
    distinct = len(set(batch["lengths"].tolist()))
    assert distinct == 3 and sum(calls) == 4
    assert len(calls) == (distinct if family == "wavlm" else 1)
    for j, path in enumerate(FILES):
        with torch.inference_mode():
            ref, _ = model.module.model(reference_waveform(path))
        n = int(out["frames"][j])
        torch.testing.assert_close(out["emissions"][j, :n], ref[0], atol=ATOL, rtol=0)
