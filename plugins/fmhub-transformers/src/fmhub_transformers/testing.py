"""Tiny Transformers checkpoints for tests and demos, built offline in a second.

:func:`build_tiny_model` writes a complete checkpoint folder (``config.json``, a ``tokenizers``
tokenizer whose vocabulary is built deterministically from a small built-in English corpus, seeded
random weights as safetensors) for one of the architectures fmhub-transformers knows;
:func:`install_in_hub_cache` lays a folder out as the Hugging Face hub cache does
(``models--org--name/snapshots/<sha>/`` plus ``refs/main``), so ``fmhub.load("hf:org/name")``
finds it with ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE`` pointing there (see
:func:`hub_cache_env`). Nothing is downloaded.

Example::

    from fmhub_transformers.testing import build_tiny_model, install_in_hub_cache

    folder = build_tiny_model(tmp / "bert", arch="bert", task="classification", labels=["neg", "pos"])
    install_in_hub_cache(tmp / "hub", "tiny-org/tiny-bert", folder)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmhub.testing import hf_hub_cache

from ._config import _LEGACY_POOLING, sentence_modules

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "ARCHITECTURES",
    "CORPUS",
    "IMAGE_ARCHITECTURES",
    "TASKS",
    "build_tiny_image_text",
    "build_tiny_image_model",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "hub_cache_env",
    "install_in_hub_cache",
]

#: A small deterministic English corpus: the tiny tokenizers' training data and handy test inputs.
CORPUS: tuple[str, ...] = (
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France and Berlin is the capital of Germany.",
    "John Smith works for Acme Corporation in New York.",
    "Transformers turn text into vectors, labels and entities.",
    "It was the best of times, it was the worst of times.",
    "Numbers like 42, 3.14 and 2026 appear in text too!",
    "Short.",
    "What is the weather like in London today?",
    "I loved this movie; the acting was wonderful and the plot surprising.",
    "This film was terrible, boring and far too long.",
    "Hugging Face hosts many pretrained language models.",
)

#: Tasks a tiny model can be built for (the model class each one saves).
TASKS = ("embedding", "classification", "fill-mask", "token-classification")

_WORDPIECE_SPECIALS = {
    "pad": "[PAD]",
    "unk": "[UNK]",
    "cls": "[CLS]",
    "sep": "[SEP]",
    "mask": "[MASK]",
}
_BPE_SPECIALS = {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}

#: arch -> (transformers model_type, tokenizer style, config overrides for a tiny model).
ARCHITECTURES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "bert": ("bert", "wordpiece", {"type_vocab_size": 2}),
    "distilbert": ("distilbert", "wordpiece", {}),
    "electra": ("electra", "wordpiece", {"embedding_size": 16}),
    "deberta-v2": (
        "deberta-v2",
        "wordpiece",
        {
            "relative_attention": True,
            "pos_att_type": ["p2c", "c2p"],
            "position_biased_input": False,
        },
    ),
    "roberta": ("roberta", "bpe", {"type_vocab_size": 1}),
    "xlm-roberta": ("xlm-roberta", "bpe", {"type_vocab_size": 1}),
    "mpnet": ("mpnet", "bpe", {}),
}

_MAX_TOKENS = 64
_LAYERS, _HEADS, _HIDDEN, _FFN = 2, 2, 32, 37


def build_tiny_tokenizer(
    style: str = "wordpiece", max_length: int = _MAX_TOKENS
) -> PreTrainedTokenizerFast:
    """A fast tokenizer whose vocabulary is built deterministically from :data:`CORPUS`:
    ``"wordpiece"`` (BERT-like, lower-cased, ``[CLS] x [SEP]``, every corpus word plus single
    characters) or ``"bpe"`` (RoBERTa-like byte-level BPE, ``<s> x </s>``, merges that spell every
    corpus word). Unseen words split into known pieces; nothing is downloaded or trained."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if style == "wordpiece":
        sp = _WORDPIECE_SPECIALS
        order = [sp["pad"], sp["unk"], sp["cls"], sp["sep"], sp["mask"]]
        words = [
            w
            for w, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(" ".join(CORPUS).lower())
        ]
        chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
        tokens = order + chars + ["##" + c for c in chars] + sorted(set(words))
        vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
        tok = Tokenizer(
            models.WordPiece(vocab=vocab, unk_token=sp["unk"], max_input_chars_per_word=100)
        )
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        template = (f"{sp['cls']} $A {sp['sep']}", f"{sp['cls']} $A {sp['sep']} $B:1 {sp['sep']}:1")
    elif style == "bpe":
        sp = _BPE_SPECIALS
        order = [sp["cls"], sp["pad"], sp["sep"], sp["unk"], sp["mask"]]
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
        pieces = sorted({p for text in CORPUS for p, _ in byte_level.pre_tokenize_str(text)})
        tokens = order + sorted(pre_tokenizers.ByteLevel.alphabet())
        merges: list[tuple[str, str]] = []
        for piece in pieces:  # merge left to right: every prefix of every corpus word is a token
            current = piece[0]
            for ch in piece[1:]:
                merges.append((current, ch))
                current += ch
                tokens.append(current)
        vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
        tok = Tokenizer(
            models.BPE(vocab=vocab, merges=list(dict.fromkeys(merges)), unk_token=sp["unk"])
        )
        tok.pre_tokenizer = byte_level
        tok.decoder = decoders.ByteLevel()
        template = (
            f"{sp['cls']} $A {sp['sep']}",
            f"{sp['cls']} $A {sp['sep']} {sp['sep']} $B {sp['sep']}",
        )
    else:
        raise ValueError(f"unknown tokenizer style {style!r}; use 'wordpiece' or 'bpe'")
    tok.add_special_tokens(order)
    ids = {t: tok.token_to_id(t) for t in order}
    tok.post_processor = processors.TemplateProcessing(
        single=template[0],
        pair=template[1],
        special_tokens=[(sp["cls"], ids[sp["cls"]]), (sp["sep"], ids[sp["sep"]])],
    )
    if style == "bpe":  # character spans without the leading space, as RoBERTa's tokenizer gives
        tok.post_processor = processors.Sequence(
            [processors.ByteLevel(trim_offsets=True), tok.post_processor]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=max_length,
        unk_token=sp["unk"],
        pad_token=sp["pad"],
        cls_token=sp["cls"],
        sep_token=sp["sep"],
        mask_token=sp["mask"],
        bos_token=sp["cls"],
        eos_token=sp["sep"],
    )


