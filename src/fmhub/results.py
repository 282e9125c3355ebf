"""Typed results: one shape per task, whatever the family.

=======================  ======================================================================
task                     result of ``model(x)``
=======================  ======================================================================
``classification``       :class:`Classification` — ``label``, ``score``, ``top_k`` (best first)
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

from dataclasses import asdict, dataclass, field
from typing import Any

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
    ``token_ids`` are the generated ids (trimmed like the text where a stop string ended it).
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
    "embedding": "numpy.ndarray",
    "transcription": "Transcription",
    "text-generation": "Generation",
    "text2text": "Generation",
    "fill-mask": "FillMask",
    "token-classification": "Entities",
    "feature-maps": "FeatureMaps",
}


def top_k_classification(probs, labels, k: int = 5) -> list[Classification]:
    """Build :class:`Classification` results from a (batch, classes) probability array/tensor.

    ``labels`` maps class index to name (a sequence or a dict); a missing name becomes the index.
    """
    import numpy as np

    if hasattr(probs, "detach"):
        probs = probs.detach().float().cpu().numpy()
    probs = np.asarray(probs, dtype=np.float32)
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
        "text-generation": Generation,
        "text2text": Generation,
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
        assert all(isinstance(c, Chunk) and 0 <= c.start <= c.end for c in result.chunks), result
        assert result.language is None or isinstance(result.language, str)
    elif isinstance(result, Generation):
        assert isinstance(result.text, str), result
        assert result.finish_reason in FINISH_REASONS, result.finish_reason
        assert result.prompt_tokens >= 1 and result.completion_tokens >= 0, result
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
