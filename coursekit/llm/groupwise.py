"""Group-wise INT-b weight quantization (b = 8, 4, 3, 2) with bit-packing and exact memory accounting.

An LLM's Linear weight ``W`` (``[out_features, in_features]``) is cut along its input dimension into groups of
``group_size`` consecutive weights (GPTQ, Frantar et al. 2022, sec. 4 "additional tricks"; AWQ, Lin et al.
2023, sec. 3): every row ``i`` and group ``k`` has its own scale ``S[i, k]`` (and zero point ``Z[i, k]``) and

    q = clamp(round(w / S) + Z, qmin, qmax),      w_hat = S (q - Z)        (Jacob et al. 2018, eq. 1)

computed by :mod:`coursekit.quant.primitives` (the one copy of the math; ``group_size=`` there).

Two schemes; codes are always stored UNSIGNED in ``[0, 2^b - 1]`` so they pack the same way:

* asymmetric (default, as GPTQ/AWQ checkpoints): ``[qmin, qmax] = [0, 2^b - 1]``; the group range is widened to
  contain 0, ``S = (max - min) / (2^b - 1)``, ``Z = -round(min / S)``; ``Z`` is stored per group in ``b`` bits.
* symmetric: ``[qmin, qmax] = [1, 2^b - 1]`` with the fixed zero point ``Z = 2^(b-1)`` (8 for INT4: also ONNX
  Runtime MatMulNBits' default zero point), ``S = absmax / (2^(b-1) - 1)``: the signed narrow range
  ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` shifted by ``2^(b-1)``. No zero point is stored. Symmetric INT2 is ternary
  ``{-S, 0, S}``.

Storage layout of :func:`pack_groupwise` (first value in the HIGH bits, bitsandbytes order, as
:mod:`coursekit.formats.packing`):

* ``data``: the codes of ``W`` in row-major order (row 0 first, along ``in_features``) as one big-endian bit
  stream: two INT4 codes or four INT2 codes per byte (``pack_bits``); INT3 codes are written as 3-bit fields
  across byte boundaries (eight codes in three bytes); INT8 one code per byte;
* ``scales``: ``[out_features, in_features / group_size]`` in ``scale_format`` (fp16 by default);
* ``zero_points`` (asymmetric only): the ``[out_features, n_groups]`` zero points packed like ``data``.

Bytes: ``ceil((numel * b + n_groups_total * (scale bits + b if asymmetric)) / 8)``, which is exactly
``coursekit.formats.memory.memory_bytes(numel, int_b, group_size, scale_format, zero_point=asymmetric)``
(:func:`groupwise_bytes`). INT4 g128 with fp16 scales and 4-bit zero points: 4 + 20/128 = 4.156 bits/weight.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from coursekit._validate import check_choice, check_int
from coursekit.formats.integers import IntFormat
from coursekit.formats.memory import bits_per_param, memory_bytes
from coursekit.formats.packing import PACKABLE_BITS, pack_bits, unpack_bits
from coursekit.quant.primitives import calc_qparams, dequantize, fake_quantize_parts, quantize

SUPPORTED_BITS = (8, 4, 3, 2)
SCALE_FORMATS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


# ----------------------------------------------------------------------------------------------- checks
def check_weight(w, name: str = "weight") -> torch.Tensor:
    """``w`` as a detached float32 2-D tensor ``[out_features, in_features]`` (finite), or a clear error."""
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(w).__name__}")
    if w.dim() != 2:
        raise ValueError(f"{name} must be 2-D [out_features, in_features], got shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{name} contains inf or NaN")
    return w.detach().to(torch.float32)


def check_group_size(group_size, in_features: int) -> int:
    """``group_size`` (``None`` means one group per row) checked to divide ``in_features``."""
    if group_size is None:
        return in_features
    group_size = check_int("group_size", group_size, min_value=1)
    if in_features % group_size:
        raise ValueError(f"group_size={group_size} does not divide in_features={in_features}; choose a divisor "
                         f"of {in_features} (e.g. 32, 64, 128 when they divide it) or group_size=None (per row)")
    return group_size


def code_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """Unsigned code range: ``(0, 2^b - 1)`` asymmetric, ``(1, 2^b - 1)`` symmetric (zero point ``2^(b-1)``)."""
    bits = check_choice("bits", bits, SUPPORTED_BITS)
    return (1 if symmetric else 0), 2**bits - 1


def int_format(bits: int) -> IntFormat:
    """The signed ``bits``-wide integer format that :mod:`coursekit.formats.memory` counts (int3 included)."""
    return IntFormat(f"int{check_choice('bits', bits, SUPPORTED_BITS)}", bits, True)


# ----------------------------------------------------------------------------------------------- qparams
def group_qparams(w_group: torch.Tensor, bits: int, symmetric: bool = False):
    """Scale and zero point of every row of ``w_group`` (``[rows, g]``, one group per row): ``([rows], [rows])``.

    GPTQ calls this on the current (already updated) columns of a group when the group starts.
    """
    qmin, qmax = code_range(bits, symmetric)
    if symmetric:
        amax = w_group.abs().amax(dim=-1)
        return calc_qparams(-amax, amax, qmin, qmax, symmetric=True)  # S = amax / (2^(b-1)-1), Z = 2^(b-1)
    return calc_qparams(w_group.amin(dim=-1), w_group.amax(dim=-1), qmin, qmax)


def quantize_column(col: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int,
                    symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes and dequantized values of one weight column (``[rows]``) with per-row parameters.

    GPTQ calls this once per column, so it uses the unchecked ``fake_quantize_parts`` of the primitives (the
    same arithmetic as :func:`~coursekit.quant.primitives.quantize`); ``scale``/``zero_point`` come from
    :func:`group_qparams`, already valid.
    """
    qmin, qmax = code_range(bits, symmetric)
    zero = zero_point.to(torch.float32)
    w_hat, code, _ = fake_quantize_parts(col.to(torch.float32), scale, zero, qmin, qmax)
    return torch.clamp(code, qmin, qmax).to(torch.uint8), w_hat


