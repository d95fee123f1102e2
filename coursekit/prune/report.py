"""How sparse is a model: zeros per layer and overall, counted on the weights the forward pass uses.

Sparsity = zeros / entries (Blalock et al. 2020 recommend reporting it next to the compression ratio
entries / non-zeros = 1 / (1 - sparsity)). Counted over the weights of conv and linear layers (biases and
BatchNorm are a rounding error and never pruned here); masked parameters are counted through their mask.
"""
from __future__ import annotations

from torch import nn

from coursekit.prune.mask import effective
from coursekit.surgery import WEIGHT_LAYER_TYPES, named_layers


def _weights(model: nn.Module) -> list[tuple[str, object]]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return [(name, effective(layer, "weight")) for name, layer in named_layers(model, WEIGHT_LAYER_TYPES)]


def sparsity(model: nn.Module) -> float:
    """Fraction of zero entries over all conv/linear weights of ``model`` (0.0 for a dense model)."""
    weights = _weights(model)
    total = sum(w.numel() for _, w in weights)
    return sum(int((w == 0).sum()) for _, w in weights) / total if total else 0.0


def nonzero_weights(model: nn.Module) -> int:
    """Number of non-zero conv/linear weight entries (what a sparse format has to store)."""
    return sum(int((w != 0).sum()) for _, w in _weights(model))


def sparsity_report(model: nn.Module) -> list[dict]:
    """One row per conv/linear layer, ``{"layer", "shape", "params", "nonzero", "sparsity"}``, then a row
    ``layer="(global)"`` for the whole model."""
    rows = []
    for name, w in _weights(model):
        nonzero = int((w != 0).sum())
        rows.append({"layer": name, "shape": tuple(w.shape), "params": w.numel(), "nonzero": nonzero,
                     "sparsity": 1 - nonzero / w.numel()})
    params = sum(r["params"] for r in rows)
    nonzero = sum(r["nonzero"] for r in rows)
    rows.append({"layer": "(global)", "shape": (), "params": params, "nonzero": nonzero,
                 "sparsity": 1 - nonzero / params if params else 0.0})
    return rows
