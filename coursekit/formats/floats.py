"""Binary floating-point formats, encoded and decoded bit by bit.

A float format is fixed by four numbers and one policy:

    sign bit | E exponent bits | M mantissa bits,   bias b,   special values

A code with exponent field ``e`` and mantissa field ``m`` means (IEEE 754-2019, section 3.4)

    normal      (e >= 1):  (-1)^s * (1 + m / 2^M) * 2^(e - b)
    subnormal   (e == 0):  (-1)^s * (m / 2^M)     * 2^(1 - b)

The *special-value policy* says which codes are taken away from the numbers:

* ``"ieee"``: the all-ones exponent is reserved; mantissa 0 is +-inf, anything else NaN (FP32, FP16, BF16,
  FP8 E5M2; Micikevicius et al. 2022, "FP8 Formats for Deep Learning", Table 1).
* ``"fn"`` ("finite, NaN"): no infinities; only S.1111.111 is NaN, so the all-ones exponent still holds
  six normal numbers and E4M3 reaches 448 instead of 240 (FP8 E4M3FN, same paper).
* ``"none"``: every code is a number (FP4 E2M1 of the OCP Microscaling (MX) spec v1.0, section 5.3.3:
  0, 0.5, 1, 1.5, 2, 3, 4, 6).

``encode`` works on the float32 bit pattern with integer operations only (no call to torch's casts), so
a notebook can print every intermediate: split the bits, find how many mantissa bits the target keeps,
round to nearest even, let the carry ripple into the exponent, then apply the overflow rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from coursekit._validate import check_choice
from coursekit.formats._codes import all_codes, as_unsigned_codes, to_code_dtype

SPECIALS = ("ieee", "fn", "none")
OVERFLOW_RULES = ("inf", "saturate", "nan")

_F32_MANTISSA_BITS = 23
_F32_BIAS = 127


@dataclass(frozen=True)
class FloatFormat:
    """A sign-exponent-mantissa float format.

    ``overflow`` is the default rule for values beyond ``max`` (see :meth:`encode`); ``code_dtype`` is the
    integer dtype that holds one code, the one ``tensor.view`` gives for torch's own float dtype.
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    bias: int
    specials: str = "ieee"
    overflow: str = "inf"
    torch_dtype: torch.dtype | None = field(default=None, compare=False)
    kind: str = field(default="float", init=False)

    def __post_init__(self):
        check_choice("specials", self.specials, SPECIALS)
        check_choice("overflow", self.overflow, self.overflow_rules())

    # ---- derived constants -------------------------------------------------------------------------
    @property
    def bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def code_dtype(self) -> torch.dtype:
        return {4: torch.uint8, 8: torch.uint8, 16: torch.int16, 32: torch.int32}[self.bits]

    @property
    def min_exponent(self) -> int:
        """Unbiased exponent of the smallest normal number, ``1 - bias``."""
        return 1 - self.bias

    @property
    def max_code(self) -> int:
        """Largest finite code magnitude (sign bit clear)."""
        all_ones = (1 << (self.exponent_bits + self.mantissa_bits)) - 1
        if self.specials == "ieee":
            return (((1 << self.exponent_bits) - 1) << self.mantissa_bits) - 1  # just below the inf code
        if self.specials == "fn":
            return all_ones - 1
        return all_ones

    @property
    def has_inf(self) -> bool:
        return self.specials == "ieee"

    @property
    def has_nan(self) -> bool:
        return self.specials != "none"

    @property
    def max(self) -> float:
        """Largest finite value."""
        return self._magnitude(self.max_code)

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value, 2^(1 - bias)."""
        return math.ldexp(1.0, self.min_exponent)

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value, 2^(1 - bias - M)."""
        return math.ldexp(1.0, self.min_exponent - self.mantissa_bits)

    @property
    def eps(self) -> float:
        """Gap between 1.0 and the next larger value, 2^-M."""
        return math.ldexp(1.0, -self.mantissa_bits)

    def overflow_rules(self) -> tuple[str, ...]:
        """Overflow rules this format can express: inf needs infinities, nan needs a NaN code."""
        rules = ["saturate"]
        if self.has_inf:
            rules.insert(0, "inf")
        if self.has_nan:
            rules.append("nan")
        return tuple(rules)

    def nan_code(self) -> int:
        """The NaN pattern ``encode`` writes (quiet NaN: top mantissa bit set; E4M3FN: S.1111.111)."""
        if not self.has_nan:
            raise ValueError(f"format {self.name!r} has no NaN code")
        exponent_ones = ((1 << self.exponent_bits) - 1) << self.mantissa_bits
        if self.specials == "fn":
            return exponent_ones | ((1 << self.mantissa_bits) - 1)
        return exponent_ones | (1 << (self.mantissa_bits - 1))

    def inf_code(self) -> int:
        if not self.has_inf:
            raise ValueError(f"format {self.name!r} has no infinity")
        return ((1 << self.exponent_bits) - 1) << self.mantissa_bits

    def _magnitude(self, code: int) -> float:
        e, m = code >> self.mantissa_bits, code & ((1 << self.mantissa_bits) - 1)
        if e == 0:
            return math.ldexp(m, self.min_exponent - self.mantissa_bits)
        return math.ldexp((1 << self.mantissa_bits) + m, e - self.bias - self.mantissa_bits)

    # ---- codes ---------------------------------------------------------------------------------------
    def codes(self) -> torch.Tensor:
        """Every code, in unsigned bit-pattern order, stored in ``code_dtype`` (as ``tensor.view`` gives)."""
        if self.bits > 16:
            raise ValueError(f"format {self.name!r} has 2^{self.bits} codes, too many to enumerate")
        return all_codes(self.bits, self.code_dtype)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Map bit patterns to float32 values.

        ``codes`` is an integer tensor: either the unsigned pattern in [0, 2^bits), or the signed integer
        that ``tensor.view(torch.int8/int16/int32)`` gives for the same bits.
        """
        c = as_unsigned_codes(codes, self.bits, name="codes")
        M = self.mantissa_bits
        sign = (c >> (self.bits - 1)) & 1
        e = (c >> M) & ((1 << self.exponent_bits) - 1)
        m = c & ((1 << M) - 1)
        # significand as an integer: the hidden 1 is there only for normal numbers
        significand = torch.where(e > 0, m + (1 << M), m)
        # scale 2^(max(e, 1) - bias - M), exact in float64: one power of two per exponent field
        scales = torch.tensor(
            [math.ldexp(1.0, max(k, 1) - self.bias - M) for k in range(1 << self.exponent_bits)],
            dtype=torch.float64,
        )
        value = significand.double() * scales[e]
        value = torch.where(sign == 1, -value, value)
        mag = c & ((1 << (self.bits - 1)) - 1)
        if self.has_inf:
            value = torch.where(mag == self.inf_code(), torch.where(sign == 1, -math.inf, math.inf), value)
        if self.has_nan:  # NaN: every code above the largest finite one (and above inf, if there is one)
            value = torch.where(mag > self.max_code + int(self.has_inf), math.nan, value)
        return value.float()

    def encode(self, x: torch.Tensor, overflow: str | None = None) -> torch.Tensor:
        """Round float32 values to this format (round to nearest, ties to even) and return the bit patterns.

        ``overflow`` decides what happens to values whose rounded magnitude is above ``max``:

        * ``"inf"`` -> +-inf (IEEE 754; torch's rule for FP16, BF16 and FP8 E5M2),
        * ``"saturate"`` -> +-max, infinities included (torch 2.14's CPU rule for FP8 E4M3FN; the
          "SAT" mode of the OCP 8-bit floating point spec), the only rule FP4 has,
        * ``"nan"`` -> NaN (ml_dtypes and older torch for E4M3FN: NaN above 464).

        NaN always encodes to NaN (the quiet-NaN pattern, sign kept); formats without NaN reject it.
        Inputs of other float dtypes are first converted to float32.
        """
        overflow = self.overflow if overflow is None else overflow
        check_choice("overflow", overflow, self.overflow_rules())
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        x = x.detach().float()
        if not self.has_nan and bool(torch.isnan(x).any()):
            raise ValueError(f"x contains NaN, which format {self.name!r} cannot represent")

        # 1. split the float32 bit pattern: sign | 8-bit exponent | 23-bit mantissa
        bits32 = x.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
        sign = bits32 >> 31
        e32 = (bits32 >> 23) & 0xFF
        m32 = bits32 & 0x7FFFFF
        is_nan = (e32 == 0xFF) & (m32 != 0)
        is_inf = (e32 == 0xFF) & (m32 == 0)

        # 2. value = significand * 2^(exponent); float32 subnormals have no hidden bit and exponent field 1
        significand = torch.where(e32 > 0, m32 | (1 << 23), m32)
        exponent = torch.clamp(e32, min=1) - _F32_BIAS  # unbiased exponent of the leading bit position
        lsb_exponent = exponent - _F32_MANTISSA_BITS  # value of the lowest significand bit

        # 3. the target keeps M bits after the leading one, and no bits below 2^(min_exponent - M)
        target_exponent = torch.clamp(exponent, min=self.min_exponent)
        target_lsb = target_exponent - self.mantissa_bits
        shift = torch.clamp(target_lsb - lsb_exponent, max=30)  # >= 0; beyond 25 everything rounds to 0

        # 4. round to nearest, ties to even, on the dropped bits
        kept = significand >> shift
        dropped = significand & ((1 << shift) - 1)
        half = (1 << shift) >> 1
        round_up = (dropped > half) | ((dropped == half) & (shift > 0) & ((kept & 1) == 1))
        kept = kept + round_up.to(torch.int64)

        # 5. assemble exponent and mantissa; a rounding carry (kept == 2^(M+1)) ripples into the exponent,
        #    and a subnormal that rounds up to 2^M becomes the smallest normal, both for free
        code = ((target_exponent - self.min_exponent) << self.mantissa_bits) + kept

        # 6. overflow and specials
        too_big = (code > self.max_code) | is_inf
        if overflow == "saturate":
            overflow_code = self.max_code
        elif overflow == "inf":
            overflow_code = self.inf_code()
        else:
            overflow_code = self.nan_code()
        code = torch.where(too_big, overflow_code, code)
        if self.has_nan:
            code = torch.where(is_nan, self.nan_code(), code)
        code = code | (sign << (self.bits - 1))

        return to_code_dtype(code, self.bits, self.code_dtype)

    def cast(self, x: torch.Tensor, overflow: str | None = None) -> torch.Tensor:
        """Round ``x`` to the nearest value of this format and return it as float32: decode(encode(x))."""
        return self.decode(self.encode(x, overflow=overflow))

    def values(self) -> torch.Tensor:
        """All finite values, sorted, without duplicate zeros."""
        v = self.decode(self.codes())
        return torch.unique(v[torch.isfinite(v)])

    def __repr__(self) -> str:
        return (
            f"FloatFormat({self.name}: E{self.exponent_bits}M{self.mantissa_bits}, bias={self.bias}, "
            f"specials={self.specials!r}, overflow={self.overflow!r}, max={self.max:g})"
        )


FP32 = FloatFormat("fp32", 8, 23, 127, "ieee", "inf", torch.float32)
FP16 = FloatFormat("fp16", 5, 10, 15, "ieee", "inf", torch.float16)
BF16 = FloatFormat("bf16", 8, 7, 127, "ieee", "inf", torch.bfloat16)
# torch 2.14 CPU casts saturate to +-448 on overflow, infinities included (checked in tests/test_formats.py)
FP8_E4M3 = FloatFormat("fp8_e4m3", 4, 3, 7, "fn", "saturate", torch.float8_e4m3fn)
FP8_E5M2 = FloatFormat("fp8_e5m2", 5, 2, 15, "ieee", "inf", torch.float8_e5m2)
FP4_E2M1 = FloatFormat("fp4_e2m1", 2, 1, 1, "none", "saturate", None)
