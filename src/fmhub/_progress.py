"""Progress of long work: a bar on a terminal, and away from one (a log file, a CI job, a pipe) one
plain line to stderr at a steady interval, so that a long run is never silent.

``FMHUB_PROGRESS_INTERVAL`` sets the seconds between lines (default 30).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

__all__ = ["DEFAULT_INTERVAL", "INTERVAL_ENV", "Heartbeat", "progress_bar", "progress_interval"]

INTERVAL_ENV = "FMHUB_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0


def progress_interval() -> float:
    """Seconds between progress lines: ``FMHUB_PROGRESS_INTERVAL``, else 30."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        value = DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


def _duration(seconds: float) -> str:
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Heartbeat:
    """Prints ``desc: n/total unit (pct%), key=value ..., elapsed, ~left`` every ``interval``
    seconds from a background thread, and a last line at :meth:`close`. The tqdm methods the
    callers use (``update``, ``set_postfix``, ``close``) so it can stand in for a bar."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        interval: float | None = None,
        initial: int = 0,
        stream: Any = None,
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.interval = interval if interval is not None else progress_interval()
        self.n = self.start_n = initial
        self.postfix: dict[str, Any] = {}
        self._stream = stream
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"fmhub-progress-{desc}", daemon=True
        )
        self._thread.start()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n

    def set_postfix(self, **values: Any) -> None:
        with self._lock:
            self.postfix = dict(values)

    def line(self) -> str:
        with self._lock:
            n, postfix = self.n, dict(self.postfix)
        elapsed = time.monotonic() - self._t0
        unit = self.unit + ("s" if (self.total if self.total else n) != 1 else "")
        parts = [
            f"{self.desc}: {n}/{self.total} {unit}" if self.total else f"{self.desc}: {n} {unit}"
        ]
        if self.total:
            parts[0] += f" ({100 * n / self.total:.0f}%)"
        parts += [f"{k}={v}" for k, v in postfix.items()]
        parts.append(f"{_duration(elapsed)} elapsed")
        done = n - self.start_n
        if self.total and 0 < done and n < self.total:
            parts.append(f"~{_duration(elapsed / done * (self.total - n))} left")
        return ", ".join(parts)

    def _emit(self) -> None:
        stream = self._stream or sys.stderr
        try:
            print(self.line(), file=stream, flush=True)
        except (OSError, ValueError):  # stderr closed: progress is not worth a crash
            pass

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._emit()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        if time.monotonic() - self._t0 >= self.interval:  # a short run stays silent
            self._emit()


def progress_bar(
    total: int | None,
    desc: str,
    unit: str,
    enabled: bool | None = None,
    initial: int = 0,
    delay: float = 0.0,
) -> Any:
    """A tqdm bar when stderr is a terminal (``enabled`` None or True), a :class:`Heartbeat` away
    from a terminal when ``enabled`` is True, else None."""
    if enabled is False:
        return None
    tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    if tty:
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, unit=unit, desc=desc, delay=delay, leave=False)
    if enabled:
        return Heartbeat(total, desc, unit, initial=initial)
    return None