def _config(arch: str, tokenizer: PreTrainedTokenizerFast, task: str, labels: Sequence[str] | None):
    from transformers import AutoConfig

    model_type, style, extra = ARCHITECTURES[arch]
    # RoBERTa-like models number positions from pad_token_id + 1.
    offset = tokenizer.pad_token_id + 1 if model_type in ("roberta", "xlm-roberta", "mpnet") else 0
    sizes = dict(
        hidden_size=_HIDDEN,
        num_hidden_layers=_LAYERS,
        num_attention_heads=_HEADS,
        intermediate_size=_FFN,
    )
    if model_type == "distilbert":
        sizes = dict(dim=_HIDDEN, n_layers=_LAYERS, n_heads=_HEADS, hidden_dim=_FFN)
    kwargs: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=_MAX_TOKENS + offset,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.2,
        **sizes,
        **extra,
    )
    if style == "bpe":
        kwargs.update(bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    if labels is not None:
        kwargs.update(
            id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
        )
    return AutoConfig.for_model(model_type, **kwargs)


_MODEL_CLASSES = {
    "embedding": "AutoModel",
    "classification": "AutoModelForSequenceClassification",
    "fill-mask": "AutoModelForMaskedLM",
    "token-classification": "AutoModelForTokenClassification",
}

_DEFAULT_LABELS = {
    "classification": ("negative", "positive"),
    "token-classification": ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"),
}


def _save_quietly(model: Any, dest: str | os.PathLike) -> None:
    """``model.save_pretrained(dest)`` without transformers' progress bars."""
    import transformers

    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        model.save_pretrained(dest)
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()


def build_tiny_model(
    dest: str | os.PathLike,
    arch: str = "bert",
    task: str = "embedding",
    *,
    labels: Sequence[str] | None = None,
    seed: int = 0,
    pooling: str | Sequence[str] | None = None,
    normalize: bool = False,
    max_seq_length: int | None = None,
    sizes: dict[str, Any] | None = None,
) -> Path:
    """Write a tiny random-weight checkpoint of ``arch`` for ``task`` into ``dest``; return it.

    :param arch: One of :data:`ARCHITECTURES` (``bert``, ``roberta``, ``distilbert``, ``electra``,
        ``deberta-v2``, ``mpnet``, ``xlm-roberta``).
    :param task: One of :data:`TASKS`; decides the saved model class (and ``architectures``).
    :param labels: Class (or BIO tag) names for the classification tasks; defaults provided.
    :param seed: Seed of the random weights (same seed, same weights).
    :param pooling: With ``task="embedding"``, also write a sentence-transformers layout
        (``modules.json``, ``1_Pooling/config.json``) with this pooling mode (``"mean"``,
        ``"cls"``, ``"max"``... or several).
    :param normalize: With ``pooling``, add a ``Normalize`` module.
    :param max_seq_length: With ``pooling``, the ``sentence_bert_config.json`` maximum length.
    :param sizes: Config overrides (e.g. ``{"num_hidden_layers": 1}`` where a test's cost grows
        with the depth, as an ONNX export's does).
    """
    import torch
    import transformers

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose from {sorted(ARCHITECTURES)}")
    if task not in _MODEL_CLASSES:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(ARCHITECTURES[arch][1])
    if ARCHITECTURES[arch][0] == "distilbert":
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
    if labels is None:
        labels = _DEFAULT_LABELS.get(task)
    config = _config(arch, tokenizer, task, labels if task in _DEFAULT_LABELS else None)
    for key, value in (sizes or {}).items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = getattr(transformers, _MODEL_CLASSES[task]).from_config(config).eval()
    _save_quietly(model, dest)
    tokenizer.save_pretrained(dest)
    if pooling is not None:
        write_sentence_transformers_files(
            dest,
            pooling,
            normalize,
            max_seq_length,
            config.hidden_size if hasattr(config, "hidden_size") else _HIDDEN,
        )
    return dest


def write_sentence_transformers_files(
    dest: Path, pooling: str | Sequence[str], normalize: bool, max_seq_length: int | None, dim: int
) -> None:
    """Write the sentence-transformers module files (legacy ``pooling_mode_*`` keys) into ``dest``."""
    modes = [pooling] if isinstance(pooling, str) else list(pooling)
    legacy = {key: mode in modes for key, mode in _LEGACY_POOLING.items()}
    cfg = {"word_embedding_dimension": dim, **legacy}
    modules = sentence_modules(normalize)
    (dest / "1_Pooling").mkdir(exist_ok=True)
    (dest / "1_Pooling" / "config.json").write_text(json.dumps(cfg, indent=2))
    (dest / "modules.json").write_text(json.dumps(modules, indent=2))
    (dest / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length or _MAX_TOKENS, "do_lower_case": False})
    )
    (dest / "config_sentence_transformers.json").write_text(json.dumps({"__version__": {}}))


