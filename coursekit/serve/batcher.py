"""Dynamic batching: gather concurrent requests into one model call (max batch size, max wait, bounded queue).

A request waits in a bounded FIFO queue. The batcher forms a batch from the oldest requests as soon as either
``max_batch`` rows are waiting or the oldest request has waited ``max_wait_ms``; the batch runs as ONE model call
in a worker thread (ONNX Runtime releases the GIL, so the event loop keeps accepting requests meanwhile) and each
request gets back exactly its own rows. This is the scheme of TensorFlow Serving's batching and NVIDIA Triton's
dynamic batcher (Crankshaw et al., "Clipper", NSDI 2017, sec. 4.3: adaptive batching trades a bounded wait for
throughput). A request's latency is its wait plus the batch's compute time: ``coursekit.serve.queueing``.

A full queue rejects new requests (``QueueFull``: HTTP 503) instead of letting latency grow without bound; every
request that was accepted gets its answer, also during shutdown (``close`` then ``drain``).

    batcher = DynamicBatcher(run_batch, max_batch=8, max_wait_ms=5, queue_size=64)
    await batcher.start()
    y = await batcher.submit(x)          # x: (rows, *features) array; y: that request's output rows
    await batcher.drain()                # stop accepting, answer everything queued, stop the worker
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import math
import time
from dataclasses import dataclass, field

import numpy as np

from coursekit._validate import check_int, check_positive
from coursekit.bench import percentile

LATENCY_WINDOW = 10_000  # server-side latencies kept for the percentiles (the most recent ones)


class QueueFull(Exception):
    """The request queue is full: the caller should answer 503 and ``Retry-After`` seconds."""

    def __init__(self, queue_size: int, retry_after_s: int):
        super().__init__(f"the request queue is full ({queue_size} requests waiting); retry after "
                         f"{retry_after_s} s")
        self.retry_after_s = retry_after_s


class ShuttingDown(Exception):
    """The batcher no longer accepts requests (graceful shutdown): answer 503."""


@dataclass
class _Request:
    x: np.ndarray
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])


class DynamicBatcher:
    """Gathers requests into batches of at most ``max_batch`` rows and runs ``run_batch`` on each batch.

    ``run_batch(x) -> y`` takes a ``(rows, ...)`` array and returns an array with the same number of rows; it
    runs in one worker thread, one batch at a time. ``max_wait_ms``: the longest the oldest waiting request is
    held back for more requests to join its batch (0: run whatever is waiting at once). ``queue_size``: requests
    that may wait (not counting the batch being computed); one more is rejected with ``QueueFull``.
    """

    def __init__(self, run_batch, max_batch: int = 8, max_wait_ms: float = 5.0, queue_size: int = 64):
        if not callable(run_batch):
            raise TypeError(f"run_batch must be callable, got {type(run_batch).__name__}")
        self.run_batch = run_batch
        self.max_batch = check_int("max_batch", max_batch, min_value=1)
        self.max_wait_ms = check_positive("max_wait_ms", max_wait_ms, allow_zero=True)
        self.queue_size = check_int("queue_size", queue_size, min_value=1)
        self._pending: collections.deque[_Request] = collections.deque()
        self._pending_rows = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.accepting = False
        self.in_flight = 0  # requests in the batch being computed
        self.counts = {"accepted": 0, "answered": 0, "failed": 0, "cancelled": 0, "rejected_full": 0,
                       "rejected_shutdown": 0, "batches": 0, "rows": 0}
        self.batch_sizes: collections.Counter[int] = collections.Counter()  # rows per model call -> calls
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._batch_ms: collections.deque[float] = collections.deque(maxlen=32)

    # ---- life cycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is not None:
            raise RuntimeError("the batcher is already running")
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-worker")
        self.accepting = True
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def close(self) -> None:
        """Stop accepting requests (new ones raise ``ShuttingDown``); queued requests are still answered."""
        self.accepting = False
        if self._wakeup is not None:
            self._wakeup.set()

    async def drain(self) -> None:
        """Graceful shutdown: stop accepting, answer every queued request, then stop the worker thread."""
        self.close()
        if self._task is not None:
            await self._task
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # ---- requests --------------------------------------------------------------------------------------
    async def submit(self, x: np.ndarray) -> np.ndarray:
        """Queue ``x`` (``(rows, ...)``, 1 <= rows <= max_batch) and return its output rows when its batch ran.

        Raises ``QueueFull`` when ``queue_size`` requests are already waiting, ``ShuttingDown`` after ``close``.
        """
        rows = int(np.shape(x)[0]) if np.ndim(x) else 0
        if not 1 <= rows <= self.max_batch:
            raise ValueError(f"x has {rows} rows; a request must have between 1 and max_batch={self.max_batch}")
        if not self.accepting:
            self.counts["rejected_shutdown"] += 1
            raise ShuttingDown("the server is shutting down and accepts no new requests")
        if len(self._pending) >= self.queue_size:
            self.counts["rejected_full"] += 1
            raise QueueFull(self.queue_size, self.retry_after_s())
        request = _Request(np.asarray(x), asyncio.get_running_loop().create_future())
        self._pending.append(request)
        self._pending_rows += rows
        self.counts["accepted"] += 1
        self._wakeup.set()
        return await request.future

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained: waiting rows / max_batch batches of the recent batch time."""
        batch_ms = sum(self._batch_ms) / len(self._batch_ms) if self._batch_ms else 0.0
        batches = math.ceil(self._pending_rows / self.max_batch) + 1
        return max(1, math.ceil(batches * (batch_ms + self.max_wait_ms) / 1e3))

    # ---- the loop --------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            if not self._pending:
                if not self.accepting:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_batch()
            await self._run(self._take_batch())

    async def _wait_for_batch(self) -> None:
        """Wait until ``max_batch`` rows are queued or the oldest request has waited ``max_wait_ms``."""
        deadline = self._pending[0].arrived + self.max_wait_ms / 1e3
        while self._pending_rows < self.max_batch and self.accepting:
            timeout = deadline - time.perf_counter()
            if timeout <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except asyncio.TimeoutError:
                return

    def _take_batch(self) -> list[_Request]:
        """The oldest requests whose rows fit in ``max_batch`` (FIFO: a request never overtakes an older one)."""
        batch, rows = [], 0
        while self._pending and rows + self._pending[0].rows <= self.max_batch:
            request = self._pending.popleft()
            rows += request.rows
            batch.append(request)
        self._pending_rows -= rows
        return batch

    async def _run(self, batch: list[_Request]) -> None:
        """One model call for the whole batch; each request gets its own rows (or the error)."""
        x = np.concatenate([r.x for r in batch]) if len(batch) > 1 else batch[0].x
        self.in_flight = len(batch)
        start = time.perf_counter()
        try:
            y = await asyncio.get_running_loop().run_in_executor(self._executor, self.run_batch, x)
            y = np.asarray(y)
            if y.ndim == 0 or y.shape[0] != x.shape[0]:
                raise RuntimeError(f"run_batch returned shape {y.shape} for a batch of {x.shape[0]} rows")
        except Exception as exc:  # noqa: BLE001 (the model failed: every request of this batch gets the error)
            self._finish(batch, error=exc)
        else:
            self._finish(batch, outputs=np.split(y, np.cumsum([r.rows for r in batch])[:-1]))
        finally:
            self.in_flight = 0
            self._batch_ms.append((time.perf_counter() - start) * 1e3)
            self.counts["batches"] += 1
            self.counts["rows"] += x.shape[0]
            self.batch_sizes[int(x.shape[0])] += 1

    def _finish(self, batch: list[_Request], outputs=None, error: Exception | None = None) -> None:
        now = time.perf_counter()
        for i, request in enumerate(batch):
            if request.future.done():  # the client went away (its handler was cancelled)
                self.counts["cancelled"] += 1
                continue
            if error is not None:
                request.future.set_exception(error)
                self.counts["failed"] += 1
            else:
                request.future.set_result(outputs[i])
                self.counts["answered"] += 1
            self.latencies_ms.append((now - request.arrived) * 1e3)

    # ---- metrics ---------------------------------------------------------------------------------------
    def metrics(self) -> dict:
        """Counts, the batch-size histogram, queue depth and server-side latency percentiles (ms)."""
        latencies = list(self.latencies_ms)
        latency = {f"p{q}": (percentile(latencies, q) if latencies else None) for q in (50, 95, 99)}
        return {
            **self.counts,
            "rejected": self.counts["rejected_full"] + self.counts["rejected_shutdown"],
            "queue_depth": len(self._pending), "queue_rows": self._pending_rows, "in_flight": self.in_flight,
            "batch_size_histogram": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "mean_batch_rows": self.counts["rows"] / self.counts["batches"] if self.counts["batches"] else None,
            "latency_ms": {**latency, "n": len(latencies)},
            "accepting": self.accepting,
        }
