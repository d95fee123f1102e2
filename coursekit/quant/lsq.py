"""Gradients through rounding: the straight-through estimator (STE) and learned step size quantization (LSQ).

Rounding is a staircase: its derivative is 0 almost everywhere, so back-propagating through fake quantization
``x_hat = S (clamp(round(x/S) + Z, qmin, qmax) - Z)`` would give the weights no gradient at all. Quantization-aware
training replaces the derivative in the backward pass:

* **STE** (Bengio et al. 2013; Jacob et al. 2018 sec. 3; Krishnamoorthi 2018 sec. 3.2, eq. 15): treat rounding
  as the identity inside the representable range and the clamp as a zero gradient outside it,

      d x_hat / d x = 1 if qmin <= round(x/S) + Z <= qmax else 0.

  The mask is computed on the *rounded* code, as ``torch.fake_quantize_per_tensor_affine`` does.
* **LSQ** (Esser et al. 2020, "Learned Step Size Quantization", eq. 3-5): the step size ``s`` (zero point 0)
  becomes a parameter. With ``v = x/s`` and ``q = clamp(round(v), qmin, qmax)``, ``x_hat = q s`` and

      d x_hat / d s = round(v) - v     if qmin <= round(v) <= qmax       (eq. 3, inside)
                      qmin             if round(v) < qmin                (clipped below)
                      qmax             if round(v) > qmax                (clipped above),

  multiplied by the gradient scale ``g = 1 / sqrt(N Qp)`` (eq. 4-5, ``N`` elements share the step, ``Qp = qmax``)
  so that step sizes move at the pace of the weights. The step starts at ``2 mean(|x|) / sqrt(Qp)`` (sec. 2.1).
  Bit-exact with ``torch._fake_quantize_learnable_per_tensor_affine`` / ``..._per_channel_affine`` with zero
  point 0 and the same ``grad_factor`` (tested).

The forward pass of both is chapter 02's :func:`coursekit.quant.primitives.fake_quantize` math
(``fake_quantize_parts``, torch rounding); only the backward pass is new here.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from coursekit._validate import check_choice, check_int
from coursekit.quant.observers import make_observer
from coursekit.quant.primitives import (
    FLOAT32_EPS,
    FakeQuantSTE,  # noqa: F401  (re-exported: coursekit.quant.lsq.FakeQuantSTE, its former home)
    check_bits,
    fake_quantize,
    fake_quantize_parts,
    quant_range,
)


# ----------------------------------------------------------------------------------------------- STE
def fake_quantize_ste(x, scale, zero_point, qmin: int, qmax: int, axis=None) -> torch.Tensor:
    """``S (clamp(round(x/S) + Z, qmin, qmax) - Z)`` with the STE gradient: 1 inside the range, 0 where clamped.

    :func:`coursekit.quant.fake_quantize` with torch rounding, under the name chapter 03 teaches it by: values
    and gradient (through :class:`~coursekit.quant.primitives.FakeQuantSTE`, the one STE function) equal
    ``torch.fake_quantize_per_tensor_affine`` (``axis=None``) or ``torch.fake_quantize_per_channel_affine``.
    """
    return fake_quantize(x, scale, zero_point, qmin, qmax, axis=axis, rounding="torch")


# ----------------------------------------------------------------------------------------------- LSQ
def _channel_view(x: torch.Tensor, axis) -> list[int]:
    view = [1] * x.dim()
    if axis is not None:
        view[axis] = -1
    return view


class LSQFunction(torch.autograd.Function):
    """LSQ fake quantization with zero point 0: ``x_hat = s clamp(round(x/s), qmin, qmax)``.

    ``LSQFunction.apply(x, step, qmin, qmax, grad_factor, axis)``: ``step`` has one entry (per tensor) or one per
    channel along ``axis``. Backward (Esser et al. 2020, eq. 3), computed in the same float32 order as torch's
    learnable fake-quant kernels so the two agree bit for bit:

    * ``dL/dx = dL/dx_hat`` where ``qmin <= round(x/s) <= qmax``, else 0 (the STE);
    * ``dL/ds = sum(dL/dx_hat * g_s) * grad_factor`` with ``g_s = (x_hat - x)/s = round(x/s) - x/s`` inside,
      ``qmin`` below and ``qmax`` above the range.
    """

    @staticmethod
    def forward(ctx, x, step, qmin, qmax, grad_factor, axis=None):
        s = step.reshape(_channel_view(x, axis))
        out, code, inside = fake_quantize_parts(x, s, torch.zeros((), dtype=x.dtype), qmin, qmax, "torch")
        ctx.save_for_backward(x, s, code, inside)
        ctx.qmin, ctx.qmax, ctx.grad_factor, ctx.axis = qmin, qmax, float(grad_factor), axis
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, s, code, inside = ctx.saved_tensors
        inv_s = 1.0 / s
        # x_hat - x = q s - x, rounded once (torch's CPU kernels use a fused multiply-add; float64 is exact here)
        error = (torch.clamp(code, ctx.qmin, ctx.qmax).double() * s.double() - x.double()).float()
        g_inside = grad_out * error * inv_s * ctx.grad_factor  # (x_hat - x)/s = round(x/s) - x/s
        g_clipped = torch.where(code < ctx.qmin, grad_out * float(ctx.qmin), grad_out * float(ctx.qmax))
        g_step = torch.where(inside, g_inside, g_clipped * ctx.grad_factor)
        if ctx.axis is None:
            g_step = g_step.sum().reshape(1)
        else:
            dims = [d for d in range(x.dim()) if d != ctx.axis]
            g_step = g_step.sum(dim=dims) if dims else g_step
        return grad_out * inside, g_step, None, None, None, None


def lsq_fake_quantize(x, step, qmin: int, qmax: int, grad_factor: float = 1.0, axis=None) -> torch.Tensor:
    """LSQ fake quantization (zero point 0) with gradients for ``x`` and ``step``; see :class:`LSQFunction`.

    Equal in value and in both gradients to ``torch._fake_quantize_learnable_per_tensor_affine(x, step, 0, qmin,
    qmax, grad_factor)`` (``axis=None``) or ``torch._fake_quantize_learnable_per_channel_affine`` (``axis=``).
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    if not isinstance(step, torch.Tensor):
        raise TypeError(f"step must be a torch.Tensor (an nn.Parameter to learn it), got {type(step).__name__}")
    if axis is not None:
        axis = check_int("axis", axis)
        if not -x.dim() <= axis < x.dim():
            raise ValueError(f"axis={axis} is out of range for a tensor with {x.dim()} dimensions")
        axis %= x.dim()
        if step.numel() != x.shape[axis]:
            raise ValueError(f"per-channel step must have {x.shape[axis]} entries (size of axis {axis}), "
                             f"got {step.numel()}")
    elif step.numel() != 1:
        raise ValueError(f"per-tensor LSQ needs one step, got {step.numel()} (pass axis= for per-channel)")
    if (step.detach() <= 0).any():
        raise ValueError(f"step must be > 0, got {step.detach().flatten()[:8].tolist()}")
    return LSQFunction.apply(x.to(torch.float32), step.to(torch.float32), qmin, qmax, grad_factor, axis).to(x.dtype)


