"""Fine-tuning hooks: default adapter targets per architecture family, and a fresh head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

import fmhub

__all__ = ["FAMILY_TARGETS", "attach_head", "finetune_targets", "head_names"]

_TRANSFORMER = (
    "attn.qkv",
    "attn.q_proj",
    "attn.k_proj",
    "attn.v_proj",
    "attn.proj",
    "mlp.fc1",
    "mlp.fc2",
    "mlp.fc1_g",
    "mlp.fc1_x",
)

#: Default target suffixes by timm model class (PEFT's ``target_modules`` matching: a module is
#: targeted when its name equals a suffix or ends with ``"." + suffix``).
FAMILY_TARGETS: dict[str, tuple[str, ...]] = {
    # ViT, DeiT, EVA, BEiT, Swin: fused qkv (or q/k/v), attention output and MLP.
    "VisionTransformer": _TRANSFORMER,
    "VisionTransformerDistilled": _TRANSFORMER,
    "Eva": _TRANSFORMER,
    "Beit": _TRANSFORMER,
    "SwinTransformer": _TRANSFORMER,
    "SwinTransformerV2": _TRANSFORMER,
    # ConvNeXt: the inverted-bottleneck MLP of every block (Linear, or 1x1 conv with conv_mlp).
    "ConvNeXt": ("mlp.fc1", "mlp.fc2"),
    # ResNet family: the block convolutions (grouped ones, as in ResNeXt, are left out).
    "ResNet": ("conv1", "conv2", "conv3"),
    # EfficientNet / MobileNet: point-wise expansion and projection, and squeeze-excitation.
    "EfficientNet": ("conv_pw", "conv_pwl", "se.conv_reduce", "se.conv_expand"),
    "MobileNetV3": ("conv_pw", "conv_pwl", "se.conv_reduce", "se.conv_expand"),
}


def head_names(module: nn.Module) -> list[str]:
    """Dotted names of the classifier modules (timm's ``pretrained_cfg['classifier']``)."""
    cfg = getattr(module, "pretrained_cfg", None) or {}
    declared = cfg.get("classifier")
    declared = (declared,) if isinstance(declared, str) else tuple(declared or ())
    modules = dict(module.named_modules())
    names = [n for n in declared if n in modules and _has_params(modules[n])]
    if not names and hasattr(module, "get_classifier"):
        clf = module.get_classifier()
        names = [n for n, m in modules.items() if n and m is clf and _has_params(m)]
    return names


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _adaptable(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)


def finetune_targets(module: nn.Module) -> list[str] | None:
    """Module-name suffixes an adapter wraps by default; never the classifier.

    A suffix that would also match something an adapter cannot wrap (a Sequential stem, a grouped
    convolution) or the head is replaced by the full names of the modules it rightly matches.
    Unknown families get every Linear and ungrouped Conv2d outside the head, by name.
    """
    if not hasattr(module, "pretrained_cfg") or not hasattr(module, "reset_classifier"):
        return None  # feature-map wrappers: let the method decide
    heads = head_names(module)
    modules = [(n, m) for n, m in module.named_modules() if n]
    in_head = lambda n: any(n == h or n.startswith(h + ".") for h in heads)  # noqa: E731
    suffixes = FAMILY_TARGETS.get(type(module).__name__)
    if suffixes is None:
        suffixes = tuple(
            dict.fromkeys(
                n.rsplit(".", 1)[-1] for n, m in modules if _adaptable(m) and not in_head(n)
            )
        )
    out: list[str] = []
    for suffix in suffixes:
        hits = [(n, m) for n, m in modules if n == suffix or n.endswith("." + suffix)]
        good = [n for n, m in hits if _adaptable(m) and not in_head(n)]
        if not good:
            continue
        out.extend([suffix] if len(good) == len(hits) else good)
    return list(dict.fromkeys(out)) or None


def attach_head(model: Any, labels: Sequence[str]) -> list[str]:
    """Replace the classifier with a fresh one of ``len(labels)`` outputs (timm's reset_classifier)."""
    if len(labels) < 1:
        raise fmhub.FineTuneError("A classification head needs at least one label.")
    module = model.module
    target = module
    if not hasattr(target, "reset_classifier"):
        raise fmhub.FineTuneError(
            f"{model.spec.id!r} was loaded for feature maps and has no classifier to train; load it "
            "with task='classification' or task='embedding' to fine-tune a head."
        )
    device, dtype = model.device, model.dtype
    target.reset_classifier(len(labels))
    names = head_names(target)
    for name in names:
        target.get_submodule(name).to(device=device, dtype=dtype)
    if not names:
        raise fmhub.FineTuneError(
            f"Could not find the classifier of {model.spec.id!r} after reset."
        )
    return names
