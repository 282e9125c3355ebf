"""Fine-tuning hooks: default adapter targets per family, the classification head, the loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import fmhub

from ._module import speech_module

__all__ = ["HEAD", "TARGETS", "attach_head", "loss", "targets"]

#: The head's module name inside ``model.module``; trained and saved in full, never adapted.
HEAD = "head"

_ATTENTION = ["q_proj", "k_proj", "v_proj", "out_proj"]
_FEED_FORWARD = ["intermediate_dense", "output_dense"]

#: Default adapter targets (module-name suffixes) per family: attention projections and the
#: feed-forward layers of every transformer layer. torchaudio's WavLM computes q/k/v from the fused
#: ``in_proj_weight`` of an ``nn.MultiheadAttention`` without calling a submodule, so only its
#: output projection can be adapted there.
TARGETS: dict[str, list[str]] = {
    "wav2vec2": _ATTENTION + _FEED_FORWARD,
    "hubert": _ATTENTION + _FEED_FORWARD,
    "wavlm": ["out_proj"] + _FEED_FORWARD,
}


def targets(model, method: str) -> list[str]:
    """Module-name suffixes ``method`` adapts by default (the same for every method)."""
    return list(TARGETS.get(model.processor.family, TARGETS["wav2vec2"]))


def attach_head(model, labels: Sequence[str]) -> list[str]:
    """A fresh ``nn.Linear(dim, len(labels))`` over the pooled features of the chosen layer."""
    if len(labels) < 1:
        raise fmhub.FineTuneError("A classification head needs at least one label.")
    module = speech_module(model.module)
    ref = next(module.model.parameters())
    module.head = nn.Linear(model.processor.embed_dim, len(labels)).to(ref.device, ref.dtype)
    return [HEAD]


def loss(model, outputs, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the head's logits (computed in float32)."""
    return F.cross_entropy(outputs["logits"].float(), targets)