def install_in_hub_cache(
    cache_dir: str | os.PathLike,
    repo_id: str,
    folder: str | os.PathLike,
    *,
    revision: str = "main",
    symlink: bool = False,
) -> Path:
    """Lay ``folder`` out in a Hugging Face hub cache as repo ``repo_id`` at ``revision``.

    Creates ``<cache_dir>/models--org--name/snapshots/<sha>/...`` (a fake but well-formed commit
    hash of the files' names and contents) and ``refs/<revision>`` pointing at it, which is all the hub
    client reads with ``HF_HUB_OFFLINE=1``. Files are copied, or symlinked with ``symlink=True``
    (cheap for large real checkpoints). Returns the snapshot folder.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts)
    digest = hashlib.sha1(repo_id.encode())
    for f in files:
        digest.update(str(f.relative_to(folder)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    sha = digest.hexdigest()
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / sha
    for f in files:
        target = snapshot / f.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        if symlink:
            target.symlink_to(f.resolve())
        else:
            shutil.copyfile(f, target)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(sha)
    return snapshot


#: Point the hub client at a cache, offline by default (the core's helper, under this plugin's name).
hub_cache_env = hf_hub_cache


# -- image models ----------------------------------------------------------------------------------

#: Image architectures a tiny model can be built for: ``model_type`` -> config sizes (``S`` is
#: replaced by the image size).
IMAGE_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "vit": dict(
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
    ),
    "deit": dict(
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        architectures=["DeiTForImageClassification"],
    ),
    "beit": dict(
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        use_mean_pooling=True,
    ),
    "dinov2": dict(
        patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2
    ),
    "swin": dict(patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4),
    "convnext": dict(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2),
    "resnet": dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"),
}

_DEFAULT_IMAGE_LABELS = ("cat", "dog", "bird")


def _image_processor(arch: str, size: int):
    """The image processor the real checkpoints of ``arch`` ship, scaled to ``size`` pixels."""
    from transformers import (
        BeitImageProcessor,
        BitImageProcessor,
        ConvNextImageProcessor,
        DeiTImageProcessor,
        ViTImageProcessor,
    )

    square = {"height": size, "width": size}
    if arch in ("vit", "swin"):
        return ViTImageProcessor(size=square)
    if arch == "deit":  # resize larger, then center crop (DeiT's 256 -> 224)
        return DeiTImageProcessor(size={"height": size + 8, "width": size + 8}, crop_size=square)
    if arch == "beit":
        return BeitImageProcessor(size=square, do_center_crop=False)
    if arch == "dinov2":  # shortest edge, then center crop, bicubic (DINOv2's 256 -> 224)
        return BitImageProcessor(
            size={"shortest_edge": size + 8},
            crop_size=square,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        )
    return ConvNextImageProcessor(size={"shortest_edge": size}, crop_pct=0.875)


def build_tiny_image_model(
    dest: str | os.PathLike,
    arch: str = "vit",
    task: str = "classification",
    *,
    labels: Sequence[str] | None = None,
    seed: int = 0,
    image_size: int = 32,
) -> Path:
    """Write a tiny random-weight image checkpoint of ``arch`` (one of
    :data:`IMAGE_ARCHITECTURES`) into ``dest`` with its image processor
    (``preprocessor_config.json``) scaled to ``image_size``; return it.

    :param task: ``"classification"`` (``AutoModelForImageClassification``, labels
        ``cat, dog, bird`` by default) or ``"embedding"`` (``AutoModel``, pooler included).
    """
    import torch
    import transformers

    if arch not in IMAGE_ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose from {sorted(IMAGE_ARCHITECTURES)}")
    if task not in ("classification", "embedding"):
        raise ValueError(f"unknown task {task!r}; choose 'classification' or 'embedding'")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    kwargs = dict(IMAGE_ARCHITECTURES[arch], initializer_range=0.2)
    if arch != "resnet":
        kwargs["image_size"] = image_size
    if task == "classification":
        names = list(labels or _DEFAULT_IMAGE_LABELS)
        kwargs.update(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    else:
        kwargs.pop("architectures", None)
    config = transformers.AutoConfig.for_model(arch, **kwargs)
    torch.manual_seed(seed)
    auto = "AutoModelForImageClassification" if task == "classification" else "AutoModel"
    model = getattr(transformers, auto).from_config(config).eval()
    _save_quietly(model, dest)
    _image_processor(arch, image_size).save_pretrained(dest)
    return dest


# -- generative models ---------------------------------------------------------------------------

#: arch -> (transformers model_type, model class, config overrides) of the tiny generative models.
GENERATIVE_ARCHITECTURES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "gpt2": (
        "gpt2",
        "AutoModelForCausalLM",
        {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 128},
    ),
    "llama": (
        "llama",
        "AutoModelForCausalLM",
        {
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 128,
        },
    ),
    "t5": (
        "t5",
        "AutoModelForSeq2SeqLM",
        {
            "d_model": 32,
            "d_kv": 8,
            "d_ff": 48,
            "num_layers": 2,
            "num_decoder_layers": 2,
            "num_heads": 4,
            "relative_attention_num_buckets": 8,
        },
    ),
    "bart": (
        "bart",
        "AutoModelForSeq2SeqLM",
        {
            "d_model": 32,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "encoder_attention_heads": 4,
            "decoder_attention_heads": 4,
            "encoder_ffn_dim": 48,
            "decoder_ffn_dim": 48,
            "max_position_embeddings": 128,
        },
    ),
}

#: A small chat template (ChatML-like), given to the tiny Llama.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _byte_level_bpe(byte_level: Any, specials: Sequence[str]) -> tuple[dict[str, int], list]:
    """The vocabulary (``specials`` first, then the byte alphabet, then every prefix of each
    pre-tokenized word of :data:`CORPUS`) and the merges that build those words, so every word of
    the corpus is one token."""
    from tokenizers import pre_tokenizers

    pieces = sorted({p for text in CORPUS for p, _ in byte_level.pre_tokenize_str(text)})
    tokens = list(specials) + sorted(pre_tokenizers.ByteLevel.alphabet())
    merges: list[tuple[str, str]] = []
    for piece in pieces:
        current = piece[0]
        for ch in piece[1:]:
            merges.append((current, ch))
            current += ch
            tokens.append(current)
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}, list(dict.fromkeys(merges))


def build_lm_tokenizer(arch: str = "gpt2"):
    """A byte-level BPE tokenizer over :data:`CORPUS` for a generative ``arch``: GPT-2 style
    (``<|endoftext|>``, nothing added), Llama style (``<s>`` prepended, a chat template), T5
    style (``</s>`` appended, ``<pad>`` first) or BART style (``<s> x </s>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = {
        "gpt2": ["<|endoftext|>"],
        "llama": ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"],
        "t5": ["<pad>", "</s>", "<unk>"],
        "bart": ["<s>", "<pad>", "</s>", "<unk>"],
    }[arch]
    vocab, merges = _byte_level_bpe(byte_level, specials)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    ids = {t: tok.token_to_id(t) for t in specials}
    kwargs: dict[str, Any] = {}
    if arch == "gpt2":
        kwargs = dict(
            bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
        )
    elif arch == "llama":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", ids["<s>"])]
        )
        kwargs = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    elif arch == "t5":
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", ids["</s>"])]
        )
        kwargs = dict(eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])],
        )
        kwargs = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    out = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, **kwargs)
    if arch == "llama":
        out.chat_template = CHAT_TEMPLATE
    return out


