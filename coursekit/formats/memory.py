"""How many bytes a model, a tensor or a KV cache takes in a given format.

Weights: ``num_params * bits / 8``, plus, for group-wise quantization, one scale per group of ``group_size``
weights (and one zero point when the scheme is asymmetric). A 7B-parameter model:

    FP32 28 GB, FP16 14 GB, INT8 7 GB, INT4 3.5 GB + 7e9/128 * 2 B = 0.109 GB of FP16 scales (group 128).

So group-wise INT4 at group size 128 costs 4 + 16/128 = 4.125 bits per weight.

KV cache of a decoder (keys and values, every layer, every token):
``2 * num_layers * num_kv_heads * head_dim * seq_len * batch * bytes_per_value``.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import torch

from coursekit._validate import check_int
from coursekit.formats.registry import get_format

DEFAULT_REPORT_FORMATS = ("fp32", "fp16", "bf16", "fp8_e4m3", "int8", "int4", "nf4")


def _bits_to_bytes(total_bits: int) -> int:
    return -(-total_bits // 8)


def memory_bytes(num_params: int, fmt, group_size: int | None = None, scale_format="fp16",
                 zero_point: bool = False) -> int:
    """Bytes to store ``num_params`` values in ``fmt`` (rounded up to a whole byte).

    With ``group_size``, every group of ``group_size`` consecutive values also stores one scale in
    ``scale_format`` and, with ``zero_point=True``, one zero point in ``fmt`` itself (as GPTQ/AWQ pack
    4-bit zero points). ``group_size`` must divide ``num_params``.
    """
    num_params = check_int("num_params", num_params, min_value=0)
    fmt = get_format(fmt)
    total_bits = num_params * fmt.bits
    if group_size is None:
        if zero_point:
            raise ValueError("zero_point=True needs a group_size (zero points are stored per group)")
        return _bits_to_bytes(total_bits)
    group_size = check_int("group_size", group_size, min_value=1)
    if num_params % group_size:
        raise ValueError(
            f"group_size={group_size} does not divide num_params={num_params}; "
            f"use a group size that divides it (or pad to {math.ceil(num_params / group_size) * group_size})"
        )
    groups = num_params // group_size
    per_group_bits = get_format(scale_format).bits + (fmt.bits if zero_point else 0)
    return _bits_to_bytes(total_bits + groups * per_group_bits)


def bits_per_param(fmt, group_size: int | None = None, scale_format="fp16", zero_point: bool = False) -> float:
    """Average storage bits per value, overheads included (INT4, group 128, FP16 scales: 4.125)."""
    fmt = get_format(fmt)
    if group_size is None:
        return float(fmt.bits)
    group_size = check_int("group_size", group_size, min_value=1)
    extra = get_format(scale_format).bits + (fmt.bits if zero_point else 0)
    return fmt.bits + extra / group_size


def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, seq_len: int, batch: int = 1,
                   fmt="fp16") -> int:
    """Bytes of the key and value cache: 2 * layers * kv_heads * head_dim * seq_len * batch * bits / 8."""
    values = 2
    for name, v in (("num_layers", num_layers), ("num_kv_heads", num_kv_heads), ("head_dim", head_dim),
                    ("seq_len", seq_len), ("batch", batch)):
        values *= check_int(name, v, min_value=0)
    return _bits_to_bytes(values * get_format(fmt).bits)


@dataclass
class MemoryReport:
    """Parameters of a model by dtype, and what they would take in each format."""

    num_params: int
    params_by_dtype: dict[str, int]
    bytes_now: int
    bytes_by_format: dict[str, int] = field(default_factory=dict)
    group_size: int | None = None
    scale_format: str = "fp16"

    def rows(self) -> list[dict]:
        """One row per format: name, bytes, megabytes, ratio to the current size."""
        return [
            {"format": name, "bytes": b, "MB": b / 1e6, "ratio": (self.bytes_now / b) if b else math.inf}
            for name, b in self.bytes_by_format.items()
        ]

    def __str__(self) -> str:
        dtypes = ", ".join(f"{k}: {v:,}" for k, v in self.params_by_dtype.items())
        lines = [f"{self.num_params:,} parameters ({dtypes}); now {self.bytes_now / 1e6:.3f} MB"]
        if self.group_size:
            lines.append(f"group size {self.group_size}, {self.scale_format} scales")
        lines += [f"  {r['format']:>9}: {r['MB']:10.3f} MB  ({r['ratio']:.2f}x smaller)" for r in self.rows()]
        return "\n".join(lines)


def model_memory_report(model: torch.nn.Module, formats=DEFAULT_REPORT_FORMATS, group_size: int | None = None,
                        scale_format="fp16") -> MemoryReport:
    """Count a model's parameters by dtype and the bytes they would need in each of ``formats``.

    Parameters only (no buffers); a shared parameter counts once. With ``group_size``, integer and NF4
    formats add one ``scale_format`` scale per group, counted per tensor, where a shorter last group still
    needs its own scale; float formats are stored without scales.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    formats = [get_format(f).name for f in formats]
    if group_size is not None:
        group_size = check_int("group_size", group_size, min_value=1)
    params = list(model.parameters())
    by_dtype = Counter()
    bytes_now = 0
    for p in params:
        by_dtype[str(p.dtype).replace("torch.", "")] += p.numel()
        bytes_now += p.numel() * p.element_size()
    report = MemoryReport(sum(by_dtype.values()), dict(by_dtype), bytes_now, group_size=group_size,
                          scale_format=get_format(scale_format).name)
    for name in formats:
        fmt = get_format(name)
        bits = sum(p.numel() for p in params) * fmt.bits
        if group_size is not None and fmt.kind != "float":
            groups = sum(-(-p.numel() // group_size) for p in params)
            bits += groups * get_format(scale_format).bits
        report.bytes_by_format[name] = _bits_to_bytes(bits)
    return report

