"""Bad images name the caller's position and absurd sizes are refused before resizing; predict is
thread-safe on one model."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from PIL import Image

import fmhub


@pytest.fixture(scope="module")
def model():
    return fmhub.load("timm:test_byobnet", pretrained=False, device="cpu")


def test_predict_is_thread_safe(model, skimage_photos):
    pool = [skimage_photos[k] for k in ("astronaut", "camera", "coffee", "chelsea")]
    pool += [Image.fromarray(skimage_photos["coffee"]).convert(m) for m in ("L", "P", "CMYK")]
    serial = [model(x) for x in pool]
    done, errors = [], []
    start = threading.Barrier(8)

    def work(k: int) -> None:
        rng = random.Random(k)
        start.wait()
        for _ in range(6):
            idx = rng.sample(range(len(pool)), rng.choice([1, 2, 4, len(pool)]))
            try:
                done.append(
                    (idx, model.predict([pool[i] for i in idx], batch_size=rng.choice([1, 3])))
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
            assert r.label == serial[i].label
            assert r.score == pytest.approx(serial[i].score, abs=1e-4)


def test_one_by_ten_thousand_png_is_refused_naming_the_callers_position(
    model, tmp_path, skimage_photos
):
    strip = tmp_path / "strip.png"
    Image.new("RGB", (1, 10000), "red").save(strip)
    with pytest.raises(fmhub.InputError, match=r"^Input 1: got a 1x10000 image \(aspect") as err:
        model.predict(
            [skimage_photos["coffee"], str(strip), skimage_photos["camera"]], batch_size=2
        )
    assert err.value.index == 1 and err.value.stage == "preprocess"


def test_sixteen_bit_image_is_not_white(model, skimage_photos):
    gray = Image.fromarray(skimage_photos["camera"])
    sixteen = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    batch = model.preprocess([sixteen, gray])["pixel_values"]
    assert np.array_equal(batch[0].numpy(), batch[1].numpy())
