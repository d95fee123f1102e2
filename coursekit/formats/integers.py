"""Integer formats (INT8 ... INT2, UINT8, UINT4) and the 1-bit binary format.

An integer format is just the range of integers it can hold:

    signed, b bits:   [-2^(b-1), 2^(b-1) - 1]      (two's complement; int8: [-128, 127])
    unsigned, b bits: [0, 2^b - 1]                  (uint8: [0, 255])

Real numbers reach these integers through a scale (and zero point), which is the job of
``coursekit.quant``; here ``encode`` only rounds (half to even, like ``torch.round``) and clamps.
For integer formats the code *is* the integer, so ``decode`` is a range check and a float conversion.

Binary holds {-1, +1} (BinaryConnect, Courbariaux et al. 2015; XNOR-Net, Rastegari et al. 2016): the code is
the value itself, ``encode`` takes the sign and sends 0 to +1, and ``to_bits`` stores -1 as 0 and +1 as 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from coursekit.formats._codes import check_code_range, check_code_tensor


def _check_float_tensor(x, fmt_name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    x = x.detach().float()
    if bool(torch.isnan(x).any()):
        raise ValueError(f"x contains NaN, which format {fmt_name!r} cannot represent")
    return x


@dataclass(frozen=True)
class IntFormat:
    """A ``bits``-bit integer format, two's complement when ``signed``."""

    name: str
    bits: int
    signed: bool
    kind: str = field(default="int", init=False)

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def max(self) -> float:
        return float(self.qmax)

    @property
    def code_dtype(self) -> torch.dtype:
        return torch.int8 if self.signed else torch.uint8

    def codes(self) -> torch.Tensor:
        """Every code (= every integer) from qmin to qmax."""
        return torch.arange(self.qmin, self.qmax + 1, dtype=torch.int64).to(self.code_dtype)

    def values(self) -> torch.Tensor:
        return self.decode(self.codes())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Round to the nearest integer (ties to even) and clamp to [qmin, qmax]."""
        x = _check_float_tensor(x, self.name)
        return torch.clamp(torch.round(x), self.qmin, self.qmax).to(self.code_dtype)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = check_code_tensor("codes", codes)
        check_code_range("codes", codes.to(torch.int64), self.qmin, self.qmax)
        return codes.float()

    def cast(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def to_bits(self, codes: torch.Tensor) -> torch.Tensor:
        """The stored bit pattern in [0, 2^bits): two's complement for signed formats (int4 -1 -> 15)."""
        codes = check_code_tensor("codes", codes).to(torch.int64)
        check_code_range("codes", codes, self.qmin, self.qmax)
        return (codes & ((1 << self.bits) - 1)).to(torch.uint8)

    def from_bits(self, patterns: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_bits`."""
        p = check_code_tensor("patterns", patterns).to(torch.int64)
        check_code_range("patterns", p, 0, (1 << self.bits) - 1)
        if self.signed:
            p = torch.where(p >= 1 << (self.bits - 1), p - (1 << self.bits), p)
        return p.to(self.code_dtype)


@dataclass(frozen=True)
class BinaryFormat:
    """The two values {-1, +1}: one bit, the sign."""

    name: str = "binary"
    kind: str = field(default="binary", init=False)
    bits: int = field(default=1, init=False)
    signed: bool = field(default=True, init=False)
    qmin: int = field(default=-1, init=False)
    qmax: int = field(default=1, init=False)

    @property
    def max(self) -> float:
        return 1.0

    @property
    def code_dtype(self) -> torch.dtype:
        return torch.int8

    def codes(self) -> torch.Tensor:
        return torch.tensor([-1, 1], dtype=torch.int8)

    def values(self) -> torch.Tensor:
        return self.decode(self.codes())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """sign(x), with sign(0) = +1 so that every input lands on one of the two values."""
        x = _check_float_tensor(x, self.name)
        return torch.where(x >= 0, 1, -1).to(torch.int8)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = check_code_tensor("codes", codes).to(torch.int64)
        bad = codes[(codes != 1) & (codes != -1)]
        if bad.numel():
            raise ValueError(f"codes contains {int(bad[0])}; binary codes must be -1 or +1")
        return codes.float()

    def cast(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def to_bits(self, codes: torch.Tensor) -> torch.Tensor:
        """-1 -> 0, +1 -> 1."""
        return (self.decode(codes) > 0).to(torch.uint8)

    def from_bits(self, patterns: torch.Tensor) -> torch.Tensor:
        p = check_code_tensor("patterns", patterns).to(torch.int64)
        check_code_range("patterns", p, 0, 1)
        return (2 * p - 1).to(torch.int8)


INT8 = IntFormat("int8", 8, True)
UINT8 = IntFormat("uint8", 8, False)
INT4 = IntFormat("int4", 4, True)
UINT4 = IntFormat("uint4", 4, False)
INT2 = IntFormat("int2", 2, True)
BINARY = BinaryFormat()
