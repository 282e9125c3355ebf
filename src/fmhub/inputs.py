"""What an image, a recording and a text are: one set of input conventions for every plugin.

Every plugin of a modality turns raw inputs into model inputs with these helpers, so the same input
is accepted (or refused, with the same :class:`fmhub.InputError`) by every model of that modality.
The conventions are written out in ``docs/inputs.md``; in short:

* **text** (:func:`texts`, :func:`text_item`): a ``str``. Bytes, ``None``, numbers... are refused.
* **image** (:func:`to_rgb_images`, :func:`image_item`): a file path, encoded bytes, a PIL image of
  any mode, a ``uint8`` numpy array ``HxW`` / ``HxWx1`` / ``HxWx3`` / ``HxWx4`` (channels last) or a
  torch tensor ``CxHxW`` (``uint8`` 0-255 or floating 0-1). Every Pillow mode becomes RGB by the
  rule in :func:`pil_to_rgb` (16-bit and float images are scaled, never clipped). Images larger
  than :data:`MAX_IMAGE_PIXELS` or more elongated than :data:`MAX_ASPECT_RATIO` are refused before
  they are decoded or resized.
* **audio** (:func:`audio_item`, :func:`to_mono_audio`): a file path or encoded bytes, an
  ``(array, sample_rate)`` pair or a ``{"array": ..., "sampling_rate": ...}`` dict. A bare array
  is refused unless the caller named a default rate (it cannot be resampled safely otherwise).
  Channels are averaged to mono, integer PCM is scaled to [-1, 1] and the result is resampled to
  the model's rate with torchaudio's band-limited sinc interpolation.

Errors carry ``index``, the position of the input in the list the helper (or the hook) received;
:meth:`fmhub.Model.predict` renumbers it to the position in the caller's list.

Importing this module imports nothing outside the standard library: numpy, Pillow, torch and
soundfile are imported inside the functions that need them.
"""

from __future__ import annotations

import functools
import io
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

__all__ = [
    "MAX_ASPECT_RATIO",
    "MAX_AUDIO_CHANNELS",
    "MAX_IMAGE_PIXELS",
    "audio_duration",
    "audio_item",
    "check_image_size",
    "image_item",
    "input_list",
    "pil_to_rgb",
    "resample",
    "text_item",
    "texts",
    "to_mono_audio",
    "to_rgb_images",
]

#: Images with more pixels than this are refused before decoding (a 12 000 x 8 000 photo fits).
MAX_IMAGE_PIXELS = 100_000_000
#: Images whose long side is more than this many times the short side are refused before they are
#: resized: resizing the short side to a model's input size would blow the long side up (a 1x10000
#: image resized to a 256-pixel short side is 256x2560000, 2 GB).
MAX_ASPECT_RATIO = 200.0
#: The most channels one recording may have (a 7.1 mix has 8; microphone arrays up to 64).
MAX_AUDIO_CHANNELS = 64


# -- the list of inputs ---------------------------------------------------------------------------


def input_list(inputs: Any, what: str = "predict") -> list[Any]:
    """The caller's inputs as a list, or an :class:`fmhub.InputError` saying how to pass them.

    Any iterable is taken (list, tuple, generator...), except those that are one input rather
    than many: a ``str``/``bytes``, a mapping (an audio dict), a numpy array or tensor (iterating
    one would split an image into rows) and a PIL image.
    """
    kind = type(inputs).__name__
    if isinstance(inputs, (str, bytes, bytearray)):
        raise InputError(
            f"{what} takes a list of inputs, got one {kind}; pass [x], or call "
            "model(x) for one input."
        )
    if isinstance(inputs, Mapping):
        raise InputError(
            f"{what} takes a list of inputs, got a {kind}; pass [d] for one input "
            "(an audio dict, say), or a list of them."
        )
    if _is_array(inputs) or _is_tensor(inputs):  # a pandas Series of texts is a fine list
        shape = tuple(inputs.shape)
        raise InputError(
            f"{what} takes a list of inputs, got a {kind} of shape {shape}; pass [a] "
            "for one input, or list(a) if its first axis is the batch."
        )
    if _is_pil(inputs):
        raise InputError(f"{what} takes a list of inputs, got one PIL image; pass [image].")
    if not isinstance(inputs, Iterable):
        raise InputError(
            f"{what} takes a list of inputs, got {kind} ({_short(inputs)}); pass a "
            "list, e.g. [x], or call model(x) for one input."
        )
    return list(inputs)


