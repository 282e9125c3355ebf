"""Audio encoders (wav2vec 2.0, HuBERT, WavLM, data2vec-audio... and AST): CTC transcription,
audio classification and embeddings (imports torch).

Inputs follow :mod:`fmhub.inputs` (the torchaudio plugin's rules: decoding, mix-down, resampling to
the feature extractor's rate, bare arrays refused unless ``input_sample_rate`` is set). Long
recordings are cut with :mod:`fmhub.chunking`, the plan the torchaudio plugin uses.

Two kinds of model:

* **waveform** models (a convolutional front end over ``input_values``): the feature extractor
  normalises each whole recording as transformers' pipelines do, then recordings longer than
  ``chunk_seconds`` are cut into overlapping frame-aligned chunks whose middle frames are stitched
  back. CTC logits are decoded greedily with the checkpoint's tokenizer (exactly the
  ``automatic-speech-recognition`` pipeline's decoding); embeddings are the mean of the last
  hidden state over the recording's valid frames; a classifier's head (``projector`` then
  ``classifier``) is applied to that mean, which equals transformers' masked mean of the projected
  frames.
* **spectrogram** models (AST): the feature extractor makes one fixed window of filter-bank frames
  (10.24 s); a longer recording is cut into consecutive windows whose pooled outputs are averaged,
  weighted by each window's samples, before the head.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import fmhub
from fmhub.chunking import Segment, frames_for, plan_segments
from fmhub.inputs import audio_duration, audio_item
from fmhub.results import Transcription, top_k_classification

__all__ = [
    "AudioProcessor",
    "batch_order",
    "export_spec",
    "forward",
    "postprocess",
    "preprocess",
]

#: Default chunk length of waveform models (the torchaudio plugin's default).
CHUNK_SECONDS = 30.0


@dataclass
class AudioProcessor:
    """The feature extractor (and, for CTC, the tokenizer) of an audio checkpoint, with the facts
    the stages need. ``modality`` tells the plugin's hooks to dispatch here."""

    feature_extractor: Any
    tokenizer: Any
    kind: str  # "waveform" or "spectrogram"
    rate: int
    stride: int  # samples per output frame (waveform models)
    field: int  # samples the first output frame sees: the shortest recording taken
    padding_safe: bool  # padded batches give the same frames (layer-norm front end)
    chunk: int  # samples per chunk (waveform) or window (spectrogram)
    context: int
    chunk_batch: int
    top_k: int
    input_sample_rate: int | None
    modality: str = "audio"
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    def save(self, path: str) -> None:
        """The feature extractor (and tokenizer), as ``save_pretrained`` writes them."""
        self.feature_extractor.save_pretrained(path)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(path)


# -- inputs ------------------------------------------------------------------------------------


def batch_order(model, inputs) -> list[int]:
    """Longest recording first (cheap estimates), so each batch pads to little."""
    rate = model.processor.input_sample_rate
    lengths = [audio_duration(x, rate) for x in inputs]
    return sorted(range(len(inputs)), key=lambda i: -lengths[i])


def _wave(proc: AudioProcessor, i: int, x: Any) -> np.ndarray:
    samples, _ = audio_item(
        x,
        i,
        target_rate=proc.rate,
        default_rate=proc.input_sample_rate,
        rate_option="input_sample_rate",
    )
    if samples.shape[0] < proc.field:
        ms = 1000 * samples.shape[0] / proc.rate
        need = 1000 * proc.field / proc.rate
        raise fmhub.InputError(
            f"got {ms:.1f} ms of audio ({samples.shape[0]} samples at {proc.rate} Hz); the model "
            f"needs at least {proc.field} samples ({need:.0f} ms), its receptive field.",
            index=i,
        )
    return samples