def build_tiny_generative(
    dest: str | os.PathLike,
    arch: str = "gpt2",
    *,
    seed: int = 0,
    sizes: dict[str, Any] | None = None,
) -> Path:
    """Write a tiny random-weight generative checkpoint (``gpt2``, ``llama``, ``t5``, ``bart``)
    with its tokenizer and ``generation_config.json`` into ``dest``; return it. ``sizes`` overrides
    config fields (e.g. a wider model for benchmarks)."""
    import torch
    import transformers

    if arch not in GENERATIVE_ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose from {sorted(GENERATIVE_ARCHITECTURES)}")
    model_type, model_class, extra = GENERATIVE_ARCHITECTURES[arch]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tok = build_lm_tokenizer(arch)
    ids = dict(
        vocab_size=len(tok),
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    if arch in ("t5", "bart"):
        ids["decoder_start_token_id"] = tok.pad_token_id if arch == "t5" else tok.eos_token_id
    if arch == "bart":
        ids["forced_eos_token_id"] = tok.eos_token_id
    config = transformers.AutoConfig.for_model(model_type, **{**extra, **ids, **(sizes or {})})
    if arch in ("gpt2", "llama"):
        config.tie_word_embeddings = True
    torch.manual_seed(seed)
    model = getattr(transformers, model_class).from_config(config).eval()
    model.generation_config = transformers.GenerationConfig(
        **{k: v for k, v in ids.items() if k != "vocab_size" and v is not None}, max_new_tokens=32
    )
    _save_quietly(model, dest)
    tok.save_pretrained(dest)
    return dest


#: Languages of the tiny Whisper's tokenizer (Whisper's codes).
WHISPER_LANGUAGES = ("en", "fr", "de", "es")


def build_tiny_whisper(
    dest: str | os.PathLike, *, seed: int = 0, sizes: dict[str, Any] | None = None
) -> Path:
    """Write a tiny random-weight multilingual Whisper checkpoint (config, weights,
    ``generation_config.json`` with language and task tokens, a byte-level BPE tokenizer over
    :data:`CORPUS` with Whisper's special and timestamp tokens, the feature extractor) into
    ``dest``; return it. ``sizes`` overrides config fields."""
    import torch
    import transformers
    from tokenizers import AddedToken, pre_tokenizers
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    vocab, merges = _byte_level_bpe(byte_level, [])
    tok = WhisperTokenizer(vocab=vocab, merges=merges)
    specials = (
        ["<|endoftext|>", "<|startoftranscript|>"]
        + [f"<|{code}|>" for code in WHISPER_LANGUAGES]
        + [
            "<|translate|>",
            "<|transcribe|>",
            "<|startoflm|>",
            "<|startofprev|>",
            "<|nospeech|>",
            "<|notimestamps|>",
        ]
        + [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    )
    tok.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials[:12]}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    tok.model_max_length = 448
    config = transformers.WhisperConfig(
        **{
            "vocab_size": len(tok),
            "num_mel_bins": 80,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "d_model": 32,
            "encoder_attention_heads": 4,
            "decoder_attention_heads": 4,
            "encoder_ffn_dim": 48,
            "decoder_ffn_dim": 48,
            "max_source_positions": 1500,
            "max_target_positions": 448,
            "pad_token_id": eot,
            "bos_token_id": eot,
            "eos_token_id": eot,
            "decoder_start_token_id": sot,
            "begin_suppress_tokens": [eot],
            "suppress_tokens": [],
            **(sizes or {}),
        }
    )
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        bos_token_id=eot,
        max_length=448,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        lang_to_id={f"<|{c}|>": ids[f"<|{c}|>"] for c in WHISPER_LANGUAGES},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        is_multilingual=True,
        begin_suppress_tokens=[eot],
        suppress_tokens=[],
        max_initial_timestamp_index=50,
        prev_sot_token_id=ids["<|startofprev|>"],
        alignment_heads=[[1, 0]],
    )
    _save_quietly(model, dest)
    WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok
    ).save_pretrained(dest)
    return dest


