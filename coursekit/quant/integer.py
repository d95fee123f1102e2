"""Integer-only inference for Linear and Conv2d (Jacob et al. 2018, sec. 2.2-2.4).

With ``r = S (q - Z)`` for the input (1), weights (2) and output (3), a matrix product becomes

    q3 = Z3 + M * sum_j (q1_j - Z1)(q2_j - Z2) + q_bias,      M = S1 S2 / S3          (eq. 4-5)

The sum is accumulated in int32 (8-bit x 8-bit products), the bias is pre-quantized to int32 with scale
``S1 S2`` and zero point 0 (sec. 2.4), and the real multiplier ``M`` (normally in (0, 1)) is replaced by a
fixed-point number ``M = M0 * 2^-n`` with ``M0`` in [0.5, 1) stored as a Q31 int32 (eq. 6), so
requantization is one integer multiply and one rounding right shift. Weights are symmetric (``Z2 = 0``), per
tensor or per output channel (then ``M`` is per channel, as in TFLite and Krishnamoorthi 2018 sec. 2.3).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from coursekit.quant.modules import QuantConv, QuantLinear
from coursekit.quant.primitives import dequantize, quantize

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def quantize_multiplier(real_multiplier) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-point form of a positive real multiplier: ``M ~= m0 * 2^-31 * 2^-shift`` (Jacob et al. 2018, eq. 6).

    ``m0`` is an int32 in ``[2^30, 2^31)`` (``M0 = m0 / 2^31`` in [0.5, 1)) and ``shift`` the right shift ``n``
    (negative for ``M >= 1``). Accepts a number or a tensor (per-channel multipliers); returns int64 tensors
    of the same shape (values fit in int32). The relative error is below ``2^-31``.
    """
    m = torch.as_tensor(real_multiplier, dtype=torch.float64)
    if not torch.isfinite(m).all() or (m <= 0).any():
        raise ValueError(f"real_multiplier must be finite and > 0, got {m.flatten()[:8].tolist()}")
    m0, shift = [], []
    for value in m.flatten().tolist():
        mantissa, exponent = math.frexp(value)  # value = mantissa * 2^exponent, mantissa in [0.5, 1)
        q = round(mantissa * 2**31)
        if q == 2**31:  # mantissa rounded up to 1.0
            q, exponent = q // 2, exponent + 1
        m0.append(q)
        shift.append(-exponent)
    return torch.tensor(m0, dtype=torch.int64).reshape(m.shape), torch.tensor(shift, dtype=torch.int64).reshape(
        m.shape)


def requantize(acc: torch.Tensor, m0: torch.Tensor, shift: torch.Tensor, zero_point: int, qmin: int,
               qmax: int) -> torch.Tensor:
    """``clamp(Z + round(acc * m0 * 2^-(31 + shift)), qmin, qmax)`` in integer arithmetic only.

    One rounding right shift, ties rounded up (towards +inf): ``(p + 2^(s-1)) >> s``. ``m0``/``shift`` broadcast
    against ``acc`` (per output channel on the last dimension). Products are formed in int64
    (|acc| < 2^31, m0 < 2^31).
    """
    if acc.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"acc must be an int32/int64 accumulator, got {acc.dtype}")
    total = 31 + shift
    if (total < 1).any() or (total > 62).any():
        raise ValueError("multiplier out of the supported range (2^-31 .. 2^30)")
    prod = acc.to(torch.int64) * m0
    rounded = torch.bitwise_right_shift(prod + torch.bitwise_left_shift(torch.ones_like(total), total - 1), total)
    return torch.clamp(rounded + zero_point, qmin, qmax)