def preprocess(model, inputs) -> dict[str, Any]:
    """Waveform models: ``{"input_values": (batch, samples) zero-padded, "lengths": (batch,)}``,
    each recording normalised whole by the feature extractor. Spectrogram models:
    ``{"input_values": (windows, frames, bins), "owner": (windows,), "weight": (windows,)}``."""
    proc: AudioProcessor = model.processor
    waves = [_wave(proc, i, x) for i, x in enumerate(inputs)]
    fe = proc.feature_extractor
    if proc.kind == "spectrogram":
        feats, owner, weight = [], [], []
        for i, w in enumerate(waves):
            for start in range(0, w.shape[0], proc.chunk):
                piece = w[start : start + proc.chunk]
                if start and piece.shape[0] < proc.field:
                    break  # a tail shorter than one frame adds nothing
                feats.append(
                    fe(piece, sampling_rate=proc.rate, return_tensors="pt")["input_values"]
                )
                owner.append(i)
                weight.append(piece.shape[0])
        return {
            "input_values": torch.cat(feats),
            "owner": torch.tensor(owner, dtype=torch.long),
            "weight": torch.tensor(weight, dtype=torch.long),  # samples (an int: never cast)
            "items": len(waves),
        }
    values = [
        fe(w, sampling_rate=proc.rate, return_tensors="np")["input_values"][0].astype(np.float32)
        for w in waves
    ]
    lengths = torch.tensor([v.shape[0] for v in values], dtype=torch.long)
    padded = torch.zeros(len(values), int(lengths.max()), dtype=torch.float32)
    for row, v in zip(padded, values):
        row[: v.shape[0]] = torch.from_numpy(v)
    return {"input_values": padded, "lengths": lengths}


# -- forward -----------------------------------------------------------------------------------


def _groups(segments: list[Segment], safe: bool, limit: int) -> list[list[Segment]]:
    """Segments run together: any lengths when padding is safe, else only equal lengths."""
    by_key: dict[Any, list[Segment]] = defaultdict(list)
    for s in sorted(segments, key=lambda s: -s.length):
        by_key[None if safe else s.length].append(s)
    return [g[k : k + limit] for g in by_key.values() for k in range(0, len(g), limit)]


