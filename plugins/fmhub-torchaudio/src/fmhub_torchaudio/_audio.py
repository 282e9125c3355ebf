"""Turning whatever a caller passes into one mono float32 waveform at the model's sample rate.

Accepted inputs (see ``docs/plugins/torchaudio.md``):

* a file path (``str`` / ``os.PathLike``) or the bytes of a file: wav, flac, ogg... via soundfile;
* ``(array, sample_rate)`` pairs, arrays being numpy arrays, torch tensors or lists of numbers;
* dicts ``{"array": ..., "sampling_rate": ...}`` (the Hugging Face ``datasets`` audio layout;
  ``"waveform"`` and ``"sample_rate"`` are accepted too);
* a bare array or tensor only when the model was loaded with ``input_sample_rate=...``.

Channel-axis rule: a 1-D array is mono. A 2-D array is one recording whose *shorter* axis holds the
channels (so both torchaudio's ``(channels, samples)`` and soundfile's ``(samples, channels)``
work); it must have at most :data:`MAX_CHANNELS` channels, and a square array is refused as
ambiguous. Channels are averaged to mono. A 2-D array is never taken as a batch: pass a list.
Integer PCM arrays are scaled to [-1, 1] (int16 by 32768, and so on).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

import fmhub

__all__ = ["MAX_CHANNELS", "Audio", "decode", "duration", "to_mono"]

#: The most channels a 2-D input may have (a 7.1 mix has 8; microphone arrays up to 64).
MAX_CHANNELS = 64


@dataclass
class Audio:
    """A decoded input: ``samples`` is 1-D float32 (mono) or 2-D ``(channels, samples)``."""

    samples: np.ndarray
    sample_rate: int


def _what(i: int, x: Any) -> str:
    if isinstance(x, (str, os.PathLike)):
        return f"input {i} ({os.fspath(x)!r})"
    return f"input {i} ({type(x).__name__})"


def _check_rate(i: int, rate: Any) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer, float)) or rate <= 0 or (
        isinstance(rate, float) and not rate.is_integer()
    ):
        raise fmhub.InputError(
            f"input {i} has sample rate {rate!r}; a sample rate is a positive whole number of Hz, "
            "e.g. (wave, 16000)."
        )
    return int(rate)


def _read_file(i: int, source: Any) -> Audio:
    import soundfile as sf

    name = f"input {i} ({os.fspath(source)!r})" if not isinstance(source, bytes) else f"input {i}"
    if not isinstance(source, bytes) and not os.path.isfile(source):
        raise fmhub.InputError(f"{name}: no such audio file; pass an existing file path.")
    try:
        data, rate = sf.read(io.BytesIO(source) if isinstance(source, bytes) else source,
                             dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise fmhub.InputError(
            f"{name} cannot be decoded as audio ({exc}); pass a wav, flac or ogg file "
            "(anything libsndfile reads), or an (array, sample_rate) pair."
        ) from None
    return Audio(np.ascontiguousarray(data.T), int(rate))  # soundfile gives (samples, channels)


def _as_array(i: int, x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu()
        x = (x.float() if x.is_floating_point() else x).numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise fmhub.InputError(f"input {i} is not an audio array ({exc}).") from None
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        if arr.dtype.kind == "u":
            mid = (int(info.max) + 1) / 2
            return ((arr.astype(np.float64) - mid) / mid).astype(np.float32)
        return (arr.astype(np.float64) / (int(info.max) + 1)).astype(np.float32)
    if arr.dtype.kind != "f":
        raise fmhub.InputError(
            f"input {i} is an array of {arr.dtype}; audio must be float or integer PCM samples."
        )
    return arr.astype(np.float32, copy=False)


def decode(i: int, x: Any, default_rate: int | None) -> Audio:
    """Decode input ``i`` into samples and a sample rate (channels not yet mixed)."""
    if isinstance(x, (str, os.PathLike, bytes)):
        return _read_file(i, x)
    if isinstance(x, dict):
        arr = next((x[k] for k in ("array", "waveform") if k in x), None)
        rate = next((x[k] for k in ("sampling_rate", "sample_rate") if k in x), None)
        if arr is None or rate is None:
            raise fmhub.InputError(
                f"input {i} is a dict with keys {sorted(map(str, x))}; an audio dict needs "
                "'array' and 'sampling_rate' (or 'waveform' and 'sample_rate')."
            )
        return Audio(_as_array(i, arr), _check_rate(i, rate))
    if isinstance(x, tuple) and len(x) == 2 and np.ndim(x[1]) == 0:
        return Audio(_as_array(i, x[0]), _check_rate(i, x[1]))
    if x is None or isinstance(x, (int, float)):
        raise fmhub.InputError(f"input {i} is {x!r}, not audio; pass a file path or "
                               "(array, sample_rate).")
    arr = _as_array(i, x)
    if default_rate is None:
        raise fmhub.InputError(
            f"input {i} is a bare {type(x).__name__} of shape {tuple(arr.shape)} without a sample "
            "rate, so it cannot be resampled safely; pass (array, sample_rate), e.g. "
            "(wave, 16000), or load the model with input_sample_rate=<Hz> for bare arrays."
        )
    return Audio(arr, default_rate)


def to_mono(i: int, audio: Audio) -> np.ndarray:
    """Apply the channel-axis rule and average the channels; returns 1-D float32."""
    arr = audio.samples
    if arr.ndim == 1:
        mono = arr
    elif arr.ndim == 2:
        a, b = arr.shape
        if a == b and a > 1:
            raise fmhub.InputError(
                f"input {i} has shape {arr.shape}: a square array leaves the channel axis "
                "ambiguous; pass 1-D mono audio or a (channels, samples) array with more samples "
                "than channels."
            )
        channels = min(a, b)
        if channels > MAX_CHANNELS:
            raise fmhub.InputError(
                f"input {i} has shape {arr.shape}: {channels} channels is more than "
                f"{MAX_CHANNELS}; a 2-D array is one multichannel recording, not a batch. Pass a "
                "batch as a list of recordings."
            )
        mono = arr.mean(axis=0 if a <= b else 1, dtype=np.float32)
    else:
        raise fmhub.InputError(
            f"input {i} has shape {arr.shape}; a recording is 1-D (samples) or 2-D (channels and "
            "samples, either order). Pass a batch as a list of recordings."
        )
    if mono.size == 0:
        raise fmhub.InputError(f"input {i} is empty (0 samples); pass at least a few ms of audio.")
    if not np.isfinite(mono).all():
        raise fmhub.InputError(f"input {i} contains NaN or infinite samples.")
    return np.ascontiguousarray(mono, dtype=np.float32)


def duration(x: Any, default_rate: int | None) -> float:
    """Cheap duration estimate in seconds for batch ordering (0 when unknown; never raises)."""
    try:
        if isinstance(x, (str, os.PathLike)):
            import soundfile as sf

            info = sf.info(x)
            return info.frames / info.samplerate
        if isinstance(x, dict):
            arr = next((x[k] for k in ("array", "waveform") if k in x), None)
            rate = next((x[k] for k in ("sampling_rate", "sample_rate") if k in x), None)
        elif isinstance(x, tuple) and len(x) == 2:
            arr, rate = x
        else:
            arr, rate = x, default_rate
        shape = getattr(arr, "shape", None) or (len(arr),)
        return float(max(shape)) / float(rate or 16000)
    except Exception:  # noqa: BLE001 - ordering is a hint; preprocess reports bad inputs
        return 0.0
