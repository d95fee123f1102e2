"""An interactive explorer: how latency and throughput move with batch size and thread count.

``latency_explorer({"mlp": (model, (1, 8, 8)), ...})`` shows sliders; every change measures the chosen model
*live* on this machine (a few interleaved repeats) and adds the point to two plots: latency per batch and
throughput (items per second). The points stay, so the learner builds the curves themselves.
"""
from __future__ import annotations

import os

import torch

from coursekit.bench.timing import measure_latency

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def measure_point(model: torch.nn.Module, input_shape: tuple[int, ...], batch: int, threads: int,
                  repeats: int = 7) -> dict:
    """Median latency (ms) and throughput (items/s) of ``model`` on one random batch."""
    x = torch.randn(batch, *input_shape)
    stats = measure_latency({"model": lambda: model(x)}, repeats=repeats, warmup=2, threads=threads)["model"]
    return {"batch": batch, "threads": threads, "latency_ms": stats.median_ms,
            "throughput_per_s": batch * 1e3 / stats.median_ms}


def _draw(axes, points: list[dict]) -> None:
    for ax in axes:
        ax.clear()
    for threads in sorted({p["threads"] for p in points}):
        pts = sorted((p for p in points if p["threads"] == threads), key=lambda p: p["batch"])
        batches = [p["batch"] for p in pts]
        axes[0].plot(batches, [p["latency_ms"] for p in pts], "o-", label=f"{threads} thread(s)")
        axes[1].plot(batches, [p["throughput_per_s"] for p in pts], "o-", label=f"{threads} thread(s)")
    for ax, label in zip(axes, ("latency per batch (ms)", "throughput (items/s)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    if points:
        axes[1].legend(fontsize=8)


def latency_explorer(models: dict[str, tuple[torch.nn.Module, tuple[int, ...]]]):
    """Sliders for model, batch size and threads; each press of *measure* times the model live and plots it.

    ``models`` maps a name to ``(model, input_shape)`` where ``input_shape`` excludes the batch dimension.
    Returns the widget box (display it, or let the notebook show it as the cell's value).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if not models:
        raise ValueError("models must name at least one model, e.g. {'mlp': (model, (1, 8, 8))}")
    for name, entry in models.items():
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], torch.nn.Module)):
            raise TypeError(f"models[{name!r}] must be a (model, input_shape) pair, got {type(entry).__name__}")
        entry[0].eval()
    model_box = widgets.Dropdown(options=list(models), description="model")
    batch_box = widgets.SelectionSlider(options=BATCH_SIZES, value=1, description="batch")
    threads_box = widgets.IntSlider(value=1, min=1, max=os.cpu_count() or 1, description="threads")
    button = widgets.Button(description="measure", button_style="primary")
    status = widgets.HTML()
    output = widgets.Output()
    points: dict[str, list[dict]] = {name: [] for name in models}
    with output:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        plt.close(fig)

    def refresh():
        _draw(axes, points[model_box.value])
        fig.suptitle(model_box.value)
        fig.tight_layout()
        output.clear_output(wait=True)
        with output:
            from IPython.display import display

            display(fig)

    def on_measure(_=None):
        model, input_shape = models[model_box.value]
        point = measure_point(model, input_shape, batch_box.value, threads_box.value)
        points[model_box.value].append(point)
        status.value = (f"<b>{model_box.value}</b>, batch {point['batch']}, {point['threads']} thread(s): "
                        f"{point['latency_ms']:.3f} ms per batch, {point['throughput_per_s']:,.0f} items/s")
        refresh()

    button.on_click(on_measure)
    model_box.observe(lambda _: refresh(), names="value")
    refresh()
    box = widgets.VBox([widgets.HBox([model_box, batch_box, threads_box, button]), status, output])
    box.measure = on_measure  # lets a test (or a notebook cell) take a measurement without clicking
    return box
