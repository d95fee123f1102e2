"""A fully integer network: int8 codes flow from layer to layer (Jacob et al. 2018, sec. 2.2-2.4 and 3).

:mod:`coursekit.quant.integer` turns *one* calibrated layer into integer arithmetic. A whole network is
integer-only when the codes a layer writes are the codes the next layer reads: the output grid of layer k
(scale ``S_k``, zero point ``Z_k``) *is* the input grid of layer k+1, so nothing is dequantized in between.
Only the network input is quantized from float, and only the final output is dequantized. Between two
Conv/Linear layers only grid-preserving operations may sit:

* ReLU: ``max(q, Z)``, since code ``Z`` is real 0 (fused into the layer before it: its output range is
  calibrated *after* the ReLU, so it starts at 0, ``Z = qmin`` and the requantization clamp is the ReLU);
* max pooling: ``S (q - Z)`` is increasing in ``q``, so the max of the codes is the code of the max;
* flattening.

``IntegerNet.from_float`` folds BatchNorm, calibrates one affine int8 range per activation tensor with min/max on
the FP32 model (as ONNX Runtime's ``quantize_static`` calibrates the float model), quantizes the weights
symmetric per output channel, and builds the layers with :func:`coursekit.quant.integer.to_integer`. With the
default ``convention="onnx"`` every step follows ONNX Runtime: ``S = (max - min) / 255`` computed in float64 and
stored as float32, ``Z = round(qmin - min / S)``, weights ``S_w = max|w| / 127`` on ``[-127, 127]``, and
quantization divides (``round(x / S)``). ``convention="torch"`` uses PyTorch's observers and rounding instead.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from coursekit._validate import check_choice
from coursekit.quant.fold import fold_batchnorms
from coursekit.quant.integer import to_integer
from coursekit.quant.modules import QuantConv, QuantLinear, activation_quantizer, weight_quantizer_for
from coursekit.quant.primitives import CONVENTIONS, dequantize, quantize

_SKIPPED = (nn.Identity, nn.Dropout)
_COMPUTE = {nn.Conv2d: QuantConv, nn.Linear: QuantLinear}


def _leaves(module: nn.Module) -> list[nn.Module]:
    children = list(module.children())
    if not children:
        return [module]
    return [leaf for child in children for leaf in _leaves(child)]


def _plan(model: nn.Module) -> list[list]:
    """The model's leaves in definition order as steps ``[kind, module, relu]``; unsupported layers raise."""
    steps = []
    for leaf in _leaves(model):
        if isinstance(leaf, _SKIPPED):
            continue
        if type(leaf) in _COMPUTE:
            steps.append(["layer", leaf, False])
        elif isinstance(leaf, nn.ReLU):
            if steps and steps[-1][0] == "layer" and not steps[-1][2]:
                steps[-1][2] = True
            else:
                steps.append(["relu", leaf, False])
        elif isinstance(leaf, nn.MaxPool2d):
            steps.append(["maxpool", leaf, False])
        elif isinstance(leaf, nn.Flatten):
            steps.append(["flatten", leaf, False])
        else:
            raise ValueError(f"IntegerNet supports Conv2d, Linear, ReLU, MaxPool2d, Flatten, Identity and Dropout "
                             f"layers, got {type(leaf).__name__}")
    if not any(kind == "layer" for kind, _, _ in steps):
        raise ValueError("the model has no Conv2d or Linear layer to quantize")
    if steps[0][0] != "layer":
        raise ValueError(f"the first layer must be a Conv2d or Linear, got {type(steps[0][1]).__name__}")
    return steps


def _float_chain(steps, x: torch.Tensor, observe=None) -> torch.Tensor:
    """Run the float steps in order; ``observe(i, y)`` sees the output of layer step ``i`` after its ReLU."""
    for i, (kind, module, relu) in enumerate(steps):
        x = module(x)
        if kind == "layer":
            if relu:
                x = torch.relu(x)
            if observe is not None:
                observe(i, x)
    return x