# -- text -----------------------------------------------------------------------------------------


def text_item(item: Any, index: int = 0) -> str:
    """``item`` if it is a ``str``; anything else is an :class:`fmhub.InputError`."""
    if isinstance(item, str):
        return item
    if isinstance(item, (bytes, bytearray)):
        raise InputError(
            f"got {type(item).__name__} ({_short(item)}), not text; decode it first, "
            "e.g. data.decode('utf-8').",
            index=index,
        )
    raise InputError(
        f"got {type(item).__name__} ({_short(item)}), not text; pass a str.", index=index
    )


def texts(items: Sequence[Any]) -> list[str]:
    """Check that every item is a ``str``; errors name the item's position."""
    return [text_item(x, i) for i, x in enumerate(items)]


# -- images ---------------------------------------------------------------------------------------


def _is_pil(x: Any) -> bool:
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(x, pil.Image)


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _is_array(x: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(x, np.ndarray)


def check_image_size(
    width: int,
    height: int,
    index: int = 0,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_aspect: float = MAX_ASPECT_RATIO,
) -> None:
    """Refuse an empty, oversized or absurdly elongated image (before it is decoded or resized)."""
    if width <= 0 or height <= 0:
        raise InputError(
            f"got an empty image ({width}x{height} pixels); pass a real image.", index=index
        )
    if width * height > max_pixels:
        raise InputError(
            f"got a {width}x{height} image ({width * height:,} pixels), more than the "
            f"{max_pixels:,} fmhub accepts; downscale it first (or raise max_pixels).",
            index=index,
        )
    aspect = max(width, height) / min(width, height)
    if aspect > max_aspect:
        raise InputError(
            f"got a {width}x{height} image (aspect ratio {aspect:.0f}:1, more than "
            f"{max_aspect:g}:1); resizing it to a model's input size would blow it up. Crop or "
            "pad it first (or raise max_aspect).",
            index=index,
        )


#: Modes that carry an alpha band (Pillow names).
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def pil_to_rgb(
    img: Image.Image, index: int = 0, *, background: tuple[int, int, int] | None = None
) -> Image.Image:
    """An RGB copy of a PIL image of any mode (the image itself if it is RGB already).

    * ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``...: Pillow's
      ``convert("RGB")``.
    * Modes with alpha (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, palette with transparency):
      ``background=None`` drops the alpha band (what timm's datasets do); a colour, e.g.
      ``(255, 255, 255)``, composites the image over it (what Transformers' image processors do).
    * 16-bit ``I;16`` (any byte order): scaled by 255/65535, so 65535 is white.
    * 32-bit integer ``I``: values within 0-255 are taken as they are, within 0-65535 as 16-bit
      (scaled by 255/65535); any other range is stretched linearly from the image's minimum
      (black) to its maximum (white).
    * 32-bit float ``F``: values within 0-1 are scaled by 255, within 0-255 taken as they are,
      any other range stretched from minimum to maximum; NaN or infinite pixels are refused.

    Values are rounded to the nearest integer, never clipped.
    """
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_scale_to_uint8(img, index), mode="L").convert("RGB")
    alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info)
    try:
        if mode == "La":  # premultiplied: Pillow converts it to LA only
            img = img.convert("LA")
        if alpha and background is not None:
            rgba = img.convert("RGBA")
            base = Image.new("RGBA", rgba.size, (*background, 255))
            return Image.alpha_composite(base, rgba).convert("RGB")
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise InputError(
            f"got a PIL image of mode {mode!r}, which cannot be converted to RGB "
            f"({exc}); convert it yourself first.",
            index=index,
        ) from None


