"""Uniform (affine) quantization primitives on plain tensors: ranges, qparams, quantize, dequantize, fake-quant.

The affine mapping of Jacob et al. 2018 (eq. 1) is ``r = S (q - Z)``; quantization is

    q = clamp(round(r / S) + Z, qmin, qmax)                      (Krishnamoorthi 2018, eq. 1-3)

and fake-quantization (quantize then dequantize, a "QDQ" pair) returns ``S (q - Z)`` in floating point
(Nagel et al. 2021, eq. 7). Every function works per tensor, per channel (``axis``) or per group of
``group_size`` consecutive elements along the last dimension.

Two bit-exact conventions are named explicitly because they really do disagree for some scales:

* ``rounding="torch"``: multiply by the float32 reciprocal, ``round(x * (1/S)) + Z`` with round-half-to-even.
  This is exactly what ``torch.fake_quantize_per_tensor_affine`` / ``..._per_channel_affine`` compute.
* ``rounding="onnx"``: divide, ``round(x / S) + Z`` (half to even), as ONNX ``QuantizeLinear`` specifies.

These functions are the single copy of the quantization math in coursekit: observers, quantized modules, the
integer path and quantization-aware training all call them.
"""
from __future__ import annotations

import math
import numbers

import torch

from coursekit._validate import check_choice, check_int

ROUNDINGS = ("torch", "onnx")
CONVENTIONS = ("torch", "onnx")
FLOAT32_EPS = torch.finfo(torch.float32).eps  # the floor torch's observers put under every scale


# ----------------------------------------------------------------------------------------------- ranges
def check_bits(bits, name: str = "bits") -> int:
    """Return ``bits`` if it is an integer in 2..16 (the widths this library quantizes to)."""
    return check_int(name, bits, min_value=2, max_value=16)


def quant_range(bits: int = 8, signed: bool = True, narrow: bool = False) -> tuple[int, int]:
    """Integer range ``(qmin, qmax)`` of a ``bits``-wide integer.

    Signed: ``[-2^(b-1), 2^(b-1) - 1]``; unsigned: ``[0, 2^b - 1]``. ``narrow=True`` drops the most negative
    signed code, giving the symmetric ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` ONNX Runtime uses for symmetric int8
    (``[-127, 127]``) so that ``-q`` is always representable.
    """
    bits = check_bits(bits)
    if signed:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return (qmin + 1, qmax) if narrow else (qmin, qmax)
    return 0, 2**bits - 1


def check_qrange(qmin, qmax) -> tuple[int, int]:
    """Validate an integer range: both integers, ``qmin < qmax``, and at most 16 bits wide."""
    qmin = check_int("qmin", qmin, min_value=-(2**15), max_value=2**16 - 2)
    qmax = check_int("qmax", qmax, min_value=-(2**15) + 1, max_value=2**16 - 1)
    if qmin >= qmax:
        raise ValueError(f"qmin={qmin} must be smaller than qmax={qmax}")
    return qmin, qmax


def int_dtype_for(qmin: int, qmax: int) -> torch.dtype:
    """Smallest torch integer dtype that holds ``[qmin, qmax]`` (int8, uint8, int16 or int32)."""
    for dtype in (torch.int8, torch.uint8, torch.int16):
        info = torch.iinfo(dtype)
        if info.min <= qmin and qmax <= info.max:
            return dtype
    return torch.int32


# ----------------------------------------------------------------------------------------------- qparams
def _as_float_tensor(name: str, value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            value = value.to(torch.float32)
        return value.detach().to(torch.float32)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars are Real too
        raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__}")
    return torch.tensor(float(value), dtype=torch.float32)


