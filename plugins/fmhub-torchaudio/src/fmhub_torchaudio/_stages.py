"""Preprocess, forward and postprocess for every torchaudio model.

preprocess: decode, mix to mono, resample, check length, normalise (per recording), pad.
forward: cut long recordings into chunks, run the module on groups of segments (padded with
``lengths`` when the architecture is padding-safe, else grouped by equal length), stitch frames.
postprocess: CTC greedy decoding, pooled embeddings, or class probabilities.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F

import fmhub
from fmhub.chunking import Segment, frames_for, plan_segments
from fmhub.inputs import audio_item
from fmhub.results import Transcription, top_k_classification

from ._module import Speech, SpeechModule, speech_module

__all__ = ["ctc_greedy", "forward", "postprocess", "prepare", "preprocess"]


def prepare(speech: Speech, i: int, x: Any, default_rate: int | None) -> torch.Tensor:
    """One input to a 1-D float32 waveform at the model's rate, normalised as the model expects.

    Decoding, mix-down and resampling are fmhub's audio convention (:func:`fmhub.inputs.audio_item`,
    ``docs/inputs.md``); the receptive-field check and the normalisation are this family's.
    """
    samples, _ = audio_item(
        x,
        i,
        target_rate=speech.sample_rate,
        default_rate=default_rate,
        rate_option="input_sample_rate",
    )
    wave = torch.from_numpy(samples)
    if wave.numel() < speech.field:
        ms = 1000 * wave.numel() / speech.sample_rate
        need = 1000 * speech.field / speech.sample_rate
        raise fmhub.InputError(
            f"got {ms:.1f} ms of audio ({wave.numel()} samples at {speech.sample_rate} Hz); "
            f"the model needs at least {speech.field} samples ({need:.0f} ms), its receptive "
            "field.",
            index=i,
        )
    if speech.normalize_waveform:
        wave = F.layer_norm(wave, wave.shape)
    return wave


def preprocess(model, inputs) -> dict[str, torch.Tensor]:
    """``{"waveforms": (batch, samples) zero-padded float32, "lengths": (batch,) int64}``."""
    speech: Speech = model.processor
    rate = model.options.input_sample_rate
    waves = [prepare(speech, i, x, rate) for i, x in enumerate(inputs)]
    lengths = torch.tensor([w.numel() for w in waves], dtype=torch.long)
    if len(waves) == 1:
        return {"waveforms": waves[0][None], "lengths": lengths}
    padded = torch.zeros(len(waves), int(lengths.max()), dtype=torch.float32)
    for row, w in zip(padded, waves):
        row[: w.numel()] = w
    return {"waveforms": padded, "lengths": lengths}


def _groups(segments: list[Segment], safe: bool, limit: int) -> list[list[Segment]]:
    """Segments run together: any lengths when the encoder takes padding, else equal lengths."""
    by_key: dict[Any, list[Segment]] = defaultdict(list)
    for s in sorted(segments, key=lambda s: -s.length):
        by_key[None if safe else s.length].append(s)
    return [g[k : k + limit] for g in by_key.values() for k in range(0, len(g), limit)]


def _run(
    module: SpeechModule, speech: Speech, waves: torch.Tensor, group: list[Segment], emissions: bool
) -> tuple[torch.Tensor, list[int]]:
    """Run one group; returns the frame outputs and, per segment of ``group``, its output row."""
    lens = [s.length for s in group]
    equal = min(lens) == max(lens)
    if not equal and not speech.padding_safe:
        # a group_norm front end runs once per recording; the encoder takes padded features
        each = [waves[s.item, s.start : s.end] for s in group]
        out, _ = (
            module.emissions_each(each) if emissions else module.features_each(each, speech.layer)
        )
        return out, list(range(len(group)))
    if len(group) == waves.shape[0] and all(s.start == 0 and s.keep_to is None for s in group):
        x, rows = waves, [s.item for s in group]  # every recording whole: the batch, no copy
        by_row = dict(zip(rows, lens))
        lens = [by_row[r] for r in range(len(group))]
    else:
        x, rows = waves.new_zeros(len(group), max(lens)), list(range(len(group)))
        for j, s in enumerate(group):
            x[j, : s.length] = waves[s.item, s.start : s.end]
    lengths = None if equal else torch.tensor(lens, device=waves.device)
    if emissions:
        out, _ = module.emissions(x, lengths)
    else:
        out, _ = module.features(x, lengths, speech.layer)
    return out, rows


def forward(model, batch) -> dict[str, torch.Tensor]:
    """Transcription: ``{"emissions": (batch, frames, labels), "frames": (batch,)}``; embedding:
    ``{"embeddings": (batch, dim)}``; classification: also ``{"logits": (batch, classes)}``."""
    speech: Speech = model.processor
    module = speech_module(model.module)
    opts = model.options
    waves, lengths = batch["waveforms"], batch["lengths"].tolist()
    chunk = round(opts.chunk_seconds * speech.sample_rate)
    context = round(opts.chunk_context_seconds * speech.sample_rate)
    segments = plan_segments(lengths, chunk, context, speech.stride, speech.field)
    chunked = len(segments) > len(lengths)
    emissions = model.task == "transcription"
    groups = _groups(
        segments, speech.encoder_padding_safe, opts.chunk_batch if chunked else len(segments)
    )
    parts: dict[int, list[tuple[int, torch.Tensor, int]]] = defaultdict(list)
    for group in groups:
        out, rows = _run(module, speech, waves, group, emissions)
        for row, s in zip(rows, group):
            stop = s.keep_to
            if stop is None:
                stop = frames_for(s.length, speech.stride, speech.field)
            frames = out[row, s.keep_from : stop]
            # embeddings keep only a running sum per chunk, so memory stays bounded
            parts[s.item].append((s.start, frames if emissions else frames.sum(0), len(frames)))
    ordered = [sorted(parts[i], key=lambda p: p[0]) for i in range(len(lengths))]
    if emissions:
        per_item = [torch.cat([p[1] for p in item]) for item in ordered]
        counts = torch.tensor([len(e) for e in per_item], dtype=torch.long)
        padded = per_item[0].new_zeros(len(per_item), int(counts.max()), per_item[0].shape[-1])
        for j, e in enumerate(per_item):
            padded[j, : len(e)] = e
        return {"emissions": padded, "frames": counts}
    pooled = torch.stack([sum(p[1] for p in item) / sum(p[2] for p in item) for item in ordered])
    result = {"embeddings": pooled}
    if model.task == "classification":
        result["logits"] = module.head(pooled)
    return result


def ctc_greedy(emissions: torch.Tensor, labels: tuple[str, ...], blank: int = 0) -> str:
    """Best label per frame, repeats merged, blanks dropped; ``|`` separates words."""
    ids = torch.unique_consecutive(emissions.argmax(dim=-1)).tolist()
    text = "".join(labels[i] for i in ids if i != blank)
    if "|" in labels:
        text = text.replace("|", " ")
    return " ".join(text.split())


def postprocess(model, outputs, batch) -> list[Any]:
    speech: Speech = model.processor
    if model.task == "transcription":
        emissions, frames = outputs["emissions"], outputs["frames"].tolist()
        return [
            Transcription(ctc_greedy(emissions[j, :n], speech.labels)) for j, n in enumerate(frames)
        ]
    if model.task == "classification":
        probs = outputs["logits"].float().softmax(-1)
        return top_k_classification(probs, model.labels, k=model.options.top_k)
    return [row.copy() for row in outputs["embeddings"].float().cpu().numpy()]


# -- export ------------------------------------------------------------------------------------


class _ForwardStage(torch.nn.Module):
    """:func:`forward` for whole recordings as a module of ``(waveforms, lengths)``: CTC emissions
    and frame counts, or frame features mean-pooled over each recording's valid frames (plus the
    head's logits for classifiers)."""

    def __init__(self, module: SpeechModule, task: str, layer: int):
        super().__init__()
        self.module, self.task, self.layer = module, task, layer

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        if self.task == "transcription":  # frames past a recording's end are zeros, as in forward
            emissions, frames = self.module.emissions(waveforms, lengths)
            valid = (
                torch.arange(emissions.shape[1], device=emissions.device)[None, :] < frames[:, None]
            ).to(emissions.dtype)
            return emissions * valid[..., None], frames
        feats, frames = self.module.features(waveforms, lengths, self.layer)
        valid = (torch.arange(feats.shape[1], device=feats.device)[None, :] < frames[:, None]).to(
            feats.dtype
        )
        pooled = (feats * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)
        if self.task == "classification":
            return pooled, self.module.head(pooled)
        return pooled


