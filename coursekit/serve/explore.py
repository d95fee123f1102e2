"""Dynamic batching explored: max batch, max wait and arrival rate -> latency percentiles and throughput.

``queueing.batching_latency`` gives the closed form for requests arriving at *even* intervals. Real traffic is
bursty: with Poisson arrivals (exponential gaps, the usual model of many independent clients) batches fill
unevenly and requests queue behind a busy model, which is what the p99 feels. ``simulate_batcher`` replays a
list of arrival times through the batcher's rule exactly as ``coursekit.serve.batcher.DynamicBatcher`` applies it
(a batch starts when ``max_batch`` requests wait or the oldest has waited ``max_wait_ms``, and only when the model
is free; it takes at most ``max_batch`` of the waiting requests, oldest first), with the compute time of a batch
of ``b`` taken from a measured curve (``queueing.compute_ms_at``). No clock is read: the same inputs give the
same latencies on every machine, which is what lets a grader use it.

``batching_explorer(curve)`` puts sliders on max batch, max wait and the arrival rate and shows p50/p99 latency
and throughput, with the evenly spaced closed form beside the simulation.
"""
from __future__ import annotations

import math

import numpy as np

from coursekit._validate import check_int, check_positive
from coursekit.serve.queueing import batching_latency, compute_ms_at


def poisson_arrivals_ms(rate_per_s: float, n: int, seed: int = 0) -> np.ndarray:
    """``n`` arrival times (ms, sorted, starting near 0) of a Poisson process of ``rate_per_s`` requests/s."""
    rate = check_positive("rate_per_s", rate_per_s)
    n = check_int("n", n, min_value=1)
    gaps = np.random.default_rng(seed).exponential(1e3 / rate, size=n)
    return np.cumsum(gaps) - gaps[0]


def simulate_batcher(arrivals_ms, max_batch: int, max_wait_ms: float, curve: dict) -> dict:
    """Replay ``arrivals_ms`` (sorted, ms) through a dynamic batcher with one model worker.

    Returns ``latency_ms`` (per request: its batch's finish time minus its arrival, in arrival order),
    ``batch_sizes`` (of every batch, in order) and ``finish_ms`` (when the last batch finished).
    """
    arrivals = np.asarray(arrivals_ms, dtype=np.float64)
    if arrivals.ndim != 1 or arrivals.size == 0:
        raise ValueError(f"arrivals_ms must be a non-empty 1-D sequence of times, got shape {arrivals.shape}")
    if np.any(np.diff(arrivals) < 0):
        raise ValueError("arrivals_ms must be sorted (non-decreasing arrival times)")
    max_batch = check_int("max_batch", max_batch, min_value=1)
    max_wait_ms = check_positive("max_wait_ms", max_wait_ms, allow_zero=True)
    compute = {}  # compute time per batch size, looked up once
    latency = np.empty_like(arrivals)
    sizes = []
    n, i, free_at = arrivals.size, 0, -math.inf
    while i < n:
        full_at = arrivals[i + max_batch - 1] if i + max_batch - 1 < n else math.inf
        start = max(free_at, min(full_at, arrivals[i] + max_wait_ms))
        j = min(i + max_batch, int(np.searchsorted(arrivals, start, side="right")))
        b = j - i
        if b not in compute:
            compute[b] = compute_ms_at(curve, b)
        free_at = start + compute[b]
        latency[i:j] = free_at - arrivals[i:j]
        sizes.append(b)
        i = j
    return {"latency_ms": latency, "batch_sizes": sizes, "finish_ms": free_at}


def simulate_load(rate_per_s: float, max_batch: int, max_wait_ms: float, curve: dict, n: int = 20_000,
                  seed: int = 0) -> dict:
    """Poisson load at ``rate_per_s`` through the batcher: p50/p99 latency (ms), mean batch, throughput.

    ``throughput_per_s`` is requests completed per second of the run; when it falls clearly below the arrival
    rate, the model cannot keep up and the queue (and the p99) grows with the length of the run.
    """
    arrivals = poisson_arrivals_ms(rate_per_s, n, seed)
    out = simulate_batcher(arrivals, max_batch, max_wait_ms, curve)
    lat = out["latency_ms"]
    return {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "mean_batch": float(np.mean(out["batch_sizes"])),
            "throughput_per_s": n * 1e3 / out["finish_ms"], "rate_per_s": float(rate_per_s)}


def batching_explorer(curve: dict, max_rate_per_s: float | None = None, n: int = 5_000):
    """Sliders: max batch, max wait (ms), arrival rate (requests/s) -> latency and throughput of the batcher.

    ``curve``: measured compute time per batch ``{batch_size: ms}`` (e.g. from ``bench.measure_latency`` of the
    model you serve). Returns the widget box.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    capacity = max(b * 1e3 / compute_ms_at(curve, b) for b in (1, 2, 4, 8, 16, 32, 64))
    max_rate = float(max_rate_per_s or round(1.2 * capacity, -1) or 100)
    batch_box = widgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32, 64], value=8, description="max batch")
    wait_box = widgets.FloatLogSlider(value=2.0, base=10, min=-1, max=2, step=0.1, description="max wait ms")
    rate_box = widgets.FloatSlider(value=round(max_rate / 3), min=max_rate / 50, max=max_rate,
                                   step=max_rate / 100, description="requests/s")
    text = widgets.HTML()
    output = widgets.Output()
    with output:
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2))
        plt.close(fig)

    def refresh(_=None):
        b, w, rate = batch_box.value, wait_box.value, rate_box.value
        rates = np.linspace(max_rate / 50, max_rate, 25)
        sims = [simulate_load(r, b, w, curve, n=n) for r in rates]
        for ax in axes:
            ax.clear()
        axes[0].plot(rates, [s["p50_ms"] for s in sims], label="p50 (Poisson, simulated)")
        axes[0].plot(rates, [s["p99_ms"] for s in sims], label="p99 (Poisson, simulated)")
        even = [batching_latency(r, b, w, curve)["max_latency_ms"] for r in rates]
        axes[0].plot(rates, even, "k--", lw=0.8, label="max, evenly spaced (closed form)")
        axes[0].axvline(rate, color="0.5", lw=0.7)
        axes[0].set_yscale("log")
        axes[0].set_xlabel("arrival rate (requests/s)")
        axes[0].set_ylabel("latency (ms)")
        axes[0].legend(fontsize=7)
        axes[1].plot(rates, [s["throughput_per_s"] for s in sims], label="served")
        axes[1].plot(rates, rates, "k:", lw=0.8, label="offered")
        axes[1].set_xlabel("arrival rate (requests/s)")
        axes[1].set_ylabel("throughput (requests/s)")
        axes[1].legend(fontsize=7)
        fig.suptitle(f"max batch {b}, max wait {w:.2g} ms")
        fig.tight_layout()
        now = simulate_load(rate, b, w, curve, n=n)
        text.value = (f"at {rate:,.0f} requests/s: p50 {now['p50_ms']:.2f} ms, p99 {now['p99_ms']:.2f} ms, "
                      f"mean batch {now['mean_batch']:.1f}, served {now['throughput_per_s']:,.0f}/s; "
                      f"full batches of {b} can serve at most {b * 1e3 / compute_ms_at(curve, b):,.0f}/s")
        output.clear_output(wait=True)
        with output:
            from IPython.display import display

            display(fig)

    for box in (batch_box, wait_box, rate_box):
        box.observe(refresh, names="value")
    refresh()
    return widgets.VBox([widgets.HBox([batch_box, wait_box, rate_box]), text, output])
