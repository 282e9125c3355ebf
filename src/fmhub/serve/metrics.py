"""Prometheus text-format metrics kept by hand (no client library): counters, gauges, histograms."""

from __future__ import annotations

import threading
from collections import defaultdict

__all__ = ["BATCH_BUCKETS", "LATENCY_BUCKETS", "Metrics"]

#: Seconds; a request's latency from arrival to response.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Items per model call.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1


class Metrics:
    """Thread-safe metrics of one server, rendered by :meth:`render` for ``GET /metrics``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple, int] = defaultdict(int)
        self.errors: dict[tuple, int] = defaultdict(int)
        self.batches: dict[tuple, int] = defaultdict(int)
        self.queue_depth: dict[tuple, int] = {}
        self.latency: dict[tuple, _Histogram] = {}
        self.batch_size: dict[tuple, _Histogram] = {}
        self.batch_requests: dict[tuple, _Histogram] = {}

    def request(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        key = (("model", model), ("endpoint", endpoint))
        with self._lock:
            self.requests[key + (("status", str(status)),)] += 1
            if status >= 400:
                self.errors[key + (("status", str(status)),)] += 1
            self.latency.setdefault(key, _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, model: str, items: int, requests: int) -> None:
        key = (("model", model),)
        with self._lock:
            self.batches[key] += 1
            self.batch_size.setdefault(key, _Histogram(BATCH_BUCKETS)).observe(items)
            self.batch_requests.setdefault(key, _Histogram(BATCH_BUCKETS)).observe(requests)

    def set_queue_depth(self, model: str, depth: int) -> None:
        with self._lock:
            self.queue_depth[(("model", model),)] = depth

    def render(self) -> str:
        out: list[str] = []
        with self._lock:
            self._counter(
                out, "fmhub_requests_total", "Requests answered, by status.", self.requests
            )
            self._counter(
                out, "fmhub_request_errors_total", "Requests answered with an error.", self.errors
            )
            self._counter(
                out, "fmhub_batches_total", "Model calls made by the batcher.", self.batches
            )
            out.append("# HELP fmhub_queue_depth Requests waiting for their model's worker.")
            out.append("# TYPE fmhub_queue_depth gauge")
            for key, value in sorted(self.queue_depth.items()):
                out.append(f"fmhub_queue_depth{_labels(key)} {value}")
            self._histogram(
                out,
                "fmhub_request_latency_seconds",
                "Seconds from a request's arrival to its response.",
                self.latency,
            )
            self._histogram(out, "fmhub_batch_size", "Items per model call.", self.batch_size)
            self._histogram(
                out,
                "fmhub_batch_requests",
                "Requests merged into one model call.",
                self.batch_requests,
            )
        return "\n".join(out) + "\n"

    @staticmethod
    def _counter(out: list[str], name: str, help: str, values: dict) -> None:
        out.append(f"# HELP {name} {help}")
        out.append(f"# TYPE {name} counter")
        for key, value in sorted(values.items()):
            out.append(f"{name}{_labels(key)} {value}")

    @staticmethod
    def _histogram(out: list[str], name: str, help: str, values: dict) -> None:
        out.append(f"# HELP {name} {help}")
        out.append(f"# TYPE {name} histogram")
        for key, hist in sorted(values.items()):
            for bound, count in zip(hist.buckets, hist.counts):
                le = (("le", f"{bound:g}"),)
                out.append(f"{name}_bucket{_labels(key + le)} {count}")
            out.append(f"{name}_bucket{_labels(key + (('le', '+Inf'),))} {hist.total}")
            out.append(f"{name}_sum{_labels(key)} {hist.sum:.6f}")
            out.append(f"{name}_count{_labels(key)} {hist.total}")
