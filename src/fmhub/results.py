"""Typed results: one shape per task, whatever the family.

=======================  ======================================================================
task                     result of ``model(x)``
=======================  ======================================================================
``classification``       :class:`Classification` — ``label``, ``score``, ``top_k`` (best first);
                         ``zero-shot-classification`` too, over the labels given with the call
``embedding``            ``numpy.ndarray`` of shape ``(dim,)``, float32
``transcription``        :class:`Transcription` — ``text``, ``chunks`` (:class:`Chunk` with
                         ``start``/``end`` seconds, when the model can tell), ``language``
``text-generation``      :class:`Generation` — ``text``, ``finish_reason``, ``prompt_tokens``,
                         ``completion_tokens`` (and the generated ``token_ids``)
``text2text``            :class:`Generation`, as above
``fill-mask``            :class:`FillMask` — ``predictions`` (:class:`TokenScore`, best first)
``token-classification`` :class:`Entities` — ``entities`` (:class:`Entity` with character spans)
``feature-maps``         :class:`FeatureMaps` — ``maps``, one ``numpy.ndarray`` (C, H, W) a stage
=======================  ======================================================================

Results are frozen dataclasses with ``to_dict()`` giving JSON-ready data (``fmhub predict``).
Text, image and audio classifiers all return :class:`Classification`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "TASKS",
    "Chunk",
    "Classification",
    "Entities",
    "Entity",
    "FeatureMaps",
    "FillMask",
    "Generation",
    "LabelScore",
    "TokenScore",
    "Transcription",
    "check_result",
    "inspect_result",
    "full_distribution",
    "to_jsonable",
    "top_k_classification",
]


@dataclass(frozen=True, slots=True)
class LabelScore:
    label: str
    score: float
    index: int


@dataclass(frozen=True, slots=True)
class Classification:
    """The best label, its probability, and the ``top_k`` best labels (best first)."""

    label: str
    score: float
    top_k: tuple[LabelScore, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A stretch of a transcript with its start and end, in seconds from the recording's start."""

    text: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Transcription:
    """What was said. ``chunks`` (segments with timestamps) and ``language`` are filled by the
    models that can tell them (Whisper); a CTC model fills ``text`` only."""

    text: str
    chunks: tuple[Chunk, ...] = ()
    language: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Why generation ended: an end-of-sequence token or a stop string (``"stop"``), or the
#: ``max_new_tokens`` limit (``"length"``).
FINISH_REASONS = ("stop", "length")


@dataclass(frozen=True, slots=True)
class Generation:
    """Generated text (without the prompt, stop string trimmed), why it ended, and token counts.

    ``completion_tokens`` counts the generated tokens, end-of-sequence token included;
    ``token_ids`` are the ids ``generate`` produced for this input (padding dropped).
    """

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    token_ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TokenScore:
    token: str
    token_id: int
    score: float
    sequence: str


