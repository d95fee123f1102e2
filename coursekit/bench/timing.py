"""Latency measured honestly, within a time budget.

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

A fixed repeat count is the wrong contract when one call can cost 1 microsecond or 20 seconds (an FP16 matmul on
a CPU without FP16 arithmetic runs about 100x slower than FP32). Each variant therefore also has a time budget,
``budget_s``: warm-up stops early once it has used a quarter of the budget, and timed samples stop once the
variant's whole measurement (warm-up, calibration, samples) has used the budget *and* at least ``min_samples``
samples exist. ``LatencyStats.samples`` and ``stopped_by`` say what happened, so a reader sees "3 samples, budget"
next to a slow number. The clock is injectable (``clock``) so the budget logic is tested without waiting.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch

from coursekit._validate import check_choice, check_int, check_positive


@dataclass
class LatencyStats:
    """Per-call latency of one variant, in milliseconds, over ``len(samples_ms)`` timed samples.

    ``number`` calls were timed per sample; ``stopped_by`` is ``"repeats"`` when all requested samples were taken
    and ``"budget"`` when the time budget (``budget_s`` seconds) ended the measurement earlier.
    """

    name: str
    samples_ms: list[float] = field(repr=False)
    number: int = 1
    budget_s: float | None = None
    stopped_by: str = "repeats"

    @property
    def samples(self) -> int:
        return len(self.samples_ms)

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
            "mean_ms": self.mean_ms, "repeats": self.samples, "samples": self.samples, "number": self.number,
            "budget_s": self.budget_s, "stopped_by": self.stopped_by,
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


def _time_call(fn: Callable[[], object], device: str, number: int, clock: Callable[[], float] = time.perf_counter
               ) -> float:
    """Milliseconds per call of ``fn``, averaged over ``number`` back-to-back calls (``clock`` in seconds)."""
    synchronize(device)
    start = clock()
    for _ in range(number):
        fn()
    synchronize(device)
    return (clock() - start) * 1e3 / number


MAX_NUMBER = 10_000  # calls per sample at most, whatever the calibration says
WARMUP_SHARE = 0.25  # warm-up stops early once it has used this share of the budget


def _number_for(per_call_ms: float, min_sample_ms: float) -> int:
    if per_call_ms >= min_sample_ms:
        return 1
    return min(MAX_NUMBER, max(1, int(min_sample_ms / max(per_call_ms, 1e-6)) + 1))


def calibrate_number(fn: Callable[[], object], device: str = "cpu", min_sample_ms: float = 2.0,
                     clock: Callable[[], float] = time.perf_counter) -> int:
    """How many calls one timed sample needs to last at least ``min_sample_ms`` (1 for slow calls).

    Costs one call of ``fn``; the answer is capped at ``MAX_NUMBER`` calls, so a sample lasts about
    ``min_sample_ms`` (or one call, if a call is slower than that).
    """
    return _number_for(_time_call(fn, device, 1, clock), min_sample_ms)


@dataclass
class _Progress:
    """What one variant has used so far: seconds of the clock, and its samples."""

    spent_s: float = 0.0
    number: int = 1
    samples: list[float] = field(default_factory=list)

    def wants(self, repeats: int, min_samples: int, budget_s: float | None) -> bool:
        if len(self.samples) < min_samples:
            return True
        return len(self.samples) < repeats and (budget_s is None or self.spent_s < budget_s)


def _warm_up(fn, device: str, warmup: int, budget_s: float | None, clock) -> tuple[float, float | None]:
    """Run up to ``warmup`` untimed-for-the-result calls; stop early past ``WARMUP_SHARE`` of the budget.

    Returns the seconds used and the last call's milliseconds (None when ``warmup`` is 0).
    """
    spent, last_ms = 0.0, None
    for _ in range(warmup):
        last_ms = _time_call(fn, device, 1, clock)
        spent += last_ms / 1e3
        if budget_s is not None and spent >= WARMUP_SHARE * budget_s:
            break
    return spent, last_ms


def measure_latency(
    candidates: dict[str, Callable[[], object]],
    *,
    repeats: int = 30,
    warmup: int = 5,
    device: str = "cpu",
    threads: int | None = 1,
    min_sample_ms: float = 2.0,
    budget_s: float | None = 5.0,
    min_samples: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, LatencyStats]:
    """Time each zero-argument callable in ``candidates``, interleaved, and return their statistics.

    Every callable is warmed up (up to ``warmup`` calls), then the variants take turns: round r times each variant
    that still wants samples once, starting from a rotated position so no variant always runs right after the same
    neighbour. A variant takes ``repeats`` samples, or fewer once its measurement has used ``budget_s`` seconds
    (``None``: no budget), but never fewer than ``min_samples``. With ``threads=1`` (the default) results are
    comparable across machines with different core counts. ``clock`` returns seconds (tests inject a fake one).
    """
    if not candidates:
        raise ValueError("candidates must name at least one callable to time")
    check_int("repeats", repeats, min_value=1)
    check_int("warmup", warmup, min_value=0)
    check_int("min_samples", min_samples, min_value=1)
    if budget_s is not None:
        check_positive("budget_s", budget_s)
    check_choice("device", device.split(":")[0], ("cpu", "cuda", "mps"))
    min_samples = min(min_samples, repeats)
    names = list(candidates)
    state = {name: _Progress() for name in names}
    with pinned_threads(threads), torch.inference_mode():
        for name in names:
            spent, last_ms = _warm_up(candidates[name], device, warmup, budget_s, clock)
            if last_ms is None or last_ms < min_sample_ms:  # a cheap call: one more call calibrates the loop
                last_ms = _time_call(candidates[name], device, 1, clock)
                spent += last_ms / 1e3
            state[name].spent_s, state[name].number = spent, _number_for(last_ms, min_sample_ms)
        r = 0
        while True:
            active = [n for n in names if state[n].wants(repeats, min_samples, budget_s)]
            if not active:
                break
            shift = r % len(active)
            for name in active[shift:] + active[:shift]:
                ms = _time_call(candidates[name], device, state[name].number, clock)
                state[name].samples.append(ms)
                state[name].spent_s += ms * state[name].number / 1e3
            r += 1
    return {
        name: LatencyStats(name, s.samples, s.number, budget_s,
                           "repeats" if len(s.samples) >= repeats else "budget")
        for name, s in state.items()
    }
