"""The dynamic batcher of ``fmhub serve`` on its own (no HTTP): what it merges, when it waits, and
several model calls at once with ``workers``. Fake ``predict`` functions record every call."""

from __future__ import annotations

import asyncio
import threading

import pytest

from fmhub.serve.batching import Batcher
from fmhub.serve.metrics import Metrics


class Recorder:
    """``predict(items)`` returning ``item * 10``; records each call's items; a call may be made
    to wait on ``gate`` (a threading.Event) so requests queue up behind it."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, items: list[int], **options) -> list[int]:
        with self.lock:
            self.calls.append(list(items))
        self.started.set()
        if self.gate is not None and items[0] < 0:  # a negative first item blocks its call
            assert self.gate.wait(30), "gate never opened"
        return [x * 10 for x in items]


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_a_lone_request_is_not_held_for_max_wait():
    """With nothing else in flight the batcher runs a request at once, even with a 10-minute
    --max-wait-ms (the wait is for filling batches, and a lone client has nothing to merge)."""
    rec = Recorder()

    async def main():
        b = Batcher("m", rec, max_batch=32, max_wait_ms=600_000)
        b.start()
        try:
            for i in range(3):
                assert await asyncio.wait_for(b.submit([i]), 30) == [i * 10]
        finally:
            await b.stop()
        return b

    b = _run(main())
    assert rec.calls == [[0], [1], [2]]
    assert b.target == 1


def test_everything_queued_behind_a_running_call_goes_in_one_call():
    rec = Recorder()
    rec.gate = threading.Event()

    async def main():
        b = Batcher("m", rec, max_batch=32, max_wait_ms=0)
        b.start()
        try:
            first = asyncio.ensure_future(b.submit([-1]))
            while not rec.started.is_set():  # the worker thread is inside the blocking call
                await asyncio.sleep(0.01)
            rest = [asyncio.ensure_future(b.submit([i, i + 100])) for i in range(5)]
            await asyncio.sleep(0.05)
            assert b.depth == 5
            rec.gate.set()
            got = await asyncio.gather(first, *rest)
        finally:
            await b.stop()
        return b, got

    b, got = _run(main())
    assert got == [[-10]] + [[i * 10, (i + 100) * 10] for i in range(5)]
    # the five queued requests were merged into one call, in arrival order
    assert rec.calls == [[-1], [0, 100, 1, 101, 2, 102, 3, 103, 4, 104]]
    assert b.target == 10  # the next batch waits (within max_wait) for as many items


def test_max_batch_and_options_split_what_is_queued():
    rec = Recorder()
    rec.gate = threading.Event()

    async def main():
        b = Batcher("m", rec, max_batch=4, max_wait_ms=0)
        b.start()
        try:
            first = asyncio.ensure_future(b.submit([-1]))
            while not rec.started.is_set():
                await asyncio.sleep(0.01)
            rest = [asyncio.ensure_future(b.submit([i])) for i in range(6)]
            other = asyncio.ensure_future(b.submit([7], {"flag": True}))
            await asyncio.sleep(0.05)
            rec.gate.set()
            got = await asyncio.gather(first, *rest, other)
        finally:
            await b.stop()
        return got

    got = _run(main())
    assert got == [[-10], [0], [10], [20], [30], [40], [50], [70]]
    # at most 4 items a call; the request with other options is never merged with the rest
    assert rec.calls == [[-1], [0, 1, 2, 3], [4, 5], [7]]


def test_workers_run_batches_at_once_and_metrics_count_them():
    """With workers=2 a second batch runs while the first is still inside the model: both calls
    meet at a barrier that one worker alone could never pass."""
    barrier = threading.Barrier(2, timeout=30)
    calls: list[list[int]] = []

    def predict(items: list[int]) -> list[int]:
        calls.append(list(items))
        barrier.wait()
        return [x + 1 for x in items]

    metrics = Metrics()

    async def main():
        b = Batcher("m", predict, max_batch=8, max_wait_ms=0, workers=2, metrics=metrics)
        b.start()
        try:
            one = asyncio.ensure_future(b.submit([1, 2]))
            await asyncio.sleep(0.05)
            two = asyncio.ensure_future(b.submit([3]))
            return await asyncio.gather(one, two)
        finally:
            await b.stop()

    assert _run(main()) == [[2, 3], [4]]
    assert sorted(calls) == [[1, 2], [3]]
    text = metrics.render()
    assert 'fmhub_batches_total{model="m"} 2' in text
    assert 'fmhub_batch_size_sum{model="m"} 3.000000' in text


def test_one_worker_runs_one_call_at_a_time():
    active, most = [0], [0]
    lock = threading.Lock()

    def predict(items):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        threading.Event().wait(0.01)
        with lock:
            active[0] -= 1
        return items

    async def main():
        b = Batcher("m", predict, max_batch=1, max_wait_ms=0)
        b.start()
        try:
            return await asyncio.gather(*(b.submit([i]) for i in range(6)))
        finally:
            await b.stop()

    assert _run(main()) == [[i] for i in range(6)]
    assert most[0] == 1


def test_stop_lets_running_batches_answer():
    rec = Recorder()
    rec.gate = threading.Event()

    async def main():
        b = Batcher("m", rec, max_batch=4, max_wait_ms=0)
        b.start()
        running = asyncio.ensure_future(b.submit([-3]))
        while not rec.started.is_set():
            await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(b.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # waits for the call in flight
        rec.gate.set()
        await stopping
        return await running

    assert _run(main()) == [-30]


@pytest.mark.parametrize("workers", [0, -2])
def test_workers_below_one_mean_one(workers):
    assert Batcher("m", lambda items: items, workers=workers).workers == 1
