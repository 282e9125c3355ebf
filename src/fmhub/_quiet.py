"""Hiding the third-party warnings that fmhub knows to be noise, only around the calls of fmhub that
trigger them (never a global mute).

Each entry of :data:`KNOWN_WARNINGS` names one warning by its category, message and the module that
issues it. :func:`known_warnings_hidden` filters exactly those, inside a ``with`` block, and also
drops the matching records of the few libraries that report through :mod:`logging` instead of
:mod:`warnings` (torch's ``_pytree`` when transformers imports torchao). Anything else still shows.
``FMHUB_SHOW_WARNINGS=1`` (or ``fmhub -v``) shows them all again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["KNOWN_WARNINGS", "KnownWarning", "known_warnings_hidden", "show_known_warnings"]

SHOW_ENV = "FMHUB_SHOW_WARNINGS"


@dataclass(frozen=True)
class KnownWarning:
    """A warning fmhub hides: ``message`` is a regular expression matched at the start of the
    text; ``module`` the issuing module (a regular expression for :mod:`warnings`, a logger name
    for ``logger`` entries); ``why`` says why it is noise for fmhub users."""

    message: str
    module: str
    why: str
    category: type[Warning] = Warning
    logger: bool = False


KNOWN_WARNINGS: tuple[KnownWarning, ...] = (
    KnownWarning(
        r"<enum '\w+'> is an Enum subclass and is now natively supported by torch\.compile",
        "torch.utils._pytree",
        logger=True,
        why="torchao (the int8 extra) registers its enums with torch's pytree when transformers "
        "imports it; a deprecation aimed at torchao's authors.",
    ),
    KnownWarning(
        r"`is_gradient_checkpointing` is deprecated",
        r"transformers\.modeling_utils",
        category=FutureWarning,
        why="PEFT reads a deprecated transformers attribute when it wraps a model for LoRA/IA3.",
    ),
    KnownWarning(
        r"Could not find a config file in .* - will assume that the vocabulary was not modified",
        r"peft(\..*)?",
        category=UserWarning,
        why="PEFT cannot ask the hub for the base model's config while saving an adapter offline; "
        "fmhub never changes the vocabulary.",
    ),
)

_show = os.environ.get(SHOW_ENV, "").lower() in ("1", "true", "yes", "on")


def _showing() -> bool:
    return _show or os.environ.get(SHOW_ENV, "").lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def show_known_warnings(show: bool = True) -> Iterator[None]:
    """Inside the block, :func:`known_warnings_hidden` hides nothing (``fmhub -v``)."""
    global _show
    saved = _show
    _show = saved or show
    try:
        yield
    finally:
        _show = saved


class _LogFilter(logging.Filter):
    def __init__(self, patterns: list[re.Pattern]):
        super().__init__()
        self.patterns = patterns

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):  # a record that cannot format is not ours to judge
            return True
        return not any(p.match(text) for p in self.patterns)


_lock = threading.Lock()
_depth = 0
_installed: list[tuple] = []  # the warnings.filters entries we added
_log_filters: list[tuple[logging.Logger, logging.Filter]] = []


def _install() -> None:
    loggers: dict[str, list[re.Pattern]] = {}
    for w in KNOWN_WARNINGS:
        if w.logger:
            loggers.setdefault(w.module, []).append(re.compile(w.message))
        else:
            warnings.filterwarnings(
                "ignore", message=w.message, category=w.category, module=w.module
            )
            _installed.append(warnings.filters[0])
    for name, patterns in loggers.items():
        logger, f = logging.getLogger(name), _LogFilter(patterns)
        logger.addFilter(f)
        _log_filters.append((logger, f))


def _uninstall() -> None:
    for entry in _installed:
        with contextlib.suppress(ValueError):  # someone reset the filters meanwhile
            warnings.filters.remove(entry)
    _installed.clear()
    mutated = getattr(warnings, "_filters_mutated", None)
    if mutated is not None:  # let warnings seen while hidden show again
        mutated()
    for logger, f in _log_filters:
        logger.removeFilter(f)
    _log_filters.clear()


@contextlib.contextmanager
def known_warnings_hidden() -> Iterator[None]:
    """Hide the :data:`KNOWN_WARNINGS` raised inside the block (unless they are being shown).

    Only fmhub's own filter entries are added and removed again (nested blocks and threads share
    them), so filters that the libraries imported inside the block install stay in place."""
    global _depth
    if _showing():
        yield
        return
    with _lock:
        if _depth == 0:
            _install()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _uninstall()
