"""Small helpers for integer code tensors: checking them, enumerating them, storing them."""
from __future__ import annotations

import torch

_INT_DTYPES = {
    torch.uint8: (8, False), torch.int8: (8, True), torch.int16: (16, True),
    torch.int32: (32, True), torch.int64: (64, True),
}


def check_code_tensor(name: str, codes) -> torch.Tensor:
    """Return ``codes`` if it is an integer tensor; raise TypeError otherwise."""
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"{name} must be an integer torch.Tensor, got {type(codes).__name__}")
    if codes.dtype not in _INT_DTYPES:
        allowed = ", ".join(str(d) for d in _INT_DTYPES)
        raise TypeError(f"{name} must be an integer tensor ({allowed}), got dtype {codes.dtype}")
    return codes


def check_code_range(name: str, codes: torch.Tensor, low: int, high: int) -> None:
    """Raise ValueError if any entry of ``codes`` lies outside [low, high]."""
    if codes.numel() == 0:
        return
    lo, hi = int(codes.min()), int(codes.max())
    if lo < low or hi > high:
        bad = lo if lo < low else hi
        raise ValueError(f"{name} contains {bad}, outside the valid range [{low}, {high}]")


def as_unsigned_codes(codes, bits: int, name: str = "codes") -> torch.Tensor:
    """Return the codes as int64 bit patterns in [0, 2^bits).

    A signed tensor whose width equals ``bits`` (int8 for 8-bit codes, int16 for 16-bit codes) is read as
    the two's-complement pattern, exactly what ``tensor.view`` gives; any other tensor must already hold
    values in [0, 2^bits).
    """
    codes = check_code_tensor(name, codes)
    width, signed = _INT_DTYPES[codes.dtype]
    c = codes.to(torch.int64)
    if signed and width == bits:
        return c & ((1 << bits) - 1)
    check_code_range(name, c, 0, (1 << bits) - 1)
    return c


def to_code_dtype(code: torch.Tensor, bits: int, dtype: torch.dtype) -> torch.Tensor:
    """Store unsigned bit patterns in ``dtype``; signed dtypes of the same width get two's complement."""
    width, signed = _INT_DTYPES[dtype]
    if signed and width == bits:
        code = torch.where(code >= 1 << (bits - 1), code - (1 << bits), code)
    return code.to(dtype)


def all_codes(bits: int, dtype: torch.dtype) -> torch.Tensor:
    """All 2^bits patterns in unsigned order, stored in ``dtype``."""
    return to_code_dtype(torch.arange(1 << bits, dtype=torch.int64), bits, dtype)
