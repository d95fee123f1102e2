"""Mixed precision: which layers keep 8 bits when the model must fit a size budget.

Layers differ in how much low-bit quantization hurts them (the first and last layers most, usually, see
``QATConfig.keep_first_last_8bit``), and in how many bytes they cost. The standard recipe (HAWQ, Dong et al.
2019, and the simpler measured sensitivity analyses of Wu et al. 2020, "Integer Quantization for Deep Learning
Inference", partial quantization, and of Nagel et al. 2021's PTQ debugging flow) has two steps:

1. **Sensitivity scan**: quantize *one* layer at a time to the low bit width, every other layer in float, and
   measure the accuracy drop on held-out data (:func:`layer_sensitivity`).
2. **Choice under a budget**: a 0/1 knapsack: each layer either stays at 8 bits (costing
   ``n (8 - low) / 8`` extra bytes) or drops to the low width; keep at 8 bits the layers that buy the most
   accuracy per extra byte. :func:`greedy_keep_8bit` is the greedy solution (sort by drop per extra byte, take
   every layer that still fits); an exact knapsack (dynamic programming, or all 2^L subsets for a few layers)
   can do better on the summed drops, and summed one-at-a-time drops only approximate the joint effect.

Quantization here is weight-only, per output channel, symmetric min/max (chapter 02's weight quantizer): the
size budget is about weights, and activations are a separate choice. Sizes count weight bits only
(``numel * bits / 8`` bytes, no per-channel scales, no biases).
"""
from __future__ import annotations

from torch import nn

from coursekit._validate import check_int, check_positive
from coursekit.metrics import evaluate
from coursekit.quant.primitives import check_bits
from coursekit.quant.ptq import QuantConfig, quantizable_layers, quantize_model


def layer_weight_counts(model: nn.Module) -> dict[str, int]:
    """``{layer name: number of weights}`` for every quantizable (Linear/Conv) layer, in forward order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    names, _ = quantizable_layers(model)
    return {n: model.get_submodule(n).weight.numel() for n in names}


def weight_bytes(num_weights: dict[str, int], layer_bits: dict[str, int]) -> float:
    """Bytes of the weights when layer ``n`` uses ``layer_bits[n]`` bits (1..32, so FP32 = 32 fits too):
    ``sum(num_weights[n] * bits / 8)``."""
    missing = sorted(set(num_weights) - set(layer_bits))
    if missing:
        raise ValueError(f"layer_bits has no bit width for layer(s) {missing}")
    return sum(num_weights[n] * check_int(f"layer_bits[{n!r}]", layer_bits[n], min_value=1, max_value=32) / 8
               for n in num_weights)


def quantize_layers(model: nn.Module, layer_bits: dict[str, int], granularity: str = "per_channel") -> nn.Module:
    """A copy of ``model`` in which exactly the layers named in ``layer_bits`` have weight-only fake-quantized
    weights, each with its own bit width; every other layer stays in float. BatchNorm is folded first (as
    ``quantize_model`` does). The input model is not modified.
    """
    if not isinstance(layer_bits, dict) or not layer_bits:
        raise ValueError(f"layer_bits must be a non-empty dict {{layer name: bits}}, got {layer_bits!r}")
    names, _ = quantizable_layers(model)
    unknown = sorted(set(layer_bits) - set(names))
    if unknown:
        raise ValueError(f"layer_bits names unknown layer(s) {unknown}; the quantizable layers are {names}")
    for name, bits in layer_bits.items():
        check_bits(bits, f"layer_bits[{name!r}]")
    qmodel = model
    for bits in sorted(set(layer_bits.values())):  # one weight-only pass per bit width; the others are skipped
        group = {n for n, b in layer_bits.items() if b == bits}
        config = QuantConfig(mode="weight_only", weight_bits=bits, granularity=granularity,
                             skip=tuple(n for n in names if n not in group))
        qmodel = quantize_model(qmodel, config)
    return qmodel


def layer_sensitivity(model: nn.Module, loader, low_bits: int, layer_names=None) -> dict[str, float]:
    """Accuracy drop when only one layer is quantized to ``low_bits`` (weight-only), for each layer:
    ``evaluate(model)["accuracy"] - evaluate(quantize_layers(model, {name: low_bits}))["accuracy"]``.

    ``layer_names`` defaults to every quantizable layer. Drops are fractions (0.05 = 5 points); a small
    negative drop is noise (the quantized layer happened to help on this data).
    """
    low_bits = check_bits(low_bits, "low_bits")
    names = list(layer_weight_counts(model)) if layer_names is None else list(layer_names)
    base = evaluate(model, loader)["accuracy"]
    return {n: base - evaluate(quantize_layers(model, {n: low_bits}), loader)["accuracy"] for n in names}


def greedy_keep_8bit(drops: dict[str, float], num_weights: dict[str, int], low_bits: int, budget_bytes: float,
                     high_bits: int = 8) -> list[str]:
    """The layers to keep at ``high_bits`` (the rest at ``low_bits``) so that the weights fit ``budget_bytes``.

    Greedy knapsack: layers with a positive drop, sorted by drop per extra byte ``drop / (n (high - low) / 8)``
    (ties: the order of ``drops``), are kept whenever they still fit; a layer that does not fit is passed over
    and the next one tried. Returns the kept names in the order of ``drops``. Raises ValueError when even the
    all-low-bit model exceeds the budget.
    """
    low_bits, high_bits = check_bits(low_bits, "low_bits"), check_bits(high_bits, "high_bits")
    if high_bits <= low_bits:
        raise ValueError(f"high_bits={high_bits} must be larger than low_bits={low_bits}")
    budget_bytes = check_positive("budget_bytes", budget_bytes)
    missing = sorted(set(drops) - set(num_weights))
    if missing:
        raise ValueError(f"num_weights has no entry for layer(s) {missing}")
    for n in drops:
        check_int(f"num_weights[{n!r}]", num_weights[n], min_value=1)
    used = weight_bytes({n: num_weights[n] for n in drops}, dict.fromkeys(drops, low_bits))
    if used > budget_bytes:
        raise ValueError(f"budget_bytes={budget_bytes} is below the all-{low_bits}-bit size {used:g} bytes")
    extra = {n: num_weights[n] * (high_bits - low_bits) / 8 for n in drops}
    order = sorted((n for n in drops if drops[n] > 0), key=lambda n: -drops[n] / extra[n])
    keep = set()
    for n in order:
        if used + extra[n] <= budget_bytes:
            keep.add(n)
            used += extra[n]
    return [n for n in drops if n in keep]


__all__ = ["greedy_keep_8bit", "layer_sensitivity", "layer_weight_counts", "quantize_layers", "weight_bytes"]
