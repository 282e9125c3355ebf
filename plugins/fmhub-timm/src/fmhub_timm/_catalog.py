"""Registered timm models and the cheap syntax check of open ``timm:`` names.

Nothing here imports torch or timm: ``fmhub list`` and ``fmhub info`` read it. The preprocessing
values are copied from timm's pretrained configs; ``tests/test_timm_catalog.py`` checks them
against the installed timm so they cannot drift silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import fmhub

__all__ = ["ROWS", "Row", "catalog_specs", "open_spec", "split_name"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True, kw_only=True)
class Row:
    """One registered model: the timm name (``arch.tag``), short aliases and what timm says of it.

    Keyword-only: a row reads as ``field=value`` and cannot shift.
    """

    id: str  #: timm's ``arch.tag`` name
    aliases: tuple[str, ...]
    architecture: str  #: timm's architecture (the name before the tag)
    task: str
    description: str
    crop_pct: float
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    size: int = 224
    license: str = "apache-2.0"
    paper: str | None = None
    num_classes: int = 1000


ROWS: tuple[Row, ...] = (
    Row(
        id="resnet18.a1_in1k",
        aliases=("resnet18",),
        architecture="resnet18",
        task="classification",
        description="ResNet-18, ResNet Strikes Back A1 recipe, ImageNet-1k.",
        crop_pct=0.95,
        paper="arXiv:2110.00476",
    ),
    Row(
        id="resnet50.a1_in1k",
        aliases=("resnet50",),
        architecture="resnet50",
        task="classification",
        description="ResNet-50, ResNet Strikes Back A1 recipe, ImageNet-1k.",
        crop_pct=0.95,
        paper="arXiv:2110.00476",
    ),
    Row(
        id="resnet50.tv_in1k",
        aliases=("resnet50-torchvision",),
        architecture="resnet50",
        task="classification",
        description="ResNet-50 with torchvision's original weights.",
        crop_pct=0.875,
        interpolation="bilinear",
        license="bsd-3-clause",
    ),
    Row(
        id="vit_base_patch16_224.augreg2_in21k_ft_in1k",
        aliases=("vit-base", "vit-base-patch16-224"),
        architecture="vit_base_patch16_224",
        task="classification",
        description="ViT-B/16, AugReg ImageNet-21k pretraining, ImageNet-1k fine-tune.",
        crop_pct=0.9,
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
    ),
    Row(
        id="vit_small_patch16_224.augreg_in21k_ft_in1k",
        aliases=("vit-small", "vit-small-patch16-224"),
        architecture="vit_small_patch16_224",
        task="classification",
        description="ViT-S/16, AugReg ImageNet-21k pretraining, ImageNet-1k fine-tune.",
        crop_pct=0.9,
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
    ),
    Row(
        id="deit_small_patch16_224.fb_in1k",
        aliases=("deit-small",),
        architecture="deit_small_patch16_224",
        task="classification",
        description="DeiT-S/16 (data-efficient ViT), ImageNet-1k.",
        crop_pct=0.9,
    ),
    Row(
        id="convnext_tiny.in12k_ft_in1k",
        aliases=("convnext-tiny",),
        architecture="convnext_tiny",
        task="classification",
        description="ConvNeXt-T, ImageNet-12k pretraining, ImageNet-1k fine-tune.",
        crop_pct=0.95,
    ),
    Row(
        id="efficientnet_b0.ra_in1k",
        aliases=("efficientnet-b0",),
        architecture="efficientnet_b0",
        task="classification",
        description="EfficientNet-B0, RandAugment recipe, ImageNet-1k.",
        crop_pct=0.875,
    ),
    Row(
        id="efficientnet_lite0.ra_in1k",
        aliases=("efficientnet-lite0",),
        architecture="efficientnet_lite0",
        task="classification",
        description="EfficientNet-Lite0, ImageNet-1k.",
        crop_pct=0.875,
    ),
    Row(
        id="mobilenetv3_large_100.ra_in1k",
        aliases=("mobilenetv3-large", "mobilenet-v3-large"),
        architecture="mobilenetv3_large_100",
        task="classification",
        description="MobileNetV3-Large 1.0, ImageNet-1k.",
        crop_pct=0.875,
    ),
    Row(
        id="mobilenetv3_small_100.lamb_in1k",
        aliases=("mobilenetv3-small", "mobilenet-v3-small"),
        architecture="mobilenetv3_small_100",
        task="classification",
        description="MobileNetV3-Small 1.0, ImageNet-1k.",
        crop_pct=0.875,
    ),
    Row(
        id="swin_tiny_patch4_window7_224.ms_in1k",
        aliases=("swin-tiny",),
        architecture="swin_tiny_patch4_window7_224",
        task="classification",
        description="Swin-T, window 7, ImageNet-1k.",
        crop_pct=0.9,
        license="mit",
    ),
    Row(
        id="regnety_016.tv2_in1k",
        aliases=("regnety-016",),
        architecture="regnety_016",
        task="classification",
        description="RegNetY-1.6GF, torchvision v2 recipe, ImageNet-1k.",
        crop_pct=0.965,
        license="bsd-3-clause",
    ),
    Row(
        id="vit_small_patch14_dinov2.lvd142m",
        aliases=("dinov2-small",),
        architecture="vit_small_patch14_dinov2",
        task="embedding",
        description="DINOv2 ViT-S/14 self-supervised image embeddings (no classifier).",
        crop_pct=1.0,
        size=518,
        num_classes=0,
    ),
)

TASKS = ("classification", "embedding", "feature-maps")

# timm registry names: lower-case arch, optional ".tag".
_ARCH = re.compile(r"[a-z0-9][a-z0-9_]*")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*(@[\w.\-]+)?")


def split_name(name: str) -> tuple[str, str | None]:
    """``arch.tag`` -> (arch, tag); the same split timm's ``split_model_name_tag`` makes."""
    arch, _, tag = name.partition(".")
    return arch, tag or None


