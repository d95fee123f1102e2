"""Latency measured honestly.

Naive timing lies in four ways, and each function here removes one:

1. Cold start: the first calls pay for allocation, kernel selection and caches -> ``warmup`` calls are not timed.
2. Drift: a shared machine speeds up and slows down over seconds -> variants are *interleaved* (A B C A B C ...)
   so every variant sees the same conditions, instead of all of A, then all of B.
3. Thread count: torch uses every core by default and results change with load -> the thread count is pinned
   (``threads``) and reported next to every number.
4. Asynchronous devices: a CUDA kernel launch returns before the work is done -> ``synchronize`` before reading
   the clock.

Tiny calls (well under a millisecond) are timed in loops of ``number`` calls per sample, as ``timeit`` does, so the
clock's resolution and Python's overhead do not dominate. We report min (the best the hardware can do), median
(what a user typically sees) and p90 (the tail).
"""
from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch

from coursekit._validate import check_choice, check_int


@dataclass
class LatencyStats:
    """Per-call latency of one variant, in milliseconds, over ``len(samples_ms)`` timed samples."""

    name: str
    samples_ms: list[float] = field(repr=False)
    number: int = 1

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p90_ms(self) -> float:
        return percentile(self.samples_ms, 90)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.samples_ms)

    def summary(self) -> dict:
        """The numbers worth printing: min / median / p90 / mean in ms, and how they were obtained."""
        return {
            "name": self.name, "min_ms": self.min_ms, "median_ms": self.median_ms, "p90_ms": self.p90_ms,
            "mean_ms": self.mean_ms, "repeats": len(self.samples_ms), "number": self.number,
        }

    def to_dict(self) -> dict:
        return {**asdict(self), **self.summary()}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile with linear interpolation (numpy's default method)."""
    if not values:
        raise ValueError("values must not be empty")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@contextlib.contextmanager
def pinned_threads(threads: int | None) -> Iterator[int]:
    """Run the block with torch using exactly ``threads`` intra-op threads (None keeps the current setting)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_int("threads", threads, min_value=1))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def synchronize(device: str) -> None:
    """Wait until all queued work on ``device`` has finished (a no-op on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def _time_call(fn: Callable[[], object], device: str, number: int) -> float:
    """Milliseconds per call of ``fn``, averaged over ``number`` back-to-back calls."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(number):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3 / number


def calibrate_number(fn: Callable[[], object], device: str = "cpu", min_sample_ms: float = 2.0) -> int:
    """How many calls one timed sample needs to last at least ``min_sample_ms`` (1 for slow calls)."""
    per_call = _time_call(fn, device, 1)
    if per_call >= min_sample_ms:
        return 1
    return min(10_000, max(1, int(min_sample_ms / max(per_call, 1e-6)) + 1))


def measure_latency(
    candidates: dict[str, Callable[[], object]],
    *,
    repeats: int = 30,
    warmup: int = 5,
    device: str = "cpu",
    threads: int | None = 1,
    min_sample_ms: float = 2.0,
) -> dict[str, LatencyStats]:
    """Time each zero-argument callable in ``candidates``, interleaved, and return their statistics.

    Every callable is warmed up ``warmup`` times, then the variants take turns: round r times each variant once,
    starting from a rotated position so no variant always runs right after the same neighbour. With
    ``threads=1`` (the default) results are comparable across machines with different core counts.
    """
    if not candidates:
        raise ValueError("candidates must name at least one callable to time")
    check_int("repeats", repeats, min_value=1)
    check_int("warmup", warmup, min_value=0)
    check_choice("device", device.split(":")[0], ("cpu", "cuda", "mps"))
    names = list(candidates)
    with pinned_threads(threads), torch.inference_mode():
        for name in names:
            for _ in range(warmup):
                candidates[name]()
        numbers = {name: calibrate_number(candidates[name], device, min_sample_ms) for name in names}
        samples: dict[str, list[float]] = {name: [] for name in names}
        for r in range(repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(_time_call(candidates[name], device, numbers[name]))
    return {name: LatencyStats(name, samples[name], numbers[name]) for name in names}


def throughput(batch: int, stats: LatencyStats) -> float:
    """Items per second at the median latency of one batch."""
    return batch * 1e3 / stats.median_ms