def _scale_to_uint8(img: Image.Image, index: int) -> np.ndarray:
    import numpy as np

    a = np.asarray(img)
    if a.ndim != 2:
        raise InputError(
            f"got a PIL image of mode {img.mode!r} with shape {a.shape}; only "
            "single-band integer and float images are supported.",
            index=index,
        )
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise InputError(f"got a {img.mode!r} image with NaN or infinite pixels.", index=index)
    lo, hi = float(a.min()), float(a.max())
    if img.mode.startswith("I;16"):
        scale, offset = 255 / 65535, 0.0
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        scale, offset = 255.0, 0.0
    elif lo >= 0 and hi <= 255:
        scale, offset = 1.0, 0.0
    elif img.mode != "F" and lo >= 0 and hi <= 65535:
        scale, offset = 255 / 65535, 0.0
    else:  # the image's own range
        scale, offset = (255 / (hi - lo) if hi > lo else 0.0), lo
    return np.rint((a - offset) * scale).clip(0, 255).astype(np.uint8)


def _pil(index: int) -> Any:
    """``PIL.Image``, or an error saying how to install Pillow."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - installed with the image extra
        raise InputError(
            "reading an image needs Pillow: pip install 'fmhub[image]'.", index=index
        ) from None
    return Image


def _open_image(
    src: Any,
    index: int,
    max_pixels: int,
    max_aspect: float,
    background: tuple[int, int, int] | None,
) -> Image.Image:
    Image = _pil(index)
    UnidentifiedImageError = Image.UnidentifiedImageError

    is_path = isinstance(src, (str, os.PathLike))
    what = f"the file {os.fspath(src)!r}" if is_path else "the encoded bytes"
    if is_path:
        path = os.fspath(src)
        if not os.path.exists(path):
            raise InputError(
                f"no such image file {path!r}; pass an existing path or an image.", index=index
            )
        if os.path.isdir(path):
            raise InputError(f"{path!r} is a folder, not an image file.", index=index)
    else:
        src = io.BytesIO(bytes(src))
    try:
        with Image.open(src) as img:
            check_image_size(*img.size, index, max_pixels=max_pixels, max_aspect=max_aspect)
            img.load()
            return pil_to_rgb(img, index, background=background)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(f"{what} is too large to decode safely ({exc}).", index=index) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(
            f"{what} is not an image Pillow can read ({exc}); pass a JPEG, PNG, ... file.",
            index=index,
        ) from None


def _from_array(a: Any, index: int) -> Image.Image:
    import numpy as np

    Image = _pil(index)

    if a.dtype != np.uint8:
        raise InputError(
            f"got a numpy array of dtype {a.dtype}; pass uint8 pixels (0-255) as HxW or HxWxC, or "
            "a PIL image (16-bit and float images are scaled by the rule in docs/inputs.md).",
            index=index,
        )
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise InputError(
            f"got a numpy array of shape {a.shape}; an image is HxW (grayscale) or "
            "HxWx3 / HxWx4 (RGB / RGBA), channels last.",
            index=index,
        )
    if a.size == 0:
        raise InputError(f"got an empty image array of shape {a.shape}.", index=index)
    return Image.fromarray(np.ascontiguousarray(a))


def _from_tensor(t: Any, index: int, keep_float: bool) -> Any:
    import numpy as np

    t = t.detach().cpu()
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        raise InputError(
            f"got a tensor of shape {tuple(t.shape)}; an image tensor is CxHxW with "
            "1, 3 or 4 channels (channels first), or HxW.",
            index=index,
        )
    if t.numel() == 0:
        raise InputError(f"got an empty image tensor of shape {tuple(t.shape)}.", index=index)
    if str(t.dtype) == "torch.uint8":
        return t.permute(1, 2, 0).numpy()
    if not t.is_floating_point():
        raise InputError(
            f"got a {t.dtype} tensor; pass uint8 (0-255) or floating (0-1) pixels.", index=index
        )
    t = t.float()
    lo, hi = float(t.min()), float(t.max())
    if lo < -_FLOAT_SLACK or hi > 1 + _FLOAT_SLACK or not np.isfinite([lo, hi]).all():
        raise InputError(
            f"got a float tensor with values in [{lo:.3g}, {hi:.3g}]; floating image tensors must "
            "hold un-normalized pixels in [0, 1] (pass uint8 for 0-255 pixels).",
            index=index,
        )
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    elif t.shape[0] == 4:
        t = t[:3]
    if keep_float:
        return t.contiguous()
    return (t.clamp(0, 1) * 255).round().to(dtype=_uint8()).permute(1, 2, 0).numpy()


def _uint8() -> Any:
    import torch

    return torch.uint8


#: Floating tensors may overshoot [0, 1] this much (bicubic resampling) before they are refused.
_FLOAT_SLACK = 1e-3


def image_item(
    item: Any,
    index: int = 0,
    *,
    background: tuple[int, int, int] | None = None,
    keep_float_tensor: bool = False,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_aspect: float = MAX_ASPECT_RATIO,
) -> Image.Image | torch.Tensor:
    """One image input to an RGB PIL image (see the module doc for what an image is).

    ``keep_float_tensor=True`` returns a floating ``3xHxW`` tensor in [0, 1] as such (a plugin that
    resizes tensors with torchvision keeps its precision); otherwise it becomes a PIL image too.
    ``background`` is the colour alpha is composited over (``None``: alpha is dropped).
    """
    if _is_pil(item):
        check_image_size(*item.size, index, max_pixels=max_pixels, max_aspect=max_aspect)
        return pil_to_rgb(item, index, background=background)
    if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        return _open_image(item, index, max_pixels, max_aspect, background)
    if _is_tensor(item):
        if item.ndim in (2, 3):  # refuse before converting (CxHxW or HxW)
            check_image_size(
                item.shape[-1], item.shape[-2], index, max_pixels=max_pixels, max_aspect=max_aspect
            )
        item = _from_tensor(item, index, keep_float_tensor)
        if _is_tensor(item):
            return item
    if _is_array(item):
        if item.ndim >= 2:
            check_image_size(
                item.shape[1], item.shape[0], index, max_pixels=max_pixels, max_aspect=max_aspect
            )
        return pil_to_rgb(_from_array(item, index), index, background=background)
    raise InputError(
        f"got a {type(item).__name__} ({_short(item)}), not an image; pass a PIL image, a file "
        "path, encoded image bytes, a numpy uint8 array (HxWxC) or a tensor (CxHxW).",
        index=index,
    )


def to_rgb_images(
    items: Sequence[Any],
    *,
    background: tuple[int, int, int] | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_aspect: float = MAX_ASPECT_RATIO,
) -> list[Image.Image]:
    """Every item as an RGB PIL image (:func:`image_item`); errors name the item's position."""
    return [
        image_item(x, i, background=background, max_pixels=max_pixels, max_aspect=max_aspect)
        for i, x in enumerate(items)
    ]


