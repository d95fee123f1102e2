"""Layer surgery: find, read and swap the layers of a model, and walk a calibration set batch by batch.

Every compression technique rewrites a trained model layer by layer: quantization wraps each Linear/Conv in a
fake-quantized copy (Jacob et al. 2018, sec. 3), BatchNorm folding merges a BN into the conv before it,
pruning attaches a mask to a weight (Han et al. 2015), low-rank factorisation replaces one Linear by two
thinner ones (Denton et al. 2014, sec. 3), distillation reads a teacher's layers (Hinton et al. 2015). This
module is the one public way to do it, so those layers share it:

    >>> from torch import nn
    >>> from coursekit.surgery import named_layers, get_layer, replace_layer, LINEAR_TYPES
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 2)))
    >>> [name for name, _ in named_layers(model, types=LINEAR_TYPES)]
    ['0', '2.0']
    >>> old = replace_layer(model, "2.0", nn.Identity())
    >>> type(get_layer(model, "2.0")).__name__, type(old).__name__
    ('Identity', 'Linear')

Layer names are the dotted paths of ``model.named_modules()`` ("features.0", "classifier.2"). The module sits
below every other layer of coursekit and imports only torch.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator

import torch
from torch import nn

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Convolutions whose weight has the output channels on axis 0."""
TRANSPOSED_CONV_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
"""Transposed convolutions: output channels on axis 1 of the weight (times ``groups``)."""
LINEAR_TYPES = (nn.Linear,)
"""Fully connected layers."""
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
"""Batch normalisation layers (Ioffe & Szegedy 2015) that inference can fold into the layer before them."""
WEIGHT_LAYER_TYPES = (*LINEAR_TYPES, *CONV_TYPES, *TRANSPOSED_CONV_TYPES)
"""Every layer type above whose ``weight`` compression rewrites."""


def _check_model(model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _check_types(types) -> tuple:
    if types is None:
        return ()
    types = (types,) if isinstance(types, type) else tuple(types)
    bad = [t for t in types if not (isinstance(t, type) and issubclass(t, nn.Module))]
    if bad or not types:
        raise TypeError(f"types must be an nn.Module subclass or a non-empty tuple of them, got {bad or types!r}")
    return types


def named_layers(model: nn.Module, types=None, skip: Iterable[str] = (), exact: bool = False) -> list[tuple[str, nn.Module]]:
    """``[(dotted name, module), ...]`` of the submodules of ``model`` in definition order (the model itself
    excluded).

    ``types``: a module class or tuple of classes to keep (default: every submodule); ``exact=True`` matches
    the type exactly (``type(m) in types``) so a subclass, e.g. a quantized wrapper that inherits from
    ``nn.Linear``, is not listed. ``skip``: names or glob patterns (``"classifier.*"``) to leave out, with
    everything nested inside them.
    """
    _check_model(model)
    types = _check_types(types)
    skip = [skip] if isinstance(skip, str) else list(skip)
    found = []
    for name, module in model.named_modules():
        if not name or any(fnmatch.fnmatch(name, p) or name.startswith(p + ".") for p in skip):
            continue
        if not types or (type(module) in types if exact else isinstance(module, types)):
            found.append((name, module))
    return found


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule of ``model`` at dotted path ``name`` ("" is the model itself).

    Raises ValueError naming the nearest existing parent's children when the path does not exist.
    """
    _check_model(model)
    if not isinstance(name, str):
        raise TypeError(f"name must be a dotted layer name (str), got {type(name).__name__} {name!r}")
    module = model
    walked = []
    for part in name.split(".") if name else []:
        children = dict(module.named_children())
        if part not in children:
            where = ".".join(walked) or "the model"
            shown = ", ".join(repr(c) for c in children) or "none"
            raise ValueError(f"name={name!r}: {where} has no child {part!r}; its children are: {shown}")
        module = children[part]
        walked.append(part)
    return module


def replace_layer(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at dotted path ``name`` inside ``model`` (in place) and return the module it replaced.

    Works inside ``nn.Sequential`` and ``nn.ModuleList`` ("features.3") as well as for named attributes.
    The model's forward is unchanged, so ``new`` must accept what the old layer received.
    """
    _check_model(model)
    if not isinstance(new, nn.Module):
        raise TypeError(f"new must be a torch.nn.Module, got {type(new).__name__}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} must be the dotted name of a submodule (the model itself cannot be "
                         "replaced in place)")
    old = get_layer(model, name)
    parent_name, _, child = name.rpartition(".")
    setattr(get_layer(model, parent_name), child, new)
    return old


def batches(data) -> Iterator[torch.Tensor]:
    """The input tensors of ``data``: an iterable of tensors or of ``(inputs, targets, ...)`` batches (a
    DataLoader works); a single tensor is one batch. Arrays are converted with ``torch.as_tensor``.

    Raises TypeError for dict batches (pass the inputs explicitly).
    """
    if isinstance(data, torch.Tensor):
        data = [data]
    for batch in data:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if isinstance(x, dict):
            raise TypeError("batches must be tensors or (input, target) tuples, got a dict")
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x)
        yield x


__all__ = [
    "BATCHNORM_TYPES", "CONV_TYPES", "LINEAR_TYPES", "TRANSPOSED_CONV_TYPES", "WEIGHT_LAYER_TYPES", "batches",
    "get_layer", "named_layers", "replace_layer",
]
