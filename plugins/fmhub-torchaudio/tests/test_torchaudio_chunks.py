"""Long recordings: overlapping chunks, exact stitching, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

import fmhub
from fmhub.chunking import chunk_sizes, frames_for, plan_segments
from fmhub_torchaudio.testing import tiny_options

STRIDE, FIELD = 320, 400


@pytest.mark.parametrize("n", [400, 16_000, 64_000, 64_001, 100_000, 160_321, 961_234])
@pytest.mark.parametrize(
    "chunk,context",
    [(64_000, 16_000), (32_000, 0), (50_000, 7_000), (64_000, 32_000), (1_000, 500)],
)
def test_plan_keeps_exactly_the_frames_of_the_whole_recording(n, chunk, context):
    segments = plan_segments([n], chunk, context, STRIDE, FIELD)
    size, ctx = chunk_sizes(chunk, context, STRIDE, FIELD)
    assert size % STRIDE == 0 and ctx % STRIDE == 0 and FIELD <= ctx <= size // 4
    assert len(segments) <= 1 + 2 * n // size  # chunks advance by at least half a chunk
    kept = []
    for s in segments:
        assert s.length <= size and s.start % STRIDE == 0 and s.end <= n
        stop = s.keep_to if s.keep_to is not None else frames_for(s.length, STRIDE, FIELD)
        assert 0 <= s.keep_from < stop <= frames_for(s.length, STRIDE, FIELD)
        kept += [s.start // STRIDE + f for f in range(s.keep_from, stop)]  # global frame ids
    assert kept == list(range(frames_for(n, STRIDE, FIELD)))
    assert (len(segments) == 1) == (n <= size)


def _local(model):
    """Silence every attention block, so each frame depends on nearby audio only: then chunked
    and whole-recording outputs must agree exactly (the context covers the receptive field)."""
    import torch

    with torch.no_grad():
        for layer in model.module.model.encoder.transformer.layers:
            layer.attention.out_proj.weight.zero_()
            layer.attention.out_proj.bias.zero_()
    return model


def _long_signal(seconds: float, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * (220 + 80 * np.sin(t / 3)) * t)
    return (0.3 * tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def signal():
    return _long_signal(12.3)


@pytest.mark.parametrize("task", ["transcription", "embedding"])
def test_chunked_equals_whole_for_a_local_model(signal, task):
    import torch

    chunked = _local(
        fmhub.load(
            "torchaudio:models.wav2vec2_model",
            chunk_seconds=3,
            chunk_context_seconds=0.5,
            task=task,
            **tiny_options(asr=True),
        )
    )
    whole = _local(
        fmhub.load(
            "torchaudio:models.wav2vec2_model",
            chunk_seconds=1000,
            task=task,
            **tiny_options(asr=True),
        )
    )
    sizes = []
    hook = chunked.module.model.feature_extractor.register_forward_pre_hook(
        lambda mod, args: sizes.append(tuple(args[0].shape))
    )
    batch = chunked.preprocess([(signal, 16000)])
    a, b = chunked.forward(batch), whole.forward(batch)
    hook.remove()
    assert len(sizes) >= 2 and max(s[1] for s in sizes) <= 3 * 16000  # bounded: 3 s at a time
    assert max(s[0] for s in sizes) <= chunked.options.chunk_batch
    for key in a:
        assert a[key].shape == b[key].shape
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)
    if task == "transcription":
        assert chunked((signal, 16000)).text == whole((signal, 16000)).text


def test_chunks_of_a_global_model_are_stitched_without_losing_frames(signal):
    import torch

    model = fmhub.load(
        "torchaudio:models.wav2vec2_model",
        chunk_seconds=4,
        **tiny_options(asr=True, extractor_mode="group_norm"),
    )
    short = (signal[: 3 * 16000], 16000)
    batch = model.preprocess([(signal, 16000), short])
    out = model.forward(batch)
    assert out["frames"].tolist() == [
        frames_for(len(signal), STRIDE, FIELD),
        frames_for(3 * 16000, STRIDE, FIELD),
    ]
    alone = model.forward(model.preprocess([short]))  # a short item is never chunked
    torch.testing.assert_close(
        out["emissions"][1, : alone["frames"][0]], alone["emissions"][0], atol=1e-5, rtol=0
    )
    results = model.predict([(signal, 16000), short], batch_size=2)
    assert results[1] == model(short)
