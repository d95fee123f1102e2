"""The named formats: ``get_format("fp8_e4m3")``, ``list_formats()``, and a one-row summary of each."""
from __future__ import annotations

from coursekit._validate import check_choice
from coursekit.formats.floats import BF16, FP4_E2M1, FP8_E4M3, FP8_E5M2, FP16, FP32, FloatFormat
from coursekit.formats.integers import BINARY, INT2, INT4, INT8, UINT4, UINT8, BinaryFormat, IntFormat
from coursekit.formats.nf4 import NF4, LevelFormat

Format = FloatFormat | IntFormat | BinaryFormat | LevelFormat

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (FP32, FP16, BF16, FP8_E4M3, FP8_E5M2, FP4_E2M1, INT8, UINT8, INT4, UINT4, INT2, BINARY, NF4)
}


def list_formats() -> list[str]:
    """Names of every format, widest first."""
    return list(FORMATS)


def get_format(name) -> Format:
    """The format called ``name`` (a format object is returned unchanged)."""
    if isinstance(name, (FloatFormat, IntFormat, BinaryFormat, LevelFormat)):
        return name
    if not isinstance(name, str):
        raise TypeError(f"format name must be a str, got {type(name).__name__} {name!r}")
    return FORMATS[check_choice("format", name, FORMATS)]


def describe(fmt) -> dict:
    """The facts a table of formats shows: kind, bits, range, smallest steps, specials (floats)."""
    fmt = get_format(fmt)
    row = {"name": fmt.name, "kind": fmt.kind, "bits": fmt.bits, "max": fmt.max}
    if isinstance(fmt, FloatFormat):
        row.update(
            exponent_bits=fmt.exponent_bits, mantissa_bits=fmt.mantissa_bits, bias=fmt.bias,
            min_normal=fmt.min_normal, min_subnormal=fmt.min_subnormal, eps=fmt.eps,
            has_inf=fmt.has_inf, has_nan=fmt.has_nan, overflow=fmt.overflow,
        )
    elif isinstance(fmt, (IntFormat, BinaryFormat)):
        row.update(qmin=fmt.qmin, qmax=fmt.qmax, signed=fmt.signed)
    else:
        row.update(levels=len(fmt.levels))
    return row


def formats_table(names=None) -> list[dict]:
    """``describe`` for each of ``names`` (all formats by default)."""
    return [describe(n) for n in (list_formats() if names is None else names)]
