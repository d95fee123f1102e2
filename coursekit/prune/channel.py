"""Structured (channel) pruning that physically removes channels, so the model gets smaller and faster
with ordinary dense kernels.

Li, Kadav, Durdanovic, Samet & Graf 2017 ("Pruning filters for efficient ConvNets"): rank the output
filters F_j of a conv by a norm, importance_j = ||F_j||_p (p = 1 in the paper; p = 2 here by default, as in
MIT 6.5940 lab 1), drop the least important, and remove the matching *input* channels of every layer that
reads them: the next conv's kernel slices W[:, j], the BatchNorm entries (gamma, beta, running mean/var) in
between, and the S = H*W columns per channel of a Linear head after a Flatten. Fang et al. 2023
("DepGraph: towards any structural pruning", the ``torch-pruning`` library) generalise this dependency
walk to arbitrary graphs; here ``torch.fx`` traces the model and only channel-preserving operations
(BatchNorm, activations, pooling, dropout, Flatten into a Linear) are followed. A channel that reaches an
addition or concatenation (a skip connection: its channels are tied to another layer's) or the model output
is *not* free: naming such a layer raises a ValueError that names the block, and ``amount=float`` prunes
the free layers only (``prunable_layers`` lists them; inside a ResNet block that is conv1).

``importance="input"`` is MIT 6.5940 lab 1's input-channel importance: the norm of the *consumer's* kernel
slice ||W_next[:, j]||_2, i.e. how much the next layer uses channel j; ``sort_channels`` reorders channels
by it without changing the outputs, so pruning becomes keeping the first k.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from coursekit.prune.mask import count_to_prune, pruned_parameters
from coursekit.surgery import BATCHNORM_TYPES, CONV_TYPES, LINEAR_TYPES, get_layer

IMPORTANCES = ("l2", "l1", "input")
_PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
                 nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                 nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Identity)
_PASS_FUNCTIONS = {torch.relu, F.relu, F.relu6, F.gelu, F.silu, torch.sigmoid, torch.tanh, F.max_pool2d,
                   F.max_pool1d, F.avg_pool2d, F.avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool1d,
                   F.dropout}
_PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}


@dataclass
class Dependency:
    """What removing output channels of ``layer`` touches: BatchNorms after it and the consumers that read
    it (``(name, spatial)``: ``spatial`` columns per channel, >1 for a Linear after a Flatten). ``reason``
    is None if the channels are free, else why they are tied (a skip connection, the output, ...)."""

    layer: str
    batchnorms: list = field(default_factory=list)
    consumers: list = field(default_factory=list)
    reason: str | None = None


def _weight_layer(module) -> bool:
    return isinstance(module, LINEAR_TYPES) or (isinstance(module, CONV_TYPES) and module.groups == 1)


def _where(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    owner = list(stack.values())[-1][0] if stack else ""
    return f"block {owner!r}" if owner else "the model's forward"


def _follow(modules: dict, start) -> Dependency:
    dep = Dependency(start.target)
    stack = [(user, False) for user in start.users]
    while stack:
        node, flat = stack.pop()
        nxt = True
        if node.op == "call_module":
            mod = modules[node.target]
            if isinstance(mod, BATCHNORM_TYPES) and not flat:
                dep.batchnorms.append(node.target)
            elif _weight_layer(mod):
                dep.consumers.append((node.target, flat))
                nxt = False
            elif isinstance(mod, nn.Flatten):
                flat = True
            elif not isinstance(mod, _PASS_MODULES):
                dep.reason = f"its channels reach {node.target} ({type(mod).__name__}) in {_where(node)}"
        elif node.op == "call_function" and node.target in _PASS_FUNCTIONS:
            pass
        elif node.op == "call_function" and node.target is torch.flatten:
            flat = True
        elif node.op == "call_method" and node.target in _PASS_METHODS:
            pass
        elif node.op == "call_method" and node.target in _FLATTEN_METHODS:
            flat = True
        elif node.op == "output":
            dep.reason = "it produces the model output (the number of classes is fixed)"
        else:
            name = getattr(node.target, "__name__", str(node.target))
            dep.reason = (f"its channels are tied to another layer's through {name!r} in {_where(node)} "
                          f"(a skip connection or concatenation); prune the block's inner conv instead")
        if dep.reason:
            return dep
        if nxt:
            stack.extend((user, flat) for user in node.users)
    return dep


def channel_dependencies(model: nn.Module) -> dict[str, Dependency]:
    """For every conv (groups=1) and Linear layer of ``model``: what pruning its output channels touches."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if pruned_parameters(model):
        names = ", ".join(f"{m}.{n}" for m, _, n in pruned_parameters(model))
        raise ValueError(f"model has masked parameters ({names}); call coursekit.prune.remove_all(model) "
                         f"before channel pruning")
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as error:  # fx raises many types; report one clear error
        raise ValueError(f"channel pruning cannot follow this model's graph (torch.fx could not trace "
                         f"{type(model).__name__}: {error}); use a sequential CNN/MLP or ResNet-style blocks") from error
    modules = dict(model.named_modules())
    deps = {}
    for node in graph.nodes:
        if node.op == "call_module" and _weight_layer(modules[node.target]):
            dep = _follow(modules, node)
            for name, flat in dep.consumers:
                if flat and dep.reason is None:
                    channels = _out_channels(modules[node.target])
                    if not isinstance(modules[name], LINEAR_TYPES) or modules[name].in_features % channels:
                        dep.reason = f"{name} reads the flattened channels in a layout the pruner cannot follow"
            if node.target in deps:
                dep.reason = f"{node.target} is called more than once in forward (shared weights)"
            deps[node.target] = dep
    return deps


