"""The dynamic batcher without HTTP: pure asyncio and a stub model that records every call."""
import asyncio
import threading

import numpy as np
import pytest

from coursekit.serve.batcher import DynamicBatcher, QueueFull, ShuttingDown

WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 7.0


class StubModel:
    """y = x @ W + 1, recording the rows of every call; optionally held at a gate or failing on a marker."""

    def __init__(self, gate: threading.Event | None = None):
        self.calls: list[np.ndarray] = []
        self.gate = gate

    def __call__(self, x):
        if self.gate is not None:
            self.gate.wait(30)
        self.calls.append(x.copy())
        if (x == -999).any():
            raise RuntimeError("marker row: the model fails on this batch")
        return x @ WEIGHTS + 1


def rows(n, start=0.0):
    return (np.arange(n * 4, dtype=np.float32).reshape(n, 4) + start) / 10


def run(coro):
    return asyncio.run(coro)


async def wait_until(predicate, steps=3000):
    for _ in range(steps):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def test_full_batches_form_by_size_and_each_request_gets_its_own_rows():
    model = StubModel()

    async def main():
        batcher = DynamicBatcher(model, max_batch=4, max_wait_ms=10_000, queue_size=16)
        await batcher.start()
        xs = [rows(1, start=100 * i) for i in range(8)]
        ys = await asyncio.gather(*(batcher.submit(x) for x in xs))
        await batcher.drain()
        return batcher, xs, ys

    batcher, xs, ys = run(main())
    assert [c.shape[0] for c in model.calls] == [4, 4]  # 8 single-row requests -> 2 model calls
    for x, y in zip(xs, ys):
        np.testing.assert_allclose(y, x @ WEIGHTS + 1, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate(model.calls), np.concatenate(xs))  # FIFO order kept
    m = batcher.metrics()
    assert m["accepted"] == m["answered"] == 8 and m["batches"] == 2
    assert m["batch_size_histogram"] == {"4": 2} and m["mean_batch_rows"] == 4.0
    assert m["latency_ms"]["n"] == 8 and 0 <= m["latency_ms"]["p50"] <= m["latency_ms"]["p99"]


def test_a_lone_request_is_not_held_forever_and_zero_wait_runs_at_once():
    model = StubModel()

    async def main():
        batcher = DynamicBatcher(model, max_batch=8, max_wait_ms=0, queue_size=4)
        await batcher.start()
        y1 = await batcher.submit(rows(2))
        y2 = await batcher.submit(rows(1, start=5))
        await batcher.drain()
        return y1, y2

    y1, y2 = run(main())
    assert [c.shape[0] for c in model.calls] == [2, 1]  # one call per request: nothing to wait for
    np.testing.assert_allclose(y1, rows(2) @ WEIGHTS + 1, rtol=1e-6)
    np.testing.assert_allclose(y2, rows(1, start=5) @ WEIGHTS + 1, rtol=1e-6)

    model2 = StubModel()

    async def lone():
        batcher = DynamicBatcher(model2, max_batch=8, max_wait_ms=5, queue_size=4)
        await batcher.start()
        y = await batcher.submit(rows(1))  # a batch of 8 never fills: max_wait closes it
        await batcher.drain()
        return y

    np.testing.assert_allclose(run(lone()), rows(1) @ WEIGHTS + 1, rtol=1e-6)
    assert [c.shape[0] for c in model2.calls] == [1]


def test_requests_arriving_within_the_wait_join_one_batch():
    model = StubModel()

    async def main():
        batcher = DynamicBatcher(model, max_batch=8, max_wait_ms=60_000, queue_size=8)
        await batcher.start()
        tasks = []
        for i, n in enumerate((1, 3, 2)):
            tasks.append(asyncio.ensure_future(batcher.submit(rows(n, start=10 * i))))
            await asyncio.sleep(0.001)
        await wait_until(lambda: batcher.metrics()["queue_depth"] == 3)
        assert model.calls == []  # 6 rows < 8 and the wait is long: still gathering
        drain = asyncio.ensure_future(batcher.drain())  # shutdown closes the open batch early
        ys = await asyncio.gather(*tasks)
        await drain
        return ys

    ys = run(main())
    assert [c.shape[0] for c in model.calls] == [6]
    for i, (n, y) in enumerate(zip((1, 3, 2), ys)):
        assert y.shape == (n, 3)
        np.testing.assert_allclose(y, rows(n, start=10 * i) @ WEIGHTS + 1, rtol=1e-6)


