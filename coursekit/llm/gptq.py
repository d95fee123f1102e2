"""GPTQ: one-shot weight quantization with second-order error compensation (Frantar et al. 2022).

A Linear layer ``y = x W^T`` is quantized row by row so as to minimise the layer's output error on calibration
inputs ``X`` (``[n, in_features]``):

    argmin_Wq || X W^T - X Wq^T ||^2,        Hessian of that loss per row:  H = 2 X^T X / n       (eq. 1)

GPTQ walks the input columns in a fixed order. It quantizes column ``q`` of every row at once and spreads the
rounding error onto the columns not yet quantized with the Optimal Brain Surgeon update (eq. 2-3, OBQ):

    delta_F = - (w_q - quant(w_q)) / [H_F^-1]_qq * (H_F^-1)_{q, F},   then remove q from H_F^-1.

Removing ``q`` from the inverse is one step of Gaussian elimination, so the rows needed over the whole walk are
the rows of the upper Cholesky factor of ``H^-1`` (sec. 4, "Step 3: Cholesky reformulation"): ``U`` with
``H^-1 = U^T U`` gives ``(w_q - q) / U_qq * U_{q, q:}`` directly. The rest are the paper's "tricks":

* dampening: ``H + damp * mean(diag(H)) I`` (1% by default) keeps the Cholesky numerically safe;
* lazy batch updates ("Step 2"): inside a block of ``block_size`` columns the updates are applied to the block
  only; the columns after the block receive the block's accumulated errors in one matrix product;
* groups: with ``group_size`` the scale/zero point of a group is computed when GPTQ reaches its first column,
  from the weights as already updated by the previous columns;
* act-order ("desc_act"): columns are visited by decreasing ``diag(H)`` (the inputs with the largest energy
  first); groups are then consecutive in that order, so :class:`~coursekit.llm.groupwise.GroupQuant` keeps the
  codes permuted together with ``perm`` and :func:`~coursekit.llm.groupwise.dequantize_groupwise` un-permutes.

Columns whose inputs are always zero (``H_jj = 0``) carry no information: their weight is set to 0 and
``H_jj = 1``, as in the reference implementation. The linear algebra runs in float64 on CPU (the paper's GPU
code uses float32); the rounding itself is :mod:`coursekit.quant.primitives`' (float32), shared with RTN.
"""
from __future__ import annotations

import torch

from coursekit._validate import check_choice, check_int, check_positive
from coursekit.llm.groupwise import (
    SUPPORTED_BITS,
    GroupQuant,
    check_group_size,
    check_weight,
    group_qparams,
    quantize_column,
)

_EPS64 = torch.finfo(torch.float64).eps


# ----------------------------------------------------------------------------------------------- Hessian
class HessianAccumulator:
    """Running ``H = 2 X^T X / n`` over batches of layer inputs (any leading shape; last dim ``in_features``).

    ``add(x)`` for each batch (a forward hook calls it), then ``value()``. Accumulates in float64.
    """

    def __init__(self, in_features: int):
        self.in_features = check_int("in_features", in_features, min_value=1)
        self.xtx = torch.zeros(in_features, in_features, dtype=torch.float64)
        self.n = 0

    def add(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"inputs must be floating-point tensors, got {type(x).__name__}")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"inputs have {x.shape[-1]} features in their last dimension, the layer has "
                             f"in_features={self.in_features}")
        x = x.detach().reshape(-1, self.in_features).to(torch.float64)
        self.xtx += x.T @ x
        self.n += x.shape[0]

    def value(self) -> torch.Tensor:
        if self.n == 0:
            raise ValueError("inputs is empty: GPTQ needs calibration inputs (at least one row) to build H")
        return 2.0 * self.xtx / self.n


def hessian(inputs) -> torch.Tensor:
    """``H = 2 X^T X / n`` (GPTQ eq. 1) from a tensor ``[..., in_features]`` or a list of such batches."""
    batches = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs or [])
    if not batches or all(b.numel() == 0 for b in batches if isinstance(b, torch.Tensor)):
        raise ValueError("inputs is empty: GPTQ needs calibration inputs (at least one row) to build H")
    acc = HessianAccumulator(batches[0].shape[-1])
    for x in batches:
        acc.add(x)
    return acc.value()


# ----------------------------------------------------------------------------------------------- pieces
def damped_inverse_cholesky(H: torch.Tensor, damp: float = 0.01) -> torch.Tensor:
    """Upper Cholesky factor ``U`` of ``(H + damp * mean(diag H) I)^-1`` (``H^-1 = U^T U``), float64.

    Raises ValueError naming ``damp`` when the (damped) Hessian is not positive definite, e.g. fewer
    calibration rows than input features with ``damp=0``.
    """
    damp = check_positive("damp", damp, allow_zero=True)
    H = H.to(torch.float64).clone()
    H.diagonal().add_(damp * H.diagonal().mean())
    L, info = torch.linalg.cholesky_ex(H)
    # a pivot at rounding-noise level is a zero pivot: numerically singular (rank-deficient X^T X)
    if int(info) == 0 and float(L.diagonal().min()) ** 2 <= _EPS64 * H.shape[0] * float(H.diagonal().max()):
        info = torch.tensor(1)
    if int(info) == 0:
        U, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(L), upper=True)
    if int(info) != 0:
        raise ValueError(f"the Hessian is singular (not positive definite) with damp={damp}; use damp > 0 "
                         "(GPTQ uses damp=0.01, 1% of the mean diagonal) or more calibration data")
    return U


