"""The torch module fmhub runs: a torchaudio ``Wav2Vec2Model`` and an optional classifier head."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["Speech", "SpeechModule", "conv_geometry", "padding_safe", "speech_module"]


class SpeechModule(nn.Module):
    """``model`` is the torchaudio ``Wav2Vec2Model`` (its ``aux`` is the CTC layer of ASR models);
    ``head`` is the classification head attached for fine-tuning (None otherwise).

    Waveform normalisation, when the bundle wants it, is done per recording in preprocessing, so
    padded batches are never normalised together (torchaudio's wrapper normalises the whole batch).
    """

    def __init__(self, model: nn.Module, head: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.head = head

    def emissions(self, waveforms: torch.Tensor, lengths: torch.Tensor | None):
        """CTC logits ``(batch, frames, labels)`` and valid frame counts (None: all valid)."""
        return self.model(waveforms, lengths)

    def features(self, waveforms: torch.Tensor, lengths: torch.Tensor | None, layer: int):
        """Output of transformer layer ``layer`` (1-based) ``(batch, frames, dim)`` and counts."""
        feats, out_lengths = self.model.extract_features(waveforms, lengths, num_layers=layer)
        return feats[-1], out_lengths

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None):
        return self.emissions(waveforms, lengths)

    def _front_end_each(self, waves: list[torch.Tensor]):
        """The convolutional front end run on each recording alone (a ``group_norm`` front end
        normalises over the whole input, so padding would change it), then the features padded
        for the encoder, which masks the padding."""
        feats = [self.model.feature_extractor(w[None], None)[0][0] for w in waves]
        lengths = torch.tensor([len(f) for f in feats], device=feats[0].device)
        return nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths

    def emissions_each(self, waves: list[torch.Tensor]):
        """:meth:`emissions` of recordings of different lengths, front end one by one."""
        x, lengths = self._front_end_each(waves)
        x = self.model.encoder(x, lengths)
        if self.model.aux is not None:
            x = self.model.aux(x)
        return x, lengths

    def features_each(self, waves: list[torch.Tensor], layer: int):
        """:meth:`features` of recordings of different lengths, front end one by one."""
        x, lengths = self._front_end_each(waves)
        return self.model.encoder.extract_features(x, lengths, layer)[-1], lengths


@dataclass
class Speech:
    """Everything preprocessing and decoding need; ``model.processor`` of every torchaudio model.

    :param labels: CTC labels, blank first (None: no CTC layer).
    :param config: How to rebuild the architecture: ``{"factory": ..., "kwargs": {...}}``.
    """

    sample_rate: int
    normalize_waveform: bool
    family: str
    layer: int
    num_layers: int
    embed_dim: int
    stride: int
    field: int
    padding_safe: bool
    encoder_padding_safe: bool
    labels: tuple[str, ...] | None
    config: dict[str, Any]
    class_labels: tuple[str, ...] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def speech_module(module: nn.Module) -> SpeechModule:
    """The :class:`SpeechModule` inside ``module`` (itself, or under a PEFT wrapper)."""
    if isinstance(module, SpeechModule):
        return module
    base = getattr(module, "get_base_model", None)
    if callable(base) and isinstance(base(), SpeechModule):
        return base()
    raise TypeError(f"expected a torchaudio SpeechModule, got {type(module).__name__}")


def conv_geometry(model: nn.Module) -> tuple[int, int]:
    """``(stride, field)``: samples between output frames, samples one frame sees."""
    stride, field_ = 1, 1
    for layer in model.feature_extractor.conv_layers:
        field_ += (layer.kernel_size - 1) * stride
        stride *= layer.stride
    return stride, field_


def padding_safe(model: nn.Module) -> tuple[bool, bool]:
    """Whether zero padding plus ``lengths`` leaves every valid frame unchanged: for the whole
    model, and for the transformer encoder alone.

    The ``group_norm`` front end is not (its statistics over time include the padding), though the
    encoder after it is; torchaudio's WavLM attention refuses a padding mask altogether.
    """
    layers = model.encoder.transformer.layers
    encoder = not any(type(layer.attention).__name__ == "WavLMSelfAttention" for layer in layers)
    front_end = not isinstance(model.feature_extractor.conv_layers[0].layer_norm, nn.GroupNorm)
    return encoder and front_end, encoder