@dataclass(frozen=True, slots=True)
class FillMask:
    """Candidates for the masked token, best first."""

    predictions: tuple[TokenScore, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Entity:
    """A labelled span: ``text == input[start:end]``."""

    label: str
    score: float
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Entities:
    entities: tuple[Entity, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FeatureMaps:
    """One ``(C, H, W)`` float32 array per feature stage, shallow to deep."""

    maps: tuple[Any, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"shapes": [list(m.shape) for m in self.maps]}


#: task name -> result type (embedding results are numpy arrays).
TASKS: dict[str, str] = {
    "classification": "Classification",
    "zero-shot-classification": "Classification",
    "embedding": "numpy.ndarray",
    "transcription": "Transcription",
    "text-generation": "Generation",
    "text2text": "Generation",
    "fill-mask": "FillMask",
    "token-classification": "Entities",
    "feature-maps": "FeatureMaps",
}


_FULL_DISTRIBUTION: ContextVar[bool] = ContextVar("fmhub_full_distribution", default=False)


@contextmanager
def full_distribution() -> Iterator[None]:
    """While active, :func:`top_k_classification` returns every class in ``top_k`` whatever ``k``
    the plugin asked for. Evaluation uses it: log loss and top-k accuracy need every class's
    probability."""
    token = _FULL_DISTRIBUTION.set(True)
    try:
        yield
    finally:
        _FULL_DISTRIBUTION.reset(token)


def top_k_classification(
    probs: np.ndarray | torch.Tensor, labels: Sequence[str] | Mapping[int, str], k: int = 5
) -> list[Classification]:
    """Build :class:`Classification` results from a (batch, classes) probability array/tensor.

    ``labels`` maps class index to name (a sequence or a dict); a missing name becomes the index.
    Inside :func:`full_distribution`, ``k`` is every class.
    """
    import numpy as np

    if hasattr(probs, "detach"):
        probs = probs.detach().float().cpu().numpy()
    probs = np.asarray(probs, dtype=np.float32)
    if _FULL_DISTRIBUTION.get():
        k = probs.shape[-1]
    k = max(1, min(k, probs.shape[-1]))
    idx = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    out = []
    for row, order in zip(probs, idx):
        top = tuple(LabelScore(_label(labels, int(i)), float(row[i]), int(i)) for i in order)
        out.append(Classification(top[0].label, top[0].score, top))
    return out


def _label(labels: Sequence[str] | Mapping[int, str], i: int) -> str:
    try:
        return str(labels[i])
    except (KeyError, IndexError, TypeError):
        return str(i)


#: task -> result class (``embedding`` results are numpy arrays, checked apart).
_RESULT_TYPES: dict[str, type] = {
    "classification": Classification,
    "zero-shot-classification": Classification,
    "transcription": Transcription,
    "text-generation": Generation,
    "text2text": Generation,
    "fill-mask": FillMask,
    "token-classification": Entities,
    "feature-maps": FeatureMaps,
}


def _finite(*values: Any) -> bool:
    """Whether every number (a Python or numpy scalar, or every element of an array) is finite."""
    import numpy as np

    for v in values:
        if isinstance(v, float):
            if not math.isfinite(v):
                return False
        elif not isinstance(v, int) and not np.isfinite(v).all():
            return False
    return True


def _number(x: Any) -> bool:
    return (
        isinstance(x, (int, float))
        and not isinstance(x, bool)
        or (type(x).__module__ == "numpy" and hasattr(x, "dtype") and x.dtype.kind in "iuf")
    )


def inspect_result(task: str, result: Any) -> tuple[str, str] | None:
    """What is wrong with ``result`` as a result of ``task``: ``None`` when nothing is, else
    ``("type", detail)`` for a result that does not have the documented shape, or
    ``("non-finite", detail)`` for a well-shaped one holding NaN or infinite numbers.

    A task this module does not know (a third party's) is not checked.
    """
    import numpy as np

    if task == "embedding":
        if not isinstance(result, np.ndarray):
            return "type", (
                f"a {type(result).__name__} ({result!r:.40}) as an embedding, not a numpy array"
            )
        if result.ndim != 1 or result.dtype != np.float32:
            return "type", (
                f"an embedding of shape {result.shape} and dtype {result.dtype}, not 1-D float32"
            )
        if not _finite(result):
            bad = int((~np.isfinite(result)).sum())
            return "non-finite", f"an embedding with {bad} NaN or infinite values of {result.size}"
        return None
    expected = _RESULT_TYPES.get(task)
    if expected is None:
        return None
    if not isinstance(result, expected):
        return "type", f"{type(result).__name__} ({result!r:.60}), not a {expected.__name__}"
    if isinstance(result, Classification):
        if not isinstance(result.label, str) or not _number(result.score) or not result.top_k:
            return "type", f"a malformed Classification {result!r:.80}"
        if not all(isinstance(t, LabelScore) and _number(t.score) for t in result.top_k):
            return "type", "a Classification whose top_k is not a tuple of LabelScore"
        if not _finite(result.score, *(t.score for t in result.top_k)):
            return "non-finite", "a classification score that is NaN or infinite"
        if not 0.0 <= result.score <= 1.0 + 1e-6 or result.top_k[0].label != result.label:
            return "type", (
                "a Classification whose score is not a probability or whose top_k "
                f"does not start with its label ({result!r:.80})"
            )
        scores = [t.score for t in result.top_k]
        if scores != sorted(scores, reverse=True):
            return "type", "a Classification whose top_k is not best first"
    elif isinstance(result, Transcription):
        if not isinstance(result.text, str):
            return "type", f"a Transcription whose text is {type(result.text).__name__}"
        if not all(isinstance(c, Chunk) and 0 <= c.start <= c.end for c in result.chunks):
            return "type", f"a Transcription with malformed chunks {result.chunks!r:.80}"
        if result.language is not None and not isinstance(result.language, str):
            return "type", f"a Transcription whose language is {result.language!r:.40}"
    elif isinstance(result, Generation):
        if not isinstance(result.text, str) or result.finish_reason not in FINISH_REASONS:
            return "type", (
                f"a Generation with text {type(result.text).__name__} and "
                f"finish_reason {result.finish_reason!r} (one of {FINISH_REASONS})"
            )
        if result.prompt_tokens < 1 or result.completion_tokens < 0:
            return "type", (
                f"a Generation counting {result.prompt_tokens} prompt and "
                f"{result.completion_tokens} generated tokens"
            )
    elif isinstance(result, FillMask):
        if not result.predictions or not all(
            isinstance(p, TokenScore) and _number(p.score) for p in result.predictions
        ):
            return "type", "a FillMask whose predictions are not a non-empty tuple of TokenScore"
        if not _finite(*(p.score for p in result.predictions)):
            return "non-finite", "a fill-mask score that is NaN or infinite"
    elif isinstance(result, Entities):
        if not all(isinstance(e, Entity) and 0 <= e.start <= e.end for e in result.entities):
            return "type", "Entities holding something other than Entity spans"
        if not _finite(*(e.score for e in result.entities)):
            return "non-finite", "an entity score that is NaN or infinite"
    elif isinstance(result, FeatureMaps):
        if not result.maps or not all(
            isinstance(m, np.ndarray) and m.ndim == 3 for m in result.maps
        ):
            return "type", "FeatureMaps whose maps are not (C, H, W) numpy arrays"
        if not _finite(*result.maps):
            return "non-finite", "a feature map with NaN or infinite values"
    return None


def check_result(task: str, result: Any) -> None:
    """Raise ``AssertionError`` unless ``result`` has the documented shape for ``task`` and holds
    only finite numbers (:func:`inspect_result` says what is wrong)."""
    problem = inspect_result(task, result)
    assert problem is None, f"{task} result: {problem[1]}"


def to_jsonable(result: Any) -> Any:
    """JSON-ready form of any result (arrays become lists)."""
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if hasattr(result, "tolist"):
        return result.tolist()
    return result
