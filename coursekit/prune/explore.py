"""Widgets and figures of chapter 04: weight histograms and a per-layer sparsity explorer."""
from __future__ import annotations

import copy

import torch

from coursekit.prune.channel import channel_prune, prunable_layers
from coursekit.prune.macs import count_macs
from coursekit.prune.magnitude import magnitude_prune
from coursekit.prune.mask import remove_all
from coursekit.prune.storage import model_storage_bytes
from coursekit.surgery import WEIGHT_LAYER_TYPES, named_layers


def plot_weight_histograms(model, axes=None, bins: int = 60):
    """One histogram of weight values per conv/linear layer: most weights sit near zero (Han et al. 2015, Fig. 4)."""
    import matplotlib.pyplot as plt

    layers = named_layers(model, WEIGHT_LAYER_TYPES)
    if axes is None:
        _, axes = plt.subplots(1, len(layers), figsize=(2.6 * len(layers), 2.2))
    for ax, (name, layer) in zip(axes, layers):
        w = layer.weight.detach().flatten()
        ax.hist(w.numpy(), bins=bins, color="#1f77b4")
        ax.set_title(f"{name} ({w.numel():,})", fontsize=8)
        ax.set_yticks([])
    return axes


def apply_plan(model, plan: dict, mode: str = "unstructured"):
    """A pruned copy: ``plan`` maps layer names to sparsities; ``mode`` "unstructured" (per-layer magnitude
    masks, made permanent) or "channel" (structured, free layers only, kept counts as given)."""
    if mode == "channel":
        from coursekit.surgery import get_layer

        sizes = {k: get_layer(model, k).weight.shape[0] for k in prunable_layers(model)}
        plan = {k: min(float(v), (sizes[k] - 1) / sizes[k]) for k, v in plan.items() if k in sizes and v > 0}
        return channel_prune(model, plan) if plan else copy.deepcopy(model)
    pruned = copy.deepcopy(model)
    layers = dict(named_layers(pruned, WEIGHT_LAYER_TYPES))
    for name, amount in plan.items():
        if amount > 0:
            magnitude_prune(layers[name], "weight", float(amount))
    return remove_all(pruned)


def sparsity_explorer(model, evaluate, example_input: torch.Tensor, latency=None, max_sparsity: float = 0.95):
    """ipywidgets explorer: one sparsity slider per layer and a mode (unstructured / channel) -> accuracy
    (no fine-tuning), CSR and dense bytes, MACs and, if ``latency(model) -> ms`` is given, measured latency.

    ``evaluate(model) -> accuracy`` should be quick (a few hundred examples): it runs on every change.
    """
    import ipywidgets as w

    names = [n for n, _ in named_layers(model, WEIGHT_LAYER_TYPES)]
    sliders = {n: w.FloatSlider(value=0.0, min=0.0, max=max_sparsity, step=0.05, description=n,
                                continuous_update=False, style={"description_width": "110px"}) for n in names}
    mode = w.ToggleButtons(options=["unstructured", "channel"], value="unstructured", description="mode")
    out = w.Output()
    base = {"acc": evaluate(model), "macs": count_macs(model, example_input)["total"],
            "bytes": model_storage_bytes(model, "dense"),
            "ms": latency(model) if latency else None}

    def update(*_):
        pruned = apply_plan(model, {n: s.value for n, s in sliders.items()}, mode.value)
        acc = evaluate(pruned)
        macs = count_macs(pruned, example_input)["total"]
        dense, csr = model_storage_bytes(pruned, "dense"), model_storage_bytes(pruned, "csr_int32")
        with out:
            out.clear_output(wait=True)
            print(f"accuracy {acc:.2%} ({100 * (acc - base['acc']):+.2f} points vs dense, before fine-tuning)")
            print(f"MACs {macs:,} ({base['macs'] / macs:.2f}x fewer)   dense bytes {dense:,} "
                  f"({base['bytes'] / dense:.2f}x smaller)   CSR bytes {csr:,} ({base['bytes'] / csr:.2f}x)")
            if latency:
                ms = latency(pruned)
                print(f"latency {ms * 1e3:.0f} us ({base['ms'] / ms:.2f}x the dense speed)")
            if mode.value == "channel":
                print("channel mode: only free layers shrink (" + ", ".join(prunable_layers(model)) + ")")

    for control in (*sliders.values(), mode):
        control.observe(update, names="value")
    update()
    return w.VBox([mode, *sliders.values(), out])
