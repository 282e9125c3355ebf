"""Image inputs to one batch, exactly as timm's eval transform would make it, but batched.

timm's eval transform is ``Resize -> CenterCrop -> MaybeToTensor -> Normalize`` (built by
``timm.data.create_transform`` from the model's pretrained config). The geometric part runs per image
with timm's own transform objects (PIL for images, torchvision's tensor kernels for float tensors).
The last two steps are element-wise, so they run once on the stacked batch with the very same
operations (``uint8 -> float32``, ``/ 255``, ``- mean``, ``/ std``): the result is bit-identical to
``torch.stack([transform(img) for img in images])`` and it is laid out directly in the memory
format the model runs in (channels_last needs no extra copy).

Inputs are images as ``docs/inputs.md`` defines them, checked and converted by
:func:`fmhub.inputs.image_item` (every Pillow mode to RGB, alpha dropped as timm's datasets do,
16-bit and float images scaled, oversized or absurdly elongated images refused before resizing).
Floating ``CxHxW`` tensors in [0, 1] stay tensors, resized with torchvision's tensor kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from fmhub.inputs import image_item

__all__ = ["ImageProcessor"]


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
        images = [image_item(x, i, keep_float_tensor=True) for i, x in enumerate(inputs)]
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
