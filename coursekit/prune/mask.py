"""Masks by reparametrisation: ``weight = weight_orig * weight_mask``, recomputed before every forward.

The design of ``torch.nn.utils.prune`` (Paganini 2020, the PyTorch pruning tutorial): the trained parameter
moves to ``<name>_orig``, a 0/1 buffer ``<name>_mask`` is registered, and a forward pre-hook sets
``module.<name> = <name>_orig * <name>_mask``. Gradients reach ``<name>_orig`` only where the mask is 1, so
pruned weights stay zero through any number of optimizer steps; ``remove`` bakes the product into a plain
parameter again (do it before export: an exported graph would otherwise carry both tensors and a multiply).

Unlike torch, a second pruning call on the same parameter *replaces* the mask (the new mask is computed on
the already-masked weight, so earlier zeros stay zero): ``amount`` is always the fraction of the whole tensor
that is zero afterwards, which is what a sparsity schedule asks for.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class _MaskHook:
    """Forward pre-hook that recomputes ``module.<name>`` from the original parameter and the mask."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, module: nn.Module, inputs) -> None:
        setattr(module, self.name, getattr(module, self.name + "_orig") * getattr(module, self.name + "_mask"))


class _DetachHook:
    """Forward hook that leaves a detached copy in ``module.<name>`` after the forward pass (autograd keeps
    its own reference), so a pruned model can be deep-copied and pickled between steps."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, module: nn.Module, inputs, output) -> None:
        setattr(module, self.name, getattr(module, self.name).detach())


def _hook(module: nn.Module, name: str):
    for key, hook in module._forward_pre_hooks.items():
        if isinstance(hook, _MaskHook) and hook.name == name:
            return key
    return None


def is_pruned(module: nn.Module, name: str = "weight") -> bool:
    """True if ``module.<name>`` is currently reparametrised by a mask."""
    return _hook(module, name) is not None


def check_parameter(module: nn.Module, name: str, where: str = "module") -> torch.Tensor:
    """Return the (original) tensor of parameter ``name``; ValueError naming the module if it does not exist."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"{where} must be a torch.nn.Module, got {type(module).__name__}")
    if is_pruned(module, name):
        return getattr(module, name + "_orig")
    param = module._parameters.get(name) if isinstance(name, str) else None
    if param is None:
        names = [n for n, _ in module.named_parameters(recurse=False)]
        raise ValueError(f"{where} ({type(module).__name__}) has no parameter name={name!r}; "
                         f"it has: {', '.join(names) or 'no parameters'}")
    return param


def effective(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The weight the forward pass uses: ``orig * mask`` if pruned, else the parameter itself (detached)."""
    tensor = check_parameter(module, name)
    if is_pruned(module, name):
        tensor = tensor * getattr(module, name + "_mask")
    return tensor.detach()


def get_mask(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The 0/1 mask of ``module.<name>`` (all ones if it is not pruned)."""
    tensor = check_parameter(module, name)
    if is_pruned(module, name):
        return getattr(module, name + "_mask").detach().clone()
    return torch.ones_like(tensor.detach())


def apply_mask(module: nn.Module, name: str, mask: torch.Tensor) -> nn.Module:
    """Reparametrise ``module.<name>`` as ``<name>_orig * <name>_mask`` with the given 0/1 ``mask``.

    Calling it again replaces the mask (the original weights are kept, so a looser mask brings weights back).
    """
    tensor = check_parameter(module, name)
    mask = torch.as_tensor(mask)
    if tuple(mask.shape) != tuple(tensor.shape):
        raise ValueError(f"mask for {type(module).__name__}.{name} has shape {tuple(mask.shape)}; "
                         f"it must match the parameter shape {tuple(tensor.shape)}")
    mask = (mask != 0).to(dtype=tensor.dtype, device=tensor.device)
    if is_pruned(module, name):
        getattr(module, name + "_mask").copy_(mask)
    else:
        param = module._parameters.pop(name)
        module.register_parameter(name + "_orig", param)
        module.register_buffer(name + "_mask", mask)
        module.register_forward_pre_hook(_MaskHook(name))
        module.register_forward_hook(_DetachHook(name))
    _MaskHook(name)(module, None)
    _DetachHook(name)(module, None, None)
    return module


def remove(module: nn.Module, name: str = "weight") -> nn.Module:
    """Make the pruning permanent: ``module.<name>`` becomes a plain parameter equal to ``orig * mask``.

    Like ``torch.nn.utils.prune.remove``: the zeros stay, the mask buffer and the hook go (needed before
    export, and before counting a state dict's bytes). ValueError if the parameter is not pruned.
    """
    check_parameter(module, name)
    key = _hook(module, name)
    if key is None:
        raise ValueError(f"{type(module).__name__}.{name} is not pruned; nothing to remove "
                         f"(prune it first, or skip remove for this parameter)")
    weight = (getattr(module, name + "_orig") * getattr(module, name + "_mask")).detach()
    del module._forward_pre_hooks[key]
    for other in [k for k, h in module._forward_hooks.items() if isinstance(h, _DetachHook) and h.name == name]:
        del module._forward_hooks[other]
    del module._parameters[name + "_orig"]
    del module._buffers[name + "_mask"]
    if name in module.__dict__:
        del module.__dict__[name]
    module.register_parameter(name, nn.Parameter(weight))
    return module


def remove_all(model: nn.Module) -> nn.Module:
    """``remove`` every pruned parameter of every submodule of ``model`` (in place; returns it)."""
    for module in model.modules():
        for hook in [h for h in module._forward_pre_hooks.values() if isinstance(h, _MaskHook)]:
            remove(module, hook.name)
    return model


def pruned_parameters(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(module_name, module, parameter_name)`` for every masked parameter of ``model``."""
    return [(mname, module, hook.name) for mname, module in model.named_modules()
            for hook in module._forward_pre_hooks.values() if isinstance(hook, _MaskHook)]


def count_to_prune(amount, numel: int, what: str = "amount") -> int:
    """How many of ``numel`` entries ``amount`` prunes: a float in [0, 1] is a fraction (rounded to the
    nearest count, as ``torch.nn.utils.prune`` does), an int is a count in [0, numel]."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise TypeError(f"{what} must be a float fraction in [0, 1] or an int count, got {type(amount).__name__}")
    if isinstance(amount, int):
        if not 0 <= amount <= numel:
            raise ValueError(f"{what}={amount} is a count of weights to prune; it must be in [0, {numel}] "
                             f"(the tensor has {numel} entries)")
        return amount
    if not (math.isfinite(amount) and 0.0 <= amount <= 1.0):
        raise ValueError(f"{what}={amount} is a fraction to prune; it must be in [0, 1] (or an int count)")
    return round(amount * numel)
