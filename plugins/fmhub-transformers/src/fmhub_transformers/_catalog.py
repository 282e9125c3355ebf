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
    max_tokens: int | None = None  #: text models and text towers: the most tokens an input may have
    modality: str = "text"  #: "audio"; "image-text": CLIP, SigLIP
    sample_rate: int | None = None  #: audio models: the rate recordings are resampled to


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
        id="openai/clip-vit-base-patch32",
        aliases=("clip-vit-b32",),
        architecture="clip",
        task="zero-shot-classification",
        modality="image-text",
        max_tokens=77,
        license="mit",
        description="CLIP ViT-B/32: zero-shot image classification, image-text embeddings (151M).",
    ),
    Row(
        id="openai/clip-vit-base-patch16",
        aliases=("clip-vit-b16",),
        architecture="clip",
        task="zero-shot-classification",
        modality="image-text",
        max_tokens=77,
        license="mit",
        description="CLIP ViT-B/16: zero-shot image classification, image-text embeddings (150M).",
    ),
    Row(
        id="openai/clip-vit-large-patch14",
        aliases=("clip-vit-l14",),
        architecture="clip",
        task="zero-shot-classification",
        modality="image-text",
        max_tokens=77,
        license="mit",
        description="CLIP ViT-L/14: zero-shot image classification, image-text embeddings (428M).",
    ),
    Row(
        id="google/siglip-base-patch16-224",
        aliases=("siglip-base",),
        architecture="siglip",
        task="zero-shot-classification",
        modality="image-text",
        max_tokens=64,
        license="apache-2.0",
        description="SigLIP base 224px: zero-shot image classification (sigmoid), embeddings (203M).",
    ),
    Row(
        id="google/siglip2-base-patch16-naflex",
        aliases=("siglip2-base",),
        architecture="siglip2",
        task="zero-shot-classification",
        modality="image-text",
        max_tokens=64,
        license="apache-2.0",
        description="SigLIP 2 base, native aspect ratio (NaFlex): zero-shot, embeddings (375M).",
    ),
    # -- audio encoders (docs/plugins/transformers.md#audio-models) --
    Row(
        id="facebook/wav2vec2-base-960h",
        aliases=("wav2vec2-base-960h",),
        architecture="wav2vec2",
        task="transcription",
        modality="audio",
        sample_rate=16000,
        license="apache-2.0",
        description="wav2vec 2.0 base fine-tuned for English CTC speech recognition (95M).",
    ),
    Row(
        id="facebook/hubert-large-ls960-ft",
        aliases=("hubert-large-ls960-ft",),
        architecture="hubert",
        task="transcription",
        modality="audio",
        sample_rate=16000,
        license="apache-2.0",
        description="HuBERT large fine-tuned for English CTC speech recognition (316M).",
    ),
    Row(
        id="microsoft/wavlm-base-plus",
        aliases=("hf-wavlm-base-plus",),
        architecture="wavlm",
        task="embedding",
        modality="audio",
        sample_rate=16000,
        license="mit",
        description="WavLM base+ speech encoder: frame features mean-pooled (95M).",
    ),
    Row(
        id="MIT/ast-finetuned-audioset-10-10-0.4593",
        aliases=("ast-audioset",),
        architecture="audio-spectrogram-transformer",
        task="classification",
        modality="audio",
        sample_rate=16000,
        license="bsd-3-clause",
        description="Audio Spectrogram Transformer, AudioSet's 527 sound classes (87M).",
    ),
    Row(
        id="superb/wav2vec2-base-superb-ks",
        aliases=("wav2vec2-ks",),
        architecture="wav2vec2",
        task="classification",
        modality="audio",
        sample_rate=16000,
        license="apache-2.0",
        description="wav2vec 2.0 base keyword spotting (Speech Commands v1, 12 classes).",
    ),
)