def calc_qparams(min_val, max_val, qmin: int, qmax: int, symmetric: bool = False, convention: str = "torch",
                 eps: float = FLOAT32_EPS):
    """Scale and zero point that map ``[min_val, max_val]`` onto ``[qmin, qmax]``.

    ``min_val``/``max_val`` are numbers (per-tensor) or 1-D tensors (one entry per channel or group). The range
    is first widened to contain 0 so that real zero is exactly representable (Jacob et al. 2018, sec. 2.1).

    ``convention="torch"`` reproduces ``torch.ao.quantization`` observers' ``calculate_qparams`` bit-exactly:

    * affine: ``S = (max - min) / (qmax - qmin)``, ``Z = clamp(qmin - round(min / S), qmin, qmax)``;
    * symmetric: ``S = amax / ((qmax - qmin) / 2)`` (amax/127.5 for int8), ``Z = 0`` for a signed range and
      the midpoint for an unsigned one (128 for ``[0, 255]``, 2^15 for ``[0, 65535]``; the rounded-down
      midpoint ``(qmin + qmax) // 2`` for any other unsigned range, as torch does for a customised range);
    * ``S`` is floored at ``eps`` (float32 machine epsilon), all in float32 arithmetic.

    ``convention="onnx"`` reproduces ``onnxruntime.quantization.quant_utils.compute_scale_zp``: the range
    difference in float64, then cast to float32, no eps floor (a scale below float32 ``tiny`` becomes 1 with
    ``Z = 0``); symmetric quantization on a signed range uses the narrow range (``[-127, 127]`` for int8, so
    ``S = amax / 127``) like ORT's ``get_qmin_qmax_for_qType(symmetric=True)``, and ``Z = round((qmin+qmax)/2)``.

    Returns ``(scale, zero_point)``: float32 and int64 tensors shaped like ``min_val`` (0-d for numbers).
    """
    qmin, qmax = check_qrange(qmin, qmax)
    check_choice("convention", convention, CONVENTIONS)
    min_t, max_t = _as_float_tensor("min_val", min_val), _as_float_tensor("max_val", max_val)
    if min_t.shape != max_t.shape:
        raise ValueError(f"min_val and max_val must have the same shape, got {tuple(min_t.shape)} "
                         f"and {tuple(max_t.shape)}")
    if not (torch.isfinite(min_t).all() and torch.isfinite(max_t).all()):
        raise ValueError("min_val and max_val must be finite (check the calibration data for NaN/inf)")
    if (min_t > max_t).any():
        raise ValueError(f"min_val must be <= max_val, got min_val={min_t.tolist()} max_val={max_t.tolist()}")
    if convention == "torch":
        return _qparams_torch(min_t, max_t, qmin, qmax, symmetric, eps)
    return _qparams_onnx(min_t, max_t, qmin, qmax, symmetric)


def _qparams_torch(min_val, max_val, qmin, qmax, symmetric, eps):
    min_neg = torch.min(min_val, torch.zeros_like(min_val))
    max_pos = torch.max(max_val, torch.zeros_like(max_val))
    eps_t = torch.tensor(eps, dtype=torch.float32)
    if symmetric:
        amax = torch.max(-min_neg, max_pos)
        scale = torch.max(amax / (float(qmax - qmin) / 2), eps_t)
        if qmin < 0:
            zp_value = 0
        elif (qmin, qmax) in ((0, 255), (0, 65535)):
            zp_value = (qmax + 1) // 2
        else:
            zp_value = (qmin + qmax) // 2
        zero_point = torch.full_like(min_val, zp_value, dtype=torch.int64)
    else:
        scale = torch.max((max_pos - min_neg) / float(qmax - qmin), eps_t)
        zero_point = qmin - torch.round(min_neg / scale).to(torch.int64)
        zero_point = torch.clamp(zero_point, qmin, qmax)
    return scale, zero_point


