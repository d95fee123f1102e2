"""N:M semi-structured sparsity: in every group of m consecutive weights along the input dimension, keep n.

2:4 is the layout of NVIDIA Ampere sparse tensor cores (Mishra et al. 2021, "Accelerating sparse deep neural
networks"; Zhou et al. 2021, "Learning N:M fine-grained structured sparse neural networks from scratch"):
the hardware stores the n kept values of each group plus a ceil(log2 m)-bit index each and skips the rest,
which doubles matmul throughput at 2:4. Groups run along the reduction (input) dimension: dim 1 of a Linear
weight (out, in), and the flattened (in, kh, kw) dims of a conv weight. A CPU has no such kernel.
"""
from __future__ import annotations

import torch
from torch import nn

from coursekit._validate import check_int
from coursekit.prune.mask import apply_mask, check_parameter, effective


def nm_mask(weight: torch.Tensor, n: int = 2, m: int = 4, where: str = "weight") -> torch.Tensor:
    """0/1 mask keeping the ``n`` largest-|w| of every ``m`` consecutive entries along the input dimension."""
    m = check_int("m", m, min_value=1)
    n = check_int("n", n, min_value=0)
    if n > m:
        raise ValueError(f"n={n} > m={m}: N:M keeps n of every m weights, so n must be in [0, m]")
    if weight.dim() < 2:
        raise ValueError(f"{where} has shape {tuple(weight.shape)}; N:M needs a weight with an input dimension "
                         f"(a Linear or conv weight)")
    rows = weight.shape[0]
    cols = weight.numel() // rows
    if cols % m:
        raise ValueError(f"m={m} does not divide the input dimension {cols} of {where} "
                         f"(shape {tuple(weight.shape)}); choose m that divides {cols}")
    groups = weight.detach().abs().reshape(rows, cols // m, m)
    mask = torch.zeros_like(groups)
    if n:
        mask.scatter_(2, torch.topk(groups, n, dim=2).indices, 1.0)
    return mask.reshape(weight.shape)


def nm_prune(module: nn.Module, name: str = "weight", n: int = 2, m: int = 4) -> nn.Module:
    """Apply an ``n:m`` mask to ``module.<name>`` (by magnitude, computed on the current masked weight)."""
    check_parameter(module, name)
    weight = effective(module, name)
    return apply_mask(module, name, nm_mask(weight, n, m, where=f"{type(module).__name__}.{name}"))


def is_nm_sparse(weight: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """True if every group of ``m`` consecutive input-dimension entries has at most ``n`` non-zeros."""
    rows = weight.shape[0]
    cols = weight.numel() // rows
    if cols % m:
        return False
    return bool(((weight.reshape(rows, cols // m, m) != 0).sum(-1) <= n).all())
