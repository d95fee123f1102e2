"""coursekit.quant: uniform quantization primitives, observers, BN folding, fake-quant modules, PTQ, integer path.

Primitives (``primitives``) hold the one copy of the quantization math (Jacob et al. 2018; Krishnamoorthi 2018;
Nagel et al. 2021); everything else builds on them.
"""
from coursekit.quant.fold import fold_batchnorm, fold_batchnorms
from coursekit.quant.integer import (
    IntegerConv2d,
    IntegerLinear,
    integer_linear,
    quantize_multiplier,
    requantize,
    to_integer,
)
from coursekit.quant.modules import FakeQuantizer, QuantConv, QuantLinear
from coursekit.quant.observers import (
    OBSERVERS,
    EntropyObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    Observer,
    PercentileObserver,
    make_observer,
)
from coursekit.quant.primitives import (
    FLOAT32_EPS,
    calc_qparams,
    check_bits,
    dequantize,
    fake_quantize,
    fake_quantize_parts,
    quant_range,
    quantization_error,
    quantize,
)
from coursekit.quant.ptq import LayerSummary, QuantConfig, QuantSummary, quantize_model

__all__ = [
    "FLOAT32_EPS",
    "OBSERVERS",
    "EntropyObserver",
    "FakeQuantizer",
    "IntegerConv2d",
    "IntegerLinear",
    "LayerSummary",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "PercentileObserver",
    "QuantConfig",
    "QuantConv",
    "QuantLinear",
    "QuantSummary",
    "calc_qparams",
    "check_bits",
    "dequantize",
    "fake_quantize",
    "fake_quantize_parts",
    "fold_batchnorm",
    "fold_batchnorms",
    "integer_linear",
    "make_observer",
    "quant_range",
    "quantization_error",
    "quantize",
    "quantize_model",
    "quantize_multiplier",
    "requantize",
    "to_integer",
]
