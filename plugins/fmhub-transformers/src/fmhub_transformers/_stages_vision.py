"""Image models (ViT, DeiT, BEiT, DINOv2, ConvNeXt, Swin, ResNet...): preprocessing with the
checkpoint's own image processor, the forward pass with the embedding pooling, typed results, and
the export spec (imports torch).

Inputs are images as ``docs/inputs.md`` defines them, checked and converted to RGB PIL images by
the shared :func:`fmhub.inputs.to_rgb_images` (the rules every image plugin uses; alpha dropped, as
transformers' pipelines do before their image processor sees the image). The checkpoint's ``AutoImageProcessor`` then resizes, crops, rescales and normalises the
whole batch in one call, exactly as ``pipeline("image-classification")`` does one image at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

import fmhub
from fmhub.inputs import to_rgb_images
from fmhub.results import top_k_classification

__all__ = [
    "CLS_TYPES",
    "VisionProcessor",
    "export_spec",
    "forward",
    "pool",
    "postprocess",
    "preprocess",
]

#: Image model types whose token sequence starts with a class token: without a pooler, their
#: embedding is that token (after the final layer norm); other token models are mean-pooled.
CLS_TYPES = frozenset(
    {
        "vit",
        "deit",
        "beit",
        "data2vec-vision",
        "dinov2",
        "dinov2_with_registers",
        "dinov3_vit",
        "vit_msn",
    }
)


@dataclass
class VisionProcessor:
    """What the image stages need: the checkpoint's image processor and the embedding policy.

    :param pooling: ``"auto"`` (the checkpoint's ``pooler_output`` where it has a trained pooler,
        else the class token of :data:`CLS_TYPES`, else the mean), ``"cls"`` or ``"mean"``.
    """

    modality: ClassVar[str] = "image"

    image_processor: Any
    model_type: str
    pooling: str = "auto"
    normalize: bool = False
    top_k: int = 5

    def pixels(self, images: list[Any]) -> torch.Tensor:
        """The processor's ``pixel_values`` of a list of RGB PIL images, in one call."""
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def save(self, path: str) -> None:
        self.image_processor.save_pretrained(path)


def preprocess(model, inputs) -> dict[str, Any]:
    """Images to ``pixel_values`` (N, 3, H, W) with the checkpoint's image processor."""
    proc: VisionProcessor = model.processor
    images = to_rgb_images(inputs)
    return {"pixel_values": proc.pixels(images)}


def pool(out: Any, mode: str, model_type: str) -> torch.Tensor:
    """One vector per image from the module's outputs (see :class:`VisionProcessor`)."""
    pooled = getattr(out, "pooler_output", None)
    if mode == "auto" and pooled is not None:
        return pooled.flatten(1)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    if hidden.dim() == 4:  # (N, C, H, W) feature maps: global average pool
        if mode == "cls":
            raise fmhub.InvalidOptionError(
                f"pooling='cls': a {model_type} model has no class token (it returns feature "
                "maps); use pooling='mean' or leave pooling unset."
            )
        return hidden.mean(dim=(2, 3))
    if mode == "cls" or (mode == "auto" and model_type in CLS_TYPES):
        return hidden[:, 0]
    return hidden.mean(dim=1)


def forward(model, batch: dict[str, Any]) -> torch.Tensor:
    """Logits of a classifier; pooled (normalised) vectors of an embedding model."""
    proc: VisionProcessor = model.processor
    out = model.module(pixel_values=batch["pixel_values"])
    if model.task != "embedding":
        return out.logits
    vectors = pool(out, proc.pooling, proc.model_type)
    return F.normalize(vectors, p=2, dim=1) if proc.normalize else vectors


def postprocess(model, outputs: torch.Tensor, batch: dict[str, Any]) -> list[Any]:
    """``Classification`` (softmax, or sigmoid for multi-label heads, as the pipeline does) or
    a float32 vector per image."""
    if model.task == "embedding":
        return list(outputs.float().cpu().numpy())
    if model.task == "classification":
        logits = outputs.float()
        config = model.module.config
        multi = config.problem_type == "multi_label_classification" or logits.shape[-1] == 1
        probs = logits.sigmoid() if multi else logits.softmax(-1)
        return top_k_classification(probs, model.labels, k=model.processor.top_k)
    raise fmhub.PluginError(f"image task {model.task!r} has no postprocessing")


# -- export ------------------------------------------------------------------------------------


class _ForwardStage(torch.nn.Module):
    """:func:`forward` as a module of the pixel tensor: logits, or pooled vectors."""

    def __init__(self, module, task: str, pooling: str, model_type: str, normalize: bool):
        super().__init__()
        self.module, self.task = module, task
        self.pooling, self.model_type, self.normalize = pooling, model_type, normalize

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.module(pixel_values=pixel_values)
        if self.task != "embedding":
            return out.logits
        vectors = pool(out, self.pooling, self.model_type)
        return F.normalize(vectors, p=2, dim=1) if self.normalize else vectors


def export_spec(model) -> fmhub.ExportSpec:
    """Images are resized to the model's input size by preprocessing, so only the batch axis is
    dynamic; example and check images are seeded noise of different sizes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)

    def image(h: int, w: int) -> Any:
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    proc: VisionProcessor = model.processor
    return fmhub.ExportSpec(
        module=_ForwardStage(
            model.module, model.task, proc.pooling, proc.model_type, proc.normalize
        ),
        input_names=["pixel_values"],
        output_names=["fmhub_embedding" if model.task == "embedding" else "fmhub_logits"],
        example=[image(200, 240), image(180, 160)],
        check=[image(120, 300), image(256, 256), image(96, 128)],
        dynamic_axes={"pixel_values": {0: "batch"}},
    )
