"""SmoothQuant: migrate the activation outliers into the weights, then quantize both to INT8 (W8A8)
(Xiao et al. 2022, "SmoothQuant: Accurate and Efficient Post-Training Quantization for Large Language Models").

Activations have outlier channels (hard to quantize per tensor); weights are flat (easy). With the scale
migration of :mod:`coursekit.llm.scaling`, ``y = (x diag(s)^-1)(W diag(s))^T``, SmoothQuant picks per input
channel ``j`` (eq. 4):

    s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)

``alpha = 0.5`` splits the difficulty evenly; a larger ``alpha`` moves more of it into the weights. The
smoothed activation and weight are then quantized with plain INT8 kernels (:func:`int8_matmul`): per-tensor
activations (static or dynamic) and per-channel weights. The FP32 output is unchanged before quantization.
"""
from __future__ import annotations

import torch
from torch import nn

from coursekit._validate import check_choice, check_probability
from coursekit.llm.int8matmul import ACT_GRANULARITIES, int8_matmul
from coursekit.llm.scaling import InputScaledLinear, scaled_linear


def smooth_scales(act_absmax: torch.Tensor, weight: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)`` (eq. 4); both statistics floored at 1e-5 as in the
    reference code, so a dead channel gets a finite scale."""
    alpha = check_probability("alpha", alpha)
    if not isinstance(act_absmax, torch.Tensor) or act_absmax.shape != (weight.shape[1],):
        raise ValueError(f"act_absmax must be a tensor of shape ({weight.shape[1]},) (one per input channel), "
                         f"got {getattr(act_absmax, 'shape', type(act_absmax).__name__)}")
    a = act_absmax.detach().double().clamp(min=1e-5)
    w = weight.detach().double().abs().amax(dim=0).clamp(min=1e-5)
    return (a.pow(alpha) / w.pow(1 - alpha)).to(weight.dtype)


def smooth_linear(linear: nn.Linear, act_absmax: torch.Tensor, alpha: float = 0.5) -> InputScaledLinear:
    """``linear`` rewritten as ``(x / s) (W diag(s))^T``: the same FP32 function, smoother activations."""
    return scaled_linear(linear, smooth_scales(act_absmax, linear.weight, alpha))


class W8A8Linear(nn.Module):
    """A Linear computed in INT8: weights per output channel, activations ``act`` (per_tensor or per_token),
    dynamic scales (from each input) or a static per-tensor ``act_scale`` from calibration."""

    def __init__(self, linear: nn.Linear, act: str = "per_tensor", act_scale: float | None = None):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        self.linear = linear
        self.act = check_choice("act", act, ACT_GRANULARITIES)
        self.act_scale = act_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = int8_matmul(x, self.linear.weight, act=self.act, act_scale=self.act_scale)
        return y if self.linear.bias is None else y + self.linear.bias


class SmoothW8A8Linear(nn.Module):
    """SmoothQuant W8A8: ``x / s`` in float (or folded into the previous op), then :class:`W8A8Linear` on
    the smoothed weight ``W diag(s)``."""

    def __init__(self, linear: nn.Linear, act_absmax: torch.Tensor, alpha: float = 0.5, act: str = "per_tensor"):
        super().__init__()
        smoothed = smooth_linear(linear, act_absmax, alpha)
        self.register_buffer("scales", smoothed.scales)
        self.w8a8 = W8A8Linear(smoothed.linear, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w8a8(x / self.scales.to(x.dtype))


__all__ = ["SmoothW8A8Linear", "W8A8Linear", "smooth_linear", "smooth_scales"]
