"""TinyGPT: a nanoGPT-style character transformer (825,856 parameters) for the LLM-quantization chapter.

Architecture (Radford et al. 2019, GPT-2, as written out in Karpathy's nanoGPT): token + learned position
embeddings, ``n_layers`` pre-LayerNorm blocks ``x = x + Attn(LN(x)); x = x + MLP(LN(x))``, a final LayerNorm and
an untied ``lm_head``. Attention is causal multi-head self-attention (Vaswani et al. 2017, eq. 1):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_head) + M) V,   M_ij = 0 if j <= i else -inf

Every projection is an ``nn.Linear`` (``attn.qkv``, ``attn.proj``, ``mlp.fc``, ``mlp.fc2``, ``lm_head``) so
weight quantization walks them with ``coursekit.surgery``. ``forward(idx, cache=...)`` accepts a key/value cache
(``coursekit.llm.kvcache``) for incremental decoding: only the new tokens are computed, their keys and values
are appended, and the queries attend over everything cached.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from coursekit._validate import check_int, check_positive


@dataclass
class GPTConfig:
    """Shape of a TinyGPT. The defaults give 825,856 parameters for the 63-character Shakespeare vocabulary."""

    vocab_size: int
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    context: int = 128
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "context"):
            check_int(name, getattr(self, name), min_value=1)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        check_positive("dropout", self.dropout, allow_zero=True)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused ``qkv`` projection and an output ``proj``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cache=None, layer: int = 0, past: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, heads, past + T, head_dim): cached keys then the new ones
        if past == 0 and k.shape[2] == T:
            mask, causal = None, True
        else:  # query i sits at absolute position past + i and sees keys 0..past + i
            mask = torch.ones(T, k.shape[2], dtype=torch.bool, device=x.device).tril(diagonal=past)
            causal = False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    """Position-wise feed-forward: ``fc2(GELU(fc(x)))`` with a 4x wider hidden layer."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.d_model, 4 * config.d_model)
        self.fc2 = nn.Linear(4 * config.d_model, config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
        self.attn, self.mlp = CausalSelfAttention(config), MLP(config)

    def forward(self, x, cache=None, layer: int = 0, past: int = 0):
        x = x + self.attn(self.ln1(x), cache=cache, layer=layer, past=past)
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """The character-level GPT of chapter 07. ``model(idx)`` returns logits ``(batch, time, vocab)``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.context, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 * n_layers)
            if name.endswith(("attn.proj.weight", "mlp.fc2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, cache=None) -> torch.Tensor:
        """Logits for every position of ``idx`` (batch, time); with ``cache``, ``idx`` continues the cached text."""
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype != torch.long:
            raise TypeError("idx must be an int64 tensor of shape (batch, time), got "
                            f"{type(idx).__name__}{getattr(idx, 'shape', '')} {getattr(idx, 'dtype', '')}")
        past = 0 if cache is None else cache.seq_len
        T = idx.shape[1]
        if past + T > self.config.context:
            raise ValueError(f"{past} cached + {T} new tokens exceed the context of {self.config.context}; "
                             "crop the input or clear the cache")
        pos = torch.arange(past, past + T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        for layer, block in enumerate(self.blocks):
            x = block(x, cache=cache, layer=layer, past=past)
        return self.lm_head(self.ln_f(x))


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def generate(model: TinyGPT, tokenizer, prompt: str, n_new: int, temperature: float = 0.8, top_k: int | None = None,
             seed: int = 0, cache=None) -> str:
    """``prompt`` followed by ``n_new`` sampled characters; the same ``seed`` gives the same text.

    Sampling draws from ``softmax(logits / temperature)`` (restricted to the ``top_k`` most likely characters if
    given) with a private ``torch.Generator`` seeded by ``seed``; ``temperature=0`` is greedy decoding.
    ``cache``: a ``KVCache``/``Int8KVCache`` to decode with (cleared first), ``None`` for a fresh FP32
    ``KVCache``, or ``False`` to recompute the whole window every step. When the context is full, the cache is
    cleared and the last ``context`` characters are re-read (the same window the uncached path sees).
    """
    from coursekit.llm.kvcache import KVCache

    n_new = check_int("n_new", n_new, min_value=0)
    temperature = check_positive("temperature", temperature, allow_zero=True)
    if top_k is not None:
        top_k = check_int("top_k", top_k, min_value=1)
    if not prompt:
        raise ValueError("prompt must be a non-empty string (the model needs at least one character)")
    context = model.config.context
    if cache is None:
        cache = KVCache(model.config.n_layers)
    if cache is not False:
        cache.clear()
    gen = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    model.eval()
    ids = tokenizer.encode(prompt)[None]
    todo = ids[:, -context:]  # what the model has not read yet
    for _ in range(n_new):
        if cache is False:
            logits = model(ids[:, -context:])
        else:
            if cache.seq_len + todo.shape[1] > context:
                cache.clear()
                todo = ids[:, -context:]
            logits = model(todo, cache=cache)
        nxt = _sample(logits[:, -1, :], temperature, top_k, gen)
        ids = torch.cat([ids, nxt], dim=1)
        todo = nxt
    model.train(was_training)
    return tokenizer.decode(ids[0])


def _sample(logits: torch.Tensor, temperature: float, top_k: int | None, gen: torch.Generator) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen)