def prunable_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose output channels can be removed (free, not tied to a skip or the output)."""
    return [name for name, dep in channel_dependencies(model).items() if dep.reason is None]


def _out_channels(layer) -> int:
    return layer.weight.shape[0]


def channel_importance(model: nn.Module, layer: str, importance: str = "l2") -> torch.Tensor:
    """Importance of each output channel of ``layer``: the L2 (or L1) norm of its filter (Li et al. 2017),
    or, for ``"input"``, the L2 norm of the consumers' kernel slices that read it (MIT 6.5940 lab 1)."""
    if importance not in IMPORTANCES:
        raise ValueError(f"importance={importance!r} is not supported; choose one of {IMPORTANCES}")
    module = get_layer(model, layer)
    weight = module.weight.detach()
    if importance in ("l1", "l2"):
        p = 1 if importance == "l1" else 2
        return weight.reshape(weight.shape[0], -1).norm(p=p, dim=1)
    dep = _dependency(model, layer)
    total = torch.zeros(weight.shape[0])
    for name, flat in dep.consumers:
        w = get_layer(model, name).weight.detach()
        w = w.reshape(w.shape[0], weight.shape[0], -1) if flat else w.reshape(w.shape[0], w.shape[1], -1)
        total += w.pow(2).sum(dim=(0, 2))
    return total.sqrt()


def _dependency(model: nn.Module, layer: str) -> Dependency:
    deps = channel_dependencies(model)
    if layer not in deps:
        raise ValueError(f"layer={layer!r} is not a conv (groups=1) or Linear layer of the model; "
                         f"choose one of: {', '.join(deps)}")
    dep = deps[layer]
    if dep.reason:
        raise ValueError(f"layer={layer!r}: cannot remove its output channels: {dep.reason}. "
                         f"Prunable layers: {', '.join(prunable_layers(model)) or 'none'}")
    return dep


def _take(tensor, dim: int, idx):
    return nn.Parameter(tensor.detach().index_select(dim, idx).clone(), requires_grad=tensor.requires_grad)


def _shrink_outputs(module, idx) -> None:
    module.weight = _take(module.weight, 0, idx)
    if module.bias is not None:
        module.bias = _take(module.bias, 0, idx)
    if isinstance(module, LINEAR_TYPES):
        module.out_features = len(idx)
    else:
        module.out_channels = len(idx)


def _shrink_batchnorm(bn, idx) -> None:
    if bn.affine:
        bn.weight, bn.bias = _take(bn.weight, 0, idx), _take(bn.bias, 0, idx)
    if bn.track_running_stats:
        bn.running_mean = bn.running_mean.index_select(0, idx).clone()
        bn.running_var = bn.running_var.index_select(0, idx).clone()
    bn.num_features = len(idx)