# -- image-text models (CLIP, SigLIP) ------------------------------------------------------------

#: Image-text architectures a tiny checkpoint can be built for.
IMAGE_TEXT_ARCHITECTURES = ("clip", "siglip", "siglip2", "chinese_clip")
#: Words every tiny image-text tokenizer spells as whole tokens (besides :data:`CORPUS`).
_IMAGE_TEXT_WORDS = ("this", "photo", "of", "cat", "dog", "car", "bird", "house", "tree")


def _words() -> list[str]:
    import re

    found = {w for t in CORPUS for w in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", t.lower())}
    return sorted(found | set(_IMAGE_TEXT_WORDS))


def _clip_tokenizer():
    """CLIP's own tokenizer class over a BPE vocabulary that spells every corpus word (lower-cased,
    ``</w>`` word ends, ``<|startoftext|> x <|endoftext|>``)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alpha = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>", *alpha, *(a + "</w>" for a in alpha)]
    merges: list[tuple[str, str]] = []
    for w in _words():
        current = w[0]
        for i, ch in enumerate(w[1:]):
            piece = ch + "</w>" if i == len(w) - 2 else ch
            merges.append((current, piece))
            current += piece
            tokens.append(current)
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=list(dict.fromkeys(merges)), model_max_length=77)


def _siglip_tokenizer(folder: Path):
    """SigLIP's sentencepiece tokenizer, its model trained offline on :data:`CORPUS` (needs the
    ``sentencepiece`` package, as every real SigLIP checkpoint does)."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join([*CORPUS, " ".join(_IMAGE_TEXT_WORDS)] * 4), encoding="utf-8")
    prefix = folder / "spiece"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=160,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        character_coverage=1.0,
        minloglevel=2,
    )
    corpus.unlink()
    (folder / "spiece.vocab").unlink(missing_ok=True)
    model_file = folder / "spiece.model"
    tok = SiglipTokenizer(vocab_file=str(model_file), model_max_length=64)
    return tok


