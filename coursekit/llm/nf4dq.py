"""NF4 with double quantization of the block scales (QLoRA, Dettmers et al. 2023, sec. 3 "Double Quantization").

Plain NF4 (:mod:`coursekit.formats.nf4`) stores one FP32 absmax per block of 64 weights: 32/64 = 0.5 extra bits
per weight, 4.5 bits in all. QLoRA quantizes those absmax values a second time:

1. ``c2 = mean(absmax)`` is subtracted (the absmax values are all positive; centring them uses the signed
   8-bit range fully, as bitsandbytes' ``compress_statistics`` does);
2. ``absmax - c2`` is cut into blocks of 256 and each block is quantized to 8 bits with its own FP32 scale
   (the second-level "quantization constant");
3. dequantizing a weight: ``level[code] * (dequant8(q_absmax) + c2)``.

Bits per weight: ``4 + 8/64 + 32/(64*256) = 4.127`` (QLoRA: "reduces the memory footprint from 0.5 bits per
parameter to 0.127 bits"), plus 4 bytes for ``c2`` per tensor.

The 8-bit format of the second level: QLoRA/bitsandbytes use a non-uniform "dynamic" 8-bit map; here the
absmax values are quantized with the linear symmetric INT8 of :mod:`coursekit.quant.primitives`
(``[-127, 127]``, scale = block absmax / 127), which costs the same bytes. The first-level NF4 codes are
exactly :func:`coursekit.formats.nf4.nf4_quantize`'s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from coursekit._validate import check_int
from coursekit.formats.memory import memory_bytes
from coursekit.formats.nf4 import nf4_dequantize, nf4_quantize, num_blocks
from coursekit.quant.primitives import calc_qparams, dequantize, quantize


@dataclass
class NF4DoubleQuant:
    """NF4 codes (one per weight, flat) + INT8 absmax codes per block + FP32 scale per block of absmax + c2."""

    codes: torch.Tensor
    absmax_codes: torch.Tensor
    absmax_scale: torch.Tensor
    offset: float
    block_size: int
    block_size2: int
    shape: tuple[int, ...]

    def absmax(self) -> torch.Tensor:
        """The first-level scales recovered from their 8-bit codes."""
        n = self.absmax_codes.numel()
        padded = torch.cat([self.absmax_codes, self.absmax_codes.new_zeros(num_blocks(n, self.block_size2)
                                                                           * self.block_size2 - n)])
        return dequantize(padded, self.absmax_scale, 0, group_size=self.block_size2)[:n] + self.offset

    def dequantize(self) -> torch.Tensor:
        return nf4_dequantize(self.codes, self.absmax(), self.block_size, self.shape)

    def nbytes(self) -> int:
        return nf4_double_quant_bytes(math.prod(self.shape), self.block_size, self.block_size2)


def nf4_double_quantize(w: torch.Tensor, block_size: int = 64, block_size2: int = 256) -> NF4DoubleQuant:
    """NF4 of ``w`` with absmax blocks of ``block_size``, the absmax values themselves 8-bit in blocks of
    ``block_size2`` (QLoRA: 64 and 256)."""
    block_size2 = check_int("block_size2", block_size2, min_value=1)
    codes, absmax = nf4_quantize(w, block_size)
    offset = float(absmax.mean())
    centred = absmax - offset
    n = centred.numel()
    padded = torch.cat([centred, centred.new_zeros(num_blocks(n, block_size2) * block_size2 - n)])
    amax = padded.reshape(-1, block_size2).abs().amax(dim=1)
    scale, _ = calc_qparams(-amax, amax, -127, 127, symmetric=True)
    q = quantize(padded, scale, 0, -127, 127, group_size=block_size2)[:n]
    return NF4DoubleQuant(codes, q, scale, offset, block_size, block_size2, tuple(w.shape))


def nf4_double_dequantize(dq: NF4DoubleQuant) -> torch.Tensor:
    """``level[code] * (absmax_scale * absmax_code + offset)``, shaped like the original weight."""
    if not isinstance(dq, NF4DoubleQuant):
        raise TypeError(f"dq must be an NF4DoubleQuant, got {type(dq).__name__}")
    return dq.dequantize()


def nf4_double_quant_bytes(numel: int, block_size: int = 64, block_size2: int = 256) -> int:
    """Bytes of NF4 + double quantization, three arrays: the packed 4-bit codes, an 8-bit absmax per block, and
    an FP32 scale per ``block_size2`` absmax values plus the FP32 offset (each counted by ``memory_bytes``)."""
    numel = check_int("numel", numel, min_value=1)
    block_size = check_int("block_size", block_size, min_value=1)
    blocks = num_blocks(numel, block_size)
    return (memory_bytes(numel, "nf4") + memory_bytes(blocks, "int8")
            + memory_bytes(num_blocks(blocks, block_size2) + 1, "fp32"))


__all__ = ["NF4DoubleQuant", "nf4_double_dequantize", "nf4_double_quant_bytes", "nf4_double_quantize"]
