"""Image inputs to one batch, exactly as timm's eval transform would make it, but batched.

timm's eval transform is ``Resize -> CenterCrop -> MaybeToTensor -> Normalize`` (built by
``timm.data.create_transform`` from the model's pretrained config). The geometric part runs per image
with timm's own transform objects (PIL for images, torchvision's tensor kernels for float tensors).
The last two steps are element-wise, so they run once on the stacked batch with the very same
operations (``uint8 -> float32``, ``/ 255``, ``- mean``, ``/ std``): the result is bit-identical to
``torch.stack([transform(img) for img in images])`` and it is laid out directly in the memory
format the model runs in (channels_last needs no extra copy).

Inputs: PIL images, file paths (``str``/``os.PathLike``), encoded image ``bytes``, numpy ``uint8``
arrays ``HxW``/``HxWxC`` and torch tensors ``CxHxW`` (``uint8`` 0-255, or floating 0-1) or ``HxW``.
Grayscale, palette, RGBA, CMYK and other modes become RGB the way timm's datasets do it
(``Image.convert("RGB")``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

import fmhub

__all__ = ["ImageProcessor", "to_rgb_image"]

#: Floating tensors may overshoot [0, 1] this much (bicubic resampling) before we refuse them.
_FLOAT_SLACK = 1e-3


class ImageProcessor:
    """timm's eval transform for one model, plus the batched tensor conversion.

    :param data_config: timm's resolved data config (``input_size``, ``interpolation``, ``mean``,
        ``std``, ``crop_pct``, ``crop_mode``).
    :param channels_last: Lay the batch out in the channels_last memory format.
    """

    def __init__(self, data_config: dict[str, Any], channels_last: bool = False):
        from timm.data import create_transform
        from timm.data.transforms import MaybeToTensor
        from torchvision import transforms as T

        self.data_config = dict(data_config)
        self.channels_last = channels_last
        self.transform = create_transform(**self.data_config, is_training=False)
        steps = list(getattr(self.transform, "transforms", []))
        self._fast = (
            len(steps) >= 2 and type(steps[-2]) is MaybeToTensor and type(steps[-1]) is T.Normalize
        )
        if self._fast:
            self.geometry = T.Compose(steps[:-2])
            norm = steps[-1]
            self.mean = torch.as_tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
            self.std = torch.as_tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)

    def __repr__(self) -> str:
        return f"ImageProcessor({self.transform!r}, channels_last={self.channels_last})"

    # -- the batch -----------------------------------------------------------------------------

    def batch(self, inputs: Sequence[Any]) -> dict[str, Any]:
        """Preprocess a batch: ``{"pixel_values": (N, 3, H, W) float32, "sizes": [(w, h), ...]}``."""
        images = [coerce(x, i) for i, x in enumerate(inputs)]
        sizes = [_size(img) for img in images]
        if not self._fast:
            x = torch.stack([self.transform(img) for img in images])
        else:
            x = self._fast_batch(images)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return {"pixel_values": x, "sizes": sizes}

    def _fast_batch(self, images: list[Any]) -> torch.Tensor:
        crops = [self.geometry(img) for img in images]
        if all(isinstance(c, Image.Image) for c in crops):
            # (N, H, W, 3) uint8 viewed as NCHW: channels_last strides, no copy.
            arr = np.stack([np.asarray(c, dtype=np.uint8) for c in crops])
            x = torch.from_numpy(arr).permute(0, 3, 1, 2)
            if not self.channels_last:
                x = x.contiguous()
            x = x.to(dtype=torch.float32).div(255)
        else:
            x = torch.stack([_as_float(c) for c in crops])
        return x.sub_(self.mean).div_(self.std)


def _as_float(crop: Any) -> torch.Tensor:
    if isinstance(crop, Image.Image):
        from torchvision.transforms.functional import to_tensor

        return to_tensor(crop)
    return crop


def _size(img: Any) -> tuple[int, int]:
    if isinstance(img, Image.Image):
        return img.size
    return int(img.shape[-1]), int(img.shape[-2])


# -- coercion of one input ---------------------------------------------------------------------


def coerce(x: Any, index: int = 0) -> Image.Image | torch.Tensor:
    """One raw input to an RGB PIL image or a float ``3xHxW`` tensor in [0, 1]."""
    if isinstance(x, Image.Image):
        return to_rgb_image(x, index)
    if isinstance(x, (str, os.PathLike)):
        return _open(x, index)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return _open(io.BytesIO(bytes(x)), index, what="the encoded bytes")
    if isinstance(x, np.ndarray):
        return _from_array(x, index)
    if isinstance(x, torch.Tensor):
        return _from_tensor(x, index)
    raise fmhub.InputError(
        f"Input {index} is a {type(x).__name__}, not an image; timm models take PIL images, file "
        "paths, encoded image bytes, numpy uint8 arrays (HxWxC) or tensors (CxHxW)."
    )


def to_rgb_image(img: Image.Image, index: int = 0) -> Image.Image:
    """RGB version of a PIL image (timm's datasets call ``convert('RGB')``); refuses empty ones."""
    w, h = img.size
    if w == 0 or h == 0:
        raise fmhub.InputError(f"Input {index} is an empty image ({w}x{h} pixels); pass a real image.")
    return img if img.mode == "RGB" else img.convert("RGB")


def _open(src: Any, index: int, what: str | None = None) -> Image.Image:
    what = what or f"the file {os.fspath(src)!r}"
    try:
        with Image.open(src) as img:
            img.load()
            return to_rgb_image(img, index)
    except FileNotFoundError:
        raise fmhub.InputError(
            f"Input {index}: no such image file {os.fspath(src)!r}; pass an existing path or an image."
        ) from None
    except IsADirectoryError:
        raise fmhub.InputError(f"Input {index}: {os.fspath(src)!r} is a folder, not an image file.") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise fmhub.InputError(
            f"Input {index}: {what} is not an image Pillow can read ({exc}); pass a JPEG, PNG, ... file."
        ) from None


def _from_array(a: np.ndarray, index: int) -> Image.Image:
    if a.dtype != np.uint8:
        raise fmhub.InputError(
            f"Input {index} is a numpy array of dtype {a.dtype}; pass uint8 pixels (0-255) as HxW or "
            "HxWxC, or a float torch tensor CxHxW with values in [0, 1]."
        )
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise fmhub.InputError(
            f"Input {index} is a numpy array of shape {a.shape}; an image is HxW (grayscale) or "
            "HxWx3 / HxWx4 (RGB / RGBA), channels last."
        )
    if a.size == 0:
        raise fmhub.InputError(f"Input {index} is an empty image array of shape {a.shape}.")
    return to_rgb_image(Image.fromarray(np.ascontiguousarray(a)), index)


def _from_tensor(t: torch.Tensor, index: int) -> Image.Image | torch.Tensor:
    t = t.detach().cpu()
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        raise fmhub.InputError(
            f"Input {index} is a tensor of shape {tuple(t.shape)}; an image tensor is CxHxW with 1, 3 "
            "or 4 channels (channels first), or HxW."
        )
    if t.numel() == 0:
        raise fmhub.InputError(f"Input {index} is an empty image tensor of shape {tuple(t.shape)}.")
    if t.dtype == torch.uint8:
        # 0-255 pixels behave exactly like the same numpy array / PIL image.
        return _from_array(t.permute(1, 2, 0).numpy(), index)
    if not t.is_floating_point():
        raise fmhub.InputError(
            f"Input {index} is a {t.dtype} tensor; pass uint8 (0-255) or floating (0-1) pixels."
        )
    t = t.float()
    lo, hi = float(t.min()), float(t.max())
    if lo < -_FLOAT_SLACK or hi > 1 + _FLOAT_SLACK or not np.isfinite([lo, hi]).all():
        raise fmhub.InputError(
            f"Input {index} is a float tensor with values in [{lo:.3g}, {hi:.3g}]; floating image "
            "tensors must hold un-normalized pixels in [0, 1] (pass uint8 for 0-255 pixels)."
        )
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    elif t.shape[0] == 4:
        t = t[:3]
    return t.contiguous()
