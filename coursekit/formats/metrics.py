"""How much a format changes a tensor: mean squared error, signal-to-quantization-noise ratio, worst error.

    MSE      = mean((x - q(x))^2)
    SQNR     = 10 * log10( mean(x^2) / mean((x - q(x))^2) )  dB      (infinite when q(x) == x)
    max err  = max |x - q(x)|

A uniform b-bit quantizer on a full-range signal gains about 6.02 dB per bit (each bit halves the step,
quartering the noise power).

How ``quantize_dequantize`` reaches each kind of format (all per tensor unless said otherwise):

* float formats: a plain cast, no scale (``scale_floats=True`` first maps ``max|x|`` to the format's ``max``,
  per-tensor scaling as in FP8 training recipes);
* signed integers: symmetric absmax scaling, ``scale = max|x| / qmax`` (int8: max|x| / 127, as in LLM.int8()
  and ONNX Runtime's symmetric mode), ``q = clamp(round(x / scale), qmin, qmax) * scale``;
* unsigned integers: the same symmetric grid shifted by the zero point ``2^(bits-1)``
  (uint8: zero point 128, scale max|x| / 127), so they match their signed twins;
* binary: ``sign(x) * mean|x|`` (XNOR-Net's MSE-optimal scale, Rastegari et al. 2016);
* nf4: block-wise absmax NF4 with ``block_size`` (64) values per block (QLoRA).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from coursekit._validate import check_int
from coursekit.formats.nf4 import nf4_cast
from coursekit.formats.registry import get_format, list_formats


@dataclass(frozen=True)
class QuantError:
    """Error of one format on one tensor."""

    format: str
    bits: int
    mse: float
    sqnr_db: float
    max_abs_error: float


def _check_x(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    x = x.detach().float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains inf or NaN; error metrics need finite values")
    return x


def error_metrics(x: torch.Tensor, xq: torch.Tensor) -> tuple[float, float, float]:
    """(mse, sqnr_db, max_abs_error) of the approximation ``xq`` of ``x``, computed in float64."""
    x, xq = x.double(), xq.double()
    err = x - xq
    noise = float(err.pow(2).mean()) if err.numel() else 0.0
    signal = float(x.pow(2).mean()) if x.numel() else 0.0
    if noise == 0.0:
        sqnr = math.inf
    elif signal == 0.0:
        sqnr = -math.inf
    else:
        sqnr = 10.0 * math.log10(signal / noise)
    max_abs = float(err.abs().max()) if err.numel() else 0.0
    return noise, sqnr, max_abs


def sqnr_db(x: torch.Tensor, xq: torch.Tensor) -> float:
    """10 log10(signal power / noise power) of ``xq`` as an approximation of ``x``."""
    return error_metrics(x, xq)[1]


def quantize_dequantize(x: torch.Tensor, fmt, *, scale_floats: bool = False, block_size: int = 64) -> torch.Tensor:
    """Round ``x`` through ``fmt`` with the per-tensor conventions in the module docstring; float32 result."""
    fmt = get_format(fmt)
    x = _check_x(x)
    amax = float(x.abs().max()) if x.numel() else 0.0
    if fmt.kind == "float":
        if scale_floats and amax > 0:
            scale = fmt.max / amax
            return fmt.cast(x * scale) / scale
        return fmt.cast(x)
    if fmt.kind == "levels":
        return nf4_cast(x, check_int("block_size", block_size, min_value=1))
    if fmt.kind == "binary":
        return fmt.cast(x) * x.abs().mean()
    # integer formats: symmetric absmax grid
    half_range = (1 << (fmt.bits - 1)) - 1  # int8: 127, int4: 7, int2: 1
    zero_point = 0 if fmt.signed else 1 << (fmt.bits - 1)
    if amax == 0:
        return torch.zeros_like(x)
    scale = amax / half_range
    q = torch.clamp(torch.round(x / scale) + zero_point, fmt.qmin, fmt.qmax)
    return (q - zero_point) * scale


def quantization_error(x: torch.Tensor, fmt, *, scale_floats: bool = False, block_size: int = 64) -> QuantError:
    """MSE, SQNR (dB) and max |error| of ``x`` stored in ``fmt`` (a name or a format object)."""
    fmt = get_format(fmt)
    xq = quantize_dequantize(x, fmt, scale_floats=scale_floats, block_size=block_size)
    mse, sqnr, max_abs = error_metrics(_check_x(x), xq)
    return QuantError(fmt.name, fmt.bits, mse, sqnr, max_abs)


def error_table(x: torch.Tensor, names=None, *, scale_floats: bool = False, block_size: int = 64) -> list[QuantError]:
    """``quantization_error`` for each format in ``names`` (all formats by default), in that order."""
    names = list_formats() if names is None else list(names)
    return [quantization_error(x, n, scale_floats=scale_floats, block_size=block_size) for n in names]


def format_error_table(rows: list[QuantError]) -> str:
    """A plain-text table of ``error_table`` rows, for printing in a notebook."""
    lines = [f"{'format':>9} {'bits':>4} {'MSE':>11} {'SQNR dB':>8} {'max |err|':>10}"]
    lines += [f"{r.format:>9} {r.bits:>4} {r.mse:11.3e} {r.sqnr_db:8.2f} {r.max_abs_error:10.3e}" for r in rows]
    return "\n".join(lines)
