"""Splitting long recordings into overlapping chunks and stitching their frames back together.

Shared by every plugin that runs a frame-based audio encoder on recordings longer than it should
see at once (the torchaudio bundles, Hugging Face wav2vec 2.0 / HuBERT / WavLM models), so a long
recording is cut the same way whichever plugin serves the model. Pure Python: imports nothing.

A recording longer than ``chunk`` samples is cut into chunks that start ``step = chunk - 2 *
context`` samples apart (the context is capped at a quarter of the chunk, see
:func:`chunk_sizes`). Each chunk "owns" the output frames in its middle and sees ``context``
samples of audio on each side of them; its first and last frames (which lack context) are dropped,
except at the ends of the recording. Chunk starts and the context are multiples of the frame stride,
so the kept frames line up exactly with the frames the model would give on the whole recording: the
stitched sequence has exactly as many frames, and a model whose receptive field fits in the context
gives the very same frames. Only one group of chunks is in memory at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Segment", "chunk_sizes", "frames_for", "plan_segments"]


@dataclass(frozen=True)
class Segment:
    """Samples ``[start, end)`` of item ``item``; keep local frames ``[keep_from, keep_to)``."""

    item: int
    start: int
    end: int
    keep_from: int = 0
    keep_to: int | None = None

    @property
    def length(self) -> int:
        return self.end - self.start


def frames_for(samples: int, stride: int, field: int) -> int:
    """Output frames of the convolutional front end for ``samples`` input samples."""
    return max(0, (samples - field) // stride + 1)


def chunk_sizes(chunk: int, context: int, stride: int, field: int) -> tuple[int, int]:
    """Whole frame strides: ``chunk`` rounded down, ``context`` rounded up. The context is capped
    at a quarter of the chunk (so chunks advance by at least half their length) and covers at
    least one frame's receptive field."""
    span = -(-field // stride) * stride
    chunk = max(chunk // stride * stride, 4 * span)
    context = min(-(-context // stride) * stride, chunk // 4 // stride * stride)
    return chunk, max(context, span)


def plan_segments(
    lengths: list[int], chunk: int, context: int, stride: int, field: int
) -> list[Segment]:
    """Segments covering every item; items up to ``chunk`` samples are one whole segment."""
    chunk, context = chunk_sizes(chunk, context, stride, field)
    step = chunk - 2 * context
    segments: list[Segment] = []
    for item, n in enumerate(lengths):
        if n <= chunk:
            segments.append(Segment(item, 0, n))
            continue
        starts = [0]
        while starts[-1] + chunk < n:
            starts.append(starts[-1] + step)
        for k, s in enumerate(starts):
            last = k == len(starts) - 1
            keep_from = 0 if k == 0 else context // stride
            keep_to = None if last else (step + context) // stride
            segments.append(Segment(item, s, n if last else s + chunk, keep_from, keep_to))
    return segments
