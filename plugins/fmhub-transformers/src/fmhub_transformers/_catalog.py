"""The registered ``hf:`` aliases, as keyword rows.

Nothing here imports torch or transformers: ``fmhub list`` and ``fmhub info`` read it.
``architecture`` is the checkpoint's ``model_type`` (what ``config.json`` says), the same value a
local folder of that checkpoint reports through ``fmhub_claim_path``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ROWS", "Row"]


@dataclass(frozen=True, kw_only=True)
class Row:
    """One registered model. Keyword-only: a row reads as ``field=value`` and cannot shift."""

    id: str  #: the hub repo id
    aliases: tuple[str, ...]
    architecture: str  #: the checkpoint's ``model_type``
    task: str
    description: str
    license: str
    max_tokens: int | None = None  #: text models: the longest input in tokens
    modality: str = "text"
    input_size: tuple[int, int, int] | None = None  #: image models: (C, H, W) after preprocessing


ROWS: tuple[Row, ...] = (
    Row(
        id="google-bert/bert-base-uncased",
        aliases=("bert-base",),
        architecture="bert",
        task="fill-mask",
        max_tokens=512,
        license="apache-2.0",
        description="BERT base, uncased English (110M).",
    ),
    Row(
        id="google-bert/bert-base-cased",
        aliases=("bert-base-cased",),
        architecture="bert",
        task="fill-mask",
        max_tokens=512,
        license="apache-2.0",
        description="BERT base, cased English (110M).",
    ),
    Row(
        id="google-bert/bert-large-uncased",
        aliases=("bert-large",),
        architecture="bert",
        task="fill-mask",
        max_tokens=512,
        license="apache-2.0",
        description="BERT large, uncased English (340M).",
    ),
    Row(
        id="distilbert/distilbert-base-uncased",
        aliases=("distilbert-base",),
        architecture="distilbert",
        task="fill-mask",
        max_tokens=512,
        license="apache-2.0",
        description="DistilBERT base, uncased English (66M).",
    ),
    Row(
        id="FacebookAI/roberta-base",
        aliases=("roberta-base",),
        architecture="roberta",
        task="fill-mask",
        max_tokens=512,
        license="mit",
        description="RoBERTa base (125M).",
    ),
    Row(
        id="FacebookAI/roberta-large",
        aliases=("roberta-large",),
        architecture="roberta",
        task="fill-mask",
        max_tokens=512,
        license="mit",
        description="RoBERTa large (355M).",
    ),
    Row(
        id="FacebookAI/xlm-roberta-base",
        aliases=("xlm-roberta-base",),
        architecture="xlm-roberta",
        task="fill-mask",
        max_tokens=512,
        license="mit",
        description="XLM-RoBERTa base, 100 languages (270M).",
    ),
    Row(
        id="microsoft/deberta-v3-base",
        aliases=("deberta-v3-base",),
        architecture="deberta-v2",
        task="embedding",
        max_tokens=512,
        license="mit",
        description="DeBERTa-v3 base encoder (184M).",
    ),
    Row(
        id="google/electra-base-discriminator",
        aliases=("electra-base",),
        architecture="electra",
        task="embedding",
        max_tokens=512,
        license="apache-2.0",
        description="ELECTRA base discriminator encoder (110M).",
    ),
    Row(
        id="sentence-transformers/all-MiniLM-L6-v2",
        aliases=("all-MiniLM-L6-v2",),
        architecture="bert",
        task="embedding",
        max_tokens=256,
        license="apache-2.0",
        description="Sentence embeddings, 384-d, mean pooling, normalised (22M).",
    ),
    Row(
        id="sentence-transformers/all-mpnet-base-v2",
        aliases=("all-mpnet-base-v2",),
        architecture="mpnet",
        task="embedding",
        max_tokens=384,
        license="apache-2.0",
        description="Sentence embeddings, 768-d, mean pooling, normalised (110M).",
    ),
    Row(
        id="distilbert/distilbert-base-uncased-finetuned-sst-2-english",
        aliases=("distilbert-sst2",),
        architecture="distilbert",
        task="classification",
        max_tokens=512,
        license="apache-2.0",
        description="English sentiment (SST-2).",
    ),
    Row(
        id="dslim/bert-base-NER",
        aliases=("bert-ner",),
        architecture="bert",
        task="token-classification",
        max_tokens=512,
        license="mit",
        description="English named entities (CoNLL-2003: PER, ORG, LOC, MISC).",
    ),
    Row(
        id="google/vit-base-patch16-224",
        aliases=("vit-base-hf",),
        architecture="vit",
        task="classification",
        modality="image",
        input_size=(3, 224, 224),
        license="apache-2.0",
        description="ViT-B/16, ImageNet-21k pretrained, ImageNet-1k fine-tuned (86M).",
    ),
    Row(
        id="facebook/deit-small-patch16-224",
        aliases=("deit-small-hf",),
        architecture="vit",
        task="classification",
        modality="image",
        input_size=(3, 224, 224),
        license="apache-2.0",
        description="DeiT-S/16, ImageNet-1k (22M).",
    ),
    Row(
        id="microsoft/beit-base-patch16-224",
        aliases=("beit-base-hf",),
        architecture="beit",
        task="classification",
        modality="image",
        input_size=(3, 224, 224),
        license="apache-2.0",
        description="BEiT-B/16, ImageNet-22k pretrained, ImageNet-1k fine-tuned (87M).",
    ),
    Row(
        id="facebook/convnext-tiny-224",
        aliases=("convnext-tiny-hf",),
        architecture="convnext",
        task="classification",
        modality="image",
        input_size=(3, 224, 224),
        license="apache-2.0",
        description="ConvNeXt-T, ImageNet-1k (29M).",
    ),
    Row(
        id="microsoft/swin-tiny-patch4-window7-224",
        aliases=("swin-tiny-hf",),
        architecture="swin",
        task="classification",
        modality="image",
        input_size=(3, 224, 224),
        license="apache-2.0",
        description="Swin-T, ImageNet-1k (28M).",
    ),
    Row(
        id="microsoft/resnet-50",
        aliases=("resnet-50-hf",),
        architecture="resnet",
        task="classification",
        modality="image",
        input_size=(3, 224, 224),
        license="apache-2.0",
        description="ResNet-50 v1.5, ImageNet-1k (26M).",
    ),
    Row(
        id="facebook/dinov2-small",
        aliases=("dinov2-small-hf",),
        architecture="dinov2",
        task="embedding",
        modality="image",
        input_size=(3, 224, 224),
        license="apache-2.0",
        description="DINOv2 ViT-S/14 self-supervised image features, 384-d CLS (22M).",
    ),
    Row(
        id="facebook/dinov2-base",
        aliases=("dinov2-base-hf",),
        architecture="dinov2",
        task="embedding",
        modality="image",
        input_size=(3, 224, 224),
        license="apache-2.0",
        description="DINOv2 ViT-B/14 self-supervised image features, 768-d CLS (86M).",
    ),
)
