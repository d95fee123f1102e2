"""Fine-grained (unstructured) magnitude pruning, per layer and global, and a random control.

Han, Pool, Tran & Dally 2015 ("Learning both weights and connections for efficient neural networks"):
zero the weights of smallest magnitude, then fine-tune. For a tensor W and k weights to prune, the mask is

    M_i = 1[|W_i| > t],   t = the k-th smallest |W_i|                                   (layer-wise)

and *global* pruning uses one threshold t over the concatenation of every listed tensor, so layers with many
small weights lose more (Frankle & Carbin 2019 use it for deep nets; Blalock et al. 2020, "What is the state
of neural network pruning?", compare both). The masks equal ``torch.nn.utils.prune.l1_unstructured`` and
``global_unstructured(..., pruning_method=L1Unstructured)`` on inputs without ties.
"""
from __future__ import annotations

import torch
from torch import nn

from coursekit.prune.mask import apply_mask, check_parameter, count_to_prune, effective


def magnitude_mask(weight: torch.Tensor, amount) -> torch.Tensor:
    """0/1 mask that zeroes the ``amount`` (fraction or count) smallest-magnitude entries of ``weight``."""
    k = count_to_prune(amount, weight.numel())
    mask = torch.ones_like(weight)
    if k:
        idx = torch.topk(weight.detach().abs().reshape(-1), k, largest=False).indices
        mask.view(-1)[idx] = 0
    return mask


def magnitude_prune(module: nn.Module, name: str = "weight", amount=0.5) -> nn.Module:
    """Prune ``module.<name>`` so that its ``amount`` smallest-|w| entries are zero (L1 unstructured).

    ``amount``: a fraction of the tensor in [0, 1] or an int count. If the parameter is already pruned, the
    new mask is computed on the masked weight (old zeros stay zero) and replaces the old one.
    """
    check_parameter(module, name)
    return apply_mask(module, name, magnitude_mask(effective(module, name), amount))


def _check_targets(parameters) -> list[tuple[nn.Module, str]]:
    targets = list(parameters)
    if not targets:
        raise ValueError("parameters is empty; pass a list of (module, name) pairs, e.g. [(model.fc, 'weight')]")
    for i, pair in enumerate(targets):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"parameters[{i}] must be a (module, name) pair, got {pair!r}")
        check_parameter(pair[0], pair[1], where=f"parameters[{i}][0]")
    return targets


def global_magnitude_prune(parameters, amount) -> list[tuple[nn.Module, str]]:
    """Prune the ``amount`` smallest-|w| entries over all ``(module, name)`` pairs together (one threshold).

    ``amount``: a fraction of all listed entries or an int count. Returns the pairs.
    """
    targets = _check_targets(parameters)
    flat = torch.cat([effective(m, n).reshape(-1) for m, n in targets])
    mask = magnitude_mask(flat, count_to_prune(amount, flat.numel()))
    start = 0
    for module, name in targets:
        shape = effective(module, name).shape
        size = effective(module, name).numel()
        apply_mask(module, name, mask[start:start + size].reshape(shape))
        start += size
    return targets


def random_prune(module: nn.Module, name: str = "weight", amount=0.5, generator: torch.Generator | None = None):
    """Prune a random ``amount`` of ``module.<name>`` (the control every magnitude result is compared with).

    Already-pruned entries stay pruned; the new zeros are drawn among the surviving ones.
    """
    weight = effective(module, name)
    k = count_to_prune(amount, weight.numel())
    old = (weight != 0).reshape(-1) if k else None
    mask = torch.ones_like(weight).reshape(-1)
    if k:
        already = (~old).nonzero().reshape(-1)
        alive = old.nonzero().reshape(-1)
        extra = max(0, k - already.numel())
        perm = torch.randperm(alive.numel(), generator=generator)[:extra]
        mask[already[:k]] = 0
        mask[alive[perm]] = 0
    return apply_mask(module, name, mask.reshape(weight.shape))