class IntegerNet(nn.Module):
    """An int8 network: ``forward_int`` maps input codes to output codes with integer arithmetic only.

    Build it with :meth:`from_float`. ``forward(x)`` quantizes a float input, runs :meth:`forward_int` and
    dequantizes the output; ``params()`` lists every integer parameter as plain tensors and numbers.
    """

    def __init__(self, steps: list, input_scale: float, input_zero_point: int, convention: str):
        super().__init__()
        self.convention = check_choice("convention", convention, CONVENTIONS)
        self.input_scale, self.input_zp = float(input_scale), int(input_zero_point)
        self.qmin, self.qmax = -128, 127
        self.kinds = [kind for kind, _, _ in steps]
        self.relu = [relu for _, _, relu in steps]
        self.steps = nn.ModuleList(module for _, module, _ in steps)
        self.last = [m for k, m in zip(self.kinds, self.steps) if k == "layer"][-1]

    @classmethod
    def from_float(cls, model: nn.Module, calibration, convention: str = "onnx") -> IntegerNet:
        """Fold, calibrate (min/max of every activation on the FP32 model) and convert ``model`` to int8.

        ``model`` must compute its children in definition order (a chain, like ``nn.Sequential`` or LeNet): this
        is checked on the first calibration batch. ``calibration``: input tensors or ``(input, target)`` batches.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_choice("convention", convention, CONVENTIONS)
        batches = [b[0] if isinstance(b, (tuple, list)) else b for b in calibration]
        if not batches or not all(isinstance(b, torch.Tensor) and b.numel() for b in batches):
            raise ValueError("calibration must hold at least one non-empty input tensor (or (input, target) batch)")
        folded = fold_batchnorms(model).eval()
        steps = _plan(folded)

        def quantizer():
            return activation_quantizer(bits=8, symmetric=False, signed=True, observer="minmax", rounding=convention)

        input_q = quantizer()
        out_q = {i: quantizer() for i, (kind, _, _) in enumerate(steps) if kind == "layer"}
        with torch.no_grad():
            reference, chained = model.eval()(batches[0]), _float_chain(steps, batches[0])
            if reference.shape != chained.shape or not torch.allclose(reference, chained, rtol=1e-4, atol=1e-4):
                raise ValueError("model is not a chain of its layers in definition order (its forward does "
                                 "something else, e.g. a residual connection): IntegerNet cannot convert it")
            for x in batches:
                input_q.observe(x)
                _float_chain(steps, x, observe=lambda i, y: out_q[i].observe(y))
        input_q.freeze()
        for q in out_q.values():
            q.freeze()

        integer_steps, previous = [], input_q
        for i, (kind, module, relu) in enumerate(steps):
            if kind == "layer":
                wq = weight_quantizer_for(module, 8, "per_channel", symmetric=True, rounding=convention)
                module = to_integer(_COMPUTE[type(module)](module, wq, previous, out_q[i]))
                previous = out_q[i]
            integer_steps.append([kind, module, relu])
        return cls(integer_steps, float(input_q.scale.reshape(-1)[0]), int(input_q.zero_point.reshape(-1)[0]),
                   convention)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Input codes (int64): ``clamp(round(x / S) + Z, -128, 127)`` in the net's rounding convention."""
        return quantize(x, self.input_scale, self.input_zp, self.qmin, self.qmax,
                        rounding=self.convention).to(torch.int64)

    def forward_int(self, q: torch.Tensor) -> torch.Tensor:
        """Input codes -> output codes (int64), integer arithmetic only between the two."""
        for kind, module, relu in zip(self.kinds, self.steps, self.relu):
            if kind == "layer":
                q = module.forward_int(q).to(torch.int64)
                if relu:
                    q = torch.clamp(q, min=module.out_zp)
            elif kind == "relu":
                raise ValueError("a ReLU that does not follow a Conv2d/Linear has no grid of its own here")
            elif kind == "maxpool":  # float32 holds every int8 code exactly: max pooling is a comparison
                q = F.max_pool2d(q.to(torch.float32), module.kernel_size, module.stride, module.padding,
                                 module.dilation, ceil_mode=module.ceil_mode).to(torch.int64)
            else:
                q = module(q)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float in, float out (dequantized output codes of the last layer)."""
        return dequantize(self.forward_int(self.quantize_input(x)), self.last.out_scale, self.last.out_zp)

    def params(self) -> dict:
        """Every integer parameter: ``{"input_scale", "input_zp", "layers": [...]}``, one dict per Conv/Linear
        with ``kind`` ("conv"/"linear"), ``weight_q``, ``w_scale``, ``bias_q``, ``m0``, ``shift``, ``in_scale``,
        ``in_zp``, ``out_scale``, ``out_zp``, ``relu``, ``padding`` (conv) and ``pool`` (the max-pooling kernel
        that follows, or None)."""
        layers = []
        for kind, module, relu in zip(self.kinds, self.steps, self.relu):
            if kind == "maxpool" and layers:
                layers[-1]["pool"] = module.kernel_size
            if kind != "layer":
                continue
            conv = hasattr(module, "kernel_size")
            layer = {"kind": "conv" if conv else "linear", "weight_q": module.weight_q.to(torch.int64),
                     "w_scale": module.w_scale, "bias_q": module.bias_q, "m0": module.m0, "shift": module.shift,
                     "in_scale": module.in_scale, "in_zp": module.in_zp, "out_scale": module.out_scale,
                     "out_zp": module.out_zp, "relu": relu, "pool": None}
            if conv:
                layer["padding"] = module.padding[0]
            layers.append(layer)
        return {"input_scale": self.input_scale, "input_zp": self.input_zp, "layers": layers}


__all__ = ["IntegerNet"]