def obq_update(w: torch.Tensor, hinv_chol: torch.Tensor, col: int, q_col: torch.Tensor, inplace: bool = False):
    """One GPTQ/OBQ column step: quantize column ``col`` to ``q_col`` and push its error onto later columns.

    ``err = (w[:, col] - q_col) / U[col, col]``;  ``w[:, col:] -= err * U[col, col:]`` (GPTQ Algorithm 1,
    with ``U`` the upper Cholesky factor of the inverse Hessian restricted to ``w``'s columns). Returns the
    updated ``w`` (a copy unless ``inplace``; column ``col`` then equals ``q_col``) and ``err``.
    """
    d = hinv_chol[col, col]
    err = (w[:, col] - q_col) / d
    if not inplace:
        w = w.clone()
    w[:, col:] -= err[:, None] * hinv_chol[col, col:][None, :]
    return w, err


def _current_columns(W, W1, Err1, Hinv, i1, i, cols):
    """The up-to-date values of columns ``cols`` (a range starting inside the block at ``i1 + i``).

    Columns inside the block live in ``W1``; later ones still miss the block's pending lazy update.
    """
    i2 = i1 + W1.shape[1]
    inside = W1[:, i:min(cols.stop, i2) - i1]
    if cols.stop <= i2:
        return inside
    later = W[:, i2:cols.stop] - Err1[:, :i] @ Hinv[i1:i1 + i, i2:cols.stop]
    return torch.cat([inside, later], dim=1)


# ----------------------------------------------------------------------------------------------- GPTQ
def gptq_quantize(weight: torch.Tensor, H: torch.Tensor, bits: int, group_size: int | None = 128,
                  damp: float = 0.01, block_size: int = 128, act_order: bool = False,
                  symmetric: bool = False) -> tuple[torch.Tensor, GroupQuant]:
    """GPTQ (Frantar et al. 2022, Algorithm 1) of a weight ``[out, in]`` given ``H = hessian(X)``.

    Returns ``(w_hat, gq)``: the dequantized weight (float32, original column order) and its
    :class:`GroupQuant` (codes permuted with ``gq.perm`` when ``act_order``).
    """
    W = check_weight(weight).to(torch.float64)
    check_choice("bits", bits, SUPPORTED_BITS)
    out, cols = W.shape
    g = check_group_size(group_size, cols)
    block_size = check_int("block_size", block_size, min_value=1)
    if not isinstance(H, torch.Tensor) or H.shape != (cols, cols):
        raise ValueError(f"H must be a [{cols}, {cols}] tensor (in_features of weight), got "
                         f"{tuple(H.shape) if isinstance(H, torch.Tensor) else type(H).__name__}")
    H = H.to(torch.float64).clone()
    dead = H.diagonal() == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    perm = torch.argsort(H.diagonal(), descending=True, stable=True) if act_order else None
    if perm is not None:
        W, H = W[:, perm], H[perm][:, perm]
    Hinv = damped_inverse_cholesky(H, damp)

    Q = torch.zeros_like(W)
    codes = torch.zeros(out, cols, dtype=torch.uint8)
    scales = torch.zeros(out, cols // g)
    zeros = torch.zeros(out, cols // g, dtype=torch.int64)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Err1 = torch.zeros_like(W1)
        for i in range(i2 - i1):
            j = i1 + i
            if j % g == 0:  # a group starts: its parameters from the weights as updated so far
                grp = _current_columns(W, W1, Err1, Hinv, i1, i, range(j, j + g))
                scales[:, j // g], zeros[:, j // g] = group_qparams(grp.float(), bits, symmetric)
            code, q = quantize_column(W1[:, i].float(), scales[:, j // g], zeros[:, j // g], bits, symmetric)
            codes[:, j], Q[:, j] = code.to(torch.uint8), q.double()
            _, Err1[:, i] = obq_update(W1, Hinv1, i, Q[:, j], inplace=True)
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]  # the lazy batch update of every later column

    gq = GroupQuant(codes, scales, None if symmetric else zeros.to(torch.uint8), bits, g, (out, cols), perm)
    return gq.dequantize(), gq


def layer_error(x: torch.Tensor, weight: torch.Tensor, w_hat: torch.Tensor) -> float:
    """Relative output error ``||X W^T - X W_hat^T||_F / ||X W^T||_F`` of a Linear layer on inputs ``x``."""
    x = x.detach().reshape(-1, weight.shape[1]).to(torch.float64)
    ref = x @ weight.detach().to(torch.float64).T
    return float(torch.linalg.norm(ref - x @ w_hat.detach().to(torch.float64).T) / torch.linalg.norm(ref))


__all__ = ["HessianAccumulator", "damped_inverse_cholesky", "gptq_quantize", "hessian", "layer_error",
           "obq_update"]