# ----------------------------------------------------------------------------------------------- GroupQuant
@dataclass
class GroupQuant:
    """A group-wise quantized weight.

    ``codes``: uint8 ``[out, in]`` in ``[0, 2^bits - 1]``; ``scale``: float32 ``[out, in / group_size]``;
    ``zero_point``: uint8 ``[out, in / group_size]`` (asymmetric) or ``None`` (symmetric: the fixed
    ``2^(bits-1)``). ``perm`` (GPTQ act-order only): ``None`` when the columns are in their original order;
    otherwise ``codes``/``scale`` are stored in the permuted column order (so every group is contiguous) and
    column ``j`` of the stored matrix is original input column ``perm[j]``: an inference kernel gathers the
    activations ``x[:, perm]`` instead of permuting the weight (GPTQ's act-order with "static" groups).
    """

    codes: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor | None
    bits: int
    group_size: int
    shape: tuple[int, int]
    perm: torch.Tensor | None = None

    @property
    def symmetric(self) -> bool:
        return self.zero_point is None

    @property
    def n_groups(self) -> int:
        return self.shape[1] // self.group_size

    def zero_points(self) -> torch.Tensor:
        """The zero point of every group as int64 (the implicit ``2^(bits-1)`` when symmetric)."""
        if self.zero_point is None:
            return torch.full(self.scale.shape, 2 ** (self.bits - 1), dtype=torch.int64)
        return self.zero_point.to(torch.int64)

    def dequantize(self) -> torch.Tensor:
        return dequantize_groupwise(self)

    def bits_per_weight(self, scale_format: str = "fp16") -> float:
        """Storage bits per weight including scales (and zero points): 4.156 for asymmetric INT4 g128."""
        return bits_per_param(int_format(self.bits), self.group_size, scale_format, zero_point=not self.symmetric)


