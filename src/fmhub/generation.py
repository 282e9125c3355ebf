"""Per-call options and streaming: the generation side of the contract.

* :class:`CallOptions` is the base of every model's *per-call* options (``model(x, **options)``,
  ``model.predict(xs, **options)``, ``model.stream(x, **options)``); :class:`GenerationOptions` is
  the one generative models take (text generation, text-to-text, speech recognition). The core
  validates what the caller passes, filling in the checkpoint's own defaults (its
  ``generation_config.json``, as the plugin read it into ``Loaded.call_defaults``), and hands the
  validated object to the stage hooks as ``options``.
* :class:`TextStream` is what ``model.stream(x)`` returns: an iterator over text pieces as the
  forward stage decodes them, whose ``result`` is the finished typed result.

Nothing here imports torch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import FmhubError, InputError, InvalidOptionError, PluginError
from .spec import describe_validation_error

if TYPE_CHECKING:
    from .model import Model

__all__ = [
    "GENERATION_TASKS",
    "CallOptionError",
    "CallOptions",
    "GenerationOptions",
    "TextStream",
    "parse_call_options",
]

#: Tasks whose models take :class:`GenerationOptions` unless their plugin gives another class.
GENERATION_TASKS = ("text-generation", "text2text")


class CallOptionError(InvalidOptionError, InputError):
    """A per-call option that is unknown or invalid (both an ``InvalidOptionError`` and, being part
    of the call's input, an ``InputError``)."""


class CallOptions(BaseModel):
    """Base of every per-call options class (unknown fields are errors naming the valid ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fields that, when the caller sets them, switch sampling on (see GenerationOptions).
    _sampling_fields: ClassVar[tuple[str, ...]] = ()


class GenerationOptions(CallOptions):
    """How a generative model decodes; every field can be passed per call.

    Defaults come from the checkpoint's ``generation_config.json`` where it sets them, else the
    values below. ``do_sample`` left unset turns on when the caller passes ``temperature``,
    ``top_p`` or ``top_k`` (``temperature=0`` means greedy), as OpenAI-style APIs behave.
    """

    max_new_tokens: int = Field(128, ge=1, description="Most tokens generated per input.")
    min_new_tokens: int = Field(0, ge=0, description="Tokens generated before an end is allowed.")
    do_sample: bool = Field(False, description="Sample (True) or decode greedily / by beams.")
    temperature: float = Field(
        1.0, ge=0, description="Softmax temperature when sampling; 0: greedy."
    )
    top_p: float = Field(
        1.0, gt=0, le=1, description="Nucleus sampling: keep this probability mass."
    )
    top_k: int = Field(50, ge=0, description="Sample among the k likeliest tokens; 0: no limit.")
    repetition_penalty: float = Field(1.0, gt=0, description="Above 1 discourages repeats.")
    stop: tuple[str, ...] = Field((), description="Strings that end generation (trimmed off).")
    seed: int | None = Field(None, description="Seed for reproducible sampling.")
    num_beams: int = Field(1, ge=1, description="Beam search width (1: no beam search).")

    _sampling_fields: ClassVar[tuple[str, ...]] = ("temperature", "top_p", "top_k")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            value = (value,)
        if isinstance(value, (list, tuple)):
            if not all(isinstance(s, str) and s for s in value):
                raise ValueError("stop strings must be non-empty strings")
            return tuple(value)
        return value

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic (no sampling)."""
        return not self.do_sample


def parse_call_options(
    cls: type[CallOptions] | None, defaults: dict[str, Any], given: dict[str, Any], model_id: str
) -> CallOptions | None:
    """Validate ``given`` per-call options against ``cls`` on top of ``defaults``.

    ``cls=None`` (a model that takes no per-call options) refuses any option. Errors are
    :class:`CallOptionError` naming the bad option and the valid ones.
    """
    if cls is None:
        if given:
            raise CallOptionError(
                f"{model_id!r} takes no per-call options, got {', '.join(map(repr, given))}; "
                "load options (device, dtype...) go to fmhub.load."
            )
        return None
    known = set(cls.model_fields)
    data = {k: v for k, v in defaults.items() if k in known}
    data.update(given)
    if "do_sample" not in given and any(k in given for k in cls._sampling_fields):
        data["do_sample"] = True
    if data.get("temperature") == 0:
        data["do_sample"] = False
    try:
        return cls(**data)
    except ValidationError as exc:
        raise CallOptionError(
            describe_validation_error(exc, cls, f"per-call options for {model_id!r}")
        ) from None


class _StreamClosed(FmhubError):
    """Raised inside the forward stage when the consumer closed the stream (stops the work)."""


_END = object()


class TextStream(Iterator[str]):
    """Text pieces of one input as the model produces them; ``result`` once it is exhausted.

    The forward stage runs in a worker thread and calls ``emit(index, piece)``; pieces arrive here
    in order. Stop strings (``options.stop``) are handled here: text that may be the start of one
    is held back, and nothing from a stop string on is sent. When the plugin streams nothing (its forward ignores ``stream``), the whole text comes
    as one piece at the end. The pieces always concatenate to ``result.text``. ``close()`` (or
    leaving a ``with`` block) stops the generation at the next token.
    """

    def __init__(self, model: Model, batch: Any, options: CallOptions | None):
        self._model, self._batch, self._options = model, batch, options
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._emitted: list[str] = []
        self._done = False
        self._raw, self._sent, self._stopped = "", 0, False
        #: The typed result (a Generation, a Transcription...), set when the stream is exhausted.
        self.result: Any = None

    def _emit(self, index: int, piece: str) -> None:
        if self._closed.is_set():
            raise _StreamClosed("stream closed by its consumer")
        if index != 0 or not piece or self._stopped:
            return
        self._raw += piece
        stops = getattr(self._options, "stop", ()) or ()
        hits = [i for i in (self._raw.find(s) for s in stops) if i >= 0]
        if hits:  # a stop string: send up to it, nothing after
            safe, self._stopped = min(hits), True
        else:  # hold back an ending that may grow into a stop string
            hold = max(
                (k for s in stops for k in range(1, len(s)) if self._raw.endswith(s[:k])), default=0
            )
            safe = len(self._raw) - hold
        if safe > self._sent:
            self._queue.put(self._raw[self._sent : safe])
            self._sent = safe

    def _work(self) -> None:
        try:
            outputs = self._model.forward(self._batch, options=self._options, stream=self._emit)
            results = self._model.postprocess(outputs, self._batch, options=self._options)
            self._queue.put((_END, results[0] if results else None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer's thread
            self._queue.put((_END, exc))

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        if self._done:
            raise StopIteration
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="fmhub-stream", daemon=True)
            self._thread.start()
        item = self._queue.get()
        if isinstance(item, str):
            self._emitted.append(item)
            return item
        self._done = True
        self._thread.join()
        result = item[1]
        if isinstance(result, BaseException):
            if self._closed.is_set() and _closed_error(result):
                raise StopIteration from None
            raise result
        self.result = result
        text = getattr(result, "text", None)
        sent = "".join(self._emitted)
        if not isinstance(text, str) or text == sent:
            raise StopIteration
        if not text.startswith(sent):
            raise PluginError(
                f"plugin {self._model.spec.plugin!r} streamed {sent!r}, which is not the start of "
                f"its result text {text!r}; the streamed pieces must add up to the result."
            )
        self._emitted.append(text[len(sent) :])
        return self._emitted[-1]

    def close(self) -> None:
        """Stop generating (at the next piece) and wait for the worker to finish."""
        self._closed.set()
        if self._thread is not None and not self._done:
            self._thread.join()
            self._done = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def text(self) -> str:
        """The text streamed so far."""
        return "".join(self._emitted)


def _closed_error(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, _StreamClosed):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


Emit = Callable[[int, str], None]