# -- audio ----------------------------------------------------------------------------------------


def _check_rate(index: int, rate: Any) -> int:
    import numpy as np

    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, np.integer, float))
        or rate <= 0
        or (isinstance(rate, float) and not rate.is_integer())
    ):
        raise InputError(
            f"the sample rate {rate!r} is not one; a sample rate is a positive whole "
            "number of Hz, e.g. (wave, 16000).",
            index=index,
        )
    return int(rate)


def _read_audio_file(index: int, source: Any) -> tuple[np.ndarray, int]:
    import numpy as np

    is_path = isinstance(source, (str, os.PathLike))
    if is_path and not os.path.isfile(source):
        raise InputError(
            f"no such audio file {os.fspath(source)!r}; pass an existing file path.", index=index
        )
    try:
        import soundfile as sf
    except ImportError:  # pragma: no cover - installed with the audio extra
        raise InputError(
            "reading an audio file needs soundfile: pip install 'fmhub[audio]'.", index=index
        ) from None
    name = f"the file {os.fspath(source)!r}" if is_path else "the encoded bytes"
    try:
        data, rate = sf.read(
            source if is_path else io.BytesIO(bytes(source)), dtype="float32", always_2d=True
        )
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InputError(
            f"{name} cannot be decoded as audio ({exc}); pass a wav, flac or ogg "
            "file (anything libsndfile reads), or an (array, sample_rate) pair.",
            index=index,
        ) from None
    return np.ascontiguousarray(data.T), int(rate)  # soundfile gives (samples, channels)


