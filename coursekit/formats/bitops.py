"""Binary dot products with XNOR and popcount, as binary neural networks compute them.

With weights and activations in {-1, +1} (BinaryNet, Courbariaux et al. 2016; XNOR-Net, Rastegari et al. 2016,
section 3.2), store +1 as bit 1 and -1 as bit 0. The product of two entries is +1 when their bits agree and -1
when they differ, and ``a XOR w`` marks exactly the entries that differ. With ``d = popcount(a XOR w)`` over
``n`` entries:

    a . w = (n - d) * (+1) + d * (-1) = n - 2 d = 2 popcount(a XNOR w) - n

so one XOR (or XNOR) and one POPCNT instruction replace 64 multiply-adds per 64-bit word. XNOR-Net restores the
magnitudes with two scales: ``x . y ~ (mean|x|) (mean|y|) (sign x . sign y)``.

Bits are packed eight per byte, first entry in the high bit, as :func:`coursekit.formats.pack_bits` does. Padding
bits are 0 in both operands, so they agree and the XOR ignores them; the formula uses the true length ``n``.
"""
from __future__ import annotations

import torch

from coursekit.formats.packing import pack_bits

_POPCOUNT_TABLE = torch.tensor([i.bit_count() for i in range(256)], dtype=torch.int64)


def _check_tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension (the vector length), got a scalar")
    if x.is_floating_point() and bool(torch.isnan(x).any()):
        raise ValueError(f"{name} contains NaN, which has no sign")
    return x


def popcount(x: torch.Tensor) -> torch.Tensor:
    """Number of 1 bits of every byte of a uint8 tensor (int64, same shape), by table lookup."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8:
        raise TypeError(f"x must be a uint8 torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    return _POPCOUNT_TABLE[x.to(torch.int64)]


def pack_signs(x: torch.Tensor) -> torch.Tensor:
    """Pack the signs of ``x`` along its last dimension: bit 1 for ``x >= 0`` (+1), bit 0 for ``x < 0`` (-1).

    Shape ``(..., n)`` -> uint8 ``(..., ceil(n / 8))``, first entry in the high bit. Zero counts as +1, as
    ``coursekit.formats.BINARY.encode`` does.
    """
    x = _check_tensor("x", x)
    n = x.shape[-1]
    bits = (x >= 0).to(torch.uint8).reshape(-1, n)
    per_row = -(-n // 8)
    if bits.shape[0] == 0 or n == 0:
        return torch.zeros(*x.shape[:-1], per_row, dtype=torch.uint8)
    return torch.stack([pack_bits(row, 1) for row in bits]).reshape(*x.shape[:-1], per_row)


def xnor_dot(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``sign(a) @ sign(w).T`` computed as ``n - 2 popcount(a XOR w)`` on packed bits (int64).

    ``a``: ``(..., n)``; ``w``: ``(k, n)`` or ``(n,)``. Signs as in :func:`pack_signs` (0 counts as +1).
    Returns ``(..., k)`` (or ``(...)`` for a 1-D ``w``), exactly equal to the float product of the signs.
    """
    a, w = _check_tensor("a", a), _check_tensor("w", w)
    if w.dim() > 2:
        raise ValueError(f"w must be (k, n) or (n,), got shape {tuple(w.shape)}")
    n = a.shape[-1]
    if w.shape[-1] != n:
        raise ValueError(f"a and w must have the same last dimension (vector length), got {n} and {w.shape[-1]}")
    a_bits = pack_signs(a).unsqueeze(-2)  # (..., 1, bytes)
    w_bits = pack_signs(w.reshape(-1, n))  # (k, bytes)
    differ = popcount(torch.bitwise_xor(a_bits, w_bits)).sum(dim=-1)  # (..., k)
    out = n - 2 * differ
    return out.squeeze(-1) if w.dim() == 1 else out


__all__ = ["pack_signs", "popcount", "xnor_dot"]