def _frames(model, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-frame outputs of one group: CTC logits, or the hidden states the pooling reads."""
    module = model.module
    if model.task == "transcription":
        return module(input_values=x, attention_mask=mask).logits
    if model.task == "embedding":
        out = module(input_values=x, attention_mask=mask)
        return out.last_hidden_state
    base = getattr(module, module.base_model_prefix)
    weighted = bool(getattr(module.config, "use_weighted_layer_sum", False))
    out = base(input_values=x, attention_mask=mask, output_hidden_states=weighted)
    if not weighted:
        return out.last_hidden_state
    stacked = torch.stack(out.hidden_states, dim=1)
    norm = torch.nn.functional.softmax(module.layer_weights, dim=-1)
    return (stacked * norm.view(-1, 1, 1)).sum(dim=1)


def head(module, pooled: torch.Tensor) -> torch.Tensor:
    """The classification head on pooled features: AST's MLP head, or the wav2vec 2.0 family's
    ``projector`` then ``classifier`` (the projector is affine, so projecting the mean equals
    transformers' mean of the projected frames)."""
    projector = getattr(module, "projector", None)
    if projector is not None:
        pooled = projector(pooled)
    return module.classifier(pooled)


def _forward_waveform(model, batch) -> dict[str, torch.Tensor]:
    proc: AudioProcessor = model.processor
    waves, lengths = batch["input_values"], batch["lengths"].tolist()
    segments = plan_segments(lengths, proc.chunk, proc.context, proc.stride, proc.field)
    chunked = len(segments) > len(lengths)
    groups = _groups(segments, proc.padding_safe, proc.chunk_batch if chunked else len(segments))
    ctc = model.task == "transcription"
    parts: dict[int, list[tuple[int, torch.Tensor, int]]] = defaultdict(list)
    for group in groups:
        lens = [s.length for s in group]
        x = waves.new_zeros(len(group), max(lens))
        mask = torch.zeros(len(group), max(lens), dtype=torch.long, device=waves.device)
        for j, s in enumerate(group):
            x[j, : s.length] = waves[s.item, s.start : s.end]
            mask[j, : s.length] = 1
        # a group of equal lengths needs no mask (all ones): the model then skips building the
        # attention bias and zeroing padded frames, ~10% of a wav2vec2-base forward on CPU
        out = _frames(model, x, None if min(lens) == max(lens) else mask)
        for j, s in enumerate(group):
            stop = (
                s.keep_to
                if s.keep_to is not None
                else frames_for(s.length, proc.stride, proc.field)
            )
            frames = out[j, s.keep_from : stop]
            # pooled tasks keep only a running sum per chunk (float32), so memory stays bounded
            kept = frames if ctc else frames.sum(0, dtype=torch.float32)
            parts[s.item].append((s.start, kept, len(frames)))
    ordered = [sorted(parts[i], key=lambda p: p[0]) for i in range(len(lengths))]
    if ctc:
        per_item = [torch.cat([p[1] for p in item]) for item in ordered]
        counts = torch.tensor([len(e) for e in per_item], dtype=torch.long)
        padded = per_item[0].new_zeros(len(per_item), int(counts.max()), per_item[0].shape[-1])
        for j, e in enumerate(per_item):
            padded[j, : len(e)] = e
        return {"logits": padded, "frames": counts}
    pooled = torch.stack([sum(p[1] for p in item) / sum(p[2] for p in item) for item in ordered])
    dtype = next(model.module.parameters()).dtype
    pooled = pooled.to(dtype)
    if model.task == "classification":
        return {"logits": head(model.module, pooled), "embeddings": pooled}
    return {"embeddings": pooled}


def _forward_spectrogram(model, batch) -> dict[str, torch.Tensor]:
    proc: AudioProcessor = model.processor
    module = model.module
    base = module if model.task == "embedding" else getattr(module, module.base_model_prefix)
    x = batch["input_values"].to(next(module.parameters()).dtype)
    pooled = torch.cat(
        [
            base(input_values=x[k : k + proc.chunk_batch]).pooler_output
            for k in range(0, x.shape[0], proc.chunk_batch)
        ]
    )
    owner = batch["owner"].to(pooled.device)
    weight = batch["weight"].to(pooled.device, torch.float32)
    total = torch.zeros(batch["items"], device=pooled.device).index_add_(0, owner, weight)
    share = (weight / total[owner]).to(pooled.dtype)  # 1.0 exactly for a single window
    out = torch.zeros(batch["items"], pooled.shape[-1], dtype=pooled.dtype, device=pooled.device)
    out = out.index_add(0, owner, pooled * share[:, None])
    if model.task == "classification":
        return {"logits": head(module, out), "embeddings": out}
    return {"embeddings": out}


def forward(model, batch) -> dict[str, torch.Tensor]:
    """Transcription: ``{"logits": (batch, frames, vocab), "frames": (batch,)}``; embedding:
    ``{"embeddings": (batch, dim)}``; classification: also ``{"logits": (batch, classes)}``."""
    if model.processor.kind == "spectrogram":
        return _forward_spectrogram(model, batch)
    return _forward_waveform(model, batch)


# -- postprocess -------------------------------------------------------------------------------


def postprocess(model, outputs, batch) -> list[Any]:
    proc: AudioProcessor = model.processor
    if model.task == "transcription":
        logits, frames = outputs["logits"], outputs["frames"].tolist()
        ids = logits.argmax(dim=-1).cpu().numpy()
        with proc.lock:  # the tokenizer is not safe to share between threads
            return [
                Transcription(proc.tokenizer.decode(ids[j, :n], skip_special_tokens=False))
                for j, n in enumerate(frames)
            ]
    if model.task == "classification":
        logits = outputs["logits"].float()
        config = getattr(model.module, "config", None) or model.module.get_base_model().config
        multi = config.problem_type == "multi_label_classification"
        probs = logits.sigmoid() if multi else logits.softmax(-1)
        return top_k_classification(probs, model.labels, k=proc.top_k)
    return [row.copy() for row in outputs["embeddings"].float().cpu().numpy()]


# -- export ------------------------------------------------------------------------------------


class _ForwardStage(torch.nn.Module):
    """:func:`forward` for whole recordings as a module of ``(input_values, lengths)``: CTC logits
    (zero past each recording's frames) and frame counts, or the mean of the valid frames (plus
    the head's logits for classifiers)."""

    def __init__(self, model):
        super().__init__()
        proc: AudioProcessor = model.processor
        self.module, self.task = model.module, model.task
        self.stride, self.field = proc.stride, proc.field
        self.weighted = bool(getattr(model.module.config, "use_weighted_layer_sum", False))

    def forward(self, input_values: torch.Tensor, lengths: torch.Tensor):
        steps = torch.arange(input_values.shape[1], device=input_values.device)
        mask = (steps[None, :] < lengths[:, None]).to(torch.long)
        frames = torch.div(lengths - self.field, self.stride, rounding_mode="floor") + 1
        if self.task == "transcription":
            logits = self.module(input_values=input_values, attention_mask=mask).logits
            valid = torch.arange(logits.shape[1], device=logits.device)[None, :] < frames[:, None]
            return logits * valid[..., None].to(logits.dtype), frames
        if self.task == "embedding":
            hidden = self.module(input_values=input_values, attention_mask=mask).last_hidden_state
        else:
            base = getattr(self.module, self.module.base_model_prefix)
            out = base(input_values=input_values, attention_mask=mask, output_hidden_states=True)
            hidden = out.last_hidden_state
            if self.weighted:
                norm = torch.nn.functional.softmax(self.module.layer_weights, dim=-1)
                hidden = (torch.stack(out.hidden_states, dim=1) * norm.view(-1, 1, 1)).sum(dim=1)
        valid = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < frames[:, None]
        valid = valid.to(hidden.dtype)[..., None]
        pooled = (hidden * valid).sum(1) / valid.sum(1)
        if self.task == "classification":
            return head(self.module, pooled), pooled
        return pooled


def export_spec(model) -> fmhub.ExportSpec:
    """Waveform models with a layer-norm front end, recordings run whole (no chunking) with
    dynamic batch and time axes. A group-norm front end normalises over a batch's padding (fmhub
    runs it by equal lengths), and AST's windows are a Python loop: both are refused."""
    proc: AudioProcessor = model.processor
    if proc.kind != "waveform" or not proc.padding_safe:
        why = (
            "a group-norm front end, which fmhub runs only on recordings of equal length (padding "
            "would change it); an ONNX graph of padded batches would not reproduce it"
            if proc.kind == "waveform"
            else "spectrogram windows that fmhub averages in a Python loop"
        )
        raise fmhub.ExportError(
            f"{model.spec.id} has {why}. Models with a layer-norm front end (wav2vec 2.0 large, "
            "HuBERT large, WavLM ...) export."
        )
    rate = proc.rate

    def tone(seconds: float, hz: float):
        x = np.arange(int(rate * seconds), dtype=np.float32) / rate
        return (0.3 * np.sin(2 * np.pi * hz * x)).astype(np.float32), rate

    names = {
        "transcription": ["fmhub_logits", "fmhub_frames"],
        "classification": ["fmhub_logits", "fmhub_embeddings"],
    }.get(model.task, ["fmhub_embeddings"])

    def pack(outs):
        if model.task == "transcription":
            return {"logits": outs[0], "frames": outs[1]}
        if model.task == "classification":
            return {"logits": outs[0], "embeddings": outs[1]}
        return {"embeddings": outs[0]}

    return fmhub.ExportSpec(
        module=_ForwardStage(model),
        input_names=["input_values", "lengths"],
        output_names=names,
        example=[tone(0.6, 220), tone(0.45, 440)],
        check=[tone(0.3, 330), tone(0.9, 550), tone(0.5, 110)],
        dynamic_axes={"input_values": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
        pack=pack,
    )
