"""The arithmetic of dynamic batching: a request's latency is its wait plus its batch's compute time.

Pure functions for the chapter's queueing picture (no clocks, no threads):

* ``compute_ms_at(curve, b)``: the per-batch compute time at batch size ``b`` from a measured curve
  ``{batch_size: ms}`` (linear interpolation between measured sizes).
* ``throughput_per_s(curve)``: requests per second when every batch is full, ``b / compute(b)``.
* ``batching_latency(...)``: with requests arriving every ``1/rate`` seconds, a batch closes when it holds
  ``max_batch`` requests or its first request has waited ``max_wait_ms``; the first request of the batch
  waits the longest, the last one not at all; then all of them wait the batch's compute time.
* ``md1_latency_ms(service_ms, utilisation)``: the M/D/1 queue (Poisson arrivals, one server, fixed service
  time): mean time in system ``S + rho * S / (2 (1 - rho))`` (Pollaczek-Khinchine formula; Kleinrock,
  "Queueing Systems" vol. 1, 1975, eq. 5.73 with a deterministic service time), which grows without bound as the
  utilisation ``rho`` approaches 1. A bounded queue (503 when full) keeps the latency of accepted requests
  bounded instead.
"""
from __future__ import annotations

import math

from coursekit._validate import check_int, check_positive


def _check_curve(curve: dict) -> dict[int, float]:
    if not isinstance(curve, dict) or not curve:
        raise ValueError(f"curve must be a non-empty dict {{batch_size: compute_ms}}, got {curve!r}")
    return {check_int("batch size in curve", b, min_value=1): check_positive(f"curve[{b}]", ms)
            for b, ms in sorted(curve.items())}


def compute_ms_at(curve: dict, batch_size: int) -> float:
    """Compute time (ms) of one batch of ``batch_size`` rows, linearly interpolated in a measured ``curve``.

    Outside the measured sizes the nearest two points are extrapolated linearly (a single point: constant).
    """
    points = _check_curve(curve)
    b = check_int("batch_size", batch_size, min_value=1)
    if b in points:
        return points[b]
    sizes = sorted(points)
    if len(sizes) == 1:
        return points[sizes[0]]
    below = [s for s in sizes if s < b]
    above = [s for s in sizes if s > b]
    if below and above:
        lo, hi = below[-1], above[0]
    else:
        lo, hi = (sizes[0], sizes[1]) if not below else (sizes[-2], sizes[-1])
    slope = (points[hi] - points[lo]) / (hi - lo)
    return max(points[lo] + slope * (b - lo), 0.0)


def throughput_per_s(curve: dict) -> dict[int, float]:
    """Requests (rows) per second at each measured batch size when batches are full: ``b * 1000 / ms(b)``."""
    return {b: b * 1e3 / ms for b, ms in _check_curve(curve).items()}


def batch_fill(rate_per_s: float, max_batch: int, max_wait_ms: float) -> tuple[int, float]:
    """(requests in a batch, ms the batch stays open) for requests arriving every ``1/rate_per_s`` seconds.

    The batch opens with its first request and closes when it holds ``max_batch`` requests (after
    ``(max_batch - 1) / rate``) or after ``max_wait_ms``, whichever comes first.
    """
    rate = check_positive("rate_per_s", rate_per_s)
    max_batch = check_int("max_batch", max_batch, min_value=1)
    max_wait_ms = check_positive("max_wait_ms", max_wait_ms, allow_zero=True)
    gap_ms = 1e3 / rate
    fill_ms = (max_batch - 1) * gap_ms
    if fill_ms <= max_wait_ms:
        return max_batch, fill_ms
    return 1 + math.floor(max_wait_ms / gap_ms + 1e-9), max_wait_ms


def batching_latency(rate_per_s: float, max_batch: int, max_wait_ms: float, curve: dict) -> dict:
    """Latency of a request under dynamic batching with evenly spaced arrivals at ``rate_per_s``.

    Returns ``batch`` (requests per batch), ``open_ms`` (how long the batch waits for requests), ``compute_ms``
    (its compute time, from ``curve``), ``mean_latency_ms`` (the mean over the batch's requests: the k-th of n
    waits ``open_ms - k * gap``, then the compute), ``max_latency_ms`` (the first request: ``open_ms +
    compute_ms``, at most ``max_wait_ms + compute_ms``), ``utilisation`` (compute time per batch / time between
    batches; >= 1 means the server cannot keep up: the queue grows and ``stable`` is False) and
    ``throughput_per_s`` (what the server completes: the arrival rate when stable, else its capacity).
    """
    n, open_ms = batch_fill(rate_per_s, max_batch, max_wait_ms)
    gap_ms = 1e3 / rate_per_s
    compute_ms = compute_ms_at(curve, n)
    mean_wait_ms = open_ms - (n - 1) * gap_ms / 2
    utilisation = compute_ms / (n * gap_ms)
    stable = utilisation < 1
    return {"batch": n, "open_ms": open_ms, "compute_ms": compute_ms,
            "mean_latency_ms": mean_wait_ms + compute_ms if stable else math.inf,
            "max_latency_ms": open_ms + compute_ms if stable else math.inf,
            "utilisation": utilisation, "stable": stable,
            "throughput_per_s": rate_per_s if stable else n * 1e3 / compute_ms}


def md1_latency_ms(service_ms: float, utilisation: float) -> float:
    """Mean time in an M/D/1 system: ``S + rho * S / (2 * (1 - rho))``; ``inf`` once ``rho >= 1``."""
    service_ms = check_positive("service_ms", service_ms)
    rho = check_positive("utilisation", utilisation, allow_zero=True)
    if rho >= 1:
        return math.inf
    return service_ms + rho * service_ms / (2 * (1 - rho))


def md1_curve(service_ms: float, utilisations) -> list[tuple[float, float]]:
    """``[(rho, mean latency ms), ...]``: the latency-vs-utilisation picture of an M/D/1 server."""
    return [(float(rho), md1_latency_ms(service_ms, rho)) for rho in utilisations]
