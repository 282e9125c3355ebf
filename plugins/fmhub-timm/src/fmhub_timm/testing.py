"""Tiny timm models placed where the real loaders look, for tests and demos (no network).

* :func:`write_hub_model` writes a tiny model's weights into the Hugging Face cache layout, exactly
  where ``timm.create_model('<arch>.<tag>', pretrained=True)`` (and ``'hf-hub:timm/<arch>.<tag>'``)
  read them offline: ``<cache>/models--timm--<arch>.<tag>/snapshots/<rev>/model.safetensors`` plus
  timm's ``config.json``, with ``refs/main`` naming the revision.
* :func:`offline_hub` points ``HF_HUB_CACHE`` at a folder with ``HF_HUB_OFFLINE=1`` (also patching
  ``huggingface_hub.constants``, which reads the variables once at import).
* :func:`write_checkpoint` writes a ``.safetensors`` or ``.pth`` state dict for ``checkpoint=``.
* :func:`photos` returns real photos that ship inside scikit-image.

timm ships ``test_*`` architectures (``test_vit``, ``test_resnet``, ``test_convnext``,
``test_efficientnet``, ...) with pretrained tags ``r160_in1k`` whose weights live on the Hub; their
random-initialised versions are a few hundred kB and build in milliseconds.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmhub.testing import hf_hub_cache

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from torch import nn

__all__ = [
    "TINY_MODELS",
    "offline_hub",
    "photos",
    "tiny_model",
    "write_checkpoint",
    "write_hub_model",
]

#: Tiny pretrained names, one per family, all ImageNet-1k heads at 160x160.
TINY_MODELS = (
    "test_vit.r160_in1k",
    "test_resnet.r160_in1k",
    "test_convnext.r160_in1k",
    "test_efficientnet.r160_in1k",
)


def tiny_model(name: str, seed: int = 0, noise: float = 0.05, **kwargs: Any) -> nn.Module:
    """A timm model with seeded random weights (``pretrained=False``), perturbed so outputs vary.

    timm's initialisation zeroes some heads and scales; the perturbation makes logits differ from
    image to image, so tests that compare them can fail.
    """
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=gen) * noise)
    return model


def _revision(name: str, seed: int) -> str:
    return hashlib.sha1(f"fmhub-timm-testing:{name}:{seed}".encode()).hexdigest()


def write_hub_model(
    cache_dir: str | os.PathLike,
    name: str = "test_vit.r160_in1k",
    seed: int = 0,
    *,
    repo: str | None = None,
    weights: str = "model.safetensors",
    **kwargs: Any,
) -> Path:
    """Write a tiny model into a Hugging Face hub cache as ``timm/<name>``; returns the snapshot folder.

    ``weights`` is ``model.safetensors`` (what timm asks for first) or ``pytorch_model.bin``.
    ``kwargs`` go to ``timm.create_model`` (e.g. ``num_classes``). Returns the folder holding the
    weights and ``config.json``.
    """
    import torch
    from safetensors.torch import save_file
    from timm.models._hub import save_config_for_hf

    repo = repo or f"timm/{name}"
    model = tiny_model(name, seed=seed, **kwargs)
    root = Path(cache_dir) / f"models--{repo.replace('/', '--')}"
    rev = _revision(repo, seed)
    snap = root / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(rev)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if weights.endswith(".safetensors"):
        save_file(state, str(snap / weights))
    else:
        torch.save(state, snap / weights)
    save_config_for_hf(model, str(snap / "config.json"))
    return snap


def write_checkpoint(
    path: str | os.PathLike, name: str = "test_resnet", seed: int = 0, **kwargs: Any
) -> Path:
    """Write a tiny model's state dict to ``path`` (``.safetensors``, else ``torch.save``)."""
    import torch
    from safetensors.torch import save_file

    model = tiny_model(name, seed=seed, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def offline_hub(cache_dir: str | os.PathLike) -> AbstractContextManager[Path]:
    """Use ``cache_dir`` as the Hugging Face cache, offline, inside the ``with`` block
    (:func:`fmhub.testing.hf_hub_cache`)."""
    return hf_hub_cache(cache_dir, offline=True)


def photos() -> dict[str, Any]:
    """Real photos shipped inside scikit-image, as numpy arrays.

    ``chelsea`` (cat, RGB 300x451), ``coffee`` (RGB 400x600), ``astronaut`` (RGB 512x512),
    ``camera`` (grayscale 512x512) and ``logo`` (RGBA 500x500).
    """
    from skimage import data

    return {
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "astronaut": data.astronaut(),
        "camera": data.camera(),
        "logo": data.logo(),
    }
