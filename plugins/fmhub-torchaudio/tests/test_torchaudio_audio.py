"""Audio inputs: decoding, channel-axis rule, resampling, normalisation, padding, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import fmhub
from fmhub_torchaudio.testing import tiny_options

DATA = Path(__file__).parent / "data"
HELLO, STEREO = str(DATA / "hello_22k.flac"), str(DATA / "yes_stereo_22k.ogg")
SEVEN_8K, SEVEN_48K = str(DATA / "seven_8k.wav"), str(DATA / "seven_48k.flac")


@pytest.fixture(scope="module")
def model():
    return fmhub.load("torchaudio:models.wav2vec2_model", **tiny_options())


def wave_of(model, x):
    batch = model.preprocess([x])
    return batch["waveforms"][0, : int(batch["lengths"][0])]


def resampled(data, rate):
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(data, np.float32)), rate, 16000)


def test_files_are_decoded_mixed_down_and_resampled(model):
    import torch

    for path in (HELLO, STEREO, SEVEN_8K, SEVEN_48K):
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        expected = resampled(data.mean(axis=1), rate)
        torch.testing.assert_close(wave_of(model, path), expected, atol=0, rtol=0)
        assert abs(len(expected) - round(len(data) * 16000 / rate)) <= 1


def test_stereo_file_is_the_mean_of_its_channels(model):
    import torch

    data, rate = sf.read(STEREO, dtype="float32")
    assert data.shape[1] == 2 and not np.allclose(data[:, 0], data[:, 1])
    left_only = wave_of(model, (data[:, 0], rate))
    both = wave_of(model, STEREO)
    assert not torch.allclose(left_only, both)
    torch.testing.assert_close(both, resampled(data.mean(axis=1), rate), atol=0, rtol=0)


def test_channel_axis_rule_either_order_arrays_tensors_dicts_bytes(model):
    import torch

    data, rate = sf.read(STEREO, dtype="float32")  # (samples, 2)
    ref = wave_of(model, STEREO)
    same = [
        (data, rate),  # (samples, channels), soundfile's order
        (data.T.copy(), rate),  # (channels, samples), torchaudio's order
        (torch.from_numpy(data.T.copy()), rate),
        {"array": data.T.copy(), "sampling_rate": rate},
        {"waveform": torch.from_numpy(data), "sample_rate": rate},
        Path(STEREO),
        Path(STEREO).read_bytes(),
    ]
    for x in same:
        torch.testing.assert_close(wave_of(model, x), ref, atol=1e-7, rtol=0)
    mono = (data.mean(axis=1)[None], rate)  # (1, samples) is mono
    torch.testing.assert_close(wave_of(model, mono), ref, atol=1e-7, rtol=0)


def test_integer_pcm_is_scaled(model):
    import torch

    pcm = (np.sin(np.arange(8000) / 5.0) * 20000).astype(np.int16)
    torch.testing.assert_close(
        wave_of(model, (pcm, 16000)),
        torch.from_numpy(pcm.astype(np.float32) / 32768),
        atol=1e-7,
        rtol=0,
    )


def test_bare_arrays_need_an_explicit_rate(model):
    import torch

    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    with pytest.raises(fmhub.InputError, match="without a sample rate"):
        model([0.1] * 16000)
    with pytest.raises(fmhub.InputError, match=r"\(array, sample_rate\)"):
        model(torch.from_numpy(wave))
    with_rate = fmhub.load(
        "torchaudio:models.wav2vec2_model", input_sample_rate=8000, **tiny_options()
    )
    torch.testing.assert_close(wave_of(with_rate, wave), resampled(wave, 8000), atol=0, rtol=0)


def test_normalisation_is_per_recording():
    import torch

    norm = fmhub.load("torchaudio:models.wav2vec2_model", normalize_waveform=True, **tiny_options())
    quiet = np.sin(np.arange(9000) / 3.0).astype(np.float32) * 0.01
    loud = np.sin(np.arange(20000) / 9.0).astype(np.float32) * 0.9 + 0.2
    batch = norm.preprocess([(quiet, 16000), (loud, 16000)])
    assert batch["lengths"].tolist() == [9000, 20000]
    assert float(batch["waveforms"][0, 9000:].abs().max()) == 0.0  # zero padding
    for row, n, x in zip(batch["waveforms"], batch["lengths"].tolist(), (quiet, loud)):
        ref = torch.nn.functional.layer_norm(torch.from_numpy(x), (n,))  # eps as torchaudio's
        torch.testing.assert_close(row[:n], ref, atol=1e-6, rtol=0)
        assert abs(float(row[:n].mean())) < 1e-4
    assert abs(float(batch["waveforms"][1].std(unbiased=False)) - 1) < 1e-3
    single = norm.preprocess([(quiet, 16000)])["waveforms"][0]
    torch.testing.assert_close(batch["waveforms"][0, :9000], single, atol=0, rtol=0)


def test_batch_order_is_longest_first(model):
    from fmhub_torchaudio import fmhub_batch_order

    inputs = [
        (np.zeros(5000, np.float32), 16000),
        HELLO,
        (np.zeros(90000, np.float32), 44100),
        SEVEN_8K,
    ]
    order = fmhub_batch_order(model=model, inputs=inputs)
    assert order == [2, 1, 3, 0]  # 2.04 s, 1.03 s, 0.74 s, 0.31 s
    assert sorted(order) == list(range(4))


BAD = [
    (np.zeros((400, 400), np.float32), 16000, "ambiguous"),
    (np.zeros((2, 3, 4000), np.float32), 16000, "1-D"),
    (np.zeros((100, 20000), np.float32), 16000, "not a batch"),
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.zeros(399, np.float32), 16000, "receptive field"),
    (np.zeros(190, np.float32), 8000, "receptive field"),  # 380 samples once at 16 kHz
    (np.array([0.0, np.nan] * 4000, np.float32), 16000, "NaN"),
    (np.zeros(16000, np.float32), 0, "positive whole number"),
    (np.zeros(16000, np.float32), 16000.5, "positive whole number"),
    (np.zeros(16000, np.float32), "16k", "positive whole number"),
    (np.zeros(16000, dtype=bool), 16000, "float or integer PCM"),
]


@pytest.mark.parametrize("array,rate,message", BAD, ids=[b[2] for b in BAD])
def test_bad_arrays_are_clear_errors(model, array, rate, message):
    with pytest.raises(fmhub.InputError, match=message):
        model((array, rate))


@pytest.mark.parametrize(
    "bad,message",
    [
        (str(DATA / "nope.wav"), "no such audio file"),
        (str(DATA / "README.md"), "cannot be decoded"),
        (b"not audio at all", "cannot be decoded"),
        (None, "not audio"),
        ({"array": [0.0] * 800}, "sampling_rate"),
    ],
)
def test_bad_inputs_are_clear_errors(model, bad, message):
    with pytest.raises(fmhub.InputError, match=message) as info:
        model(bad)
    assert str(info.value).startswith("Input 0: ") and info.value.index == 0
