"""Truncated SVD of a Linear layer: one (out x in) matrix becomes (out x r) @ (r x in).

Eckart-Young-Mirsky theorem (Eckart & Young, 1936): for W = U diag(s) V^T with s sorted descending, the best
rank-r approximation in Frobenius norm is W_r = U[:, :r] diag(s[:r]) V[:, :r]^T, and its error is

    ||W - W_r||_F = sqrt(sum_{i > r} s_i^2)                                                  (Eq. 1)

Denton et al., "Exploiting Linear Structure Within Convolutional Networks for Efficient Evaluation" (NeurIPS
2014) apply it to network layers. A factorized layer holds r (m + n) weights instead of m n, so it only saves
parameters (and multiply-adds) when

    r < m n / (m + n)                                                                          (Eq. 2, break-even rank)
"""
from __future__ import annotations

import torch
from torch import nn

from coursekit._validate import check_int, check_probability


def _check_weight(weight) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be a 2-D matrix (out_features x in_features), got shape {tuple(weight.shape)}")
    if weight.numel() == 0:
        raise ValueError(f"weight is empty (shape {tuple(weight.shape)}); there is nothing to factorize")
    return weight.detach().to(torch.float64)


def check_rank(rank, m: int, n: int, name: str = "rank", layer: str = "layer") -> int:
    """Return ``rank`` if 1 <= rank <= min(m, n); otherwise a ValueError naming the layer and the allowed range."""
    try:
        return check_int(name, rank, min_value=1, max_value=min(m, n))
    except ValueError as err:
        raise ValueError(f"{err} for {layer} of shape ({m} x {n}): rank must be in 1..{min(m, n)}") from None


def singular_values(weight: torch.Tensor) -> torch.Tensor:
    """The singular values of a 2-D ``weight``, largest first (float64)."""
    return torch.linalg.svdvals(_check_weight(weight))


def truncation_error(weight: torch.Tensor, rank: int) -> float:
    """||W - W_r||_F predicted by Eq. 1 from the singular values alone."""
    s = singular_values(weight)
    rank = check_rank(rank, *weight.shape)
    return float(s[rank:].pow(2).sum().sqrt())


def energy_kept(weight: torch.Tensor) -> torch.Tensor:
    """Cumulative energy fraction: entry r-1 is sum_{i<=r} s_i^2 / sum_i s_i^2 (the share of ||W||_F^2 kept)."""
    s2 = singular_values(weight).pow(2)
    total = s2.sum()
    if total == 0:
        raise ValueError("weight is all zeros; its energy is 0, so no rank keeps a fraction of it")
    return s2.cumsum(0) / total


def rank_for_energy(weight: torch.Tensor, energy: float) -> int:
    """Smallest r whose rank-r approximation keeps at least ``energy`` of ||W||_F^2 (energy in (0, 1])."""
    energy = check_probability("energy", energy)
    if energy <= 0:
        raise ValueError(f"energy={energy} must be in (0, 1]: the fraction of sum(s_i^2) to keep")
    kept = energy_kept(weight)
    # a tolerance so that energy=1.0 is reached despite float rounding of the cumulative sum
    return int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype) - 1e-12).item()) + 1


def break_even_rank(m: int, n: int) -> int:
    """The largest rank r with r (m + n) < m n (Eq. 2): above it a factorized m x n layer is *bigger*."""
    m, n = check_int("m", m, min_value=1), check_int("n", n, min_value=1)
    return (m * n - 1) // (m + n)


def factorized_params(m: int, n: int, rank: int, bias: bool = True) -> int:
    """Parameters of an m x n Linear factorized at ``rank``: r n + m r (+ m bias)."""
    return rank * (m + n) + (m if bias else 0)


def svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with B @ A the best rank-r approximation of ``weight``: A = sqrt(S_r) V_r^T (r x n),
    B = U_r sqrt(S_r) (m x r). Splitting sqrt(S) evenly keeps both factors on the same scale."""
    w = _check_weight(weight)
    rank = check_rank(rank, *w.shape)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:rank].sqrt()
    return root[:, None] * vh[:rank], u[:, :rank] * root[None, :]


def svd_factorize(linear: nn.Linear, rank: int, name: str = "linear") -> nn.Sequential:
    """Replace ``linear`` (out x in) by Sequential(Linear(in, r, bias=False), Linear(r, out, bias)) holding the
    rank-r truncated SVD of its weight (Eq. 1); the bias moves to the second layer unchanged."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"{name} is a {type(linear).__name__}; svd_factorize supports nn.Linear only "
                         "(use factorize_conv / tucker2_conv for Conv2d)")
    m, n = linear.weight.shape
    rank = check_rank(rank, m, n, layer=name)
    a, b = svd_factors(linear.weight, rank)
    dtype, device = linear.weight.dtype, linear.weight.device
    first = nn.Linear(n, rank, bias=False).to(device=device, dtype=dtype)
    second = nn.Linear(rank, m, bias=linear.bias is not None).to(device=device, dtype=dtype)
    with torch.no_grad():
        first.weight.copy_(a)
        second.weight.copy_(b)
        if linear.bias is not None:
            second.bias.copy_(linear.bias)
    return nn.Sequential(first, second)
