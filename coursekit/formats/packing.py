"""Packing sub-byte codes into bytes: two 4-bit codes or four 2-bit codes (or eight bits) per uint8.

Order: the first code goes to the HIGH bits, as in bitsandbytes' NF4/FP4 storage
(``packed = (c0 << 4) | c1``). A tensor whose length is not a multiple of the codes per byte is padded with
zero codes; pass ``count`` to ``unpack_bits`` to drop them again.
"""
from __future__ import annotations

import torch

from coursekit._validate import check_choice, check_int
from coursekit.formats._codes import check_code_range, check_code_tensor

PACKABLE_BITS = (1, 2, 4, 8)


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned ``bits``-bit codes (values in [0, 2^bits)) into a flat uint8 tensor, first code highest."""
    check_choice("bits", bits, PACKABLE_BITS)
    codes = check_code_tensor("codes", codes).reshape(-1).to(torch.int64)
    check_code_range("codes", codes, 0, (1 << bits) - 1)
    per_byte = 8 // bits
    pad = (-codes.numel()) % per_byte
    codes = torch.cat([codes, codes.new_zeros(pad)]).reshape(-1, per_byte)
    shifts = torch.arange(per_byte - 1, -1, -1, dtype=torch.int64) * bits  # e.g. [4, 0] or [6, 4, 2, 0]
    return (codes << shifts).sum(dim=1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, bits: int, count: int | None = None) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: a flat uint8 tensor of codes, the first ``count`` of them if given."""
    check_choice("bits", bits, PACKABLE_BITS)
    packed = check_code_tensor("packed", packed)
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed must be a uint8 tensor, got dtype {packed.dtype}")
    per_byte = 8 // bits
    shifts = torch.arange(per_byte - 1, -1, -1, dtype=torch.int64) * bits
    codes = ((packed.reshape(-1, 1).to(torch.int64) >> shifts) & ((1 << bits) - 1)).reshape(-1)
    if count is not None:
        count = check_int("count", count, min_value=0, max_value=codes.numel())
        codes = codes[:count]
    return codes.to(torch.uint8)


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte, the first in the high nibble."""
    return pack_bits(codes, 4)


def unpack_nibbles(packed: torch.Tensor, count: int | None = None) -> torch.Tensor:
    return unpack_bits(packed, 4, count)


def pack_2bit(codes: torch.Tensor) -> torch.Tensor:
    """Four 2-bit codes per byte, the first in the two highest bits."""
    return pack_bits(codes, 2)

