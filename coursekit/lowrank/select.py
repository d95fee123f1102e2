"""Per-layer rank selection and whole-model factorization.

A global budget (parameters, or any cost such as measured latency) is shared between layers greedily: start every
layer at its largest useful rank and repeatedly lower the rank of the layer whose next step loses the least
energy (Eq. 1 of ``svd.py``: the discarded sum of s_i^2, relative to ||W||_F^2) per unit of cost saved, until the
budget is met. This is the marginal-cost rule of Zhang et al. (TPAMI 2016, Sec. 4.2) with the energy as the proxy
for accuracy; a sensitivity scan (measure accuracy per layer and rank) is the more faithful, more expensive proxy.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from coursekit._validate import check_int, check_positive
from coursekit.lowrank.conv import factorize_conv, tucker2_conv
from coursekit.lowrank.svd import (
    break_even_rank,
    energy_kept,
    factorized_params,
    rank_for_energy,
    svd_factorize,
)
from coursekit.surgery import named_layers, replace_layer

SUPPORTED = (nn.Linear, nn.Conv2d)


def _matrix(layer: nn.Module) -> torch.Tensor:
    return layer.weight.detach().reshape(layer.weight.shape[0], -1)


def param_cost(layer: nn.Module, rank: int) -> float:
    """Parameters of ``layer`` factorized at ``rank`` (channel SVD for a conv)."""
    m, n = _matrix(layer).shape
    return float(factorized_params(m, n, rank, bias=layer.bias is not None))


def select_ranks(model: nn.Module, budget: float, cost: Callable[[str, nn.Module, int], float] | None = None,
                 layers: list[str] | None = None, step: int = 1) -> dict[str, int]:
    """Ranks per layer name whose total ``cost(name, layer, rank)`` is <= ``budget`` (parameters by default).

    Layers not in ``layers`` (default: every Linear) keep their cost out of the budget. Raises ValueError when even
    rank 1 everywhere is over budget."""
    budget = check_positive("budget", budget)
    step = check_int("step", step, min_value=1)
    cost = cost or (lambda name, layer, rank: param_cost(layer, rank))
    found = dict(named_layers(model, SUPPORTED))
    names = layers if layers is not None else [n for n, m in found.items() if isinstance(m, nn.Linear)]
    for n in names:
        if n not in found:
            raise ValueError(f"layer {n!r} is not a Linear/Conv2d of the model; choose from {sorted(found)}")
    energy = {n: energy_kept(_matrix(found[n])) for n in names}
    ranks = {n: max(1, break_even_rank(*_matrix(found[n]).shape)) for n in names}
    total = sum(cost(n, found[n], r) for n, r in ranks.items())
    while total > budget:
        best, best_score = None, None
        for n, r in ranks.items():
            if r == 1:
                continue
            new = max(1, r - step)
            saved = cost(n, found[n], r) - cost(n, found[n], new)
            lost = float(energy[n][r - 1] - energy[n][new - 1])
            score = lost / max(saved, 1e-12)
            if best_score is None or score < best_score:
                best, best_score = n, score
        if best is None:
            raise ValueError(f"budget={budget:g} is below the cost of rank 1 in every layer ({total:g})")
        new = max(1, ranks[best] - step)
        total -= cost(best, found[best], ranks[best]) - cost(best, found[best], new)
        ranks[best] = new
    return ranks


def factorize_model(model: nn.Module, ranks: dict[str, int] | None = None, energy: float | None = None,
                    conv: str = "svd", skip_unprofitable: bool = True) -> dict[str, int]:
    """Factorize layers of ``model`` in place; returns the rank used per layer name.

    Give either ``ranks`` (layer name -> rank, Linear or Conv2d) or ``energy`` (every Linear at
    ``rank_for_energy``). With ``skip_unprofitable`` a layer whose rank is at or above its break-even rank (Eq. 2)
    is left dense, because factorizing it would add parameters. ``conv`` is "svd" (channel SVD) or "tucker2"."""
    if (ranks is None) == (energy is None):
        raise ValueError("give exactly one of ranks={name: rank} or energy=<fraction in (0, 1]>")
    if conv not in ("svd", "tucker2"):
        raise ValueError(f"conv={conv!r} is not supported; choose 'svd' or 'tucker2'")
    found = dict(named_layers(model, SUPPORTED))
    if energy is not None:
        ranks = {n: rank_for_energy(_matrix(m), energy) for n, m in found.items() if isinstance(m, nn.Linear)}
    done = {}
    for name, rank in ranks.items():
        if name not in found:
            raise ValueError(f"layer {name!r} is not a Linear/Conv2d of the model; choose from {sorted(found)}")
        layer = found[name]
        if skip_unprofitable and rank > break_even_rank(*_matrix(layer).shape) and conv == "svd":
            continue
        if isinstance(layer, nn.Linear):
            new = svd_factorize(layer, rank, name=name)
        elif conv == "svd":
            new = factorize_conv(layer, rank, name=name)
        else:
            new = tucker2_conv(layer, rank, name=name)
        replace_layer(model, name, new)
        done[name] = rank
    return done