def export_spec(model) -> fmhub.ExportSpec:
    """Recordings run whole (no chunking) with dynamic batch and time axes. A ``group_norm`` front
    end normalises over the padding of a batch, so such models (wav2vec2 base) are not exported."""
    speech: Speech = model.processor
    if not speech.padding_safe:
        raise fmhub.ExportError(
            f"{model.spec.id} has a group_norm front end, which fmhub runs one recording at a time "
            "(padding would change it); an ONNX graph of padded batches would not reproduce it. "
            "Models with a layer_norm front end (wav2vec2 large, HuBERT large, WavLM ...) export."
        )
    rate = speech.sample_rate

    def tone(seconds: float, hz: float):
        x = torch.arange(int(rate * seconds), dtype=torch.float32) / rate
        return (0.3 * torch.sin(2 * torch.pi * hz * x)).numpy(), rate

    names = {
        "transcription": ["fmhub_emissions", "fmhub_frames"],
        "classification": ["fmhub_embeddings", "fmhub_logits"],
    }.get(model.task, ["fmhub_embeddings"])

    def pack(outs):
        if model.task == "transcription":
            return {"emissions": outs[0], "frames": outs[1]}
        if model.task == "classification":
            return {"embeddings": outs[0], "logits": outs[1]}
        return {"embeddings": outs[0]}

    return fmhub.ExportSpec(
        module=_ForwardStage(speech_module(model.module), model.task, speech.layer),
        input_names=["waveforms", "lengths"],
        output_names=names,
        example=[tone(0.6, 220), tone(0.45, 440)],
        check=[tone(0.3, 330), tone(0.9, 550), tone(0.5, 110)],
        dynamic_axes={"waveforms": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
        pack=pack,
    )
