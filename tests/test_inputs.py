"""fmhub.inputs: the shared input conventions (docs/inputs.md) for text, images and audio."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import fmhub
from fmhub import inputs
from fmhub.testing import imported_after


def test_importing_the_module_imports_no_heavy_library():
    code = "import fmhub, fmhub.inputs; fmhub.inputs.texts(['a'])"
    assert imported_after(code, ("numpy", "torch", "PIL", "soundfile")) == []


# -- the list of inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,message",
    [
        (None, "got NoneType"),
        (5, "got int"),
        ("one text", "got one str"),
        (b"raw", "got one bytes"),
        ({"array": [0.0], "sampling_rate": 16000}, "got a dict"),
        (np.zeros((4, 4, 3), np.uint8), "shape (4, 4, 3)"),
        (torch.zeros(3, 4, 4), "shape (3, 4, 4)"),
        (Image.new("RGB", (4, 4)), "one PIL image"),
    ],
)
def test_input_list_refuses_what_is_not_a_list_of_inputs(bad, message):
    with pytest.raises(fmhub.InputError, match=r"predict takes a list of inputs") as err:
        inputs.input_list(bad)
    assert message in str(err.value) and err.value.index is None


def test_input_list_takes_any_other_iterable():
    assert inputs.input_list(x for x in "ab") == ["a", "b"]
    assert inputs.input_list(("a", "b")) == ["a", "b"]
    assert inputs.input_list([]) == []


# -- text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,message",
    [
        (None, "got NoneType (None), not text"),
        (b"caf\xc3\xa9", "decode it first"),
        (3.5, "got float"),
        (["a"], "got list"),
    ],
)
def test_texts_name_the_position_of_a_non_text(bad, message):
    with pytest.raises(fmhub.InputError, match="^Input 2: ") as err:
        inputs.texts(["a", "", bad])
    assert message in str(err.value) and err.value.index == 2


def test_texts_pass_strings_through():
    assert inputs.texts(["a", "", "ü"]) == ["a", "", "ü"]


# -- images: every Pillow mode --------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo():
    """A 40x30 RGB image with every value 0-255 somewhere and an alpha ramp."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    rgb[0, :, 0] = np.linspace(0, 255, 40).astype(np.uint8)
    return Image.fromarray(rgb)


@pytest.fixture(scope="module")
def gray(photo):
    return photo.convert("L")


EIGHT_BIT = ["1", "L", "P", "RGB", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"]


@pytest.mark.parametrize("mode", EIGHT_BIT)
def test_eight_bit_modes_convert_as_pillow_does(photo, mode):
    img = photo.convert(mode)
    got = inputs.image_item(img)
    assert got.mode == "RGB" and got.size == img.size
    np.testing.assert_array_equal(np.asarray(got), np.asarray(img.convert("RGB")))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "RGBa", "La"])
def test_alpha_is_dropped_or_composited_on_a_background(photo, mode):
    rgba = photo.copy()
    alpha = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1))
    rgba.putalpha(Image.fromarray(alpha))
    if mode == "La":  # Pillow cannot convert to La: premultiply LA by hand
        la = np.asarray(rgba.convert("LA")).astype(np.uint16)
        la[..., 0] = la[..., 0] * la[..., 1] // 255
        img = Image.frombytes("La", rgba.size, la.astype(np.uint8).tobytes())
    else:
        img = rgba.convert(mode)
    dropped = inputs.image_item(img)
    ref = img.convert("LA").convert("RGB") if mode == "La" else img.convert("RGB")
    np.testing.assert_array_equal(np.asarray(dropped), np.asarray(ref))
    # over white: out = rgb * a + 255 * (1 - a), by Pillow's alpha_composite
    over = np.asarray(inputs.image_item(img, background=(255, 255, 255))).astype(float)
    base = img.convert("LA") if mode == "La" else img
    straight = np.asarray(base.convert("RGBA")).astype(float)
    a = straight[..., 3:] / 255
    expected = straight[..., :3] * a + 255 * (1 - a)
    assert np.abs(over - expected).max() <= 1.0
    assert over[:, 0].min() == 255  # fully transparent column is the background


def test_palette_with_transparency_uses_the_background(photo):
    p = photo.convert("P")
    p.info["transparency"] = int(np.asarray(p)[0, 0])
    white = np.asarray(inputs.image_item(p, background=(255, 255, 255)))
    assert (white[0, 0] == 255).all()


def _sixteen_bit(values: np.ndarray, mode: str) -> Image.Image:
    order = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2"}[mode]
    h, w = values.shape
    return Image.frombytes(mode, (w, h), values.astype(order).tobytes())


@pytest.mark.parametrize("mode", ["I;16", "I;16L", "I;16B", "I;16N"])
def test_sixteen_bit_images_are_scaled_not_clipped(gray, mode):
    ref = np.asarray(gray.convert("RGB"))
    img = _sixteen_bit(np.asarray(gray).astype(np.uint16) * 257, mode)
    assert img.mode == mode
    got = np.asarray(inputs.image_item(img))
    np.testing.assert_array_equal(got, ref)
    assert not (np.asarray(img.convert("RGB")) == ref).all()  # what Pillow alone gets wrong


