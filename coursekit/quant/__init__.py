"""coursekit.quant: uniform quantization primitives, observers, BN folding, fake-quant modules, PTQ, integer path.

Primitives (``primitives``) hold the one copy of the quantization math (Jacob et al. 2018; Krishnamoorthi 2018;
Nagel et al. 2021); everything else builds on them.
"""
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
    calc_qparams,
    check_bits,
    dequantize,
    fake_quantize,
    fake_quantize_parts,
    quant_range,
    quantization_error,
    quantize,
)

__all__ = [
    "OBSERVERS",
    "EntropyObserver",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "PercentileObserver",
    "calc_qparams",
    "check_bits",
    "dequantize",
    "fake_quantize",
    "fake_quantize_parts",
    "make_observer",
    "quant_range",
    "quantization_error",
    "quantize",
]
