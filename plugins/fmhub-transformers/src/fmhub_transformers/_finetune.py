"""Fine-tune hooks: default adapter targets per architecture, a sequence-classification head, the loss."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F

import fmhub

__all__ = ["TARGETS", "attach_head", "finetune_targets", "training_loss"]

#: Audio encoders sharing wav2vec 2.0's attention and feed-forward module names.
_W2V_FAMILY = ("wav2vec2", "hubert", "data2vec-audio", "sew", "unispeech", "unispeech-sat")
#: Image transformers whose attention has ``q_proj`` / ``k_proj`` / ``v_proj`` and whose MLP ends in
#: ``fc2`` (transformers 5 names); their heads are a ``classifier`` Linear.
_VIT_LIKE = ("vit", "deit", "beit", "data2vec-vision", "dinov2", "dinov2_with_registers", "swin")

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
        # generative models: the attention projections
        "gpt2": ["c_attn"],
        "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "mixtral": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "phi3": ["qkv_proj", "o_proj"],
        "phi": ["q_proj", "k_proj", "v_proj", "dense"],
        "smollm3": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "t5": ["q", "v"],
        "mt5": ["q", "v"],
        "bart": ["q_proj", "v_proj"],
        "mbart": ["q_proj", "v_proj"],
        "marian": ["q_proj", "v_proj"],
        "whisper": ["q_proj", "v_proj"],
        # image-text models: fine-tuned as image classifiers, whose module is the image tower
        "clip": ["q_proj", "v_proj"],
        "siglip": ["q_proj", "v_proj"],
        "siglip2": ["q_proj", "v_proj"],
        "chinese_clip": ["q_proj", "v_proj"],
        # audio encoders: the attention query and value projections; WavLM's attention reads its
        # projection weights without calling the modules, so its feed-forward layers instead
        **dict.fromkeys(_W2V_FAMILY, ["q_proj", "v_proj"]),
        "wavlm": ["intermediate_dense", "output_dense"],
        "wav2vec2-conformer": ["linear_q", "linear_v"],
        "sew-d": ["query_proj", "value_proj"],
        "audio-spectrogram-transformer": ["q_proj", "v_proj"],
        # image models (transformers 5 names their attention projections q/k/v/o_proj)
        **dict.fromkeys(_VIT_LIKE, ["q_proj", "v_proj"]),
        "convnext": ["pwconv1", "pwconv2"],
        "convnextv2": ["pwconv1", "pwconv2"],
        "resnet": ["convolution"],
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
        "clip": ["k_proj", "v_proj", "fc2"],
        "siglip": ["k_proj", "v_proj", "fc2"],
        "siglip2": ["k_proj", "v_proj", "fc2"],
        "chinese_clip": ["k_proj", "v_proj", "fc2"],
        **dict.fromkeys(_W2V_FAMILY, ["k_proj", "v_proj", "output_dense"]),
        "wavlm": ["intermediate_dense", "output_dense"],
        "audio-spectrogram-transformer": ["k_proj", "v_proj", "output.dense"],
        **dict.fromkeys(_VIT_LIKE, ["k_proj", "v_proj", "fc2"]),
        "convnext": ["pwconv1", "pwconv2"],
        "convnextv2": ["pwconv1", "pwconv2"],
        "resnet": ["convolution"],
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
    fresh head of ``len(labels)`` outputs (``*ForImageClassification`` for an image model; for an
    audio encoder its ``AutoModelForAudioClassification`` class: wav2vec 2.0's ``projector`` +
    ``classifier``, AST's MLP head). Returns the head's module names."""
    from transformers import AutoModelForAudioClassification, AutoModelForSequenceClassification

    if len(labels) < 1:
        raise fmhub.FineTuneError("A classification head needs at least one label.")
    processor = getattr(model, "processor", None)
    if getattr(processor, "kind", None) == "image-text":  # CLIP, SigLIP
        from ._stages_clip import attach_head as attach_image_head

        return attach_image_head(model, labels)
    audio = getattr(processor, "modality", None) == "audio"
    auto = AutoModelForAudioClassification if audio else AutoModelForSequenceClassification
    old = model.module
    prefix = old.base_model_prefix
    encoder = getattr(old, prefix, old)  # a bare encoder (AutoModel) is its own base
    config = copy.deepcopy(_config(old))
    config.num_labels = len(labels)
    config.id2label = {i: str(name) for i, name in enumerate(labels)}
    config.label2id = {str(name): i for i, name in enumerate(labels)}
    config.problem_type = "single_label_classification"
    if audio:
        config.use_weighted_layer_sum = False  # the head reads the last layer, as fmhub pools it
    with torch.device("meta"):
        if getattr(processor, "modality", None) == "image":
            new = _image_classifier(config)
        else:
            new = auto.from_config(config)
    config.architectures = [type(new).__name__]
    setattr(new, prefix, encoder)
    param = next(encoder.parameters())
    dtype = next((p.dtype for p in encoder.parameters() if p.is_floating_point()), torch.float32)
    head = [
        name
        for name, child in new.named_children()
        if name != prefix and any(True for _ in child.parameters())
    ]
    for name in head:
        part = new.get_submodule(name).to_empty(device=param.device)
        part.apply(new._init_weights)
        part.to(dtype=dtype)
    if config.model_type in _POOLER_IN_HEAD and getattr(encoder, "pooler", None) is not None:
        head.insert(0, f"{prefix}.pooler")
    new.train(old.training)
    model.module = new
    return head


