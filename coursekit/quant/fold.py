"""Batch-norm folding: merge an inference-mode BatchNorm into the preceding convolution or linear layer.

For a layer ``y = W x + b`` followed by ``BN(y) = gamma (y - mu) / sqrt(var + eps) + beta`` the folded layer is

    W' = W * gamma / sqrt(var + eps)            (per output channel)
    b' = (b - mu) * gamma / sqrt(var + eps) + beta

(Jacob et al. 2018, sec. 3.2; Krishnamoorthi 2018, sec. 2.8 and eq. 13-14; Nagel et al. 2021, sec. 2.3.1).
Folding happens *before* quantization so the weights that are quantized are the ones used at inference.
"""
from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

from coursekit.surgery import BATCHNORM_TYPES, TRANSPOSED_CONV_TYPES, WEIGHT_LAYER_TYPES


def fold_batchnorm(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """A copy of ``layer`` (Conv1d/2d/3d, ConvTranspose, or Linear) with the BatchNorm ``bn`` folded in.

    Uses ``bn``'s running statistics (inference behaviour), whatever mode it is in; neither input is
    modified. Numerically identical to ``torch.nn.utils.fusion.fuse_conv_bn_eval`` / ``fuse_linear_bn_eval``.
    """
    if not isinstance(layer, WEIGHT_LAYER_TYPES):
        raise TypeError(f"layer must be a Conv1d/2d/3d, ConvTranspose or Linear module, got {type(layer).__name__}")
    if not isinstance(bn, BATCHNORM_TYPES):
        raise TypeError(f"bn must be a BatchNorm1d/2d/3d module, got {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("bn has no running statistics (track_running_stats=False): nothing to fold")
    out_axis = 1 if isinstance(layer, TRANSPOSED_CONV_TYPES) else 0
    out_channels = layer.weight.shape[out_axis] * (layer.groups if isinstance(layer, TRANSPOSED_CONV_TYPES) else 1)
    if bn.num_features != out_channels:
        raise ValueError(f"bn has {bn.num_features} features but the layer has {out_channels} output channels")

    fused = copy.deepcopy(layer)
    with torch.no_grad():
        w = layer.weight
        b = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        var_rsqrt = torch.rsqrt(bn.running_var + bn.eps)
        shape = [1] * w.dim()
        if isinstance(layer, TRANSPOSED_CONV_TYPES):
            shape[1] = -1
            factor = (gamma * var_rsqrt).reshape(layer.groups, 1, -1, *shape[2:])
            new_w = (w.reshape(layer.groups, -1, *w.shape[1:]) * factor).reshape(w.shape)
        else:
            shape[0] = -1
            new_w = w * (gamma * var_rsqrt).reshape(shape)
        if isinstance(layer, nn.Linear):  # same association of the products as torch's fuse_linear_bn_eval
            new_b = (b - bn.running_mean) * (gamma * var_rsqrt) + beta
        else:
            new_b = (b - bn.running_mean) * var_rsqrt * gamma + beta
    fused.weight = nn.Parameter(new_w.to(w.dtype), requires_grad=layer.weight.requires_grad)
    fused.bias = nn.Parameter(new_b.to(w.dtype), requires_grad=layer.weight.requires_grad)
    return fused


def fold_batchnorms(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in which every (Conv/Linear, BatchNorm) pair that follows each other inside an
    ``nn.Sequential`` is folded; the BatchNorm is replaced by ``nn.Identity``. The input is not modified."""
    model = copy.deepcopy(model)
    _fold_in_place(model)
    return model


def _fold_in_place(module: nn.Module) -> None:
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for first, second in itertools.pairwise(names):
            layer, bn = module._modules[first], module._modules[second]
            foldable = isinstance(layer, WEIGHT_LAYER_TYPES) and isinstance(bn, BATCHNORM_TYPES)
            if foldable and bn.running_mean is not None:
                module._modules[first] = fold_batchnorm(layer, bn)
                module._modules[second] = nn.Identity()
    for child in module.children():
        _fold_in_place(child)