def test_a_request_that_does_not_fit_waits_for_the_next_batch_without_being_split():
    model = StubModel()

    async def main():
        batcher = DynamicBatcher(model, max_batch=4, max_wait_ms=10_000, queue_size=8)
        await batcher.start()
        ys = await asyncio.gather(batcher.submit(rows(3)), batcher.submit(rows(3, start=1)),
                                  batcher.submit(rows(1, start=2)))
        await batcher.drain()
        return ys

    ys = run(main())
    # 3 | 3+1: the second request does not fit next to the first, and the third never overtakes it
    assert [c.shape[0] for c in model.calls] == [3, 4]
    for (n, start), y in zip(((3, 0), (3, 1), (1, 2)), ys):
        np.testing.assert_allclose(y, rows(n, start=start) @ WEIGHTS + 1, rtol=1e-6)


def test_a_full_queue_rejects_and_every_accepted_request_is_answered():
    gate = threading.Event()
    model = StubModel(gate)

    async def main():
        batcher = DynamicBatcher(model, max_batch=1, max_wait_ms=0, queue_size=2)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(rows(1, start=0)))
        await wait_until(lambda: batcher.in_flight == 1)  # held at the gate inside the model
        queued = [asyncio.ensure_future(batcher.submit(rows(1, start=i))) for i in (1, 2)]
        await wait_until(lambda: batcher.metrics()["queue_depth"] == 2)
        with pytest.raises(QueueFull, match="queue is full") as info:
            await batcher.submit(rows(1, start=3))
        assert info.value.retry_after_s >= 1
        gate.set()
        ys = await asyncio.gather(first, *queued)
        await batcher.drain()
        return batcher, ys

    batcher, ys = run(main())
    for i, y in enumerate(ys):
        np.testing.assert_allclose(y, rows(1, start=i) @ WEIGHTS + 1, rtol=1e-6)
    m = batcher.metrics()
    assert (m["accepted"], m["answered"], m["rejected_full"], m["rejected"]) == (3, 3, 1, 1)
    assert m["queue_depth"] == 0 and m["batches"] == 3


def test_a_failing_batch_fails_only_its_own_requests():
    model = StubModel()

    async def main():
        batcher = DynamicBatcher(model, max_batch=1, max_wait_ms=0, queue_size=8)
        await batcher.start()
        bad = np.full((1, 4), -999, dtype=np.float32)
        results = await asyncio.gather(batcher.submit(bad), batcher.submit(rows(1)), return_exceptions=True)
        await batcher.drain()
        return batcher, results

    batcher, (err, y) = run(main())
    assert isinstance(err, RuntimeError) and "marker row" in str(err)
    np.testing.assert_allclose(y, rows(1) @ WEIGHTS + 1, rtol=1e-6)
    assert batcher.metrics()["failed"] == 1 and batcher.metrics()["answered"] == 1


def test_drain_answers_the_queue_and_then_refuses_new_requests():
    gate = threading.Event()
    model = StubModel(gate)

    async def main():
        batcher = DynamicBatcher(model, max_batch=2, max_wait_ms=0, queue_size=8)
        await batcher.start()
        tasks = [asyncio.ensure_future(batcher.submit(rows(1, start=i))) for i in range(5)]
        await wait_until(lambda: batcher.in_flight > 0)
        drain = asyncio.ensure_future(batcher.drain())
        await asyncio.sleep(0.01)
        with pytest.raises(ShuttingDown):
            await batcher.submit(rows(1))
        gate.set()
        await drain
        return batcher, [t.result() for t in tasks]

    batcher, ys = run(main())
    for i, y in enumerate(ys):
        np.testing.assert_allclose(y, rows(1, start=i) @ WEIGHTS + 1, rtol=1e-6)
    m = batcher.metrics()
    assert m["accepted"] == m["answered"] == 5 and m["rejected_shutdown"] == 1 and not m["accepting"]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="max_batch"):
        DynamicBatcher(StubModel(), max_batch=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        DynamicBatcher(StubModel(), max_wait_ms=-1)
    with pytest.raises(ValueError, match="queue_size"):
        DynamicBatcher(StubModel(), queue_size=0)
    with pytest.raises(TypeError, match="run_batch"):
        DynamicBatcher("not a model")

    async def too_many_rows():
        batcher = DynamicBatcher(StubModel(), max_batch=2)
        await batcher.start()
        try:
            await batcher.submit(rows(3))
        finally:
            await batcher.drain()

    with pytest.raises(ValueError, match="max_batch=2"):
        run(too_many_rows())
