"""Key/value caches for incremental decoding: FP32 and INT8 (per-token or per-head scales).

Decoding one token at a time, a transformer needs the keys and values of every earlier token in every layer.
Recomputing them is quadratic work; caching them costs memory,

    bytes = 2 (K and V) x layers x kv_heads x head_dim x seq_len x batch x bits / 8

(``coursekit.formats.memory.kv_cache_bytes``), which for long contexts can exceed the weights. Storing the cache
in INT8 halves it against FP16 (a quarter of FP32) at a small accuracy cost (KIVI, Liu et al. 2024; KVQuant,
Hooper et al. 2024 quantize it further). Keys and values arrive one token at a time, so the scales here are
computed when a token arrives and never revisited:

* ``per_token``: one symmetric scale per (batch, token) over all heads' values of that token;
* ``per_head``:  one symmetric scale per (batch, head, token) over its ``head_dim`` values (finer, more scales).

Codes use the narrow signed range [-127, 127] and ``S = absmax / 127`` (``coursekit.quant.primitives``); scales
are stored in FP16, as deployed INT8 caches do. Reads dequantize to float32.
"""
from __future__ import annotations

import torch

from coursekit._validate import check_choice, check_int
from coursekit.quant.primitives import calc_qparams, dequantize, quant_range, quantize

GRANULARITIES = ("per_token", "per_head")


class KVCache:
    """FP32 cache: per layer, keys and values of shape (batch, heads, tokens, head_dim), appended in order."""

    def __init__(self, n_layers: int):
        self.n_layers = check_int("n_layers", n_layers, min_value=1)
        self.clear()

    def clear(self) -> None:
        self._store: list[tuple | None] = [None] * self.n_layers

    def _check(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> int:
        layer = check_int("layer", layer, min_value=0, max_value=self.n_layers - 1)
        if k.shape != v.shape or k.dim() != 4:
            raise ValueError(f"k and v must both have shape (batch, heads, tokens, head_dim), got "
                             f"{tuple(k.shape)} and {tuple(v.shape)}")
        return layer

    @property
    def seq_len(self) -> int:
        """Tokens cached (in layer 0; the model updates every layer once per forward)."""
        return 0 if self._store[0] is None else self._read(0)[0].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new tokens' ``k``/``v`` for ``layer``; return all cached keys and values of that layer."""
        layer = self._check(layer, k, v)
        new = self._encode(k, v)
        old = self._store[layer]
        self._store[layer] = new if old is None else tuple(torch.cat([a, b], dim=2) for a, b in zip(old, new))
        return self._read(layer)

    def _encode(self, k, v):
        return k.detach().float().contiguous(), v.detach().float().contiguous()

    def _read(self, layer: int):
        return self._store[layer]

    def tensors(self) -> list[torch.Tensor]:
        """Every stored tensor (codes and scales for a quantized cache): what ``cache_bytes`` counts."""
        return [t for entry in self._store if entry is not None for t in entry]


class Int8KVCache(KVCache):
    """INT8 cache: codes (int8) plus FP16 scales per token (``per_token``) or per head and token (``per_head``).

    Stored per layer: ``k_codes, k_scales, v_codes, v_scales``; codes have the FP32 cache's shape, scales
    (batch, 1, tokens, 1) per token or (batch, heads, tokens, 1) per head. ``update`` returns dequantized FP32.
    """

    def __init__(self, n_layers: int, granularity: str = "per_token"):
        self.granularity = check_choice("granularity", granularity, GRANULARITIES)
        super().__init__(n_layers)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """One row per scale: (B*heads*T, head_dim) per head, (B*T, heads*head_dim) per token."""
        if self.granularity == "per_head":
            return x.reshape(-1, x.shape[-1])
        return x.transpose(1, 2).reshape(x.shape[0] * x.shape[2], -1)

    def _unrows(self, rows: torch.Tensor, shape) -> torch.Tensor:
        if self.granularity == "per_head":
            return rows.reshape(shape)
        B, H, T, D = shape
        return rows.reshape(B, T, H, D).transpose(1, 2)

    def _quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """INT8 codes shaped like ``x`` and FP16 scales (``S = absmax / 127`` per row, Z = 0)."""
        rows = self._rows(x.detach().float())
        amax = rows.abs().amax(dim=1)
        qmin, qmax = quant_range(8, signed=True, narrow=True)
        scale, _ = calc_qparams(-amax, amax, qmin, qmax, symmetric=True)
        scale16 = scale.to(torch.float16).clamp_min(torch.finfo(torch.float16).tiny)
        codes = quantize(rows, scale16.float(), 0, qmin, qmax, group_size=rows.shape[1])
        B, H, T, _ = x.shape
        return self._unrows(codes, x.shape), scale16.reshape(B, H if self.granularity == "per_head" else 1, T, 1)

    def _dequantize(self, codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        rows = self._rows(codes)
        return self._unrows(dequantize(rows, scales.float().flatten(), 0, group_size=rows.shape[1]), codes.shape)

    def _encode(self, k, v):
        return (*self._quantize(k), *self._quantize(v))

    def _read(self, layer: int):
        k_codes, k_scales, v_codes, v_scales = self._store[layer]
        return self._dequantize(k_codes, k_scales), self._dequantize(v_codes, v_scales)

    @property
    def seq_len(self) -> int:
        return 0 if self._store[0] is None else self._store[0][0].shape[2]


def cache_bytes(cache: KVCache) -> int:
    """Bytes the cache really holds: the storage of every stored tensor (codes and scales)."""
    if not isinstance(cache, KVCache):
        raise TypeError(f"cache must be a KVCache or Int8KVCache, got {type(cache).__name__}")
    return sum(t.numel() * t.element_size() for t in cache.tensors())
