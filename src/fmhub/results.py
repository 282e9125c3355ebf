"""Typed results: one shape per task, whatever the family.

=======================  ======================================================================
task                     result of ``model(x)``
=======================  ======================================================================
``classification``       :class:`Classification` — ``label``, ``score``, ``top_k`` (best first)
``embedding``            ``numpy.ndarray`` of shape ``(dim,)``, float32
``transcription``        :class:`Transcription` — ``text``
``fill-mask``            :class:`FillMask` — ``predictions`` (:class:`TokenScore`, best first)
``token-classification`` :class:`Entities` — ``entities`` (:class:`Entity` with character spans)
``feature-maps``         :class:`FeatureMaps` — ``maps``, one ``numpy.ndarray`` (C, H, W) a stage
=======================  ======================================================================

Results are frozen dataclasses with ``to_dict()`` giving JSON-ready data (``fmhub predict``).
Text, image and audio classifiers all return :class:`Classification`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "TASKS",
    "Classification",
    "Entities",
    "Entity",
    "FeatureMaps",
    "FillMask",
    "LabelScore",
    "TokenScore",
    "Transcription",
    "check_result",
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
class Transcription:
    text: str

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
    "embedding": "numpy.ndarray",
    "transcription": "Transcription",
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


def top_k_classification(probs, labels, k: int = 5) -> list[Classification]:
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
        top = tuple(
            LabelScore(_label(labels, int(i)), float(row[i]), int(i)) for i in order
        )
        out.append(Classification(top[0].label, top[0].score, top))
    return out


def _label(labels, i: int) -> str:
    try:
        return str(labels[i])
    except (KeyError, IndexError, TypeError):
        return str(i)


def check_result(task: str, result: Any) -> None:
    """Raise ``AssertionError`` unless ``result`` has the documented shape for ``task``."""
    import numpy as np

    if task == "embedding":
        assert isinstance(result, np.ndarray), f"embedding must be a numpy array, got {type(result)}"
        assert result.ndim == 1 and result.dtype == np.float32, (result.shape, result.dtype)
        assert np.isfinite(result).all(), "embedding has non-finite values"
        return
    expected = {
        "classification": Classification,
        "transcription": Transcription,
        "fill-mask": FillMask,
        "token-classification": Entities,
        "feature-maps": FeatureMaps,
    }.get(task)
    if expected is None:
        return  # a third party's task: no shape to check
    assert isinstance(result, expected), f"{task} result must be {expected.__name__}, got {result!r}"
    if isinstance(result, Classification):
        assert isinstance(result.label, str) and 0.0 <= result.score <= 1.0 + 1e-6
        assert result.top_k and result.top_k[0].label == result.label
        scores = [t.score for t in result.top_k]
        assert scores == sorted(scores, reverse=True), "top_k must be best first"
    elif isinstance(result, Transcription):
        assert isinstance(result.text, str)
    elif isinstance(result, FillMask):
        assert result.predictions and all(isinstance(p, TokenScore) for p in result.predictions)
    elif isinstance(result, Entities):
        assert all(isinstance(e, Entity) and 0 <= e.start <= e.end for e in result.entities)
    elif isinstance(result, FeatureMaps):
        assert result.maps and all(isinstance(m, np.ndarray) and m.ndim == 3 for m in result.maps)


def to_jsonable(result: Any) -> Any:
    """JSON-ready form of any result (arrays become lists)."""
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if hasattr(result, "tolist"):
        return result.tolist()
    return result
