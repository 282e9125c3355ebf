"""Dynamic batching: concurrent requests to one model merged into one ``predict`` call.

One :class:`Batcher` (an asyncio task feeding ``workers`` threads, one by default) per served
model. A request is never split: when a worker thread is free, the batcher takes the oldest
request, then every request queued behind it with the same per-call options, while the items stay
within ``max_batch``. Only while the batch is still short of what recent batches held (the
concurrency the server is seeing) does it wait for more, at most ``max_wait_ms`` after the oldest
request arrived: a lone client is never held back, a busy server fills its batches. Results go
back to each request in order. When a merged call fails, each of its requests is run again alone,
so a bad input fails only its own request.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .metrics import Metrics

__all__ = ["Batcher", "QueueFull"]


class QueueFull(Exception):
    """The model's queue holds ``max_queue`` requests already (HTTP 503 with ``Retry-After``)."""


@dataclass
class _Request:
    items: list[Any]
    options: dict[str, Any]
    key: str
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


def _options_key(options: dict[str, Any]) -> str:
    try:
        return json.dumps(options, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(sorted(options.items()))


class Batcher:
    """Queue and worker of one model.

    :param predict: ``predict(items, **options) -> list`` run in the worker thread.
    :param max_batch: Most items merged into one call (a larger single request runs alone).
    :param max_wait_ms: Longest wait for more requests after the oldest queued one arrived.
    :param max_queue: Requests that may wait; one more is refused with :class:`QueueFull`.
    :param batching: False runs every request alone (``--no-batching``).
    :param workers: Model calls that may run at once, each on its own thread (``--workers``);
        a CPU server with one intra-op thread per call uses one core per worker.
    """

    #: Batches remembered to estimate how many items a batch can expect (the wait target).
    HISTORY = 8

    def __init__(
        self,
        name: str,
        predict: Callable[..., list[Any]],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        batching: bool = True,
        metrics: Metrics | None = None,
        workers: int = 1,
    ):
        self.name = name
        self.predict = predict
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.max_queue = max(1, int(max_queue))
        self.batching = batching
        self.metrics = metrics or Metrics()
        self.workers = max(1, int(workers))
        self.executor = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix=f"fmhub-{name}"
        )
        self._queue: collections.deque[_Request] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._free: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task] = set()
        #: items of the last batches, the wait target of the next one
        self._recent: collections.deque[int] = collections.deque(maxlen=self.HISTORY)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._free = asyncio.Semaphore(self.workers)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"batcher-{self.name}"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._running:  # batches in flight finish and answer their requests
            await asyncio.gather(*self._running, return_exceptions=True)
        for req in self._queue:
            if not req.future.done():
                req.future.set_exception(RuntimeError("the server is shutting down"))
        self._queue.clear()
        self.executor.shutdown(wait=True)

    @property
    def depth(self) -> int:
        return len(self._queue)

    # -- requests -------------------------------------------------------------------------------

    async def submit(self, items: list[Any], options: dict[str, Any] | None = None) -> list[Any]:
        """Queue ``items`` and wait for their results (in order)."""
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"model {self.name!r} has {len(self._queue)} requests queued")
        options = dict(options or {})
        req = _Request(
            list(items), options, _options_key(options), asyncio.get_running_loop().create_future()
        )
        self._queue.append(req)
        self.metrics.set_queue_depth(self.name, len(self._queue))
        assert self._wake is not None, "Batcher.start() was not called"
        self._wake.set()
        return await req.future

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on this model's worker thread (streaming, anything not batched)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    # -- the worker -----------------------------------------------------------------------------

    @property
    def target(self) -> int:
        """Items the next batch waits for: the most the recent batches held (the concurrency the
        server sees), within ``max_batch``; 1 before any batch ran."""
        return min(self.max_batch, max(self._recent, default=1))

    async def _run(self) -> None:
        assert self._wake is not None and self._free is not None
        while True:
            await self._free.acquire()  # a worker thread is free: requests queue up meanwhile
            try:
                while not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                batch = await self._collect()
            except BaseException:
                self._free.release()
                raise
            self.metrics.set_queue_depth(self.name, len(self._queue))
            if not batch:
                self._free.release()
                continue
            self._recent.append(sum(len(req.items) for req in batch))
            task = asyncio.get_running_loop().create_task(self._dispatch(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _dispatch(self, batch: list[_Request]) -> None:
        """Run one batch on a worker thread and hand each request its outcome."""
        assert self._free is not None
        try:
            outcomes = await asyncio.get_running_loop().run_in_executor(
                self.executor, self._execute, batch
            )
        finally:
            self._free.release()
        for req, outcome in zip(batch, outcomes):
            if req.future.done():  # timed out / client gone meanwhile
                continue
            if isinstance(outcome, BaseException):
                req.future.set_exception(outcome)
            else:
                req.future.set_result(outcome)

    async def _collect(self) -> list[_Request]:
        """Pop the oldest live request and whatever queued may join it; while the batch is short
        of :attr:`target`, wait for more until ``max_wait`` after the oldest request arrived."""
        first = None
        while self._queue and first is None:
            req = self._queue.popleft()
            if not req.future.done():
                first = req
        if first is None:
            return []
        batch, n = [first], len(first.items)
        if not self.batching:
            return batch
        deadline = first.arrived + self.max_wait
        target = self.target
        while n < self.max_batch:
            kept: collections.deque[_Request] = collections.deque()
            while self._queue:  # take everything queued that fits, in one pass
                req = self._queue.popleft()
                if req.future.done():
                    continue
                if req.key == first.key and n + len(req.items) <= self.max_batch:
                    batch.append(req)
                    n += len(req.items)
                else:
                    kept.append(req)
            self._queue = kept
            remaining = deadline - time.monotonic()
            if n >= target or n >= self.max_batch or remaining <= 0:
                break
            assert self._wake is not None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                continue  # one last pass over what arrived meanwhile
        return batch

    def _execute(self, batch: list[_Request]) -> list[Any]:
        """Worker thread: one call for the whole batch; on failure, each request alone."""
        items = [x for req in batch for x in req.items]
        options = batch[0].options
        try:
            results = list(self.predict(items, **options))
            if len(results) != len(items):
                raise RuntimeError(f"got {len(results)} results for {len(items)} inputs")
        except Exception as exc:  # noqa: BLE001 - handed to the requests
            if len(batch) == 1:
                self.metrics.batch(self.name, len(items), 1)
                return [exc]
            return [self._execute([req])[0] for req in batch]
        self.metrics.batch(self.name, len(items), len(batch))
        out, start = [], 0
        for req in batch:
            out.append(results[start : start + len(req.items)])
            start += len(req.items)
        return out