def _qparams_onnx(min_val, max_val, qmin, qmax, symmetric):
    rmin = torch.min(min_val, torch.zeros_like(min_val)).double()
    rmax = torch.max(max_val, torch.zeros_like(max_val)).double()
    if symmetric:
        if qmin < 0 and qmin == -qmax - 1:
            qmin = -qmax  # ORT's symmetric (narrow) signed range
        amax = torch.max(rmin.abs(), rmax.abs())
        rmin, rmax = -amax, amax
    scale64 = (rmax - rmin) / float(qmax - qmin)
    if symmetric:
        zero_point = torch.full_like(scale64, round((qmin + qmax) / 2.0), dtype=torch.int64)
    else:
        zero_point = torch.round(qmin - rmin / torch.where(scale64 > 0, scale64, 1.0)).to(torch.int64)
    tiny = scale64 < torch.finfo(torch.float32).tiny
    scale = torch.where(tiny, torch.ones_like(scale64), scale64).to(torch.float32)
    zero_point = torch.where(tiny, torch.zeros_like(zero_point), zero_point)
    return scale, zero_point


# ----------------------------------------------------------------------------------------------- shapes
def _zero_point_tensor(zero_point) -> torch.Tensor:
    """``zero_point`` as a tensor after checking it holds integers: a fractional zero point (2.5) is an error,
    never truncated, since real 0.0 must map to an integer code exactly (Jacob et al. 2018, sec. 2.1)."""
    if isinstance(zero_point, torch.Tensor):
        zp = zero_point.detach()
        if zp.is_complex() or zp.dtype == torch.bool:
            raise TypeError(f"zero_point must be an integer or an integer tensor, got dtype {zp.dtype}")
        if zp.is_floating_point() and not (torch.isfinite(zp).all() and torch.equal(zp, zp.round())):
            raise ValueError(f"zero_point must hold integer values, got {zp.flatten()[:8].tolist()}")
        return zp
    if isinstance(zero_point, bool) or not isinstance(zero_point, numbers.Real):
        raise TypeError(f"zero_point must be an integer or an integer tensor, got {type(zero_point).__name__} "
                        f"{zero_point!r}")
    if not math.isfinite(zero_point) or float(zero_point) % 1:
        raise ValueError(f"zero_point={zero_point!r} must be an integer (a zero point is an integer code)")
    return torch.tensor(int(zero_point))


def _check_scale_zp(scale, zero_point, qmin, qmax):
    scale = _as_float_tensor("scale", scale)
    if not torch.isfinite(scale).all() or (scale <= 0).any():
        raise ValueError(f"scale must be finite and > 0, got {scale.flatten()[:8].tolist()}")
    zp = _zero_point_tensor(zero_point)
    if (zp < qmin).any() or (zp > qmax).any():
        raise ValueError(f"zero_point must lie in [qmin, qmax] = [{qmin}, {qmax}], "
                         f"got {zp.flatten()[:8].tolist()}")
    return scale, zp