@pytest.mark.parametrize("build", ["L values", "16-bit values", "float 0-255", "float 0-1"])
def test_int32_and_float_images_map_back_to_the_same_gray(gray, build):
    g = np.asarray(gray)
    img = {
        "L values": lambda: gray.convert("I"),
        "16-bit values": lambda: Image.fromarray(g.astype(np.int32) * 257),
        "float 0-255": lambda: gray.convert("F"),
        "float 0-1": lambda: Image.fromarray(g.astype(np.float32) / 255),
    }[build]()
    assert img.mode in ("I", "F")
    expected = np.asarray(gray.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(inputs.image_item(img)), expected)


@pytest.mark.parametrize(
    "mode,values",
    [
        ("F", np.linspace(-5.0, 5.0, 256, dtype=np.float32)),
        ("F", np.linspace(0.0, 4000.0, 256, dtype=np.float32)),
        ("I", np.linspace(-1000, 1000, 256).astype(np.int32)),
        ("I", np.linspace(0, 1_000_000, 256).astype(np.int32)),
    ],
)
def test_other_ranges_are_stretched_from_minimum_to_maximum(mode, values):
    img = Image.fromarray(np.tile(values, (4, 1)))
    assert img.mode == mode
    got = np.asarray(inputs.image_item(img))[0, :, 0].astype(int)
    expected = np.rint((values - values.min()) * 255.0 / (values.max() - values.min()))
    assert np.abs(got - expected).max() <= 1 and got.min() == 0 and got.max() == 255


def test_float_image_with_nan_is_refused():
    img = Image.fromarray(np.array([[0.5, np.nan]], np.float32).repeat(4, 0))
    with pytest.raises(fmhub.InputError, match="NaN"):
        inputs.image_item(img, 3)


def test_sources_of_the_same_picture_agree(photo, tmp_path):
    path = tmp_path / "photo.png"
    photo.save(path)
    expected = np.asarray(photo)
    for source in (
        str(path),
        path,
        path.read_bytes(),
        np.asarray(photo),
        torch.tensor(np.asarray(photo)).permute(2, 0, 1).contiguous(),
        torch.tensor(np.asarray(photo)).permute(2, 0, 1).float() / 255,
    ):
        got = inputs.image_item(source)
        np.testing.assert_array_equal(np.asarray(got), expected)
    kept = inputs.image_item(torch.rand(1, 8, 8), keep_float_tensor=True)
    assert isinstance(kept, torch.Tensor) and kept.shape == (3, 8, 8)
    assert len(inputs.to_rgb_images([photo, str(path)])) == 2


# -- images: sizes --------------------------------------------------------------------------------


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height and whose pixel data is cut off."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 8))


@pytest.mark.parametrize("size", [(1, 10000), (10000, 1), (3, 1000)])
def test_absurd_aspect_ratio_is_refused_before_decoding(tmp_path, size):
    # the pixel data is truncated: decoding it would fail with "not an image Pillow can read", so
    # an aspect-ratio error proves the refusal came first (nothing is decoded or resized)
    path = tmp_path / "strip.png"
    path.write_bytes(_png_header_only(*size))
    for source in (str(path), path.read_bytes()):
        with pytest.raises(fmhub.InputError, match=r"aspect ratio \d+:1") as err:
            inputs.to_rgb_images([Image.new("RGB", (8, 8)), source])
        assert err.value.index == 1


def test_real_one_by_ten_thousand_png_is_refused(tmp_path):
    path = tmp_path / "line.png"
    Image.new("RGB", (1, 10000), "red").save(path)
    assert path.stat().st_size < 1000
    with pytest.raises(fmhub.InputError, match="1x10000"):
        inputs.image_item(str(path))
    with pytest.raises(fmhub.InputError, match="aspect ratio"):
        inputs.image_item(np.zeros((10000, 1), np.uint8))
    with pytest.raises(fmhub.InputError, match="aspect ratio"):
        inputs.image_item(torch.zeros(3, 1, 10000))


def test_too_many_pixels_are_refused_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_png_header_only(12000, 9000))
    with (
        pytest.warns(Image.DecompressionBombWarning),
        pytest.raises(fmhub.InputError, match="108,000,000 pixels"),
    ):
        inputs.image_item(str(path))
    path.write_bytes(_png_header_only(30000, 30000))  # Pillow's own bomb guard fires first
    with pytest.raises(fmhub.InputError, match="too large|pixels"):
        inputs.image_item(str(path))
    small = Image.new("RGB", (100, 20))
    with pytest.raises(fmhub.InputError, match="more than the 1,000 fmhub accepts"):
        inputs.image_item(small, max_pixels=1000)
    assert inputs.image_item(Image.new("RGB", (1, 300)), max_aspect=300).size == (1, 300)


