"""Bad text inputs name the caller's position; predict is thread-safe on one model (the fast
tokenizer's padding/truncation state is only touched under the processor's lock)."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

import fmhub
from fmhub_transformers.testing import CORPUS


def hammer(model, pool: list, threads: int = 8, calls: int = 40, seed: int = 0) -> list:
    """Many threads call ``model.predict`` at once with mixed batch sizes; the first error any
    thread hit is raised, else every ``(inputs, results)`` is returned."""
    done, errors = [], []
    start = threading.Barrier(threads)

    def work(k: int) -> None:
        rng = random.Random(seed + k)
        start.wait()
        for _ in range(calls):
            items = rng.sample(pool, min(len(pool), rng.choice([1, 2, 3, 7, 16])))
            try:
                done.append((items, model.predict(items, batch_size=rng.choice([1, 3, 8]))))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    if errors:
        raise errors[0]
    assert len(done) == threads * calls
    return done


#: Texts of very different token counts, so batch ordering and padding differ between calls.
POOL = [" ".join(CORPUS[i % len(CORPUS)] for i in range(k)) for k in range(1, 5)] + list(CORPUS)


def test_embedding_predict_is_thread_safe(tiny_zoo):
    model = fmhub.load(str(tiny_zoo["bert-st"]))
    serial = {t: model(t) for t in POOL}
    for items, results in hammer(model, POOL):
        for text, vec in zip(items, results):
            np.testing.assert_allclose(vec, serial[text], atol=1e-5)


def test_fill_mask_predict_is_thread_safe(tiny_zoo):
    model = fmhub.load(str(tiny_zoo["distilbert-mlm"]))
    mask = model.processor.tokenizer.mask_token
    pool = [t.replace(" is ", f" {mask} ", 1) for t in POOL if " is " in t]
    serial = {t: model(t) for t in pool}
    for items, results in hammer(model, pool, threads=4, calls=15):
        for text, result in zip(items, results):
            assert [p.token_id for p in result.predictions[:1]] == [
                p.token_id for p in serial[text].predictions[:1]
            ]


@pytest.mark.parametrize("bad", [None, b"hello", 3])
def test_bad_text_names_the_callers_position(tiny_zoo, bad):
    model = fmhub.load(str(tiny_zoo["bert-st"]))
    # batch order is longest first, so the bad input is last in its batch but first in the list
    with pytest.raises(fmhub.InputError) as err:
        model.predict([bad, "hello there", "a much longer sentence than the other ones here"])
    assert err.value.index == 0 and str(err.value).startswith("Input 0: got ")
    assert (err.value.plugin, err.value.stage) == ("transformers", "preprocess")


def test_truncation_error_names_the_callers_position(tiny_zoo):
    model = fmhub.load(str(tiny_zoo["bert-st"]), truncation="error")
    long = " ".join(CORPUS)
    with pytest.raises(fmhub.InputError, match="^Input 2: .* longer than 32 tokens"):
        model.predict(["short", "also short", long], batch_size=1)
