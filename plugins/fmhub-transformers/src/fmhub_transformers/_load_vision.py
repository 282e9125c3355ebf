"""Loading image checkpoints: ``AutoModelForImageClassification`` (classification) or
``AutoModel`` (embedding) with the checkpoint's ``AutoImageProcessor`` (imports torch and
transformers). :func:`fmhub_transformers._load.load` hands image checkpoints here."""

from __future__ import annotations

from typing import Any

import torch

import fmhub

from ._config import CheckpointConfig, detect_task
from ._load import _quiet, _Source, load_module, loaded
from ._stages_vision import VisionProcessor

__all__ = ["IMAGE_TASKS", "load_vision"]

#: The tasks of image checkpoints, and the transformers auto class that loads each.
IMAGE_TASKS: dict[str, str] = {
    "classification": "AutoModelForImageClassification",
    "embedding": "AutoModel",
}
#: Embedding poolings an image model takes (``pooling=``; None: ``"auto"``).
_POOLINGS = ("cls", "mean")


def _check_options(options, where: str) -> str:
    """Refuse the text-only options; return the embedding pooling."""
    if options.max_length is not None:
        raise fmhub.InvalidOptionError(
            f"max_length={options.max_length} limits tokens; {where} is an image model (its "
            "image processor sets the input size). Leave max_length unset."
        )
    if options.pooling is not None and options.pooling not in _POOLINGS:
        raise fmhub.InvalidOptionError(
            f"pooling={options.pooling!r} is a token pooling; {where} is an image model, which "
            f"takes pooling='cls' or 'mean' (or none: its pooled output, see "
            "docs/plugins/transformers.md)."
        )
    return options.pooling or "auto"


def _drop_untrained_pooler(module: Any, info: dict[str, Any]) -> bool:
    """A checkpoint without pooler weights (ViT / DeiT classification checkpoints loaded as an
    encoder) would get a randomly initialised pooler: remove it, so the embedding is the class
    token, and saving the model writes no random weights. True when removed."""
    missing = [k for k in info.get("missing_keys") or () if k.startswith("pooler.")]
    if missing and isinstance(getattr(module, "pooler", None), torch.nn.Module):
        module.pooler = None
        return True
    return False


def _check_runs(module: Any, cfg: CheckpointConfig, task: str, where: str) -> None:
    """Refuse image models fmhub's stages cannot run faithfully: a forward without
    ``pixel_values`` (ImageGPT takes colour-cluster ids), or one that masks patches at random
    (a ViT-MAE encoder: its embeddings would change from call to call)."""
    import inspect

    if "pixel_values" not in inspect.signature(module.forward).parameters:
        raise fmhub.PluginError(
            f"{where} (model_type {cfg.model_type!r}) does not take pixel_values; fmhub runs "
            "image models whose forward takes the image processor's pixel_values."
        )
    if task == "embedding" and float(getattr(module.config, "mask_ratio", 0) or 0) > 0:
        raise fmhub.PluginError(
            f"{where} (model_type {cfg.model_type!r}) masks {module.config.mask_ratio:.0%} of "
            "the patches at random in every forward pass, so its embeddings are not "
            "deterministic; fmhub does not serve it as an embedding model."
        )


def load_vision(
    spec: fmhub.ModelSpec, options, src: _Source, cfg: CheckpointConfig
) -> fmhub.Loaded:
    """Load an image checkpoint for ``classification`` or ``embedding``."""
    import transformers

    task = options.task or spec.task or detect_task(cfg, False)
    if task not in IMAGE_TASKS:
        raise fmhub.InvalidOptionError(
            f"{src.where} is an image model (model_type {cfg.model_type!r}); task={task!r} is "
            f"not one of its tasks: use {' or '.join(repr(t) for t in IMAGE_TASKS)}."
        )
    pooling = _check_options(options, src.where)
    if src.fetch("preprocessor_config.json") is None:
        raise fmhub.ManifestError(
            f"{src.where} has no preprocessor_config.json, so fmhub cannot preprocess images as "
            "the checkpoint expects; add its image processor (AutoImageProcessor.save_pretrained)."
        )
    module, info = load_module(src, options, cfg, task, IMAGE_TASKS[task])
    _check_runs(module, cfg, task, src.where)
    if task == "embedding":
        _drop_untrained_pooler(module, info)
    image_processor = _quiet(
        lambda: transformers.AutoImageProcessor.from_pretrained(
            src.location,
            revision=src.revision,
            trust_remote_code=options.trust_remote_code,
            **({"local_files_only": True} if src.cache_only else {}),
        )
    )
    processor = VisionProcessor(
        image_processor,
        cfg.model_type,
        pooling=pooling,
        normalize=bool(options.normalize),
        top_k=options.top_k,
    )
    return loaded(
        module,
        task=task,
        processor=processor,
        modality="image",
        options=options,
        src=src,
        cfg=cfg,
        info={
            "image_processor": type(image_processor).__name__,
            **(
                {"pooling": pooling, "normalize": processor.normalize}
                if task == "embedding"
                else {}
            ),
        },
    )
