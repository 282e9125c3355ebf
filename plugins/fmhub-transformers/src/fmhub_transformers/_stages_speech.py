"""Whisper speech recognition and translation (``transcription``) through transformers' own
Whisper ``generate`` (short-form and sequential long-form), decoded as transformers'
``pipeline("automatic-speech-recognition")`` decodes it. Audio inputs follow :mod:`fmhub.inputs`
(the rules the torchaudio plugin uses too)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import Field

import fmhub
from fmhub.generation import GenerationOptions
from fmhub.inputs import to_mono_audio
from fmhub.results import Chunk, Transcription

from ._load import _quiet
from ._stages_generate import generation_config

__all__ = [
    "SpeechProcessor",
    "WhisperOptions",
    "forward",
    "postprocess",
    "preprocess",
    "speech_defaults",
]

RATE = 16000
WINDOW_S = 30


class WhisperOptions(GenerationOptions):
    """Per-call options of Whisper models: the generation options plus what Whisper decides."""

    language: str | None = Field(
        None, description="Spoken language ('en', 'fr', 'english'...); None: detected."
    )
    task: Literal["transcribe", "translate"] = Field(
        "transcribe", description="Transcribe in the spoken language, or translate into English."
    )
    return_timestamps: bool = Field(True, description="Segment chunks with start/end seconds.")


@dataclass
class SpeechProcessor:
    """The feature extractor and tokenizer of a Whisper checkpoint."""

    processor: Any
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def feature_extractor(self):
        return self.processor.feature_extractor

    @classmethod
    def build(cls, module, src, options) -> SpeechProcessor:
        from transformers import AutoProcessor

        processor = _quiet(
            lambda: AutoProcessor.from_pretrained(
                src.location, revision=src.revision, trust_remote_code=options.trust_remote_code
            )
        )
        return cls(processor)

    def save(self, path: str) -> None:
        self.processor.save_pretrained(path)


def speech_defaults(module) -> dict[str, Any]:
    """Default ``max_new_tokens``: what the decoder has room for after its 4 prompt tokens."""
    room = int(getattr(module.config, "max_target_positions", 448)) - 4
    return {"max_new_tokens": max(1, room)}


def preprocess(model, inputs, options) -> dict[str, Any]:
    """Audio to log-mel features: padded to 30 s, or (when any input is longer) to the longest
    input with an attention mask, for sequential long-form decoding."""
    proc: SpeechProcessor = model.processor
    waves = to_mono_audio(inputs, target_rate=RATE)
    for i, w in enumerate(waves):
        if w.size == 0:
            raise fmhub.InputError(f"Input {i} holds no audio samples; pass a recording.", index=i)
    long = any(w.shape[0] > RATE * WINDOW_S for w in waves)
    extra = {"truncation": False, "padding": "longest"} if long else {}
    feats = proc.feature_extractor(
        waves, sampling_rate=RATE, return_tensors="pt", return_attention_mask=True, **extra
    )
    return {
        "input_features": feats["input_features"],
        "attention_mask": feats["attention_mask"],
        "seconds": torch.tensor([w.shape[0] / RATE for w in waves]),
        "long": long,
    }


def _language(options, proc: SpeechProcessor, module) -> str | None:
    if options.language is None:
        return None
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    lang = options.language.lower()
    code = TO_LANGUAGE_CODE.get(lang, lang)
    known = getattr(module.generation_config, "lang_to_id", None) or {}
    if code not in LANGUAGES or (known and f"<|{code}|>" not in known):
        have = sorted(t.strip("<|>") for t in known) if known else sorted(LANGUAGES)
        raise fmhub.InputError(
            f"language={options.language!r} is not one {model_name(module)} "
            f"knows; use one of {', '.join(have[:30])}" + (" ..." if len(have) > 30 else "") + "."
        )
    return code


def model_name(module) -> str:
    return getattr(module.config, "_name_or_path", "") or "this Whisper model"


def forward(model, batch: dict[str, Any], options, stream=None) -> dict[str, Any]:
    """Whisper's ``generate`` with the call's options; the detected language comes along."""
    module, proc = model.module, model.processor
    gc = generation_config(module, options)
    kwargs: dict[str, Any] = {
        "input_features": batch["input_features"],
        "generation_config": gc,
        "return_timestamps": options.return_timestamps,
    }
    if batch["long"]:
        kwargs["attention_mask"] = batch["attention_mask"]
    language = _language(options, proc, module)
    multilingual = bool(getattr(module.generation_config, "is_multilingual", False))
    if multilingual:
        kwargs.update(task=options.task, language=language)
    elif options.task == "translate" or language not in (None, "en"):
        raise fmhub.InputError(
            f"{model.spec.id} is an English-only Whisper model; it cannot "
            f"{'translate' if options.task == 'translate' else 'take language='}"
            "; load a multilingual checkpoint."
        )
    detected = None
    if multilingual and language is None:
        with torch.inference_mode():
            ids = module.detect_language(input_features=batch["input_features"][..., :3000])
        inverse = {v: k for k, v in module.generation_config.lang_to_id.items()}
        detected = [inverse.get(int(i), None) for i in ids.reshape(-1).tolist()]
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=options.seed is not None):
        if options.seed is not None:
            torch.manual_seed(options.seed)
        # Whisper's generate warns about arguments it sets itself (max_length, suppress_tokens)
        out = _quiet(lambda: module.generate(**kwargs))
    sequences = out["sequences"] if isinstance(out, dict) else getattr(out, "sequences", out)
    langs = (
        [language] * sequences.shape[0]
        if language
        else [d.strip("<|>") if d else None for d in (detected or [None] * sequences.shape[0])]
    )
    return {"sequences": sequences, "languages": langs}


def _decode(proc: SpeechProcessor, seq: torch.Tensor, options, module):
    """Text and chunks of one generated sequence, as the ASR pipeline decodes them."""
    tok = proc.tokenizer
    time_precision = proc.feature_extractor.chunk_length / module.config.max_source_positions
    with proc.lock:  # the tokenizer is not safe to share between threads
        text, optional = tok._decode_asr(
            [{"tokens": seq.reshape(1, -1).cpu()}],
            return_timestamps=options.return_timestamps,
            return_language=None,
            time_precision=time_precision,
        )
    chunks = []
    for c in optional.get("chunks", []) if options.return_timestamps else []:
        start, end = c["timestamp"]
        start = float(start or 0.0)
        end = float(end) if end is not None else start
        chunks.append(Chunk(text=c["text"], start=start, end=max(start, end)))
    return text, tuple(chunks)


def _stop(text: str, chunks: tuple[Chunk, ...], stops) -> tuple[str, tuple[Chunk, ...]]:
    """Cut the transcript before the first stop string; chunks after it are dropped."""
    hits = [p for p in (text.find(s) for s in stops) if p >= 0]
    if not hits:
        return text, chunks
    cut, kept, pos = min(hits), [], 0
    for c in chunks:
        if pos >= cut:
            break
        part = c.text[: max(0, cut - pos)]
        kept.append(Chunk(text=part, start=c.start, end=c.end) if part != c.text else c)
        pos += len(c.text)
    return text[:cut], tuple(kept)


def postprocess(model, outputs, batch, options) -> list[Transcription]:
    results = []
    for seq, lang in zip(outputs["sequences"], outputs["languages"]):
        text, chunks = _decode(model.processor, seq, options, model.module)
        text, chunks = _stop(text, chunks, options.stop)
        results.append(Transcription(text=text, chunks=chunks, language=lang))
    return results
