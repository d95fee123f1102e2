"""Parameterised numeric questions: draw concrete values and compute the answer with coursekit itself.

A bank question with ``"generator": NAME`` and ``"params": {name: [candidates...]}`` becomes a concrete
question through :func:`instantiate`: ``random.Random`` seeded from the question id and the seed draws one
candidate per parameter (in sorted name order), the prompt's ``{placeholders}`` are filled in and the answer
is computed by the generator below. Answers come from the library functions the course teaches
(``coursekit.formats``, ``coursekit.quant``), so the bank can never disagree with the code.
"""
from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass

from coursekit.quiz.schema import Question


@dataclass(frozen=True)
class Generator:
    """A named answer function with its required and optional parameter names."""

    func: Callable[..., float]
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()


def _signed_range(bits: int) -> tuple[int, int]:
    return -(2 ** (int(bits) - 1)), 2 ** (int(bits) - 1) - 1


def model_memory_gb(num_params_billions, format, group_size=None) -> float:
    """Weight memory in GB (1e9 bytes): ``formats.memory_bytes`` with FP16 per-group scales."""
    from coursekit.formats import memory_bytes

    n = int(num_params_billions * 1e9)
    return memory_bytes(n, format, group_size=group_size, scale_format="fp16") / 1e9


def kv_cache_gb(num_layers, num_kv_heads, head_dim, seq_len, batch, format) -> float:
    """KV-cache size in GB: ``formats.kv_cache_bytes`` (keys and values, every layer)."""
    from coursekit.formats import kv_cache_bytes

    return kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch=batch, fmt=format) / 1e9


def scale_zero_point(min_val, max_val, bits, symmetric, ask, signed=None) -> float:
    """Scale or zero point from ``quant.calc_qparams`` in the torch convention.

    The integer range is signed ``[-2^(b-1), 2^(b-1)-1]`` for symmetric and unsigned ``[0, 2^b-1]`` for
    affine quantization (torch's qint8 weights / quint8 activations), unless ``signed`` says otherwise.
    """
    import torch

    from coursekit.quant import calc_qparams

    signed = bool(symmetric) if signed is None else bool(signed)
    qmin, qmax = _signed_range(bits) if signed else (0, 2 ** int(bits) - 1)
    scale, zero_point = calc_qparams(torch.tensor(float(min_val)), torch.tensor(float(max_val)), qmin, qmax,
                                     symmetric=bool(symmetric), convention="torch")
    if ask == "scale":
        return float(scale)
    if ask == "zero_point":
        return float(int(zero_point))
    raise ValueError(f"ask={ask!r} is not supported; choose one of: 'scale', 'zero_point'")


def compression_ratio(from_bits, to_bits, group_size=None) -> float:
    """Size ratio when ``from_bits`` weights become ``to_bits`` plus one FP16 scale per group."""
    return from_bits / (to_bits + (16 / group_size if group_size else 0))


def sparsity_params(num_params_millions, sparsity) -> float:
    """Parameters (millions) left after pruning a fraction ``sparsity``."""
    return num_params_millions * (1 - sparsity)


def lowrank_params(m, n, rank) -> float:
    """Parameters of a rank-``rank`` factorisation ``U (m x r) @ V (r x n)`` of an ``m x n`` matrix."""
    return rank * (m + n)


def quantize_value(x, scale, zero_point, bits) -> float:
    """The signed ``bits``-bit integer code of ``x``: ``quant.quantize`` (round half to even, clamp)."""
    import torch

    from coursekit.quant import quantize

    qmin, qmax = _signed_range(bits)
    q = quantize(torch.tensor([float(x)]), torch.tensor(float(scale)), torch.tensor(int(zero_point)), qmin, qmax)
    return float(q.reshape(-1)[0])


GENERATORS: dict[str, Generator] = {
    "model_memory_gb": Generator(model_memory_gb, ("num_params_billions", "format", "group_size")),
    "kv_cache_gb": Generator(kv_cache_gb, ("num_layers", "num_kv_heads", "head_dim", "seq_len", "batch",
                                           "format")),
    "scale_zero_point": Generator(scale_zero_point, ("min_val", "max_val", "bits", "symmetric", "ask"),
                                  ("signed",)),
    "compression_ratio": Generator(compression_ratio, ("from_bits", "to_bits", "group_size")),
    "sparsity_params": Generator(sparsity_params, ("num_params_millions", "sparsity")),
    "lowrank_params": Generator(lowrank_params, ("m", "n", "rank")),
    "quantize_value": Generator(quantize_value, ("x", "scale", "zero_point", "bits")),
}


def draw_values(question: Question, seed: int = 0) -> dict:
    """One candidate per parameter, drawn by ``random.Random`` seeded with the question id and ``seed``."""
    rng = random.Random(f"{question.id}:{seed}")
    return {name: rng.choice(question.params[name]) for name in sorted(question.params)}


def compute_answer(generator: str, values: dict) -> float:
    """Run generator ``generator`` on the drawn ``values`` (extra prompt-only values are ignored)."""
    spec = GENERATORS[generator]
    kwargs = {k: v for k, v in values.items() if k in spec.required or k in spec.optional}
    return float(spec.func(**kwargs))


def instantiate(question: Question, seed: int = 0) -> Question:
    """A concrete copy of ``question``: prompt filled in and answer computed. Fixed questions pass through."""
    if not question.is_parameterised:
        return question
    values = draw_values(question, seed)
    shown = {k: ("none" if v is None else v) for k, v in values.items()}
    return dataclasses.replace(question, prompt=question.prompt.format(**shown),
                               answer=compute_answer(question.generator, values), values=values)