def _audio_array(index: int, x: Any) -> np.ndarray:
    import numpy as np

    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = x.detach().cpu()
        x = (x.float() if x.is_floating_point() else x).numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"not an audio array ({exc}).", index=index) from None
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        if arr.dtype.kind == "u":
            mid = (int(info.max) + 1) / 2
            return ((arr.astype(np.float64) - mid) / mid).astype(np.float32)
        return (arr.astype(np.float64) / (int(info.max) + 1)).astype(np.float32)
    if arr.dtype.kind != "f":
        raise InputError(
            f"got an array of {arr.dtype}; audio must be float or integer PCM samples.", index=index
        )
    return arr.astype(np.float32, copy=False)


def _decode_audio(
    index: int, x: Any, default_rate: int | None, rate_option: str | None = None
) -> tuple[np.ndarray, int]:
    import numpy as np

    if isinstance(x, (str, os.PathLike, bytes, bytearray)):
        return _read_audio_file(index, x)
    if isinstance(x, Mapping):
        arr = next((x[k] for k in ("array", "waveform") if k in x), None)
        rate = next((x[k] for k in ("sampling_rate", "sample_rate") if k in x), None)
        if arr is None or rate is None:
            raise InputError(
                f"got a dict with keys {sorted(map(str, x))}; an audio dict needs 'array' and "
                "'sampling_rate' (or 'waveform' and 'sample_rate').",
                index=index,
            )
        return _audio_array(index, arr), _check_rate(index, rate)
    if isinstance(x, tuple) and len(x) == 2 and np.ndim(x[1]) == 0:
        return _audio_array(index, x[0]), _check_rate(index, x[1])
    if (
        x is None
        or isinstance(x, (int, float, str))
        or not (_is_array(x) or _is_tensor(x) or isinstance(x, (list, tuple)))
    ):
        raise InputError(
            f"got {type(x).__name__} ({_short(x)}), not audio; pass a file path or "
            "(array, sample_rate).",
            index=index,
        )
    arr = _audio_array(index, x)
    if default_rate is None:
        how = f", or load the model with {rate_option}=<Hz> for bare arrays" if rate_option else ""
        raise InputError(
            f"got a bare {type(x).__name__} of shape {tuple(arr.shape)} without a sample rate, so "
            f"it cannot be resampled safely; pass (array, sample_rate), e.g. (wave, 16000){how}.",
            index=index,
        )
    return arr, default_rate


def _to_mono(index: int, arr: np.ndarray) -> np.ndarray:
    import numpy as np

    if arr.ndim == 1:
        mono = arr
    elif arr.ndim == 2:
        a, b = arr.shape
        if a == b and a > 1:
            raise InputError(
                f"got shape {arr.shape}: a square array leaves the channel axis ambiguous; pass "
                "1-D mono audio or a (channels, samples) array with more samples than channels.",
                index=index,
            )
        channels = min(a, b)
        if channels > MAX_AUDIO_CHANNELS:
            raise InputError(
                f"got shape {arr.shape}: {channels} channels is more than {MAX_AUDIO_CHANNELS}; a "
                "2-D array is one multichannel recording, not a batch. Pass a batch as a list of "
                "recordings.",
                index=index,
            )
        mono = arr.mean(axis=0 if a <= b else 1, dtype=np.float32)
    else:
        raise InputError(
            f"got shape {arr.shape}; a recording is 1-D (samples) or 2-D (channels and samples, "
            "either order). Pass a batch as a list of recordings.",
            index=index,
        )
    if mono.size == 0:
        raise InputError(
            "got an empty recording (0 samples); pass at least a few ms of audio.", index=index
        )
    if not np.isfinite(mono).all():
        raise InputError("the recording contains NaN or infinite samples.", index=index)
    return np.ascontiguousarray(mono, dtype=np.float32)


