"""AdaRound: learn whether each weight rounds up or down (Nagel et al. 2020, "Up or Down? Adaptive Rounding for
Post-Training Quantization").

Round-to-nearest minimises each weight's own error, not the layer's output error. AdaRound keeps the grid (the
scale ``s`` of chapter 02's weight quantizer) and learns, per weight, a continuous variable ``V`` that decides
between ``floor(w/s)`` and ``floor(w/s) + 1``::

    w_soft = s * clamp(floor(w/s) + h(V), qmin, qmax)                       (eq. 22)
    h(V)   = clamp(sigmoid(V) (zeta - gamma) + gamma, 0, 1)                 (eq. 23, rectified sigmoid,
                                                                             zeta = 1.1, gamma = -0.1)

``h`` reaches exactly 0 and 1 (the stretch beyond [0, 1] before clamping), so a weight can settle on a hard
decision. ``V`` minimises the layer's output reconstruction error on a few calibration inputs plus a
regulariser that pushes every ``h(V)`` to 0 or 1 (eq. 24-25)::

    min_V  || W x - W_soft x ||^2_F  +  lambda * f_reg(V),    f_reg(V) = sum 1 - |2 h(V) - 1|^beta

with ``beta`` annealed from 20 (flat: rounding is free to move) to 2 (steep: every h is forced to 0 or 1).
After optimisation the rounding is made hard: up where ``h(V) >= 0.5``. ``V`` starts where ``h(V)`` equals the
fractional part ``w/s - floor(w/s)`` (the reference implementation's initialisation), so the soft weights start
at the float weights.

This module optimises one layer at a time against its own float output (the "layer-wise" variant, eq. 25
without the activation function), which is what the chapter's demo measures against round-to-nearest.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from coursekit._validate import check_int, check_positive
from coursekit.quant.observers import MinMaxObserver
from coursekit.quant.primitives import check_bits, fake_quantize, quant_range
from coursekit.surgery import CONV_TYPES, LINEAR_TYPES, batches

ZETA, GAMMA = 1.1, -0.1


def rectified_sigmoid(v: torch.Tensor, zeta: float = ZETA, gamma: float = GAMMA) -> torch.Tensor:
    """``h(V) = clamp(sigmoid(V) (zeta - gamma) + gamma, 0, 1)`` (Nagel et al. 2020, eq. 23)."""
    return torch.clamp(torch.sigmoid(v) * (zeta - gamma) + gamma, 0.0, 1.0)


def init_v(rest: torch.Tensor, zeta: float = ZETA, gamma: float = GAMMA) -> torch.Tensor:
    """``V`` with ``h(V) = rest`` (for ``rest`` in (0, 1); the inverse of :func:`rectified_sigmoid`)."""
    p = torch.clamp((rest - gamma) / (zeta - gamma), 1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p))


def rounding_regularizer(v: torch.Tensor, beta: float) -> torch.Tensor:
    """``f_reg(V) = sum(1 - |2 h(V) - 1|^beta)`` (eq. 24): 0 when every ``h(V)`` is 0 or 1."""
    return (1 - (2 * rectified_sigmoid(v) - 1).abs().pow(beta)).sum()


def beta_schedule(step: int, steps: int, warmup: float = 0.2, start: float = 20.0, end: float = 2.0) -> float:
    """The annealed ``beta``: ``start`` during the warm-up fraction (where the regulariser is off), then a
    cosine decay to ``end`` (the reference implementation's schedule)."""
    begin = int(warmup * steps)
    if step < begin:
        return start
    t = (step - begin) / max(steps - begin, 1)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * t))