BAD_IMAGES = {
    "empty PIL": (Image.new("RGB", (0, 0)), "empty image"),
    "float array": (np.zeros((10, 10, 3), np.float32), "dtype float32"),
    "channels first array": (np.zeros((3, 10, 10), np.uint8), "channels last"),
    "0-255 float tensor": (torch.full((3, 8, 8), 200.0), r"values in \[200, 200\]"),
    "None": (None, "not an image"),
    "missing file": ("no/such/image.png", "no such image file"),
    "bytes": (b"definitely not a PNG", "not an image Pillow can read"),
}


@pytest.mark.parametrize("bad,message", BAD_IMAGES.values(), ids=BAD_IMAGES.keys())
def test_bad_images_are_input_errors(bad, message):
    with pytest.raises(fmhub.InputError, match=message) as err:
        inputs.to_rgb_images([Image.new("RGB", (4, 4)), bad])
    assert err.value.index == 1 and str(err.value).startswith("Input 1: ")


# -- audio ----------------------------------------------------------------------------------------


def _wave(n: int = 44100, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32)


@pytest.mark.parametrize("rates", [(44100, 16000), (8000, 16000), (22050, 16000), (16000, 24000)])
def test_resampling_equals_torchaudio(rates):
    torchaudio = pytest.importorskip("torchaudio")
    wave = _wave(rates[0])
    got, rate = inputs.audio_item((wave, rates[0]), target_rate=rates[1])
    expected = torchaudio.functional.resample(torch.from_numpy(wave), *rates).numpy()
    assert rate == rates[1] and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_channels_are_averaged_whichever_axis_holds_them():
    left, right = _wave(16000, 1), _wave(16000, 2)
    mono = (left + right) / 2
    for arr in (np.stack([left, right]), np.stack([left, right], axis=1)):
        got, rate = inputs.audio_item((arr, 16000), target_rate=16000)
        np.testing.assert_allclose(got, mono, atol=1e-7)
        assert rate == 16000


def test_integer_pcm_dicts_tensors_and_files(tmp_path):
    sf = pytest.importorskip("soundfile")
    pcm = (np.linspace(-1, 1, 8000) * 32767).astype(np.int16)
    got, _ = inputs.audio_item((pcm, 8000), target_rate=None)
    np.testing.assert_allclose(got, pcm / 32768, atol=1e-7)
    wave = _wave(16000)
    ref, _ = inputs.audio_item((wave, 16000), target_rate=16000)
    for item in (
        {"array": wave, "sampling_rate": 16000},
        {"waveform": torch.from_numpy(wave), "sample_rate": 16000},
        (torch.from_numpy(wave)[None], 16000),
    ):
        np.testing.assert_array_equal(inputs.audio_item(item, target_rate=16000)[0], ref)
    path = tmp_path / "a.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    for item in (str(path), path, path.read_bytes()):
        np.testing.assert_array_equal(inputs.audio_item(item, target_rate=16000)[0], ref)
    assert inputs.audio_duration(str(path)) == pytest.approx(1.0)
    assert inputs.audio_duration((wave, 8000)) == pytest.approx(2.0)
    assert inputs.audio_duration(object()) == 0.0


def test_bare_arrays_need_a_default_rate():
    with pytest.raises(fmhub.InputError, match="without a sample rate") as err:
        inputs.audio_item(_wave(100), 4, target_rate=16000)
    assert err.value.index == 4 and "input_sample_rate" not in str(err.value)
    with pytest.raises(fmhub.InputError, match="input_sample_rate=<Hz>"):
        inputs.audio_item(_wave(100), target_rate=16000, rate_option="input_sample_rate")
    got, rate = inputs.audio_item(_wave(800), target_rate=16000, default_rate=8000)
    assert rate == 16000 and got.shape == (1600,)


BAD_AUDIO = {
    "None": (None, "not audio"),
    "number": (3, "not audio"),
    "square": ((np.zeros((2, 2), np.float32), 16000), "ambiguous"),
    "65 channels": ((np.zeros((65, 1000), np.float32), 16000), "more than 64"),
    "3-D": ((np.zeros((2, 2, 100), np.float32), 16000), "1-D"),
    "empty": ((np.zeros(0, np.float32), 16000), "empty"),
    "nan": ((np.array([0.0, np.nan] * 10, np.float32), 16000), "NaN"),
    "rate 0": ((np.zeros(10, np.float32), 0), "positive whole number"),
    "rate 16000.5": ((np.zeros(10, np.float32), 16000.5), "positive whole number"),
    "bools": ((np.zeros(10, bool), 16000), "float or integer PCM"),
    "dict without rate": ({"array": [0.0] * 10}, "sampling_rate"),
    "missing file": ("no/such.wav", "no such audio file"),
    "not audio bytes": (b"not audio", "cannot be decoded"),
}


@pytest.mark.parametrize("bad,message", BAD_AUDIO.values(), ids=BAD_AUDIO.keys())
def test_bad_audio_is_an_input_error(bad, message):
    with pytest.raises(fmhub.InputError, match=message) as err:
        inputs.to_mono_audio([(_wave(100), 16000), bad], target_rate=16000)
    assert err.value.index == 1 and str(err.value).startswith("Input 1: ")


def test_errors_survive_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(fmhub.InputError("got None", index=7)))
    assert err.index == 7 and str(err) == "Input 7: got None"
