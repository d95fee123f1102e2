"""Sensitivity scan: prune one layer at a time and measure accuracy (Han et al. 2015, Figure 5; Li et al.
2017, section 4.1). Layers whose accuracy falls off early get a lower sparsity; the rest can go further.
"""
from __future__ import annotations

import copy

from torch import nn

from coursekit.prune.magnitude import magnitude_prune
from coursekit.prune.mask import count_to_prune
from coursekit.surgery import WEIGHT_LAYER_TYPES, get_layer, named_layers


def sensitivity_scan(model: nn.Module, evaluate, sparsities, layers=None, progress: bool = False) -> dict:
    """``{layer: [accuracy at each sparsity]}`` plus ``"dense"``: ``evaluate(model) -> float`` on a copy of
    ``model`` with only ``layer``'s weight magnitude-pruned to each sparsity (no fine-tuning).

    ``layers``: names (default: every conv/linear layer). The model itself is not modified.
    """
    sparsities = list(sparsities)
    for s in sparsities:
        count_to_prune(float(s), 1, what="sparsities entry")
    names = [n for n, _ in named_layers(model, WEIGHT_LAYER_TYPES)] if layers is None else list(layers)
    for name in names:
        get_layer(model, name)
    result = {"sparsities": sparsities, "dense": float(evaluate(model)), "layers": {}}
    iterator = names
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(names, desc="sensitivity")
    for name in iterator:
        accs = []
        for s in sparsities:
            trial = copy.deepcopy(model)
            magnitude_prune(get_layer(trial, name), "weight", float(s))
            accs.append(float(evaluate(trial)))
        result["layers"][name] = accs
    return result


def plot_sensitivity(scan: dict, ax=None):
    """One accuracy-vs-sparsity line per layer, with the dense accuracy dashed."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, accs in scan["layers"].items():
        ax.plot(scan["sparsities"], accs, marker="o", label=name)
    ax.axhline(scan["dense"], color="gray", linestyle="--", label="dense")
    ax.set_xlabel("sparsity of this layer alone")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    return ax