def _check_syntax(name: str) -> str | None:
    """None when ``name`` could be a timm name, else why it cannot."""
    if name.startswith("hf-hub:"):
        repo = name.removeprefix("hf-hub:")
        if _HUB_ID.fullmatch(repo):
            return None
        return f"'hf-hub:' must be followed by a Hugging Face repo id 'org/name', got {repo!r}"
    arch, tag = split_name(name)
    if not _ARCH.fullmatch(arch):
        return (
            f"{arch!r} is not a timm architecture name (lower-case letters, digits and '_'; "
            "a Hub repo is written 'timm:hf-hub:org/name')"
        )
    if tag is not None and not _TAG.fullmatch(tag):
        return f"{tag!r} is not a valid pretrained tag"
    return None


def catalog_specs() -> list[fmhub.ModelSpec]:
    """The registered models, with their preprocessing contract and provenance."""
    specs = []
    for e in ROWS:
        specs.append(
            fmhub.ModelSpec(
                id=f"timm:{e.id}",
                aliases=e.aliases,
                task=e.task,
                tasks=TASKS if e.num_classes else TASKS[1:],
                modality="image",
                architecture=e.architecture,
                description=e.description,
                license=e.license,
                source=f"hf-hub:timm/{e.id}",
                paper=e.paper,
                preprocessing=fmhub.Preprocessing(
                    input_size=(3, e.size, e.size),
                    mean=e.mean,
                    std=e.std,
                    interpolation=e.interpolation,
                    crop_pct=e.crop_pct,
                    crop_mode="center",
                ),
            )
        )
    return specs


def open_spec(name: str) -> fmhub.ModelSpec | None:
    """A spec for any syntactically valid timm name; the name is checked against timm at load."""
    if _check_syntax(name) is not None:
        return None
    if name.startswith("hf-hub:"):
        return fmhub.ModelSpec(
            id=f"timm:{name}",
            modality="image",
            tasks=TASKS,
            source=name,
            description="timm model from the Hugging Face Hub.",
        )
    arch, tag = split_name(name)
    return fmhub.ModelSpec(
        id=f"timm:{name}",
        modality="image",
        tasks=TASKS,
        architecture=arch,
        source=f"timm:{name}",
        description=f"timm architecture {arch!r}" + (f", weights {tag!r}." if tag else "."),
    )


def syntax_error(name: str) -> str | None:
    """Public wrapper used by the loader for a clear message."""
    return _check_syntax(name)
