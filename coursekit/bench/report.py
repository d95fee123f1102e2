"""Benchmark results: records, tables, JSON files and plots.

A *record* is one measured configuration, a flat dict with at least the keys in ``RECORD_KEYS``
(``accuracy`` is None where it does not apply). A result file holds the hardware report next to the records,
so a number never travels without the machine it was measured on.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from coursekit._paths import check_output_file

RECORD_KEYS = (
    "model", "variant", "device", "batch", "threads", "latency_ms_min", "latency_ms_median", "latency_ms_p90",
    "throughput_per_s", "size_bytes", "accuracy",
)


def make_record(model: str, variant: str, *, device: str, batch: int, threads: int, stats=None,
                size_bytes: int | None = None, accuracy: float | None = None, **extra) -> dict:
    """One benchmark record; ``stats`` is a ``LatencyStats`` (or None for accuracy/size-only rows).

    Timed records also carry ``samples`` (timed samples taken) and ``stopped_by`` (``"repeats"`` or ``"budget"``).
    """
    record = {
        "model": model, "variant": variant, "device": device, "batch": batch, "threads": threads,
        "latency_ms_min": stats.min_ms if stats else None,
        "latency_ms_median": stats.median_ms if stats else None,
        "latency_ms_p90": stats.p90_ms if stats else None,
        "throughput_per_s": batch * 1e3 / stats.median_ms if stats else None,
        "size_bytes": size_bytes, "accuracy": accuracy,
    }
    if stats:  # how the latency was obtained: samples taken, and whether the time budget cut them short
        record.update(samples=stats.samples, stopped_by=stats.stopped_by)
    record.update(extra)
    return record


def add_speedups(records: list[dict], baseline_variant: str) -> list[dict]:
    """Add ``speedup`` = baseline median / this median, within each (model, device, batch) group."""
    base = {
        (r["model"], r["device"], r["batch"]): r["latency_ms_median"]
        for r in records if r["variant"] == baseline_variant and r["latency_ms_median"]
    }
    for r in records:
        ref = base.get((r["model"], r["device"], r["batch"]))
        r["speedup"] = ref / r["latency_ms_median"] if ref and r["latency_ms_median"] else None
    return records


def find_record(records: list[dict], model: str, variant: str, batch: int | None = None) -> dict | None:
    """The first record of ``model``/``variant`` (at ``batch``, when given), or None: how a suite's reading
    looks up the numbers it talks about."""
    return next((r for r in records if r["model"] == model and r["variant"] == variant
                 and (batch is None or r["batch"] == batch)), None)


def speed_verdict(speedup: float, same: float = 0.1) -> str:
    """Words for a measured speedup (old time / new time): "faster", "slower", or "about the same" when the
    ratio is within ``same`` of 1 (closer than the run-to-run noise of a shared machine)."""
    if speedup > 1 + same:
        return "faster"
    return "slower" if speedup < 1 - same else "about the same"


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if abs(value) < 1000:
            return f"{value:.3g}"
        return f"{value:,.0f}" if abs(value) < 1e7 else f"{value:.4g}"
    return str(value)


def format_table(records: list[dict], columns=None) -> str:
    """A plain-text table of ``records`` (the columns default to the ones most worth reading)."""
    if columns is None:
        columns = ["model", "variant", "device", "batch", "threads", "latency_ms_min", "latency_ms_median",
                   "latency_ms_p90", "samples", "speedup", "size_bytes", "accuracy"]
        columns = [c for c in columns if any(r.get(c) is not None for r in records)]
    rows = [[_cell(r.get(c)) for c in columns] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def save_results(path, hardware: dict, records: list[dict], suite: str | None = None) -> Path:
    """Write ``{"suite", "hardware", "records"}`` as JSON and return the path.

    A path that cannot be written (a folder, a missing folder, no permission) raises an ``OSError`` naming it.
    """
    path = check_output_file("path", path)
    path.write_text(json.dumps({"suite": suite, "hardware": hardware, "records": records}, indent=2))
    return path


def load_results(path) -> dict:
    """Read a file written by ``save_results``."""
    return json.loads(Path(path).read_text())


def plot_latency(records: list[dict], *, batch: int | None = None, ax=None, title: str | None = None):
    """Bar chart of median latency per variant (one group of bars per model), with min..p90 as error bars."""
    import matplotlib.pyplot as plt

    rows = [r for r in records if r.get("latency_ms_median") and (batch is None or r["batch"] == batch)]
    if not rows:
        raise ValueError("records has no latency rows to plot" + (f" at batch={batch}" if batch else ""))
    models = list(dict.fromkeys(r["model"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 + 1.2 * len(models) * len(variants) / 2, 3.2))
    width = 0.8 / len(variants)
    for j, variant in enumerate(variants):
        xs, med, low, high = [], [], [], []
        for i, model in enumerate(models):
            match = [r for r in rows if r["model"] == model and r["variant"] == variant]
            if match:
                r = match[0]
                xs.append(i + j * width)
                med.append(r["latency_ms_median"])
                low.append(r["latency_ms_median"] - r["latency_ms_min"])
                high.append((r.get("latency_ms_p90") or r["latency_ms_median"]) - r["latency_ms_median"])
        ax.bar(xs, med, width, yerr=[low, high], capsize=3, label=variant)
    ax.set_xticks([i + width * (len(variants) - 1) / 2 for i in range(len(models))], models)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_ylabel("ms per batch (median; bars: min..p90)")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_title(title or (f"batch {batch}" if batch else "latency"))
    ax.legend(fontsize=8)
    return ax