def quantize_groupwise(w: torch.Tensor, bits: int, group_size: int | None = 128,
                       symmetric: bool = False) -> GroupQuant:
    """Round-to-nearest (RTN) group-wise quantization of a weight ``[out, in]``; groups run along ``in``.

    ``bits`` in {8, 4, 3, 2}; ``group_size`` must divide ``in_features`` (``None``: one group per row, i.e.
    per-output-channel). Returns a :class:`GroupQuant`; ``dequantize_groupwise`` gives ``w_hat``.
    """
    w = check_weight(w, "w")
    check_choice("bits", bits, SUPPORTED_BITS)
    g = check_group_size(group_size, w.shape[1])
    out, inp = w.shape
    scale, zp = group_qparams(w.reshape(out, inp // g, g), bits, symmetric)
    qmin, qmax = code_range(bits, symmetric)
    codes = quantize(w, scale, zp, qmin, qmax, group_size=g)
    return GroupQuant(codes.to(torch.uint8), scale, None if symmetric else zp.to(torch.uint8), bits, g,
                      (out, inp))


def dequantize_groupwise(gq: GroupQuant) -> torch.Tensor:
    """``w_hat = S (q - Z)`` per group, float32 ``[out, in]`` in the original column order."""
    if not isinstance(gq, GroupQuant):
        raise TypeError(f"gq must be a GroupQuant, got {type(gq).__name__}")
    w_hat = dequantize(gq.codes, gq.scale, gq.zero_points(), group_size=gq.group_size)
    if gq.perm is None:
        return w_hat
    out = torch.empty_like(w_hat)
    out[:, gq.perm] = w_hat
    return out


def fake_quantize_groupwise(w: torch.Tensor, bits: int, group_size: int | None = 128,
                            symmetric: bool = False) -> torch.Tensor:
    """Quantize then dequantize (RTN), same shape as ``w``."""
    return dequantize_groupwise(quantize_groupwise(w, bits, group_size, symmetric))


# ----------------------------------------------------------------------------------------------- packing
def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned ``bits``-bit codes as one big-endian bit stream in uint8 (first code in the high bits).

    2/4/8 bits: exactly ``formats.packing.pack_bits``. 3 bits: each code is split into its bits (most
    significant first) and the bit stream is packed eight bits per byte, so 8 codes fill 3 bytes.
    """
    check_choice("bits", bits, SUPPORTED_BITS)
    codes = codes.reshape(-1).to(torch.int64)
    if bits in PACKABLE_BITS:
        return pack_bits(codes, bits)
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= 2**bits):
        raise ValueError(f"codes must lie in [0, {2**bits - 1}] for bits={bits}")
    shifts = torch.arange(bits - 1, -1, -1, dtype=torch.int64)
    return pack_bits((codes[:, None] >> shifts) & 1, 1)


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: the first ``count`` codes as uint8."""
    check_choice("bits", bits, SUPPORTED_BITS)
    count = check_int("count", count, min_value=0)
    if bits in PACKABLE_BITS:
        return unpack_bits(packed, bits, count)
    stream = unpack_bits(packed, 1, count * bits).to(torch.int64).reshape(count, bits)
    shifts = torch.arange(bits - 1, -1, -1, dtype=torch.int64)
    return (stream << shifts).sum(dim=1).to(torch.uint8)


@dataclass
class PackedGroupQuant:
    """The bytes of a :class:`GroupQuant` as stored on disk (layout in the module docstring)."""

    data: torch.Tensor
    scales: torch.Tensor
    zero_points: torch.Tensor | None
    bits: int
    group_size: int
    shape: tuple[int, int]
    perm: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        zp = 0 if self.zero_points is None else self.zero_points.numel()
        return self.data.numel() + self.scales.numel() * self.scales.element_size() + zp


def pack_groupwise(gq: GroupQuant, scale_format: str = "fp16") -> PackedGroupQuant:
    """Pack codes (and zero points) into uint8 bit streams; store scales in ``scale_format`` (fp16/bf16/fp32).

    Codes and zero points round-trip exactly; scales round-trip exactly with ``scale_format="fp32"`` (fp16
    rounds each scale to 11 significant bits, a relative change below 2^-11).
    """
    if not isinstance(gq, GroupQuant):
        raise TypeError(f"gq must be a GroupQuant, got {type(gq).__name__}")
    check_choice("scale_format", scale_format, SCALE_FORMATS)
    zp = None if gq.zero_point is None else pack_codes(gq.zero_point, gq.bits)
    return PackedGroupQuant(pack_codes(gq.codes, gq.bits), gq.scale.to(SCALE_FORMATS[scale_format]), zp,
                            gq.bits, gq.group_size, tuple(gq.shape), gq.perm)


def unpack_groupwise(packed: PackedGroupQuant) -> GroupQuant:
    """Inverse of :func:`pack_groupwise` (scales back to float32)."""
    if not isinstance(packed, PackedGroupQuant):
        raise TypeError(f"packed must be a PackedGroupQuant, got {type(packed).__name__}")
    out, inp = packed.shape
    codes = unpack_codes(packed.data, packed.bits, out * inp).reshape(out, inp)
    n_groups = out * (inp // packed.group_size)
    zp = None
    if packed.zero_points is not None:
        zp = unpack_codes(packed.zero_points, packed.bits, n_groups).reshape(out, -1)
    return GroupQuant(codes, packed.scales.to(torch.float32), zp, packed.bits, packed.group_size, (out, inp),
                      packed.perm)


# ----------------------------------------------------------------------------------------------- memory
def groupwise_bytes(gq: GroupQuant, scale_format: str = "fp16") -> int:
    """Storage bytes of ``gq``: codes, one ``scale_format`` scale per group, b-bit zero points if asymmetric.

    Delegates to ``formats.memory.memory_bytes`` (one formula in coursekit); equals ``pack_groupwise(gq).nbytes``
    whenever the code and zero-point bit streams end on a byte boundary.
    """
    if not isinstance(gq, GroupQuant):
        raise TypeError(f"gq must be a GroupQuant, got {type(gq).__name__}")
    check_choice("scale_format", scale_format, SCALE_FORMATS)
    numel = gq.shape[0] * gq.shape[1]
    return memory_bytes(numel, int_format(gq.bits), gq.group_size, scale_format, zero_point=not gq.symmetric)


__all__ = [
    "SCALE_FORMATS", "SUPPORTED_BITS", "GroupQuant", "PackedGroupQuant", "check_group_size", "check_weight",
    "code_range", "dequantize_groupwise", "fake_quantize_groupwise", "group_qparams", "groupwise_bytes",
    "int_format", "pack_codes", "pack_groupwise", "quantize_column", "quantize_groupwise", "unpack_codes",
    "unpack_groupwise",
]
