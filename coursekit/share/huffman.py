"""Huffman coding of cluster indices, with exact bit counts.

Huffman, "A Method for the Construction of Minimum-Redundancy Codes" (Proc. IRE, 1952): repeatedly merge the two
least frequent subtrees; a symbol's code length is its depth. The expected length L satisfies

    H <= L < H + 1,   H = -sum_s p_s log2 p_s   (Shannon's source coding theorem)                (Eq. 1)

and the lengths meet Kraft's equality sum_s 2^(-l_s) = 1 (for two or more symbols). Codes are made *canonical*
(Schwartz & Kallick 1964; DEFLATE, RFC 1951 Sec. 3.2.2) so a decoder needs only the code lengths. Deep Compression
(Han et al., ICLR 2016, Sec. 4) Huffman-codes the centroid indices and the sparse relative positions.
"""
from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable


def _counts(symbols) -> Counter:
    counts = Counter(symbols) if not isinstance(symbols, (dict, Counter)) else Counter(dict(symbols))
    counts = Counter({s: c for s, c in counts.items() if c > 0})
    if not counts:
        raise ValueError("symbols is empty: there is nothing to code")
    return counts


def code_lengths(symbols: Iterable | dict) -> dict:
    """Huffman code length of every symbol, from a sequence of symbols or a {symbol: count} dict.
    A lone symbol gets 1 bit (a code needs at least one bit per symbol). Ties merge the earliest-created subtree
    first, so the result is deterministic."""
    counts = _counts(symbols)
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    heap = [(c, i, [s]) for i, (s, c) in enumerate(sorted(counts.items(), key=lambda kv: (kv[1], str(kv[0]))))]
    heapq.heapify(heap)
    depth = dict.fromkeys(counts, 0)
    order = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            depth[s] += 1
        heapq.heappush(heap, (c1 + c2, order, s1 + s2))
        order += 1
    return depth


def canonical_codes(lengths: dict) -> dict:
    """Canonical prefix codes (bit strings) from code lengths: shorter first, then by symbol order."""
    code, prev, out = 0, 0, {}
    for sym, length in sorted(lengths.items(), key=lambda kv: (kv[1], kv[0])):
        code <<= length - prev
        out[sym] = format(code, f"0{length}b")
        code, prev = code + 1, length
    return out


def coded_bits(symbols: Iterable | dict) -> int:
    """Exact length in bits of the Huffman-coded sequence: sum_s count_s * length_s."""
    counts = _counts(symbols)
    lengths = code_lengths(counts)
    return sum(c * lengths[s] for s, c in counts.items())


def entropy_bits(symbols: Iterable | dict) -> float:
    """n * H: the Shannon lower bound (Eq. 1) on the bits of any symbol-by-symbol code of the sequence."""
    counts = _counts(symbols)
    n = sum(counts.values())
    return -sum(c * math.log2(c / n) for c in counts.values())


def encode(symbols: list[int]) -> tuple[bytes, dict]:
    """Huffman-code a sequence of symbols: (bitstream padded to whole bytes, code lengths)."""
    symbols = list(symbols)
    lengths = code_lengths(symbols)
    codes = canonical_codes(lengths)
    bits = "".join(codes[s] for s in symbols)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b"", lengths


def decode(data: bytes, lengths: dict, n: int) -> list:
    """Inverse of ``encode``: the first ``n`` symbols of the bitstream ``data``."""
    table = {code: sym for sym, code in canonical_codes(lengths).items()}
    bits = "".join(format(b, "08b") for b in data)
    out, cur = [], ""
    for bit in bits:
        if len(out) == n:
            break
        cur += bit
        if cur in table:
            out.append(table[cur])
            cur = ""
    if len(out) != n:
        raise ValueError(f"the bitstream holds {len(out)} symbols, fewer than n={n}")
    return out