def lsq_grad_scale(num_elements: int, qmax: int) -> float:
    """Esser et al. 2020, sec. 2.2: ``g = 1 / sqrt(N Qp)`` for ``N`` elements sharing one step and ``Qp = qmax``."""
    return 1.0 / math.sqrt(num_elements * qmax)


def lsq_init_step(x: torch.Tensor, qmax: int, axis=None) -> torch.Tensor:
    """Esser et al. 2020, sec. 2.1: ``s0 = 2 mean(|x|) / sqrt(Qp)`` (per channel: the mean over the other dims)."""
    a = x.detach().abs().to(torch.float32)
    mean = a.mean().reshape(1) if axis is None else a.movedim(axis, 0).flatten(1).mean(dim=1)
    return torch.clamp(2 * mean / math.sqrt(qmax), min=FLOAT32_EPS)


class _QATQuantizer(nn.Module):
    """What the QAT modules need from a quantizer: bits, range, granularity, and frozen ``qparams()``."""

    kind = "base"

    def _set_range(self, signed: bool) -> None:
        self.signed = bool(signed)
        self.qmin, self.qmax = quant_range(self.bits, self.signed)

    def _check_channels(self, x: torch.Tensor) -> None:
        if self.axis is not None and (x.dim() < 2 or not -x.dim() <= self.axis < x.dim()):
            raise ValueError(f"per-channel quantization (axis={self.axis}) needs a tensor with a channel axis, got "
                             f"shape {tuple(x.shape)}: use per_channel=False for this layer")

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class LSQQuantizer(_QATQuantizer):
    """A fake quantizer with a learnable step size (LSQ, Esser et al. 2020); zero point 0.

    ``bits`` in 2..16; ``signed`` picks ``[-2^(b-1), 2^(b-1)-1]`` or ``[0, 2^b-1]`` (``None``: decided from the
    sign of the first data seen, for activations); ``per_channel`` gives one step per slice along ``axis``
    (weights: axis 0, the output channels). The step is initialised on the first forward pass (or by
    :meth:`initialize` / :meth:`set_step`) to ``2 mean(|x|)/sqrt(Qp)``; its gradient is scaled by
    ``g = 1/sqrt(N Qp)`` with ``N`` the elements sharing a step (``activation=True``: the features of one
    example, Esser's ``N_F``).
    """

    kind = "lsq"

    def __init__(self, bits: int = 8, signed: bool | None = True, per_channel: bool = False, axis: int = 0,
                 activation: bool = False):
        super().__init__()
        self.bits = check_bits(bits)
        self.axis = check_int("axis", axis) if per_channel else None
        self.per_channel = bool(per_channel)
        self.activation = bool(activation)
        self._auto_sign = signed is None
        self._set_range(True if signed is None else signed)
        self.step = nn.Parameter(torch.ones(1))
        self.register_buffer("initialized", torch.tensor(False))
        self.enabled = True
        self.calibrating = False
        self.calib_observer = None

    def _axis_for(self, x):
        return None if self.axis is None else self.axis % x.dim()

    def set_step(self, step, signed: bool | None = None) -> LSQQuantizer:
        """Start from a given step (e.g. the scale PTQ calibrated); ``signed`` settles an automatic sign."""
        if signed is not None and self._auto_sign:
            self._set_range(signed)
        step = torch.as_tensor(step, dtype=torch.float32).detach().reshape(-1).clamp(min=FLOAT32_EPS)
        with torch.no_grad():
            self.step.data = step.clone()
        self.initialized.fill_(True)
        return self

    def initialize(self, x: torch.Tensor) -> LSQQuantizer:
        """Esser's initialisation from data ``x`` (and the sign, when it was left automatic)."""
        self._check_channels(x)
        if self._auto_sign:
            self._set_range(bool((x.detach() < 0).any()))
        return self.set_step(lsq_init_step(x, self.qmax, self._axis_for(x)))

    def grad_factor(self, x: torch.Tensor) -> float:
        n = x[0].numel() if self.activation and x.dim() > 1 else x.numel()
        if self.axis is not None:
            n //= x.shape[self.axis % x.dim()]
        return lsq_grad_scale(max(n, 1), self.qmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.calibrating:  # prepare_qat's calibration pass: record the range, pass values through
            self.calib_observer.update(x)
            return x
        self._check_channels(x)
        if not bool(self.initialized):
            self.initialize(x)
        with torch.no_grad():
            self.step.clamp_(min=FLOAT32_EPS)  # a step must stay positive (torch's LearnableFakeQuantize does this)
        return lsq_fake_quantize(x, self.step, self.qmin, self.qmax, self.grad_factor(x), self._axis_for(x))

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current ``(scale, zero_point)``: the step and zeros (int64)."""
        scale = self.step.detach().clamp(min=FLOAT32_EPS).reshape(-1)  # the forward pass clamps the same way
        return scale, torch.zeros_like(scale, dtype=torch.int64)

    def extra_repr(self) -> str:
        gran = "per_tensor" if self.axis is None else f"per_channel(axis={self.axis})"
        return f"bits={self.bits}, range=[{self.qmin}, {self.qmax}], {gran}, learned step"


class STEQuantizer(_QATQuantizer):
    """A fake quantizer with observer-set parameters and the STE gradient (Jacob et al. 2018, sec. 3).

    ``track="current"`` (weights): the range is the min/max of the tensor at every forward pass, so the
    scale follows the weights as they train. ``track="ema"`` (activations): an exponential moving average of
    per-batch min/max (``MovingAverageMinMaxObserver``) updated in training mode and frozen in eval mode or after
    :meth:`freeze`. ``symmetric``/``signed``/``axis`` as for chapter 02's ``FakeQuantizer``.
    """

    kind = "ste"

    def __init__(self, bits: int = 8, symmetric: bool = False, signed: bool = False, axis: int | None = None,
                 track: str = "ema", averaging_constant: float = 0.01):
        super().__init__()
        self.bits = check_bits(bits)
        self.symmetric = bool(symmetric)
        self.axis = None if axis is None else check_int("axis", axis)
        self.per_channel = axis is not None
        self.track = check_choice("track", track, ("current", "ema"))
        self._set_range(signed)
        kind = "minmax" if track == "current" else "moving_average"
        kwargs = {} if track == "current" else {"averaging_constant": averaging_constant}
        self.observer = make_observer(kind, bits=bits, symmetric=symmetric, signed=signed, axis=self.axis, **kwargs)
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("zero_point", torch.zeros(1, dtype=torch.int64))
        self.register_buffer("initialized", torch.tensor(False))
        self.observing = True
        self.enabled = True
        self.calibrating = False
        self.calib_observer = None

    def freeze(self) -> STEQuantizer:
        """Stop updating the range (late in QAT, Krishnamoorthi 2018 sec. 3.2: 'freeze the quantizer ranges')."""
        self.observing = False
        return self

    def update_qparams(self, x: torch.Tensor) -> None:
        if self.track == "current":
            self.observer.reset()
        self.observer.update(x.detach())
        scale, zero_point = self.observer.qparams()
        self.scale, self.zero_point = scale.to(torch.float32), zero_point.to(torch.int64)
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.calibrating:
            self.calib_observer.update(x)
            return x
        self._check_channels(x)
        if self.observing and (self.training or self.track == "current" or not bool(self.initialized)):
            self.update_qparams(x)
        axis = None if self.axis is None else self.axis % x.dim()
        return fake_quantize_ste(x, self.scale, self.zero_point, self.qmin, self.qmax, axis=axis)

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scale.detach().clone().reshape(-1), self.zero_point.detach().clone().reshape(-1)

    def extra_repr(self) -> str:
        gran = "per_tensor" if self.axis is None else f"per_channel(axis={self.axis})"
        return (f"bits={self.bits}, range=[{self.qmin}, {self.qmax}], symmetric={self.symmetric}, {gran}, "
                f"track={self.track!r}")