def _broadcast_params(x: torch.Tensor, scale, zp, axis, group_size):
    """Reshape ``x`` and the parameters so that plain broadcasting applies; return an undo function."""
    if axis is not None and group_size is not None:
        raise ValueError("give either axis (per-channel) or group_size (per-group), not both")
    if group_size is not None:
        group_size = check_int("group_size", group_size, min_value=1)
        if x.dim() == 0:
            raise ValueError("per-group quantization needs a tensor with at least one dimension")
        last = x.shape[-1]
        if last % group_size:
            raise ValueError(f"group_size={group_size} does not divide the last dimension ({last}) of a "
                             f"tensor of shape {tuple(x.shape)}")
        groups_shape = (*x.shape[:-1], last // group_size)
        if scale.numel() != math.prod(groups_shape) or (zp.numel() not in (1, scale.numel())):
            raise ValueError(f"per-group scale must have shape {groups_shape} (one per group of "
                             f"{group_size}), got {tuple(scale.shape)}")
        xg = x.reshape(*groups_shape, group_size)
        zp = zp.reshape(groups_shape + (1,)) if zp.numel() > 1 else zp.reshape(())
        return xg, scale.reshape(groups_shape + (1,)), zp, lambda y: y.reshape(x.shape)
    if axis is not None:
        axis = check_int("axis", axis)
        if not -x.dim() <= axis < x.dim():
            raise ValueError(f"axis={axis} is out of range for a tensor with {x.dim()} dimensions")
        axis %= x.dim()
        channels = x.shape[axis]
        if scale.numel() != channels or zp.numel() not in (1, channels):
            raise ValueError(f"per-channel scale/zero_point must have {channels} entries (size of axis "
                             f"{axis}), got {scale.numel()} and {zp.numel()}")
        view = [1] * x.dim()
        view[axis] = channels
        zp = zp.reshape(view) if zp.numel() > 1 else zp.reshape(())
        return x, scale.reshape(view), zp, lambda y: y
    if scale.numel() != 1 or zp.numel() != 1:
        raise ValueError(f"per-tensor quantization needs one scale and zero_point, got {scale.numel()} "
                         "(pass axis= for per-channel or group_size= for per-group)")
    return x, scale.reshape(()), zp.reshape(()), lambda y: y


def _round_scaled(x, scale, rounding):
    """``round(x / S)`` in the chosen convention (float32, half to even)."""
    if rounding == "torch":
        return torch.round(x * (1.0 / scale))  # float32 reciprocal, then multiply: torch's kernels
    return torch.round(x / scale)


def _prepare(x, scale, zero_point, qmin, qmax, axis, group_size, rounding):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    check_choice("rounding", rounding, ROUNDINGS)
    qmin, qmax = check_qrange(qmin, qmax)
    scale, zp = _check_scale_zp(scale, zero_point, qmin, qmax)
    xb, s, z, undo = _broadcast_params(x.to(torch.float32), scale, zp, axis, group_size)
    return xb, s, z.to(torch.float32), qmin, qmax, undo


# ----------------------------------------------------------------------------------------------- QDQ
def quantize(x, scale, zero_point, qmin: int, qmax: int, axis=None, group_size=None, rounding: str = "torch"):
    """Integer codes ``clamp(round(x / S) + Z, qmin, qmax)`` (Jacob et al. 2018, eq. 1; Nagel et al. 2021, eq. 2).

    Returns the smallest integer dtype holding ``[qmin, qmax]`` (int8, uint8, int16 or int32). ``+-inf``
    saturates to ``qmax``/``qmin``; NaN raises ValueError (no integer code holds it; torch's
    ``quantize_per_tensor`` would store it silently as a code), as the integer formats of
    ``coursekit.formats`` do. A fractional ``zero_point`` raises ValueError.
    """
    xb, s, z, qmin, qmax, undo = _prepare(x, scale, zero_point, qmin, qmax, axis, group_size, rounding)
    if bool(torch.isnan(xb).any()):
        raise ValueError("x contains NaN, which no integer code can represent (clean the input, or use a float "
                         "format such as fp8_e4m3 that has a NaN code)")
    q = torch.clamp(_round_scaled(xb, s, rounding) + z, qmin, qmax)
    return undo(q).to(int_dtype_for(qmin, qmax))


def dequantize(q, scale, zero_point, axis=None, group_size=None) -> torch.Tensor:
    """Real values ``S (q - Z)`` in float32 (Jacob et al. 2018, eq. 1).

    ``zero_point`` must hold integers: 2.5 raises ValueError instead of being truncated to 2.
    """
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a torch.Tensor, got {type(q).__name__}")
    scale = _as_float_tensor("scale", scale)
    if not torch.isfinite(scale).all() or (scale <= 0).any():
        raise ValueError(f"scale must be finite and > 0, got {scale.flatten()[:8].tolist()}")
    zp = _zero_point_tensor(zero_point)
    qb, s, z, undo = _broadcast_params(q.to(torch.float32), scale, zp, axis, group_size)
    return undo((qb - z.to(torch.float32)) * s)


def fake_quantize(x, scale, zero_point, qmin: int, qmax: int, axis=None, group_size=None,
                  rounding: str = "torch") -> torch.Tensor:
    """Quantize then dequantize in float: ``S (clamp(round(x / S) + Z, qmin, qmax) - Z)`` (Nagel et al. 2021, eq. 7).

    With ``rounding="torch"`` the result is bit-identical to ``torch.fake_quantize_per_tensor_affine`` (per
    tensor) and ``torch.fake_quantize_per_channel_affine`` (``axis=``); ``rounding="onnx"`` is the division
    form of ONNX ``QuantizeLinear`` followed by ``DequantizeLinear``. ``group_size=`` quantizes groups of
    consecutive elements along the last dimension, each with its own scale (scale shape ``(..., D // g)``).

    NaN in ``x`` gives NaN out (visible, never a code; torch's kernel returns ``(qmin - Z) S`` instead); the
    check costs a reduction, so it is left to :func:`quantize` and to calibration, which reject NaN.

    Gradient: the straight-through estimator of Bengio et al. 2013 as torch implements it (Krishnamoorthi
    2018, sec. 3.2): ``dL/dx`` passes unchanged where the *rounded* code ``round(x/S) + Z`` lies in
    ``[qmin, qmax]`` and is zero where it was clamped. No gradient flows to ``scale``/``zero_point`` here
    (a learnable step size, LSQ, builds on :func:`fake_quantize_parts`).
    """
    xb, s, z, qmin, qmax, undo = _prepare(x, scale, zero_point, qmin, qmax, axis, group_size, rounding)
    if torch.is_grad_enabled() and xb.requires_grad:
        out = FakeQuantSTE.apply(xb, s, z, qmin, qmax, rounding)
    else:  # plain tensor ops: traceable by torch.export / torch.onnx.export
        out = fake_quantize_parts(xb, s, z, qmin, qmax, rounding)[0]
    return undo(out).to(x.dtype)


def fake_quantize_parts(x, scale, zero_point, qmin, qmax, rounding: str = "torch"):
    """The pieces of fake quantization on already-broadcastable tensors, for custom gradients (STE, LSQ).

    Returns ``(out, code, inside)``: the fake-quantized values ``S (clamp(code) - Z)``, the unclamped rounded
    code ``round(x/S) + Z`` and the boolean mask ``qmin <= code <= qmax`` that torch's fake-quant gradient uses.
    No validation: call it from code that has already checked its arguments.
    """
    code = _round_scaled(x, scale, rounding) + zero_point
    inside = (code >= qmin) & (code <= qmax)
    out = (torch.clamp(code, qmin, qmax) - zero_point) * scale
    return out, code, inside


class FakeQuantSTE(torch.autograd.Function):
    """Fake quantization with torch's straight-through gradient (Bengio et al. 2013; mask on the rounded code).

    The one STE autograd function of coursekit: :func:`fake_quantize`, ``fake_quantize_ste`` and the STE
    quantizers of QAT all go through it. ``FakeQuantSTE.apply(x, scale, zero_point, qmin, qmax, rounding)``
    takes ``scale``/``zero_point`` already broadcastable against ``x`` (a number or a tensor shaped like ``x``'s
    channel view; ``rounding`` defaults to "torch"); no validation here: prefer :func:`fake_quantize`.
    Backward: ``dL/dx = dL/dx_hat`` where ``qmin <= round(x/S) + Z <= qmax``, else 0; nothing flows to ``scale``
    or ``zero_point`` (they come from an observer; LSQ learns them with its own function).
    """

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax, rounding="torch"):
        out, _, inside = fake_quantize_parts(x, scale, zero_point, qmin, qmax, rounding)
        ctx.save_for_backward(inside)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (inside,) = ctx.saved_tensors
        return grad_out * inside, None, None, None, None, None
