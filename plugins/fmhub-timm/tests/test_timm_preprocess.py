"""Input coercion (fmhub.inputs.image_item): 8-bit modes become RGB like timm's datasets; bad inputs are
clear errors. 16-bit and float modes are tested in tests/test_inputs.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import fmhub
from fmhub.inputs import image_item
from fmhub_timm._stages import ImageProcessor

CONFIG = {
    "input_size": (3, 32, 32),
    "interpolation": "bicubic",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "crop_pct": 0.875,
    "crop_mode": "center",
}


@pytest.fixture(scope="module")
def proc():
    return ImageProcessor(CONFIG)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA", "1"])
def test_every_mode_becomes_rgb_like_timm(mode, proc, skimage_photos):
    img = Image.fromarray(skimage_photos["astronaut"]).convert(mode)
    got = proc.batch([img])["pixel_values"][0]
    assert torch.equal(got, proc.transform(img.convert("RGB")))


def test_rgba_and_grayscale_photos(proc, skimage_photos):
    logo, camera = skimage_photos["logo"], skimage_photos["camera"]
    assert logo.shape[-1] == 4 and camera.ndim == 2
    batch = proc.batch([logo, camera])["pixel_values"]
    assert batch.shape == (2, 3, 32, 32)
    assert torch.equal(batch[0], proc.transform(Image.fromarray(logo).convert("RGB")))
    assert torch.equal(batch[1], proc.transform(Image.fromarray(camera).convert("RGB")))


def test_mixed_batch_sizes_and_layouts(skimage_photos):
    cl = ImageProcessor(CONFIG, channels_last=True)
    plain = ImageProcessor(CONFIG)
    inputs = [
        skimage_photos["chelsea"],
        skimage_photos["coffee"],
        Image.new("RGB", (4, 700), "red"),
    ]
    a, b = cl.batch(inputs), plain.batch(inputs)
    assert a["pixel_values"].is_contiguous(memory_format=torch.channels_last)
    assert b["pixel_values"].is_contiguous()
    assert torch.equal(a["pixel_values"], b["pixel_values"])
    assert a["sizes"] == [(451, 300), (600, 400), (4, 700)]


def test_float_and_grayscale_tensors(proc):
    t = torch.rand(1, 50, 70)
    got = proc.batch([t, t[0]])["pixel_values"]
    expected = proc.transform(t.expand(3, -1, -1).contiguous())
    assert torch.equal(got[0], expected) and torch.equal(got[1], expected)
    rgba = torch.rand(4, 40, 40)
    assert torch.equal(proc.batch([rgba])["pixel_values"][0], proc.transform(rgba[:3].contiguous()))


BAD = {
    "empty PIL": Image.new("RGB", (0, 0)),
    "empty array": np.zeros((0, 10, 3), np.uint8),
    "float array": np.zeros((10, 10, 3), np.float32),
    "5 channels": np.zeros((10, 10, 5), np.uint8),
    "1-D array": np.zeros((10,), np.uint8),
    "4-D tensor": torch.zeros(1, 3, 8, 8),
    "empty tensor": torch.zeros(3, 0, 8),
    "0-255 floats": torch.full((3, 8, 8), 200.0),
    "nan tensor": torch.full((3, 8, 8), float("nan")),
    "int64 tensor": torch.zeros(3, 8, 8, dtype=torch.int64),
    "number": 42,
    "text": "no/such/image.png",
    "not an image": b"definitely not a PNG",
    "list": [1, 2, 3],
}


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_bad_inputs_are_input_errors(bad):
    with pytest.raises(fmhub.InputError, match="Input 0"):
        image_item(bad, keep_float_tensor=True)


def test_folder_and_non_image_file(tmp_path):
    with pytest.raises(fmhub.InputError, match="folder"):
        image_item(tmp_path)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(fmhub.InputError, match="not an image"):
        image_item(str(txt))


def test_error_names_the_failing_input_of_a_batch(proc, skimage_photos):
    with pytest.raises(fmhub.InputError, match="Input 2"):
        proc.batch([skimage_photos["coffee"], skimage_photos["camera"], None])