def _shrink_inputs(module, idx, spatial: int) -> None:
    if spatial > 1:
        idx = (idx[:, None] * spatial + torch.arange(spatial)).reshape(-1)
    module.weight = _take(module.weight, 1, idx)
    if isinstance(module, LINEAR_TYPES):
        module.in_features = len(idx)
    else:
        module.in_channels = len(idx)


def remove_channels(model: nn.Module, keep: dict) -> nn.Module:
    """A copy of ``model`` in which each ``layer`` of ``keep`` retains only the output channels
    ``keep[layer]`` (in that order) and everything downstream is shrunk to match. The copy computes exactly
    what the original computes with the removed channels forced to zero (up to the BatchNorm shift they
    carried, which is dropped with them)."""
    if not isinstance(keep, dict) or not keep:
        raise ValueError("keep must be a non-empty dict {layer name: indices of output channels to keep}")
    plans = {}
    for layer, indices in keep.items():
        dep = _dependency(model, layer)
        channels = _out_channels(get_layer(model, layer))
        idx = torch.as_tensor(list(indices), dtype=torch.long).reshape(-1)
        if idx.numel() == 0:
            raise ValueError(f"layer={layer!r}: keeping no channel removes the layer; keep at least 1 of {channels}")
        if int(idx.min()) < 0 or int(idx.max()) >= channels or len(set(idx.tolist())) != idx.numel():
            raise ValueError(f"layer={layer!r}: keep indices must be distinct integers in [0, {channels})")
        plans[layer] = (dep, idx, channels)
    pruned = copy.deepcopy(model)
    for layer, (dep, idx, channels) in plans.items():
        _shrink_outputs(get_layer(pruned, layer), idx)
        for bn in dep.batchnorms:
            _shrink_batchnorm(get_layer(pruned, bn), idx)
        for name, flat in dep.consumers:
            consumer = get_layer(pruned, name)
            spatial = consumer.weight.shape[1] // channels if flat else 1
            _shrink_inputs(consumer, idx, spatial)
    return pruned


def kept_count(channels: int, amount, multiple_of: int = 1, layer: str = "layer") -> int:
    """How many of ``channels`` survive pruning ``amount`` (fraction or count), rounded to the nearest
    multiple of ``multiple_of`` (dense kernels vectorise by 8 or 16 lanes), never 0, never above ``channels``."""
    kept = channels - count_to_prune(amount, channels, what=f"amount for {layer}")
    if multiple_of > 1:
        kept = min(channels, max(multiple_of, round(kept / multiple_of) * multiple_of))
    if kept < 1:
        raise ValueError(f"amount for {layer!r} removes all {channels} channels; it must leave at least one "
                         f"(a fraction < 1, or a count < {channels})")
    return kept


def channel_prune(model: nn.Module, amount, importance: str = "l2", multiple_of: int = 1) -> nn.Module:
    """Remove the least important output channels; returns a new, physically smaller model.

    ``amount``: a fraction applied to every free layer (``prunable_layers``), or a dict
    ``{layer: fraction or count}``. ``importance``: "l2"/"l1" filter norm or "input" (see module docstring).
    ``multiple_of``: round kept counts to a multiple (8 keeps vectorised kernels fast). ``amount=0`` gives a
    model with identical outputs.
    """
    if importance not in IMPORTANCES:
        raise ValueError(f"importance={importance!r} is not supported; choose one of {IMPORTANCES}")
    if isinstance(multiple_of, bool) or not isinstance(multiple_of, int) or multiple_of < 1:
        raise ValueError(f"multiple_of={multiple_of!r} must be an int >= 1")
    amounts = amount if isinstance(amount, dict) else {name: amount for name in prunable_layers(model)}
    keep = {}
    for layer, value in amounts.items():
        _dependency(model, layer)
        scores = channel_importance(model, layer, importance)
        k = kept_count(len(scores), value, multiple_of, layer)
        keep[layer] = torch.topk(scores, k).indices.sort().values
    return remove_channels(model, keep) if keep else copy.deepcopy(model)


def sort_channels(model: nn.Module, importance: str = "input") -> nn.Module:
    """A copy of ``model`` whose free layers list output channels from most to least important (MIT 6.5940
    lab 1); outputs are unchanged, and removing the last channels then prunes the least important."""
    keep = {layer: torch.argsort(channel_importance(model, layer, importance), descending=True, stable=True)
            for layer in prunable_layers(model)}
    return remove_channels(model, keep) if keep else copy.deepcopy(model)
