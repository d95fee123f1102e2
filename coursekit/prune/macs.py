"""Multiply-accumulate count of a forward pass, per conv/linear layer (Sze et al. 2017, "Efficient
processing of deep neural networks", section III: a conv does C_out * C_in/groups * kh * kw MACs per output
pixel, a Linear in*out per example). Counted with forward hooks on one example; zeros in a weight are
still counted (a dense kernel multiplies them), so only structured pruning lowers this number.
"""
from __future__ import annotations

import torch
from torch import nn

from coursekit.surgery import CONV_TYPES, LINEAR_TYPES, named_layers


def count_macs(model: nn.Module, example_input: torch.Tensor) -> dict:
    """``{"total": MACs for one example, "layers": {name: MACs}}`` (batch dimension divided out)."""
    counts, handles = {}, []

    def hook(name):
        def record(module, inputs, output):
            batch = output.shape[0]
            if isinstance(module, LINEAR_TYPES):
                macs = module.in_features * output.numel() // batch
            else:
                k = module.weight[0].numel()  # C_in/groups * kernel volume
                macs = k * output.numel() // batch
            counts[name] = counts.get(name, 0) + macs
        return record

    for name, layer in named_layers(model, (*LINEAR_TYPES, *CONV_TYPES)):
        handles.append(layer.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return {"total": sum(counts.values()), "layers": counts}
