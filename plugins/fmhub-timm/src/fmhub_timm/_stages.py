"""The stages of timm models: preprocess, forward, postprocess, and the export spec.

Image inputs to one batch, exactly as timm's eval transform would make it, but batched.

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

import fmhub
from fmhub.inputs import image_item
from fmhub.results import FeatureMaps, top_k_classification

from ._catalog import TASKS

__all__ = ["ImageProcessor", "export_spec", "forward", "postprocess"]


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


# -- forward / postprocess ---------------------------------------------------------------------


def forward(model: Any, batch: dict[str, Any]) -> Any:
    """``fmhub_forward``: logits, pooled pre-logits features, or the list of stage maps."""
    x = batch["pixel_values"]
    module = model.module
    if model.info.get("fast") is True:
        from ._fast import fast_forward

        out = fast_forward(model, x)
        if out is not None:
            return out
    if model.task == "embedding":
        feats = module.forward_features(x)
        return module.forward_head(feats, pre_logits=True)
    return module(x)


def postprocess(model: Any, outputs: Any) -> list[Any]:
    """``fmhub_postprocess``: one typed result per image."""
    if model.task == "classification":
        probs = outputs.float().softmax(-1)
        return top_k_classification(probs, model.labels, k=model.options.top_k)
    if model.task == "embedding":
        emb = outputs.float().flatten(1).cpu().numpy()
        return list(emb)
    if model.task == "feature-maps":
        if any(m.ndim != 4 for m in outputs):
            shapes = [tuple(m.shape) for m in outputs]
            raise fmhub.InvalidOptionError(
                f"timm's feature extractor for {model.spec.id!r} returns {shapes}, not (N, C, H, W) "
                "maps; load it with task='embedding' instead."
            )
        maps = [_nchw(model.module, m).float().cpu().numpy() for m in outputs]
        return [FeatureMaps(maps=tuple(m[i] for m in maps)) for i in range(maps[0].shape[0])]
    raise fmhub.InvalidOptionError(
        f"timm models cannot do task {model.task!r}; use one of {TASKS}."
    )


def _nchw(module: Any, t: torch.Tensor) -> torch.Tensor:
    fmt = str(getattr(module, "output_fmt", "NCHW"))
    return t.permute(0, 3, 1, 2) if fmt.endswith("NHWC") else t


# -- export ----------------------------------------------------------------------------------


class _ForwardStage(torch.nn.Module):
    """:func:`forward` as a module of the pixel tensor (logits, pooled features or stage maps)."""

    def __init__(self, module: Any, task: str):
        super().__init__()
        self.module, self.task = module, task

    def forward(self, pixel_values: torch.Tensor):
        if self.task == "embedding":
            return self.module.forward_head(
                self.module.forward_features(pixel_values), pre_logits=True
            )
        out = self.module(pixel_values)
        return tuple(out) if isinstance(out, (list, tuple)) else out


def export_spec(model: Any) -> fmhub.ExportSpec:
    """Images are resized and cropped to the model's input size by preprocessing, so only the batch
    axis is dynamic; example and check images are seeded noise of different sizes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)

    def image(h: int, w: int) -> Any:
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    if model.task == "feature-maps":
        names = [f"fmhub_stage{i}" for i in range(len(model.module.feature_info))]
    else:
        names = ["fmhub_embedding" if model.task == "embedding" else "fmhub_logits"]
    return fmhub.ExportSpec(
        module=_ForwardStage(model.module, model.task),
        input_names=["pixel_values"],
        output_names=names,
        example=[image(200, 240), image(180, 160)],
        check=[image(120, 300), image(256, 256), image(96, 128)],
        dynamic_axes={"pixel_values": {0: "batch"}},
        pack=list if model.task == "feature-maps" else None,
    )
