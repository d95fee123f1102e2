"""NF4, the 4-bit NormalFloat of QLoRA (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized
LLMs", section 3 and appendix E), with block-wise absmax scaling as in bitsandbytes.

NF4 is a *lookup-table* format: a code is an index into 16 fixed levels in [-1, 1]. The levels are quantiles
of a standard normal distribution, so weights that look Gaussian use every level equally often:
8 positive quantiles and 7 negative ones plus an exact zero, each side scaled so that its extreme is +-1
(``nf4_levels_from_normal_quantiles`` rebuilds them bit for bit).

Quantizing a weight tensor (bitsandbytes ``quantize_4bit``):

1. flatten it and cut it into blocks of ``block_size`` (64) values; the last block may be shorter;
2. per block, ``absmax = max |w|``; normalize ``w * (1 / absmax)`` into [-1, 1] (bitsandbytes multiplies by the
   float32 reciprocal);
3. pick the nearest level; a value exactly half-way between two levels takes the LOWER code
   (bitsandbytes compares ``x > midpoint``);
4. store the 4-bit codes two per byte (``pack_nibbles``) and the absmax values (float32).

Dequantizing is a table lookup times the block's absmax.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from coursekit._validate import check_int
from coursekit.formats._codes import check_code_range, check_code_tensor

NF4_LEVELS = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)  # float32 values of bitsandbytes' NF4 table (functional.get_4bit_type("nf4"))

QLORA_OFFSET = 0.9677083  # QLoRA's create_normal_map: the outermost quantile, 1/2 (1/32 + 1/30) from 1


def nf4_levels_from_normal_quantiles(offset: float = QLORA_OFFSET) -> torch.Tensor:
    """Rebuild the 16 NF4 levels the way QLoRA's ``create_normal_map(offset, use_extra_value=True)`` does.

    8 positive quantiles Phi^-1(p) for p evenly spaced in [0.5, offset] (0.5 dropped), 7 negative ones
    for 8 points (0.5 dropped), one exact zero; everything divided by the largest (float32 arithmetic).
    """
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())
    levels = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).float().sort().values
    return levels / levels.max()


@dataclass(frozen=True)
class LevelFormat:
    """A format defined by a sorted table of levels; the code is the index of a level."""

    name: str
    levels: tuple[float, ...]
    kind: str = field(default="levels", init=False)

    @property
    def bits(self) -> int:
        return max(1, math.ceil(math.log2(len(self.levels))))

    @property
    def max(self) -> float:
        return float(max(abs(v) for v in self.levels))

    @property
    def code_dtype(self) -> torch.dtype:
        return torch.uint8

    def level_tensor(self) -> torch.Tensor:
        return torch.tensor(self.levels, dtype=torch.float32)

    def midpoints(self) -> torch.Tensor:
        """Decision thresholds half-way between neighbouring levels (computed in float64, stored float32)."""
        levels = self.level_tensor().double()
        return ((levels[:-1] + levels[1:]) / 2).float()

    def codes(self) -> torch.Tensor:
        return torch.arange(len(self.levels), dtype=torch.uint8)

    def values(self) -> torch.Tensor:
        return self.level_tensor()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest level; exact ties take the lower code. Values beyond the ends clamp."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
        x = x.detach().float()
        if bool(torch.isnan(x).any()):
            raise ValueError(f"x contains NaN, which format {self.name!r} cannot represent")
        # number of thresholds strictly below x: at a threshold, x is not counted -> lower code
        return torch.searchsorted(self.midpoints(), x.contiguous(), side="left").to(torch.uint8)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        codes = check_code_tensor("codes", codes).to(torch.int64)
        check_code_range("codes", codes, 0, len(self.levels) - 1)
        return self.level_tensor()[codes]

    def cast(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


NF4 = LevelFormat("nf4", NF4_LEVELS)


def num_blocks(numel: int, block_size: int) -> int:
    """Blocks needed for ``numel`` values; a shorter last block still counts (as in bitsandbytes)."""
    return -(-numel // block_size)


def nf4_quantize(w: torch.Tensor, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-wise absmax NF4 quantization.

    Returns ``(codes, absmax)``: ``codes`` is a flat uint8 tensor with one code in [0, 15] per value of
    ``w`` (in ``w.reshape(-1)`` order; pack it with ``pack_nibbles``), ``absmax`` a float32 tensor with one
    scale per block of ``block_size`` values. An all-zero block gets absmax 0 and codes 7 (the level 0.0).
    """
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise TypeError(f"w must be a floating-point torch.Tensor, got {type(w).__name__}")
    block_size = check_int("block_size", block_size, min_value=1)
    flat = w.detach().float().reshape(-1)
    if not bool(torch.isfinite(flat).all()):
        raise ValueError("w contains inf or NaN; NF4 block scaling needs finite weights")
    n = flat.numel()
    pad = num_blocks(n, block_size) * block_size - n
    blocks = torch.cat([flat, flat.new_zeros(pad)]).reshape(-1, block_size)
    absmax = blocks.abs().amax(dim=1)
    inverse = 1.0 / torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    codes = NF4.encode(blocks * inverse[:, None]).reshape(-1)[:n]
    return codes, absmax


def nf4_dequantize(codes: torch.Tensor, absmax: torch.Tensor, block_size: int = 64,
                   shape: tuple[int, ...] | torch.Size | None = None) -> torch.Tensor:
    """Inverse of :func:`nf4_quantize`: ``level[code] * absmax[block]``, reshaped to ``shape`` if given."""
    block_size = check_int("block_size", block_size, min_value=1)
    codes = check_code_tensor("codes", codes).reshape(-1)
    if not isinstance(absmax, torch.Tensor) or not absmax.is_floating_point():
        raise TypeError(f"absmax must be a floating-point torch.Tensor, got {type(absmax).__name__}")
    n = codes.numel()
    expected = num_blocks(n, block_size)
    if absmax.numel() != expected:
        raise ValueError(
            f"absmax has {absmax.numel()} values but {n} codes in blocks of block_size={block_size} "
            f"need {expected}"
        )
    values = NF4.decode(codes)
    scale = absmax.float().reshape(-1).repeat_interleave(block_size)[:n]
    out = values * scale
    if shape is not None:
        shape = tuple(shape)
        if math.prod(shape) != n:
            raise ValueError(f"shape={shape} holds {math.prod(shape)} values but there are {n} codes")
        out = out.reshape(shape)
    return out


def nf4_cast(w: torch.Tensor, block_size: int = 64) -> torch.Tensor:
    """Quantize and dequantize in one step (the "fake-quantized" weight), same shape as ``w``."""
    codes, absmax = nf4_quantize(w, block_size)
    return nf4_dequantize(codes, absmax, block_size, w.shape)
