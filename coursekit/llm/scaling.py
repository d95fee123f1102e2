"""Per-input-channel scale migration, the identity behind AWQ and SmoothQuant.

For a Linear layer ``y = x W^T`` and any positive vector ``s`` (one entry per input channel ``j``):

    y = x W^T = (x diag(s)^-1) (W diag(s))^T

so dividing the input channels by ``s`` and multiplying the weight's columns by ``s`` leaves the FP32 output
unchanged (up to float rounding). Quantization then sees different tensors: SmoothQuant (Xiao et al. 2022,
eq. 3) picks ``s`` to flatten the activation outliers into the weights; AWQ (Lin et al. 2023, sec. 3.2) picks
``s`` to give the salient input channels more weight resolution.

The ``1/s`` on the input is free at inference when folded into the operation that produces ``x``: a LayerNorm
(its weight and bias divided by ``s``) or a previous Linear (its output rows and bias divided by ``s``)
(:func:`fold_input_scales`). When there is nothing to fold into, :class:`InputScaledLinear` keeps the division
explicit.
"""
from __future__ import annotations

import torch
from torch import nn


def check_scales(scales, in_features: int) -> torch.Tensor:
    """``scales`` as a float tensor of ``in_features`` finite, strictly positive entries."""
    if not isinstance(scales, torch.Tensor) or not scales.is_floating_point():
        raise TypeError(f"scales must be a floating-point torch.Tensor, got {type(scales).__name__}")
    if scales.shape != (in_features,):
        raise ValueError(f"scales must have shape ({in_features},) (one per input channel), got "
                         f"{tuple(scales.shape)}")
    if not bool(torch.isfinite(scales).all()) or bool((scales <= 0).any()):
        raise ValueError("scales must be finite and > 0 (the output is unchanged only for positive scales)")
    return scales.detach()


def scale_weight_columns(weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``W diag(s)``: column ``j`` of ``weight`` times ``s_j``."""
    return weight * check_scales(scales, weight.shape[1]).to(weight.dtype)[None, :]


class InputScaledLinear(nn.Module):
    """``linear(x / s)`` where ``linear``'s weight already holds ``W diag(s)``: the unfolded form."""

    def __init__(self, linear: nn.Linear, scales: torch.Tensor):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        self.linear = linear
        self.register_buffer("scales", check_scales(scales, linear.in_features).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x / self.scales.to(x.dtype))


def scaled_linear(linear: nn.Linear, scales: torch.Tensor) -> InputScaledLinear:
    """A copy of ``linear`` with weight ``W diag(s)`` behind an explicit input division by ``s``."""
    new = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    dtype=linear.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(scale_weight_columns(linear.weight, scales))
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return InputScaledLinear(new, scales)


@torch.no_grad()
def fold_input_scales(prev: nn.Module, linears, scales: torch.Tensor) -> None:
    """In place: divide the output channels of ``prev`` (LayerNorm or Linear) by ``s`` and multiply the input
    columns of every Linear in ``linears`` (all reading ``prev``'s output, e.g. q, k and v) by ``s``.

    The composed function is unchanged in exact arithmetic (AWQ's ``scale_ln_fcs``/``scale_fc_fc``).
    """
    linears = [linears] if isinstance(linears, nn.Linear) else list(linears)
    if not linears or not all(isinstance(m, nn.Linear) for m in linears):
        raise TypeError("linears must be an nn.Linear or a non-empty list of them")
    if isinstance(prev, nn.LayerNorm):
        n = prev.normalized_shape[-1]
        if prev.weight is None:
            raise ValueError("prev is a LayerNorm without elementwise_affine: nothing to fold 1/s into")
        s = check_scales(scales, n)
        prev.weight.div_(s)
        if prev.bias is not None:
            prev.bias.div_(s)
    elif isinstance(prev, nn.Linear):
        s = check_scales(scales, prev.out_features)
        prev.weight.div_(s[:, None])
        if prev.bias is not None:
            prev.bias.div_(s)
    else:
        raise TypeError(f"prev must be an nn.LayerNorm or nn.Linear, got {type(prev).__name__}")
    for lin in linears:
        lin.weight.mul_(check_scales(s, lin.in_features)[None, :])


__all__ = ["InputScaledLinear", "check_scales", "fold_input_scales", "scale_weight_columns", "scaled_linear"]
