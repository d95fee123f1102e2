"""Apply a weight-quantization method to every ``nn.Linear`` of a model, and W8A8 to a whole model.

:func:`quantize_linears` walks the Linear layers with :mod:`coursekit.surgery` in definition order (for a
transformer: block by block, ``qkv``/``proj``/``fc``/``fc2``) and replaces each weight in place by its
dequantized quantized version ("fake-quantized" weights: the model stays an ordinary float model, what changes
is the values), so any evaluation (bits per character, embeddings) measures the quantization error:

* ``"rtn"``  round-to-nearest group-wise INT-b (:mod:`coursekit.llm.groupwise`);
* ``"nf4"``  NF4 with double-quantized scales (:mod:`coursekit.llm.nf4dq`; ``group_size`` is the absmax block);
* ``"gptq"`` GPTQ (:mod:`coursekit.llm.gptq`) from the layer's Hessian on calibration inputs;
* ``"awq"``  AWQ (:mod:`coursekit.llm.awq`); the ``1/s`` is folded into the stored weight
  (``w_hat = Q(W diag s) diag(s)^-1``), numerically what folding it into the previous op gives.

Calibration (GPTQ, AWQ, and the output errors of the report): ``calibration`` is a list of model inputs
(tensors, or dicts of keyword arguments such as a tokenizer's output). Inputs of each Linear are captured with
a forward pre-hook. With ``sequential=True`` (the default, as GPTQ's paper does block by block) layer ``k`` is
calibrated on the inputs it receives from the model whose layers ``0..k-1`` are ALREADY quantized, so it
compensates the errors made before it; this costs one pass over the calibration set per layer.
``sequential=False`` captures every layer's inputs in one pass of the FP32 model (faster, slightly worse).
Every position a layer sees is a calibration row, padding tokens of a padded batch included (pass unpadded or
equal-length batches to keep them out).

:func:`w8a8_linears` replaces every Linear by an INT8 x INT8 version: plain W8A8 (per-tensor activations),
SmoothQuant W8A8, or the LLM.int8() decomposition; :func:`smoothquant_alpha` picks SmoothQuant's ``alpha`` on
calibration data by the model's output error (:func:`output_error`).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from coursekit._progress import progress_bar
from coursekit._validate import check_choice, check_positive, check_probability
from coursekit.export.matmulnbits import Int4Weight, linear_stack_models
from coursekit.llm.awq import awq_quantize
from coursekit.llm.gptq import gptq_quantize, hessian, layer_error
from coursekit.llm.groupwise import SUPPORTED_BITS, check_group_size, groupwise_bytes, quantize_groupwise
from coursekit.llm.nf4dq import nf4_double_quantize
from coursekit.llm.outliers import Int8DecomposedLinear, outlier_channels
from coursekit.llm.smoothquant import SmoothW8A8Linear, W8A8Linear
from coursekit.surgery import LINEAR_TYPES, named_layers, replace_layer

METHODS = ("rtn", "nf4", "gptq", "awq")
W8A8_METHODS = ("w8a8", "smoothquant", "llm_int8")
CALIBRATED = ("gptq", "awq")


@dataclass
class LayerReport:
    """One quantized Linear: relative weight error ``||W - W_hat|| / ||W||``, relative output error on the
    calibration inputs (``None`` without calibration), storage bytes and bits per weight incl. scales."""

    name: str
    shape: tuple[int, int]
    weight_error: float
    output_error: float | None
    bytes: int
    bits_per_weight: float
    seconds: float
    extra: dict = field(default_factory=dict)
    quantized: object = field(default=None, repr=False)  # the GroupQuant / NF4DoubleQuant that was stored


@dataclass
class QuantReport:
    """What :func:`quantize_linears` did, layer by layer."""

    method: str
    bits: int
    group_size: int | None
    layers: list[LayerReport]

    @property
    def num_weights(self) -> int:
        return sum(r.shape[0] * r.shape[1] for r in self.layers)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.layers)

    @property
    def bits_per_weight(self) -> float:
        """Storage bits per quantized weight, scales and zero points included."""
        return 8 * self.bytes / self.num_weights if self.layers else 0.0

    def rows(self) -> list[dict]:
        return [{"layer": r.name, "shape": "x".join(map(str, r.shape)), "weight_err": r.weight_error,
                 "output_err": r.output_error, "bits/weight": r.bits_per_weight, **r.extra} for r in self.layers]

    def __str__(self) -> str:
        head = (f"{self.method} {self.bits}-bit, group {self.group_size}: {len(self.layers)} Linear layers, "
                f"{self.num_weights:,} weights, {self.bytes:,} bytes ({self.bits_per_weight:.3f} bits/weight)")
        lines = [head]
        for r in self.layers:
            out = "   n/a" if r.output_error is None else f"{r.output_error:.4f}"
            lines.append(f"  {r.name:<24} {'x'.join(map(str, r.shape)):>9}  weight err {r.weight_error:.4f}  "
                         f"output err {out}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- calibration
def _run(model: nn.Module, batch, forward):
    if forward is not None:
        return forward(model, batch)
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(batch[0])
    return model(batch)


@torch.no_grad()
def capture_inputs(model: nn.Module, names: list[str], calibration, forward=None) -> dict[str, torch.Tensor]:
    """The inputs each named layer receives on ``calibration``, as float32 ``[rows, in_features]`` matrices.

    ``forward(model, batch)`` runs one batch (default: ``model(batch)``, ``model(**batch)`` for dicts).
    """
    captured = {n: [] for n in names}
    layers = dict(model.named_modules())
    hooks = [layers[n].register_forward_pre_hook(
        lambda m, args, n=n: captured[n].append(args[0].detach().reshape(-1, args[0].shape[-1]).float()))
        for n in names]
    was_training = model.training
    model.eval()
    try:
        for batch in calibration:
            _run(model, batch, forward)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {n: torch.cat(xs) for n, xs in captured.items()}


def _check_calibration(calibration, method: str):
    batches = None if calibration is None else list(calibration)
    if method in CALIBRATED and not batches:
        raise ValueError(f"calibration is empty: method={method!r} needs calibration inputs (a list of model "
                         "inputs, e.g. a few token batches)")
    return batches or None


# ----------------------------------------------------------------------------------------------- one layer
def _quantize_weight(w, x, method, bits, group_size, act_order, symmetric, damp):
    """``(w_hat, stored, bytes, extra)`` for one weight."""
    if method == "nf4":
        dq = nf4_double_quantize(w, block_size=group_size)
        return dq.dequantize(), dq, dq.nbytes(), {}
    if method == "gptq":
        w_hat, gq = gptq_quantize(w, hessian(x), bits, group_size, damp=damp, act_order=act_order,
                                  symmetric=symmetric)
        return w_hat, gq, groupwise_bytes(gq), {}
    if method == "awq":
        w_hat, gq, _, alpha = awq_quantize(w, x, bits, group_size, symmetric=symmetric)
        return w_hat, gq, groupwise_bytes(gq), {"alpha": alpha}
    gq = quantize_groupwise(w, bits, group_size, symmetric)
    return gq.dequantize(), gq, groupwise_bytes(gq), {}


def quantize_linears(model: nn.Module, method: str = "rtn", bits: int = 4, group_size: int | None = 128,
                     calibration=None, act_order: bool = False, symmetric: bool = False, damp: float = 0.01,
                     skip=("lm_head",), sequential: bool = True, forward=None,
                     progress: bool = True) -> QuantReport:
    """Quantize the weight of every ``nn.Linear`` of ``model`` in place (except ``skip``); return a report.

    ``method``: "rtn", "nf4", "gptq" or "awq"; ``bits`` in {8, 4, 3, 2} (NF4: 4); ``group_size`` divides every
    quantized layer's ``in_features`` (``None``: per output channel; NF4: the absmax block, QLoRA uses 64).
    ``calibration`` (required for gptq/awq): a list of model inputs; ``forward(model, batch)`` runs one.
    ``skip``: layer names or glob patterns left in FP32 (the output head by default, as GPTQ/AWQ do).
    """
    check_choice("method", method, METHODS)
    check_choice("bits", bits, (4,) if method == "nf4" else SUPPORTED_BITS)
    check_positive("damp", damp, allow_zero=True)
    batches = _check_calibration(calibration, method)
    layers = named_layers(model, LINEAR_TYPES, skip=skip)
    if not layers:
        raise ValueError(f"model has no nn.Linear layers to quantize outside skip={tuple(skip)!r}")
    if method == "nf4" and group_size is None:
        raise ValueError("group_size=None is not supported for method='nf4'; give the absmax block (QLoRA: 64)")
    for _, lin in layers:
        check_group_size(group_size, lin.in_features)
    names = [n for n, _ in layers]
    inputs = capture_inputs(model, names, batches, forward) if batches and not sequential else {}
    reports = []
    for name, lin in progress_bar(layers, desc=f"{method} {bits}-bit", enabled=progress):
        x = None
        if batches:
            x = inputs[name] if not sequential else capture_inputs(model, [name], batches, forward)[name]
        start = time.perf_counter()
        w = lin.weight.detach().float().clone()  # the FP32 original: the copy_ below overwrites the weight
        w_hat, stored, nbytes, extra = _quantize_weight(w, x, method, bits, group_size, act_order, symmetric, damp)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            lin.weight.copy_(w_hat.to(lin.weight.dtype))
        reports.append(LayerReport(
            name, tuple(w.shape), float(torch.linalg.norm(w - w_hat) / torch.linalg.norm(w)),
            None if x is None else layer_error(x, w, w_hat), nbytes, 8 * nbytes / w.numel(), seconds, extra,
            stored))
    return QuantReport(method, bits, group_size, reports)


# ----------------------------------------------------------------------------------------------- W8A8
def w8a8_linears(model: nn.Module, method: str = "smoothquant", calibration=None, alpha: float = 0.5,
                 threshold: float = 6.0, act: str = "per_tensor", skip=(), forward=None) -> dict[str, dict]:
    """Replace every ``nn.Linear`` of ``model`` (in place, except ``skip``) by an INT8 x INT8 layer.

    ``method``: "w8a8" (per-channel INT8 weights, ``act`` INT8 activations with dynamic scales),
    "smoothquant" (the same after SmoothQuant smoothing with ``alpha``; needs ``calibration`` for the
    per-channel activation absmax) or "llm_int8" (LLM.int8() decomposition with ``threshold``).
    Returns ``{layer name: {"method", "outlier_channels" (on calibration, when given), ...}}``.
    """
    check_choice("method", method, W8A8_METHODS)
    batches = None if calibration is None else list(calibration)
    if method == "smoothquant" and not batches:
        raise ValueError("calibration is empty: method='smoothquant' needs calibration inputs for the "
                         "activation absmax of every channel")
    layers = named_layers(model, LINEAR_TYPES, skip=skip)
    inputs = capture_inputs(model, [n for n, _ in layers], batches, forward) if batches else {}
    info = {}
    for name, lin in layers:
        x = inputs.get(name)
        entry = {"method": method}
        if x is not None:
            entry["outlier_channels"] = int(outlier_channels(x, threshold).sum())
        if method == "smoothquant":
            new = SmoothW8A8Linear(lin, x.abs().amax(dim=0), alpha, act)
            entry["alpha"] = alpha
        elif method == "llm_int8":
            new = Int8DecomposedLinear(lin, threshold)
        else:
            new = W8A8Linear(lin, act)
        replace_layer(model, name, new)
        info[name] = entry
    return info


def _output_tensor(out) -> torch.Tensor:
    """The tensor a forward returned: itself, or the first field of a tuple, dict or transformers ModelOutput
    (an ordered dict: ``last_hidden_state`` for a BERT encoder, ``logits`` for a causal LM)."""
    if isinstance(out, dict):
        out = next(iter(out.values()), None)
    elif isinstance(out, (tuple, list)):
        out = out[0] if out else None
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model's output must be a tensor (or a tuple/dict whose first entry is one), got "
                        f"{type(out).__name__}; pass forward(model, batch) returning the tensor to compare")
    return out


@torch.no_grad()
def output_error(model: nn.Module, reference: nn.Module, batches, forward=None) -> float:
    """Relative output error ``sqrt(sum_b ||y_b - r_b||^2 / sum_b ||r_b||^2)`` of ``model`` against
    ``reference`` over ``batches`` (model inputs, run as :func:`capture_inputs` runs them), in float64."""
    num = den = 0.0
    for batch in batches:
        ref = _output_tensor(_run(reference, batch, forward)).double()
        num += float(((_output_tensor(_run(model, batch, forward)).double() - ref) ** 2).sum())
        den += float((ref ** 2).sum())
    return (num / den) ** 0.5 if den > 0 else 0.0


SMOOTHQUANT_ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def smoothquant_alpha(model: nn.Module, calibration, alphas=SMOOTHQUANT_ALPHAS, act: str = "per_tensor",
                      skip=(), forward=None, progress: bool = False) -> tuple[float, dict[float, float]]:
    """Choose SmoothQuant's migration strength ``alpha`` on calibration data, as the paper does per model
    (Xiao et al. 2022, sec. 5: 0.5 for OPT and BLOOM, up to 0.75-0.85 for GLM-130B and others).

    For each ``alpha`` a copy of ``model`` goes through :func:`w8a8_linears` (``method="smoothquant"``, the
    absmax statistics from ``calibration``) and is scored by :func:`output_error` against ``model`` on the same
    ``calibration`` inputs: only calibration data decide, never the evaluation set. ``model`` is not changed.
    Returns ``(best alpha, {alpha: relative output error})``; ties go to the first alpha of the grid.
    """
    batches = None if calibration is None else list(calibration)
    if not batches:
        raise ValueError("calibration is empty: choosing alpha needs calibration inputs (a list of model inputs)")
    alphas = [check_probability("alphas", a) for a in alphas]
    if not alphas:
        raise ValueError("alphas is empty: give the grid of alpha values in [0, 1] to try, e.g. (0.3, ..., 0.9)")
    was_training = model.training
    model.eval()
    errors = {}
    try:
        for alpha in progress_bar(alphas, desc="smoothquant alpha", enabled=progress):
            quantized = copy.deepcopy(model)
            w8a8_linears(quantized, "smoothquant", batches, alpha, act=act, skip=skip, forward=forward)
            errors[alpha] = output_error(quantized, model, batches, forward)
    finally:
        model.train(was_training)
    return min(errors, key=errors.get), errors


# ----------------------------------------------------------------------------------------------- ONNX INT4
def int4_linear_stack(weights, biases=None, group_size: int = 32, symmetric: bool = False,
                      activation: str | None = None, accuracy_level: int = 4):
    """RTN INT4 group-wise quantization of a stack of Linear weights (``[N, K]`` each, applied in order) and the
    two ONNX models of :func:`coursekit.export.matmulnbits.linear_stack_models` (FP32 MatMul, MatMulNBits).

    Returns ``(fp32_model, int4_model, [GroupQuant, ...])``. E.g. the MLP of a transformer block
    (``[fc.weight, fc2.weight]``, ``activation="gelu"``) or ``(d x 4d)`` GEMV layers for a decode benchmark.
    """
    weights = [w.detach().float() for w in weights]
    quantized = [quantize_groupwise(w, 4, group_size, symmetric) for w in weights]
    fp32, int4 = linear_stack_models(weights, [Int4Weight.from_groupwise(q) for q in quantized], biases,
                                     activation, accuracy_level)
    return fp32, int4, quantized


__all__ = ["METHODS", "SMOOTHQUANT_ALPHAS", "W8A8_METHODS", "LayerReport", "QuantReport", "capture_inputs",
           "int4_linear_stack", "output_error", "quantize_linears", "smoothquant_alpha", "w8a8_linears"]