def integer_matmul(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b (+ bias)`` on integer tensors, as the int32 accumulator of Jacob et al. 2018 (sec. 2.3-2.4).

    The one integer matrix product of coursekit (``integer_linear``, ``IntegerLinear``, ``IntegerConv2d``):
    products and sums are formed exactly in int64, then checked to fit int32. A sum outside
    ``[-2^31, 2^31 - 1]`` raises OverflowError instead of wrapping around as an int32 matmul would silently
    (8-bit codes cannot overflow below 2^16 terms: |x - Z| <= 255 and |w| <= 128 give products under 2^15).
    Returns an int32 tensor.
    """
    for name, t in (("a", a), ("b", b), ("bias", bias)):
        if t is not None and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
            raise TypeError(f"{name} must be an integer tensor, got dtype {t.dtype}")
    acc = a.to(torch.int64) @ b.to(torch.int64)
    if bias is not None:
        acc = acc + bias.to(torch.int64)
    if acc.numel() and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise OverflowError(f"int32 accumulator overflow: the integer sums reach [{int(acc.min())}, "
                            f"{int(acc.max())}], outside [{INT32_MIN}, {INT32_MAX}]")
    return acc.to(torch.int32)


class _IntegerLayer(nn.Module):
    """Shared state: quantized weight, int32 bias, fixed-point multipliers, input/output parameters."""

    def __init__(self, qlayer):
        super().__init__()
        wq, iq, oq = qlayer.weight_quantizer, qlayer.input_quantizer, qlayer.output_quantizer
        if wq is None or iq is None or oq is None:
            raise ValueError("integer inference needs weight, input and output quantizers (static mode with "
                             "QuantConfig(quantize_outputs=True))")
        if iq.dynamic or iq.calibrating or oq.calibrating or oq.dynamic:
            raise ValueError("integer inference needs frozen (calibrated, static) input/output quantizers")
        if wq.group_size is not None or (wq.zero_point != 0).any():
            raise ValueError("integer inference needs symmetric per-tensor or per-channel weights")
        self.in_scale, self.in_zp = float(iq.scale.reshape(-1)[0]), int(iq.zero_point.reshape(-1)[0])
        self.out_scale, self.out_zp = float(oq.scale.reshape(-1)[0]), int(oq.zero_point.reshape(-1)[0])
        self.in_range, self.out_range = (iq.qmin, iq.qmax), (oq.qmin, oq.qmax)
        self.in_rounding = iq.rounding
        w = qlayer.weight.detach()
        channels = w.shape[0]
        w_scale = wq.scale.reshape(-1).expand(channels) if wq.scale.numel() == 1 else wq.scale.reshape(-1)
        w_axis = 0 if wq.scale.numel() > 1 else None
        self.register_buffer("w_scale", w_scale.clone())
        self.register_buffer("weight_q", quantize(w, wq.scale.reshape(-1) if w_axis == 0 else wq.scale, 0,
                                                  wq.qmin, wq.qmax, axis=w_axis, rounding=wq.rounding))
        bias_scale = self.in_scale * w_scale.double()
        bias = qlayer.bias.detach().double() if qlayer.bias is not None else torch.zeros(channels,
                                                                                          dtype=torch.float64)
        self.register_buffer("bias_q", torch.round(bias / bias_scale).clamp(INT32_MIN, INT32_MAX).to(torch.int32))
        m0, shift = quantize_multiplier(bias_scale / self.out_scale)
        self.register_buffer("m0", m0)
        self.register_buffer("shift", shift)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return quantize(x, self.in_scale, self.in_zp, *self.in_range, rounding=self.in_rounding)

    def _accumulate(self, xq_centered: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_int(self, x_q: torch.Tensor) -> torch.Tensor:
        """Integer input codes -> integer output codes, using only integer arithmetic."""
        acc = self._accumulate(x_q.to(torch.int32) - self.in_zp)
        return requantize(acc, self._per_channel(self.m0, acc), self._per_channel(self.shift, acc), self.out_zp,
                          *self.out_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float in, float out: quantize the input, run :meth:`forward_int`, dequantize the output."""
        return dequantize(self.forward_int(self.quantize_input(x)), self.out_scale, self.out_zp)


class IntegerLinear(_IntegerLayer):
    """Integer-only ``nn.Linear`` built from a calibrated :class:`QuantLinear` (:func:`integer_linear` inside)."""

    def __init__(self, qlayer: QuantLinear):
        if not isinstance(qlayer, QuantLinear):
            raise TypeError(f"IntegerLinear needs a QuantLinear, got {type(qlayer).__name__}")
        super().__init__(qlayer)

    @staticmethod
    def _per_channel(v, acc):
        return v  # output channels are the last dimension of a Linear output

    def _accumulate(self, xq_centered):
        return integer_matmul(xq_centered, self.weight_q.T, self.bias_q)


class IntegerConv2d(_IntegerLayer):
    """Integer-only ``nn.Conv2d`` (im2col + int32 matrix product) built from a calibrated :class:`QuantConv`."""

    def __init__(self, qlayer: QuantConv):
        if not isinstance(qlayer, QuantConv) or not isinstance(qlayer.layer, nn.Conv2d):
            raise TypeError("IntegerConv2d needs a QuantConv wrapping an nn.Conv2d")
        conv = qlayer.layer
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("IntegerConv2d supports groups=1 and numeric zero padding only")
        super().__init__(qlayer)
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation

    @staticmethod
    def _per_channel(v, acc):
        return v.reshape(1, -1, 1, 1)

    def _accumulate(self, xq_centered):
        n, _, h, w = xq_centered.shape
        # zero padding of the *centred* input is padding with the zero point, i.e. real 0.0 (Jacob et al. sec. 2.1)
        cols = F.unfold(xq_centered.to(torch.float32), self.kernel_size, self.dilation, self.padding, self.stride)
        cols = cols.round().to(torch.int32)  # integers below 2^24 are exact in float32: im2col is a copy
        out_h = (h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        out_w = (w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        wmat = self.weight_q.reshape(self.weight_q.shape[0], -1)
        return integer_matmul(wmat, cols, self.bias_q.reshape(1, -1, 1)).reshape(n, -1, out_h, out_w)


def integer_linear(x_q: torch.Tensor, x_zero_point: int, w_q: torch.Tensor, bias_q: torch.Tensor | None,
                   m0, shift, out_zero_point: int, qmin: int = -128, qmax: int = 127) -> torch.Tensor:
    """Functional integer Linear: ``requantize(sum (x_q - Z_x) w_q + bias_q)`` with symmetric weights.

    ``x_q``: integer inputs ``(..., in)``; ``w_q``: integer weights ``(out, in)``; ``bias_q``: int32 ``(out,)``
    with scale ``S_x S_w``; ``m0``/``shift`` from :func:`quantize_multiplier` for ``S_x S_w / S_out``
    (scalars or per output channel). Returns output codes in ``[qmin, qmax]`` (int64 tensor).
    """
    acc = integer_matmul(x_q.to(torch.int64) - x_zero_point, w_q.T, bias_q)
    return requantize(acc, torch.as_tensor(m0), torch.as_tensor(shift), out_zero_point, qmin, qmax)


def to_integer(qlayer) -> _IntegerLayer:
    """The integer-only version of a calibrated ``QuantLinear`` or ``QuantConv`` (Conv2d)."""
    if isinstance(qlayer, QuantLinear):
        return IntegerLinear(qlayer)
    return IntegerConv2d(qlayer)
