"""int8 inference on CPU.

Two modes, measured on the real all-MiniLM-L6-v2 (see docs/quantization.md for the figures and
``bench/finetune.py`` to measure them again):

* ``"int8"`` — torchao's int8 dynamic-activation / int8-weight quantization (per-token activation
  scales, per-channel weights): the path that keeps embeddings at cosine >= 0.99 against float32.
* ``"int8-fast"`` — PyTorch's eager ``quantize_dynamic`` with per-channel weights: faster, but
  embeddings drift further (cosine ~0.96-0.98); opt in only when that accuracy cost is acceptable.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from .errors import DeviceError, InvalidOptionError

if TYPE_CHECKING:
    from torch import nn

    from .model import Model

__all__ = ["MODES", "quantize"]

MODES = ("int8", "int8-fast")


def quantize(model: Model, mode: str = "int8") -> Model:
    """Quantize ``model``'s linear layers in place for CPU inference; returns ``model``."""
    if mode not in MODES:
        raise InvalidOptionError(f"Unknown quantization mode {mode!r}; use one of {MODES}.")
    if model.device.type != "cpu":
        raise DeviceError(
            f"int8 quantization here targets CPU inference, but the model is on {model.device}; "
            "move it with model.to(device='cpu') first (on GPU prefer dtype='bfloat16')."
        )
    if getattr(model, "quantized", None):
        raise InvalidOptionError(f"{model.spec.id!r} is already quantized ({model.quantized}).")
    if model.adapter is not None:
        model.merge()  # fold adapters in: quantizing LoRA factors separately costs accuracy
    if model.dtype != _float32():
        model.to(dtype="float32")
    if mode == "int8":
        _torchao_int8(model.module)
    else:
        _eager_dynamic(model.module)
    model.quantized = mode
    model.info["quantized"] = mode
    return model


def _float32():
    import torch

    return torch.float32


def _torchao_int8(module: nn.Module) -> None:
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError:
        raise InvalidOptionError(
            "quantize='int8' needs torchao: pip install 'fmhub[int8]' (or use 'int8-fast')."
        ) from None
    import torch

    def eligible(
        mod: nn.Module, _fqn: str
    ) -> bool:  # tiny layers gain nothing and some shapes are unsupported
        return isinstance(mod, torch.nn.Linear) and mod.in_features >= 16 and mod.out_features >= 16

    quantize_(module, Int8DynamicActivationInt8WeightConfig(), filter_fn=eligible)


def _eager_dynamic(module: nn.Module) -> None:
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the eager API warns that it is being migrated to torchao
        quantize_dynamic(
            module, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True
        )