def _siglip2_tokenizer():
    """SigLIP 2's Gemma-style tokenizer (byte-fallback BPE) over a vocabulary of every corpus word."""
    from transformers import Siglip2Tokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    tokens = specials + [f"<0x{b:02X}>" for b in range(256)]
    merges: list[tuple[str, str]] = []
    for w in _words():
        w = "▁" + w
        current = w[0]
        tokens.append(current)
        for ch in w[1:]:
            tokens.append(ch)
            merges.append((current, ch))
            current += ch
            tokens.append(current)
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return Siglip2Tokenizer(vocab=vocab, merges=list(dict.fromkeys(merges)), model_max_length=64)


def _ids(tok: Any) -> dict[str, int]:
    """The special token ids of a tiny tokenizer, for its text tower's config."""
    eos = tok.eos_token_id
    bos = tok.bos_token_id if tok.bos_token_id is not None else eos
    return {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": tok.pad_token_id}


def build_tiny_image_text(
    dest: str | os.PathLike,
    arch: str = "clip",
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    sizes: dict[str, Any] | None = None,
) -> Path:
    """Write a tiny random-weight image-text checkpoint (``clip``, ``siglip``, ``siglip2`` or
    ``chinese_clip``):
    ``config.json`` with both towers, safetensors weights, the architecture's own tokenizer and
    image processor (``preprocessor_config.json``) into ``dest``; return it.

    ``image_size`` is the vision tower's input side, in patches of ``patch_size`` pixels;
    ``sizes`` overrides fields of both tower configs (``hidden_size``, ``num_hidden_layers``...),
    e.g. for benchmarks.
    """
    import torch
    import transformers

    if arch not in IMAGE_TEXT_ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose from {IMAGE_TEXT_ARCHITECTURES}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tower = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        **(sizes or {}),
    }
    vision = dict(tower, patch_size=patch_size, image_size=image_size, num_channels=3)
    if arch == "clip":
        tok = _clip_tokenizer()
        text = dict(
            tower,
            vocab_size=len(tok),
            max_position_embeddings=77,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)
        processor = transformers.CLIPImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        )
        model_class = transformers.CLIPModel
    elif arch == "siglip":
        tok = _siglip_tokenizer(dest)
        text = dict(tower, vocab_size=len(tok), max_position_embeddings=64, **_ids(tok))
        config = transformers.SiglipConfig(text_config=text, vision_config=vision)
        processor = transformers.SiglipImageProcessor(
            size={"height": image_size, "width": image_size}
        )
        model_class = transformers.SiglipModel
    elif arch == "chinese_clip":  # a BERT text tower with a WordPiece tokenizer
        tok = build_tiny_tokenizer("wordpiece")
        text = dict(
            tower,
            vocab_size=len(tok),
            max_position_embeddings=64,
            type_vocab_size=2,
            pad_token_id=tok.pad_token_id,
        )
        config = transformers.ChineseCLIPConfig(
            text_config=text, vision_config=vision, projection_dim=24
        )
        processor = transformers.ChineseCLIPImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        )
        model_class = transformers.ChineseCLIPModel
    else:
        tok = _siglip2_tokenizer()
        text = dict(tower, vocab_size=len(tok), max_position_embeddings=64, **_ids(tok))
        vision.pop("image_size")
        vision["num_patches"] = (image_size // patch_size) ** 2
        config = transformers.Siglip2Config(text_config=text, vision_config=vision)
        processor = transformers.Siglip2ImageProcessor(
            patch_size=patch_size, max_num_patches=(image_size // patch_size) ** 2
        )
        model_class = transformers.Siglip2Model
    torch.manual_seed(seed)
    model = model_class(config).eval()
    with torch.no_grad():  # a sharper similarity than the init's, so probabilities differ
        model.logit_scale.fill_(2.0)
    _save_quietly(model, dest)
    tok.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest


# -- audio encoders ------------------------------------------------------------------------------

#: The characters of the tiny CTC vocabulary (wav2vec 2.0 style: ``|`` separates words).
CTC_CHARS = tuple("|ETAONIHSRDLUMWCFGYPBVKJXQZ'")

#: arch -> (transformers model_type, config overrides of a tiny model).
AUDIO_ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    # group-norm front end (wav2vec2 base): padded batches change it, fmhub groups equal lengths
    "wav2vec2": ("wav2vec2", {"feat_extract_norm": "group", "do_stable_layer_norm": False}),
    # layer-norm front ends (wav2vec2 large, HuBERT large, WavLM): padded batches are exact
    "hubert": ("hubert", {"feat_extract_norm": "layer", "do_stable_layer_norm": True}),
    "wavlm": ("wavlm", {"feat_extract_norm": "layer", "do_stable_layer_norm": True}),
    "ast": ("audio-spectrogram-transformer", {}),
}
_WAVE_SIZES: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "conv_dim": (16, 16, 16),
    "conv_kernel": (10, 4, 4),
    "conv_stride": (5, 4, 4),  # 80 samples a frame, an 85-sample receptive field
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "classifier_proj_size": 12,
}
_AST_SIZES: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "patch_size": 16,
    "frequency_stride": 10,
    "time_stride": 10,
    "max_length": 100,  # one second of 10 ms filter-bank frames
    "num_mel_bins": 32,
}
_AUDIO_CLASSES = {
    "transcription": "AutoModelForCTC",
    "classification": "AutoModelForAudioClassification",
    "embedding": "AutoModel",
}


