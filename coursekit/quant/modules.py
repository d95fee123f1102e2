"""Fake-quantized ("QDQ") modules: float layers whose weights and inputs pass through quantize-dequantize.

A :class:`FakeQuantizer` holds an observer while calibrating and frozen ``scale``/``zero_point`` buffers
afterwards; :class:`QuantLinear` and :class:`QuantConv` wrap a float layer with one quantizer for the weight,
one for the input activation and optionally one for the output. This is the simulated quantization of Jacob et
al. 2018 (sec. 3) and Krishnamoorthi 2018 (sec. 3.1): the arithmetic stays in float, but every tensor that
would be an integer on the target takes only the values ``S (q - Z)``. Exported to ONNX, each quantizer
becomes a ``QuantizeLinear``/``DequantizeLinear`` pair (8-bit ranges with torch rounding; other ranges export as
plain Round/Clip arithmetic), which ONNX Runtime fuses into integer kernels.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from coursekit._validate import check_choice, check_int
from coursekit.quant.observers import make_observer
from coursekit.quant.primitives import (
    FLOAT32_EPS,
    ROUNDINGS,
    _qparams_onnx,
    _qparams_torch,
    fake_quantize,
)

# (qmin, qmax) pairs that torch.onnx.export turns into QuantizeLinear/DequantizeLinear
ONNX_QDQ_RANGES = {(-128, 127), (0, 255), (0, 127)}


class FakeQuantizer(nn.Module):
    """Quantize-dequantize one tensor stream with learned-once (static) or per-batch (dynamic) parameters.

    States: ``calibrating`` (the default after construction: forward records statistics in the observer and
    returns its input unchanged), ``frozen`` (after :meth:`freeze`: forward fake-quantizes with the stored
    ``scale``/``zero_point`` buffers). ``dynamic=True`` computes per-tensor min/max parameters from every input
    instead (dynamic quantization, Krishnamoorthi 2018 sec. 2.5). ``enabled=False`` passes values through.

    ``axis`` gives per-channel parameters; ``group_size`` per-group parameters along the last dimension
    (implemented as per-channel statistics on the tensor reshaped to rows of ``group_size``).
    """

    def __init__(self, bits: int = 8, symmetric: bool = False, signed: bool = True, axis: int | None = None,
                 group_size: int | None = None, observer: str = "minmax", rounding: str = "torch",
                 dynamic: bool = False, observer_kwargs: dict | None = None):
        super().__init__()
        self.rounding = check_choice("rounding", rounding, ROUNDINGS)
        if axis is not None and group_size is not None:
            raise ValueError("give either axis (per-channel) or group_size (per-group), not both")
        self.group_size = None if group_size is None else check_int("group_size", group_size, min_value=1)
        self.axis, self.bits, self.symmetric, self.signed = axis, bits, bool(symmetric), bool(signed)
        self.dynamic = bool(dynamic)
        self.observer_name = observer
        obs_axis = 0 if group_size is not None else axis
        if self.dynamic and (obs_axis is not None):
            raise ValueError("dynamic quantization computes one scale per tensor: use axis=None, group_size=None")
        self.observer = make_observer(observer, bits=bits, symmetric=symmetric, signed=signed, axis=obs_axis,
                                      convention=rounding, **(observer_kwargs or {}))
        self.qmin, self.qmax = self.observer.qmin, self.observer.qmax
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("zero_point", torch.zeros(1, dtype=torch.int32))
        self.calibrating = not self.dynamic
        self.enabled = True

    # -- calibration ---------------------------------------------------------------------------------
    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.group_size:
            raise ValueError(f"group_size={self.group_size} does not divide the last dimension "
                             f"({x.shape[-1]}) of a tensor of shape {tuple(x.shape)}")
        return x.reshape(-1, self.group_size)

    def observe(self, x: torch.Tensor) -> None:
        """Record statistics of ``x`` (NaN/inf raise a ValueError)."""
        self.observer.update(self._grouped(x) if self.group_size is not None else x)
        self._shape = x.shape

    def freeze(self) -> FakeQuantizer:
        """Compute ``scale``/``zero_point`` from the observer and switch to fake quantization."""
        scale, zero_point = self.observer.qparams()
        if self.group_size is not None:
            groups = (*self._shape[:-1], self._shape[-1] // self.group_size)
            scale, zero_point = scale.reshape(groups), zero_point.reshape(groups)
        self.scale = scale.to(torch.float32)
        self.zero_point = zero_point.to(torch.int32)
        self.calibrating = False
        self._cache_scalars()
        return self

    def _cache_scalars(self) -> None:
        # per-tensor parameters as Python numbers: torch.export (dynamo ONNX exporter) has no fake kernel for
        # the tensor-qparams overload of fake_quantize_per_tensor_affine, but handles the float/int one
        self._scalar_qparams = ((float(self.scale.reshape(-1)[0]), int(self.zero_point.reshape(-1)[0]))
                                if self.scale.numel() == 1 else None)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._cache_scalars()

    # -- forward ---------------------------------------------------------------------------------------
    def _dynamic_qparams(self, x: torch.Tensor):
        lo, hi = torch.aminmax(x.detach().float())
        if self.rounding == "torch":
            scale, zero_point = _qparams_torch(lo, hi, self.qmin, self.qmax, self.symmetric, FLOAT32_EPS)
        else:
            scale, zero_point = _qparams_onnx(lo, hi, self.qmin, self.qmax, self.symmetric)
        return scale.reshape(1), zero_point.reshape(1).to(torch.int32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.calibrating:
            self.observe(x)
            return x
        scale, zero_point = self._dynamic_qparams(x) if self.dynamic else (self.scale, self.zero_point)
        return self.apply_qdq(x, scale, zero_point)

    def apply_qdq(self, x, scale, zero_point):
        """Fake-quantize ``x``; 8-bit torch-rounding cases use torch's fused op (bit-identical to
        :func:`coursekit.quant.primitives.fake_quantize`, tested) so that ONNX export produces Q/DQ nodes."""
        if self.rounding == "torch" and self.group_size is None and (self.qmin, self.qmax) in ONNX_QDQ_RANGES:
            if self.axis is None:
                if not self.dynamic and getattr(self, "_scalar_qparams", None) is not None:
                    scale, zero_point = self._scalar_qparams
                return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, self.qmin, self.qmax)
            axis = self.axis % x.dim()
            return torch.fake_quantize_per_channel_affine(x, scale, zero_point, axis, self.qmin, self.qmax)
        return fake_quantize(x, scale, zero_point, self.qmin, self.qmax, axis=self.axis,
                             group_size=self.group_size, rounding=self.rounding)

    def granularity(self) -> str:
        if self.group_size is not None:
            return f"per_group({self.group_size})"
        return "per_tensor" if self.axis is None else f"per_channel(axis={self.axis})"

    def extra_repr(self) -> str:
        state = "dynamic" if self.dynamic else ("calibrating" if self.calibrating else "frozen")
        return (f"bits={self.bits}, range=[{self.qmin}, {self.qmax}], symmetric={self.symmetric}, "
                f"{self.granularity()}, observer={self.observer_name!r}, {state}")


class _QuantLayer(nn.Module):
    """A float layer plus weight/input/output quantizers (any of them may be ``None``)."""

    def __init__(self, layer: nn.Module, weight_quantizer: FakeQuantizer | None,
                 input_quantizer: FakeQuantizer | None = None, output_quantizer: FakeQuantizer | None = None):
        super().__init__()
        self.layer = layer
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer
        self.output_quantizer = output_quantizer
        if weight_quantizer is not None and weight_quantizer.calibrating:
            with torch.no_grad():
                weight_quantizer.observe(layer.weight)
            weight_quantizer.freeze()

    @property
    def weight(self) -> torch.Tensor:
        return self.layer.weight

    @property
    def bias(self):
        return self.layer.bias

    def quantized_weight(self) -> torch.Tensor:
        return self.layer.weight if self.weight_quantizer is None else self.weight_quantizer(self.layer.weight)

    def _float_forward(self, x, weight):
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        y = self._float_forward(x, self.quantized_weight())
        if self.output_quantizer is not None:
            y = self.output_quantizer(y)
        return y

    def quantizers(self):
        return {k: q for k, q in (("weight", self.weight_quantizer), ("input", self.input_quantizer),
                                  ("output", self.output_quantizer)) if q is not None}


class QuantLinear(_QuantLayer):
    """``nn.Linear`` with fake-quantized weight (per-tensor, per-output-channel with ``axis=0``, or per-group
    along ``in_features``) and optionally fake-quantized input/output. The bias stays in float (an int32
    bias with scale ``s_in * s_w`` is what the integer kernel uses, see :mod:`coursekit.quant.integer`)."""

    def __init__(self, layer: nn.Linear, weight_quantizer=None, input_quantizer=None, output_quantizer=None):
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"QuantLinear wraps an nn.Linear, got {type(layer).__name__}")
        super().__init__(layer, weight_quantizer, input_quantizer, output_quantizer)

    def _float_forward(self, x, weight):
        return F.linear(x, weight, self.layer.bias)


class QuantConv(_QuantLayer):
    """``nn.Conv1d/2d/3d`` with fake-quantized weight (per output channel: ``axis=0``) and optional
    input/output quantizers."""

    def __init__(self, layer: nn.Module, weight_quantizer=None, input_quantizer=None, output_quantizer=None):
        if not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            raise TypeError(f"QuantConv wraps an nn.Conv1d/2d/3d, got {type(layer).__name__}")
        super().__init__(layer, weight_quantizer, input_quantizer, output_quantizer)

    def _float_forward(self, x, weight):
        return self.layer._conv_forward(x, weight, self.layer.bias)


QUANTIZABLE = {nn.Linear: QuantLinear, nn.Conv1d: QuantConv, nn.Conv2d: QuantConv, nn.Conv3d: QuantConv}


def weight_quantizer_for(layer: nn.Module, bits: int = 8, granularity: str = "per_channel",
                         group_size: int | None = None, symmetric: bool = True, observer: str = "minmax",
                         rounding: str = "torch", observer_kwargs: dict | None = None) -> FakeQuantizer:
    """A signed weight quantizer for ``layer`` (per tensor, per output channel, or per group of the input dim)."""
    check_choice("granularity", granularity, ("per_tensor", "per_channel", "per_group"))
    if granularity == "per_group":
        if group_size is None:
            raise ValueError("granularity='per_group' needs group_size (e.g. 32, 64 or 128)")
        group_size = check_int("group_size", group_size, min_value=1)
        if not isinstance(layer, nn.Linear):
            raise ValueError("per-group quantization is supported for nn.Linear weights only")
        if layer.weight.shape[-1] % group_size:
            raise ValueError(f"group_size={group_size} does not divide in_features={layer.weight.shape[-1]}")
    axis = 0 if granularity == "per_channel" else None
    return FakeQuantizer(bits, symmetric, True, axis=axis,
                         group_size=group_size if granularity == "per_group" else None,
                         observer=observer, rounding=rounding, observer_kwargs=observer_kwargs)


def activation_quantizer(bits: int = 8, symmetric: bool = False, signed: bool = False, observer: str = "minmax",
                         rounding: str = "torch", dynamic: bool = False,
                         observer_kwargs: dict | None = None) -> FakeQuantizer:
    """A per-tensor activation quantizer (static: calibrated once; dynamic: parameters from every batch)."""
    return FakeQuantizer(bits, symmetric, signed, observer="minmax" if dynamic else observer, rounding=rounding,
                         dynamic=dynamic, observer_kwargs=None if dynamic else observer_kwargs)