def audio_item(
    item: Any,
    index: int = 0,
    *,
    target_rate: int | None,
    default_rate: int | None = None,
    rate_option: str | None = None,
) -> tuple[np.ndarray, int]:
    """One audio input to ``(samples, rate)``: 1-D float32 mono samples at ``target_rate``.

    ``default_rate`` is the rate of a bare array or tensor (``None`` refuses them; name the load
    option that sets it in ``rate_option`` and the error will suggest it); ``target_rate=None``
    keeps the input's own rate. Resampling is :func:`resample`.
    """
    arr, rate = _decode_audio(index, item, default_rate, rate_option)
    mono = _to_mono(index, arr)
    if target_rate is not None and rate != target_rate:
        mono, rate = resample(mono, rate, target_rate), int(target_rate)
    return mono, rate


def to_mono_audio(
    items: Sequence[Any], *, target_rate: int, default_rate: int | None = None
) -> list[np.ndarray]:
    """Every item as 1-D float32 mono samples at ``target_rate``; errors name the position."""
    return [
        audio_item(x, i, target_rate=target_rate, default_rate=default_rate)[0]
        for i, x in enumerate(items)
    ]


def audio_duration(item: Any, default_rate: int | None = None) -> float:
    """Cheap duration estimate in seconds, for batch ordering: 0 when unknown, never raises."""
    try:
        if isinstance(item, (str, os.PathLike)):
            import soundfile as sf

            info = sf.info(item)
            return info.frames / info.samplerate
        if isinstance(item, Mapping):
            arr = next((item[k] for k in ("array", "waveform") if k in item), None)
            rate = next((item[k] for k in ("sampling_rate", "sample_rate") if k in item), None)
        elif isinstance(item, tuple) and len(item) == 2:
            arr, rate = item
        else:
            arr, rate = item, default_rate
        shape = getattr(arr, "shape", None) or (len(arr),)
        return float(max(shape)) / float(rate or 16000)
    except Exception:  # noqa: BLE001 - ordering is a hint; preprocess reports bad inputs
        return 0.0


@functools.lru_cache(maxsize=32)
def _sinc_kernel(orig: int, new: int, gcd: int) -> tuple[Any, int]:
    """torchaudio's ``sinc_interp_hann`` kernel (lowpass width 6, rolloff 0.99), built in
    float32 as ``torchaudio.functional.resample`` builds it for a float32 waveform."""
    import torch

    width_zeros, rolloff = 6, 0.99
    orig, new = orig // gcd, new // gcd
    base = min(orig, new) * rolloff
    width = math.ceil(width_zeros * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float32)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float32)[:, None, None] / new + idx
    t *= base
    t = t.clamp_(-width_zeros, width_zeros)
    window = torch.cos(t * math.pi / width_zeros / 2) ** 2
    t *= math.pi
    kernels = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    kernels *= window * (base / orig)
    return kernels, width


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample 1-D float32 samples with band-limited sinc interpolation (Hann window, 6 zero
    crossings, rolloff 0.99): the same numbers as ``torchaudio.functional.resample``, without
    torchaudio. Thread-safe (the kernel is cached and never written)."""
    import numpy as np
    import torch

    orig_rate, new_rate = int(orig_rate), int(new_rate)
    if orig_rate == new_rate:
        return wave
    gcd = math.gcd(orig_rate, new_rate)
    kernel, width = _sinc_kernel(orig_rate, new_rate, gcd)
    orig, new = orig_rate // gcd, new_rate // gcd
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    length = x.shape[-1]
    x = torch.nn.functional.pad(x.view(1, -1), (width, width + orig))
    with torch.inference_mode():
        out = torch.nn.functional.conv1d(x[:, None], kernel, stride=orig)
    out = out.transpose(1, 2).reshape(-1)
    target = int(torch.ceil(torch.as_tensor(new * length / orig)))  # as torchaudio rounds it
    return out[:target].numpy()


# -- helpers --------------------------------------------------------------------------------------


def _short(x: Any, limit: int = 60) -> str:
    text = repr(x) if not (_is_array(x) or _is_tensor(x)) else f"shape {tuple(x.shape)}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