def weight_scale(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Chapter 02's per-output-channel symmetric min/max scale for a signed ``bits``-wide grid (shape (C,))."""
    obs = MinMaxObserver(bits, symmetric=True, signed=True, axis=0)
    obs.update(weight.detach())
    return obs.qparams()[0]


def round_to_nearest(weight: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """The round-to-nearest baseline: ``fake_quantize`` per output channel with ``scale`` (zero point 0)."""
    qmin, qmax = quant_range(bits, signed=True)
    return fake_quantize(weight, scale, torch.zeros_like(scale, dtype=torch.int64), qmin, qmax, axis=0)


def _soft_weight(floor_w, v, scale_view, qmin, qmax, hard: bool):
    h = (rectified_sigmoid(v) >= 0.5).to(v.dtype) if hard else rectified_sigmoid(v)
    return scale_view * torch.clamp(floor_w + h, qmin, qmax)


def adaround_layer(layer: nn.Module, inputs, bits: int = 4, steps: int = 500, lr: float = 1e-2,
                   reg_weight: float = 0.01, warmup: float = 0.2) -> dict:
    """AdaRound one Linear or Conv layer against its own float output on ``inputs`` (a tensor or batches of
    the layer's *inputs*). The layer is not modified; the result is deterministic (no random initialisation).

    Returns ``{"weight": the hard-rounded dequantized weight, "rtn_weight": round-to-nearest's, "scale": (C,),
    "up": fraction of weights rounded up, "flipped": fraction whose rounding differs from nearest,
    "mse_rtn", "mse_adaround": output mean squared error on ``inputs``, "loss": per-step history}``.
    """
    if not isinstance(layer, LINEAR_TYPES + CONV_TYPES) or type(layer) not in LINEAR_TYPES + CONV_TYPES:
        raise TypeError(f"layer must be an nn.Linear or nn.Conv1d/2d/3d, got {type(layer).__name__}")
    bits = check_bits(bits)
    steps = check_int("steps", steps, min_value=1)
    lr = check_positive("lr", lr)
    reg_weight = check_positive("reg_weight", reg_weight, allow_zero=True)
    xs = list(batches(inputs))
    if not xs:
        raise ValueError("inputs is empty: give at least one batch of the layer's inputs")
    x = torch.cat([b.detach().to(torch.float32) for b in xs])
    weight = layer.weight.detach().to(torch.float32)
    bias = None if layer.bias is None else layer.bias.detach().to(torch.float32)
    qmin, qmax = quant_range(bits, signed=True)
    scale = weight_scale(weight, bits)
    view = scale.reshape([-1] + [1] * (weight.dim() - 1))
    floor_w = torch.floor(weight / view)

    def run(w):
        return functional_call(layer, {"weight": w, **({"bias": bias} if bias is not None else {})}, (x,))

    with torch.no_grad():
        target = run(weight)
        rtn = round_to_nearest(weight, scale, bits)
        mse_rtn = float((run(rtn) - target).pow(2).mean())
    v = nn.Parameter(init_v(weight / view - floor_w))
    opt = torch.optim.Adam([v], lr=lr)
    history = []
    for step in range(steps):
        beta = beta_schedule(step, steps, warmup)
        recon = (run(_soft_weight(floor_w, v, view, qmin, qmax, hard=False)) - target).pow(2).mean()
        reg = rounding_regularizer(v, beta) if step >= int(warmup * steps) else torch.zeros(())
        loss = recon + reg_weight * reg
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    with torch.no_grad():
        hard = _soft_weight(floor_w, v, view, qmin, qmax, hard=True)
        mse_ada = float((run(hard) - target).pow(2).mean())
        up = rectified_sigmoid(v) >= 0.5
        nearest_up = (weight / view - floor_w) >= 0.5
    return {"weight": hard, "rtn_weight": rtn, "scale": scale, "up": float(up.float().mean()),
            "flipped": float((up != nearest_up).float().mean()), "mse_rtn": mse_rtn, "mse_adaround": mse_ada,
            "loss": history}


__all__ = ["GAMMA", "ZETA", "adaround_layer", "beta_schedule", "init_v", "rectified_sigmoid", "round_to_nearest",
           "rounding_regularizer", "weight_scale"]
