"""Fine-tune hooks: default adapter targets per architecture, a sequence-classification head, the loss."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["TARGETS", "attach_head", "finetune_targets", "training_loss"]

#: method -> model_type -> module-name suffixes (PEFT ``target_modules``). LoRA adapts the
#: attention query and value projections (the LoRA paper's choice); IA3 rescales keys, values
#: and the feed-forward output. None of them can match a classification head.
TARGETS: dict[str, dict[str, list[str]]] = {
    "lora": {
        "bert": ["query", "value"],
        "roberta": ["query", "value"],
        "xlm-roberta": ["query", "value"],
        "camembert": ["query", "value"],
        "electra": ["query", "value"],
        "distilbert": ["q_lin", "v_lin"],
        "deberta-v2": ["query_proj", "value_proj"],
        "deberta": ["in_proj"],
        "mpnet": ["q", "v"],
    },
    "ia3": {
        "bert": ["key", "value", "output.dense"],
        "roberta": ["key", "value", "output.dense"],
        "xlm-roberta": ["key", "value", "output.dense"],
        "camembert": ["key", "value", "output.dense"],
        "electra": ["key", "value", "output.dense"],
        "distilbert": ["k_lin", "v_lin", "lin2"],
        "deberta-v2": ["key_proj", "value_proj", "output.dense"],
        "deberta": ["in_proj", "output.dense"],
        "mpnet": ["k", "v", "output.dense"],
    },
}

#: Model types whose sequence classifier reads the encoder's own pooler: it is part of the head.
_POOLER_IN_HEAD = {"bert", "megatron-bert", "nezha", "ernie"}


def _config(module):
    config = getattr(module, "config", None)
    if config is None:  # wrapped (e.g. by PEFT)
        config = module.get_base_model().config
    return config


def finetune_targets(model, method: str) -> list[str] | None:
    """Suffixes for ``method`` on this architecture; None (the method decides) when unknown."""
    return list(TARGETS.get(method, {}).get(_config(model.module).model_type, [])) or None


def attach_head(model, labels: Sequence[str]) -> list[str]:
    """Swap ``model.module`` for a ``*ForSequenceClassification`` sharing the same encoder, with a
    fresh head of ``len(labels)`` outputs. Returns the head's module names."""
    from transformers import AutoModelForSequenceClassification

    old = model.module
    prefix = old.base_model_prefix
    encoder = getattr(old, prefix, old)  # a bare encoder (AutoModel) is its own base
    config = copy.deepcopy(_config(old))
    config.num_labels = len(labels)
    config.id2label = {i: str(name) for i, name in enumerate(labels)}
    config.label2id = {str(name): i for i, name in enumerate(labels)}
    config.problem_type = "single_label_classification"
    with torch.device("meta"):
        new = AutoModelForSequenceClassification.from_config(config)
    config.architectures = [type(new).__name__]
    setattr(new, prefix, encoder)
    param = next(encoder.parameters())
    dtype = next((p.dtype for p in encoder.parameters() if p.is_floating_point()), torch.float32)
    head = [name for name, child in new.named_children()
            if name != prefix and any(True for _ in child.parameters())]
    for name in head:
        part = new.get_submodule(name).to_empty(device=param.device)
        part.apply(new._init_weights)
        part.to(dtype=dtype)
    if config.model_type in _POOLER_IN_HEAD and getattr(encoder, "pooler", None) is not None:
        head.insert(0, f"{prefix}.pooler")
    new.train(old.training)
    model.module = new
    return head


def training_loss(model, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the head's logits against class ids (computed in float32)."""
    return F.cross_entropy(outputs.float(), targets)
