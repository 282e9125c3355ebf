"""Bad audio names the caller's position; predict is thread-safe on one model."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

import fmhub
from fmhub_torchaudio.testing import tiny_options


@pytest.fixture(scope="module")
def model():
    return fmhub.load("torchaudio:models.wav2vec2_model", **tiny_options())


def _wave(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, int(seconds * 16000)).astype(np.float32)


def test_predict_is_thread_safe(model):
    pool = [
        (_wave(s, i), r)
        for i, (s, r) in enumerate(
            [(0.2, 16000), (0.5, 16000), (1.0, 8000), (0.3, 44100), (0.8, 22050)]
        )
    ]
    pool.append((np.stack([_wave(0.4, 9), _wave(0.4, 10)]), 16000))
    serial = [model(x) for x in pool]
    done, errors = [], []
    start = threading.Barrier(8)

    def work(k: int) -> None:
        rng = random.Random(k)
        start.wait()
        for _ in range(6):
            idx = rng.sample(range(len(pool)), rng.choice([1, 2, 3, len(pool)]))
            try:
                done.append(
                    (idx, model.predict([pool[i] for i in idx], batch_size=rng.choice([1, 2, 4])))
                )
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert not errors, errors[0]
    assert len(done) == 48
    for idx, results in done:
        for i, r in zip(idx, results):
            np.testing.assert_allclose(r, serial[i], atol=1e-4)


def test_bad_audio_names_the_callers_position(model):
    # batch order is longest first: the short bad input is last in the batch, first in the list
    with pytest.raises(fmhub.InputError) as err:
        model.predict([(_wave(0.01, 0), 16000), (_wave(1.0, 1), 16000), (_wave(0.5, 2), 16000)])
    assert err.value.index == 0 and "receptive field" in str(err.value)
    assert str(err.value).startswith("Input 0: got 10.0 ms of audio")
    with pytest.raises(fmhub.InputError, match="^Input 2: got a bare ndarray.*input_sample_rate"):
        model.predict([(_wave(1.0, 1), 16000), (_wave(0.5, 2), 16000), _wave(2.0, 3)])