def build_ctc_tokenizer(dest: str | os.PathLike):
    """A wav2vec 2.0 CTC tokenizer over :data:`CTC_CHARS` (``<pad>`` is the blank), saved in
    ``dest`` (its ``vocab.json`` and configs) and returned."""
    from transformers import Wav2Vec2CTCTokenizer

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for c in CTC_CHARS:
        vocab[c] = len(vocab)
    (dest / "vocab.json").write_text(json.dumps(vocab))
    tok = Wav2Vec2CTCTokenizer(str(dest / "vocab.json"), word_delimiter_token="|")
    tok.save_pretrained(dest)
    return tok


def build_tiny_audio(
    dest: str | os.PathLike,
    arch: str = "wav2vec2",
    task: str = "transcription",
    *,
    labels: Sequence[str] | None = None,
    seed: int = 0,
    sizes: dict[str, Any] | None = None,
) -> Path:
    """Write a tiny random-weight audio checkpoint into ``dest``; return it.

    :param arch: One of :data:`AUDIO_ARCHITECTURES` (``wav2vec2`` with a group-norm front end,
        ``hubert`` / ``wavlm`` with layer-norm ones, ``ast``).
    :param task: ``transcription`` (a CTC head and tokenizer), ``classification`` or ``embedding``.
    :param labels: Class names of a classifier (default: six keyword-spotting-like words).
    :param sizes: Config overrides (e.g. base-size dimensions for a benchmark).
    """
    import torch
    import transformers

    model_type, extra = AUDIO_ARCHITECTURES[arch]
    if task not in _AUDIO_CLASSES:
        raise ValueError(f"unknown task {task!r}; choose from {sorted(_AUDIO_CLASSES)}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    fields = dict(_AST_SIZES if arch == "ast" else _WAVE_SIZES)
    fields.update(extra)
    if task == "transcription":
        tok = build_ctc_tokenizer(dest)
        fields.update(vocab_size=len(tok), pad_token_id=tok.pad_token_id, ctc_loss_reduction="mean")
    if task == "classification":
        names = list(labels or ("yes", "no", "up", "down", "left", "right"))
        fields.update(
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
        )
    fields.update(sizes or {})
    config = transformers.AutoConfig.for_model(model_type, **fields)
    torch.manual_seed(seed)
    model = getattr(transformers, _AUDIO_CLASSES[task]).from_config(config).eval()
    _save_quietly(model, dest)
    if arch == "ast":
        fe = transformers.ASTFeatureExtractor(
            num_mel_bins=config.num_mel_bins, max_length=config.max_length
        )
    else:
        fe = transformers.Wav2Vec2FeatureExtractor(
            sampling_rate=16000,
            do_normalize=True,
            return_attention_mask=config.feat_extract_norm == "layer",
        )
    fe.save_pretrained(dest)
    return dest
