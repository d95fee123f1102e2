"""AWQ: activation-aware weight quantization (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization for
LLM Compression and Acceleration").

Observation (sec. 3.1): a few input channels carry large activations; the weights that multiply them matter
most. Instead of keeping them in FP16, AWQ scales them up before quantization so that their relative rounding
error shrinks, and scales the activation down by the same factor (:mod:`coursekit.llm.scaling`):

    Q(W diag(s)) (diag(s)^-1 x)     with     s = s_X^alpha,   s_X = mean |x_j|  over calibration tokens   (eq. 5)

``alpha`` in [0, 1) is found by a grid search (20 points) minimising the quantized output error on the
calibration inputs (eq. 4):

    alpha* = argmin_alpha || Q(W diag(s)) (diag(s)^-1 X^T) - W X^T ||^2

``alpha = 0`` gives ``s = 1``, i.e. plain RTN, so on the calibration set AWQ is never worse than RTN. As in the
reference code the scales are normalised by ``sqrt(max(s) min(s))`` (the quantized result depends only on
ratios within a group, the normalisation keeps the numbers near 1). The activation statistic is the MEAN
magnitude per channel (the paper's ``s_X``), not the absmax SmoothQuant uses. Not included: AWQ's second
step, the search for a clipping range per group (``auto_clip``).
"""
from __future__ import annotations

import torch

from coursekit._validate import check_int, check_probability
from coursekit.llm.groupwise import GroupQuant, check_weight, quantize_groupwise
from coursekit.llm.scaling import scale_weight_columns


def calibration_rows(inputs, in_features: int, max_rows: int | None = None) -> torch.Tensor:
    """The calibration inputs as one float32 ``[n, in_features]`` matrix (a tensor or a list of batches)."""
    batches = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs or [])
    rows = [b.detach().reshape(-1, b.shape[-1]).float() for b in batches]
    if not rows or sum(r.shape[0] for r in rows) == 0:
        raise ValueError("inputs is empty: AWQ needs calibration inputs (at least one row)")
    if any(r.shape[1] != in_features for r in rows):
        raise ValueError(f"inputs must have in_features={in_features} in their last dimension, got "
                         f"{sorted({r.shape[1] for r in rows})}")
    x = torch.cat(rows)
    if max_rows is not None and x.shape[0] > max_rows:
        x = x[torch.linspace(0, x.shape[0] - 1, max_rows).long()]  # evenly spaced, deterministic
    return x


def activation_scale(inputs) -> torch.Tensor:
    """``s_X``: mean ``|x_j|`` per input channel over every calibration token."""
    batches = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs or [])
    if not batches:
        raise ValueError("inputs is empty: AWQ needs calibration inputs (at least one row)")
    return calibration_rows(batches, batches[0].shape[-1]).abs().mean(dim=0)


def awq_channel_scales(act_scale: torch.Tensor, alpha: float) -> torch.Tensor:
    """``s = s_X^alpha / sqrt(max * min)`` (AWQ eq. 5, normalised as in the reference code)."""
    alpha = check_probability("alpha", alpha)
    s = act_scale.float().pow(alpha).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


def awq_search(weight: torch.Tensor, inputs, bits: int, group_size: int | None = 128, n_grid: int = 20,
               symmetric: bool = False, max_rows: int | None = 4096) -> dict:
    """Grid search of ``alpha`` over ``i / n_grid`` (i = 0 .. n_grid-1): the loss of each, the best one.

    Returns ``{"alphas", "losses" (mean squared output error), "alpha", "scales"}``.
    """
    w = check_weight(weight)
    n_grid = check_int("n_grid", n_grid, min_value=1)
    x = calibration_rows(inputs, w.shape[1], max_rows)
    act = activation_scale(x)
    ref = x @ w.T
    alphas, losses = [i / n_grid for i in range(n_grid)], []
    for alpha in alphas:
        s = awq_channel_scales(act, alpha)
        w_eff = quantize_groupwise(scale_weight_columns(w, s), bits, group_size, symmetric).dequantize() / s
        losses.append(float((x @ w_eff.T - ref).pow(2).mean()))
    best = min(range(n_grid), key=losses.__getitem__)
    return {"alphas": alphas, "losses": losses, "alpha": alphas[best],
            "scales": awq_channel_scales(act, alphas[best])}


def awq_scales(weight: torch.Tensor, inputs, bits: int, group_size: int | None = 128, n_grid: int = 20,
               symmetric: bool = False) -> tuple[torch.Tensor, float]:
    """``(scales, alpha)`` of the best grid point (see :func:`awq_search`)."""
    found = awq_search(weight, inputs, bits, group_size, n_grid, symmetric)
    return found["scales"], found["alpha"]


def awq_quantize(weight: torch.Tensor, inputs, bits: int, group_size: int | None = 128, n_grid: int = 20,
                 symmetric: bool = False) -> tuple[torch.Tensor, GroupQuant, torch.Tensor, float]:
    """AWQ of one Linear weight. Returns ``(w_hat, gq, scales, alpha)``.

    ``gq`` quantizes ``W diag(s)`` (what is stored); ``w_hat = dequantize(gq) diag(s)^-1`` is the weight that
    acts on the ORIGINAL input ``x`` (equivalent to folding ``1/s`` into the previous op, see
    :func:`coursekit.llm.scaling.fold_input_scales`).
    """
    scales, alpha = awq_scales(weight, inputs, bits, group_size, n_grid, symmetric)
    gq = quantize_groupwise(scale_weight_columns(check_weight(weight), scales), bits, group_size, symmetric)
    return gq.dequantize() / scales, gq, scales, alpha


__all__ = ["activation_scale", "awq_channel_scales", "awq_quantize", "awq_scales", "awq_search",
           "calibration_rows"]
