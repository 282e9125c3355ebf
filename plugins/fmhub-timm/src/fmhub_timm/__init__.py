"""fmhub-timm: every model timm knows behind the fmhub contract.

The ``timm:`` namespace is open: ``timm:resnet50``, ``timm:convnext_tiny.in12k_ft_in1k`` and
``timm:hf-hub:timm/vit_small_patch16_224.augreg_in21k_ft_in1k`` all load through timm's own
``create_model`` (so its Hugging Face cache and offline mode apply). Tasks: ``classification``,
``embedding`` (pooled pre-logits features) and ``feature-maps`` (``features_only`` stages).

Registration and name resolution import neither torch nor timm; the hooks that need them import
the private ``_load``, ``_stages`` and ``_finetune`` modules inside their bodies.
"""

from __future__ import annotations

import json
import os

from pydantic import Field

import fmhub
from fmhub import hookimpl

from ._catalog import catalog_specs, open_spec, syntax_error

__all__ = ["TimmOptions", "list_timm_models"]


class TimmOptions(fmhub.LoadOptions):
    """Load options of ``timm:`` models (on top of ``device``, ``dtype``, ``task``, ``quantize``)."""

    pretrained: bool = Field(
        True,
        description="Load the pretrained weights through timm (Hugging Face cache, then "
        "download); False builds the architecture with random weights.",
    )
    checkpoint: str | None = Field(
        None,
        description="A local .safetensors or .pth/.pt/.bin state dict loaded after building "
        "(torch.load with weights_only=True).",
    )
    num_classes: int | None = Field(
        None,
        ge=0,
        description="Classifier size; a size other than the pretrained one gets a fresh "
        "head, 0 removes the head (embedding model).",
    )
    top_k: int = Field(5, ge=1, description="How many labels a classification result lists.")
    channels_last: bool | None = Field(
        None,
        description="Run in the channels_last memory format; None (default) turns it on for "
        "convolutional networks, where it is faster on CPU with equal outputs.",
    )
    fast: bool | None = Field(
        None,
        description="CPU float32 inference through a frozen TorchScript graph (BatchNorm folded, "
        "oneDNN fused kernels), checked against the eager module on the first batch; same "
        "float32 numbers. None (default) turns it on for convolutional networks on CPU in float32.",
    )
    out_indices: tuple[int, ...] | None = Field(
        None,
        description="feature-maps task: which stages to return (timm's out_indices); "
        "None returns every stage timm exposes.",
    )


def list_timm_models(pattern: str = "*", pretrained: bool = True) -> list[str]:
    """Every ``timm:`` id timm itself knows that matches ``pattern`` (imports timm).

    ``pretrained=True`` lists ``arch.tag`` names with published weights (timm's
    ``list_pretrained``), ``False`` the bare architectures (``list_models``).
    """
    import timm

    names = timm.list_pretrained(pattern) if pretrained else timm.list_models(pattern)
    return [f"timm:{n}" for n in names]


@hookimpl
def fmhub_register_namespaces(register):
    register(
        fmhub.Namespace(
            name="timm",
            distribution="fmhub-timm",
            open=True,
            options=TimmOptions,
            description="timm vision models: any timm name, 'arch.tag' or 'hf-hub:org/name'.",
        )
    )


@hookimpl
def fmhub_register_models(register):
    for spec in catalog_specs():
        register(spec)


@hookimpl
def fmhub_resolve_model(namespace, name):
    problem = syntax_error(name)
    if problem is not None:
        raise fmhub.UnknownModelError(
            f"'timm:{name}' is not a timm model name: {problem}. "
            "Run 'fmhub list timm:*' for the registered ones, or "
            "python -c \"import timm; print(timm.list_models('pattern*'))\" for all of timm's."
        )
    return open_spec(name)


@hookimpl
def fmhub_claim_path(path):
    """A folder with timm's ``config.json`` (``architecture`` key) and a weights file."""
    cfg_file = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_file):
        return None
    try:
        with open(cfg_file, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return None
    if (
        not isinstance(cfg, dict)
        or not isinstance(cfg.get("architecture"), str)
        or "model_type" in cfg
    ):
        return None
    if not any(os.path.isfile(os.path.join(path, w)) for w in _WEIGHT_FILES):
        return None
    arch = cfg["architecture"]
    return fmhub.ModelSpec(
        id=f"timm:{arch}",
        path=path,
        modality="image",
        architecture=arch,
        source=path,
        description=f"Local timm folder ({arch}).",
    )


_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")


@hookimpl
def fmhub_load(spec, options, device, dtype):
    from ._load import load

    return load(spec, options, device, dtype)


@hookimpl
def fmhub_preprocess(model, inputs):
    return model.processor.batch(inputs)


@hookimpl
def fmhub_forward(model, batch):
    from ._stages import forward

    return forward(model, batch)


@hookimpl
def fmhub_postprocess(model, outputs, batch):
    from ._stages import postprocess

    return postprocess(model, outputs)


@hookimpl
def fmhub_save(model, path):
    from ._load import save

    save(model, path)
    return True


@hookimpl
def fmhub_finetune_targets(model, method):
    from ._finetune import finetune_targets

    return finetune_targets(model.module)


@hookimpl
def fmhub_attach_head(model, labels):
    from ._finetune import attach_head

    return attach_head(model, labels)


@hookimpl
def fmhub_training_loss(model, outputs, targets):
    import torch.nn.functional as F

    return F.cross_entropy(outputs.float(), targets)


@hookimpl
def fmhub_export_spec(model):
    from ._stages import export_spec

    return export_spec(model)
