"""The fmhub exception hierarchy.

Every error fmhub raises on purpose is an :class:`FmhubError`. Each also derives from the builtin a
caller would reach for (``KeyError`` for an unknown name, ``ValueError`` for bad input, ...), so code
that catches builtins keeps working. Messages say what happened, the value received and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AmbiguousModelError",
    "DestinationError",
    "DeviceError",
    "ExportError",
    "DistributedError",
    "FineTuneError",
    "FmhubError",
    "InputError",
    "InvalidOptionError",
    "ManifestError",
    "NonFiniteLossError",
    "NonFiniteOutputError",
    "PluginError",
    "UnknownModelError",
    "UnknownNamespaceError",
    "close_matches",
]


def close_matches(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` choices that look like ``word`` (case-insensitive), best first."""
    import difflib  # here: `fmhub list` imports this module and never needs difflib

    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)
    return [lowered[h] for h in hits]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``Did you mean 'x'?`` sentence, or an empty string when nothing is close."""
    hits = close_matches(word, choices)
    if not hits:
        return ""
    return " Did you mean " + " or ".join(repr(h) for h in hits) + "?"


class FmhubError(Exception):
    """Base class of every error fmhub raises on purpose."""

    plugin: str | None = None
    stage: str | None = None


class UnknownModelError(FmhubError, KeyError):
    """A model name that no registered model, alias, namespace or local folder matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AmbiguousModelError(FmhubError, LookupError):
    """Two plugins claim the same model id, alias, namespace or local folder."""


class UnknownNamespaceError(UnknownModelError):
    """A ``namespace:name`` id whose namespace no installed plugin serves."""


class InvalidOptionError(FmhubError, ValueError):
    """An option, config field or manifest field that is unknown or has an invalid value."""


class InputError(FmhubError, ValueError):
    """An input a model cannot take (empty, wrong type, too short, unreadable...).

    ``index`` is the position of the bad input, or ``None`` when the error is not about one input.
    A hook raises ``InputError(detail, index=i)`` with ``i`` the position in the list *it*
    received; :meth:`fmhub.Model.predict` renumbers it to the position in the caller's list. The
    message reads ``"Input {index}: {detail}"``.
    """

    def __init__(self, *args: object, index: int | None = None):
        super().__init__(*args)
        self.index = index

    def __str__(self) -> str:
        text = super().__str__()
        return text if self.index is None else f"Input {self.index}: {text}"

    def __reduce__(self):  # keep ``index`` through pickling (worker processes, servers)
        return (_positioned, (type(self), self.args, self.index), self.__dict__)


class NonFiniteOutputError(FmhubError, ArithmeticError):
    """A model produced NaN or infinite numbers for an input (an embedding, a score, a feature map).

    fmhub never returns such a result: ``index`` is the input's position in the caller's list and
    ``plugin`` / ``stage`` name where the numbers came from. Common causes are float16 overflow
    (load with ``dtype="float32"``) and corrupt weights.
    """

    def __init__(self, *args: object, index: int | None = None):
        super().__init__(*args)
        self.index = index

    def __str__(self) -> str:
        text = super().__str__()
        return text if self.index is None else f"Input {self.index}: {text}"

    def __reduce__(self):
        return (_positioned, (type(self), self.args, self.index), self.__dict__)


def _positioned(cls: type, args: tuple, index: int | None) -> FmhubError:
    return cls(*args, index=index)


class DeviceError(FmhubError, RuntimeError):
    """A device or dtype that is unavailable here or not allowed for this model."""


class PluginError(FmhubError, RuntimeError):
    """A plugin failed: at import, while registering, or inside a stage of a model."""


class ManifestError(FmhubError, ValueError):
    """A saved model or adapter folder that is missing, corrupt, or does not fit its base model."""


class DestinationError(FmhubError, FileExistsError):
    """A save destination whose replacement would lose something: an existing file, a folder
    fmhub did not write, the working folder, or an fmhub folder without ``overwrite=True``."""

    def __str__(self) -> str:  # OSError would format its arguments
        return str(self.args[0]) if self.args else ""


class ExportError(FmhubError, RuntimeError):
    """A model cannot be exported, or its export does not reproduce it within tolerance."""


class FineTuneError(FmhubError, RuntimeError):
    """Fine-tuning cannot start or cannot go on."""


class NonFiniteLossError(FineTuneError):
    """The training loss became NaN or infinite; no weight was updated with it."""


class DistributedError(FmhubError, RuntimeError):
    """A multi-process run failed: a rank died or stalled, or the ranks disagree."""