def _image_classifier(config):
    """A fresh ``*ForImageClassification`` of ``config`` (DeiT's plain one, not the distillation
    variant: a new head has no teacher)."""
    from transformers import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING

    try:
        klass = MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING[type(config)]
    except KeyError:
        raise fmhub.FineTuneError(
            f"transformers has no image classifier for model_type {config.model_type!r}, so "
            "fmhub cannot attach a head to it."
        ) from None
    if isinstance(klass, (tuple, list)):
        klass = klass[0]
    return klass(config)


def training_loss(model, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the head's logits against class ids (computed in float32); for a
    generative model, of each position's logits against the next target token (-100 ignored)."""
    if targets.dim() == 2:  # token targets of a generative batch
        logits = outputs
        if not _config(model.module).is_encoder_decoder:  # position t predicts token t + 1
            logits, targets = logits[:, :-1], targets[:, 1:]
        return F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
        )
    if isinstance(outputs, dict):  # audio encoders: pooled features and the head's logits
        outputs = outputs["logits"]
    return F.cross_entropy(outputs.float(), targets)


# -- generative models ---------------------------------------------------------------------------


def _chat_ids(model, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of a rendered chat and its labels: the assistant turns' tokens (their end marker
    included), -100 elsewhere."""
    from ._stages_generate import ROLES

    tok = model.processor.tokenizer
    if not getattr(tok, "chat_template", None):
        raise fmhub.InputError(
            f"{model.spec.id} has no chat template, so it cannot train on chats; "
            "pass (prompt, completion) pairs."
        )
    for m in messages:
        if m["role"] not in ROLES:
            raise fmhub.InputError(
                f"chat role {m['role']!r} is unknown; roles are {', '.join(ROLES)}."
            )
    full = tok.apply_chat_template(messages, tokenize=False)
    spans = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = (
            tok.apply_chat_template(messages[:k], tokenize=False, add_generation_prompt=True)
            if k
            else ""
        )
        through = tok.apply_chat_template(messages[: k + 1], tokenize=False)
        if not full.startswith(through) or not through.startswith(before):
            raise fmhub.InputError(
                f"{model.spec.id}'s chat template does not render a chat as a "
                "sequence of turns; fine-tune it on (prompt, completion) pairs."
            )
        spans.append((len(before), len(through)))
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        t if any(a <= s < b for a, b in spans) else -100
        for t, (s, _) in zip(enc["input_ids"], enc["offset_mapping"])
    ]
    return list(enc["input_ids"]), labels


def training_batch(model, examples) -> dict:
    """Token ids and labels of generative training examples, right-padded.

    Causal LMs: prompt then completion then the end-of-sequence token, labels on the completion
    (and end) only; chats: labels on the assistant turns. Seq2seq: the source as encoder input, the
    target as labels. Sequences longer than the context are cut at its end.
    """
    proc = model.processor
    tok = proc.tokenizer
    eos = tok.eos_token_id
    with proc.lock:  # the tokenizer is not safe to share between threads
        inputs, labels = _tokenize_examples(model, proc, tok, eos, examples)
    if proc.context:
        inputs = [r[: proc.context] for r in inputs]
        labels = [r[: proc.context] for r in labels]
    for i, lab in enumerate(labels):
        if all(t == -100 for t in lab):
            raise fmhub.InputError(
                f"training example {i} has no target token left within the "
                f"{proc.context}-token context; shorten its prompt."
            )
    pad = tok.pad_token_id or 0
    width = max(len(r) for r in inputs)
    ids = torch.full((len(inputs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    for i, r in enumerate(inputs):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    lwidth = max(len(r) for r in labels)
    target = torch.full((len(labels), lwidth), -100, dtype=torch.long)
    for i, r in enumerate(labels):
        target[i, : len(r)] = torch.tensor(r)
    return {"input_ids": ids, "attention_mask": mask, "labels": target}


def _tokenize_examples(model, proc, tok, eos, examples):
    inputs, labels = [], []
    for i, ex in enumerate(examples):
        if proc.encoder_decoder:
            if ex[0] != "pair":
                raise fmhub.InputError(
                    f"training example {i}: {model.spec.id} trains on "
                    "(source, target) pairs, not chats."
                )
            inputs.append(tok(ex[1])["input_ids"])
            labels.append(tok(ex[2])["input_ids"])
            continue
        if ex[0] == "chat":
            ids, lab = _chat_ids(model, ex[1])
        else:
            prompt = tok(ex[1], add_special_tokens=True)["input_ids"]
            completion = tok(ex[2], add_special_tokens=False)["input_ids"]
            completion = completion + ([eos] if eos is not None else [])
            ids, lab = prompt + completion, [-100] * len(prompt) + completion
        inputs.append(ids)
        labels.append(lab)
    return inputs, labels


def training_forward(model, batch: dict) -> torch.Tensor:
    """Logits of a generative training batch (teacher forcing)."""
    config = _config(model.module)
    if not config.is_encoder_decoder:
        return model.module(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
    labels = batch["labels"]
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    start = config.decoder_start_token_id
    decoder = labels.new_full(labels.shape, pad)
    decoder[:, 1:] = labels[:, :-1]
    decoder[:, 0] = start
    decoder[decoder == -100] = pad
    return model.module(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=decoder,
    ).logits
