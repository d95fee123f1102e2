"""LLM.int8(): mixed-precision decomposition around outlier features (Dettmers et al. 2022, sec. 3.2).

Transformers past a few billion parameters (and already MiniLM) have a handful of hidden dimensions whose
activations reach |x| of 20-60 in almost every token. Per-tensor INT8 then wastes its 255 levels on them and
rounds everything else to a few codes. LLM.int8() splits the matmul by input column:

    O = { j : max_i |x_ij| > threshold }                       (threshold 6.0, sec. 3.2)
    x W^T = x[:, O] W[:, O]^T      (high precision: FP16 in the paper, FP32 here on a CPU)
          + x[:, ~O] W[:, ~O]^T    (vector-wise INT8: per-token c_x, per-output-channel c_w, eq. 4)

The outlier columns are few (well under 1% of the hidden size), so almost all multiply-adds stay in INT8.
"""
from __future__ import annotations

import torch
from torch import nn

from coursekit._validate import check_positive
from coursekit.llm.int8matmul import int8_matmul


def outlier_channels(x: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    """Boolean mask over the last dimension of ``x``: channels where some ``|x| > threshold``."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    threshold = check_positive("threshold", threshold)
    return (x.detach().abs().reshape(-1, x.shape[-1]) > threshold).any(dim=0)


def int8_decomposed_matmul(x: torch.Tensor, w: torch.Tensor, threshold: float = 6.0,
                           outliers: torch.Tensor | None = None) -> torch.Tensor:
    """LLM.int8() ``x W^T``: outlier input columns in FP32, the rest vector-wise INT8.

    ``outliers``: a fixed boolean mask over input channels (e.g. found on calibration data); by default it is
    found on this ``x`` with ``threshold``, as the paper does at run time.
    """
    if w.dim() != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"x [..., in] and w [out, in] do not match: x {tuple(x.shape)}, w {tuple(w.shape)}")
    mask = outlier_channels(x, threshold) if outliers is None else outliers.to(torch.bool)
    y = int8_matmul(x[..., ~mask], w[:, ~mask]) if bool((~mask).any()) else 0.0
    if bool(mask.any()):
        y = y + x[..., mask].float() @ w[:, mask].float().T
    return y


class Int8DecomposedLinear(nn.Module):
    """A Linear computed with :func:`int8_decomposed_matmul` (+ its FP32 bias)."""

    def __init__(self, linear: nn.Linear, threshold: float = 6.0):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        self.linear = linear
        self.threshold = check_positive("threshold", threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = int8_decomposed_matmul(x, self.linear.weight, self.threshold)
        return y if self.linear.bias is None else y + self.linear.bias


__all__ = ["Int8DecomposedLinear", "int8_decomposed_matmul", "outlier_channels"]
