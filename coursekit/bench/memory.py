"""Three different "sizes" of a model, which people often confuse.

* **Size on disk** (``serialized_size``): the bytes of the saved file; includes metadata and packing.
* **Parameter memory** (``parameter_memory``): parameters x bits / 8 (+ quantization scales); what the weights
  alone need in RAM at a given precision (computed with ``coursekit.formats.memory_bytes``).
* **Peak memory** (``peak_memory``): the most memory the process actually used while running a function:
  weights + activations + workspace + allocator overhead. This is what decides whether a model fits.
"""
from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def serialized_size(obj) -> int:
    """Bytes of ``torch.save(obj)`` (pass a module to save its state_dict, or a path to an existing file)."""
    if isinstance(obj, (str, os.PathLike)):
        return os.path.getsize(obj)
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def parameter_memory(model: torch.nn.Module, formats=("fp32", "fp16", "int8", "int4"), group_size=None) -> dict:
    """Bytes the parameters need at each format in ``formats`` (FP16 group scales included when grouped,
    counted per tensor by ``coursekit.formats.model_memory_report``)."""
    from coursekit.formats import model_memory_report

    report = model_memory_report(model, formats=formats, group_size=group_size)
    return {name: report.bytes_by_format[name] for name in formats}


@dataclass
class PeakMemory:
    """Peak memory of one call, in bytes: how it was measured matters, so the method is recorded too."""

    peak_bytes: int
    method: str


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def peak_memory(fn: Callable[[], object], device: str = "cpu", interval_s: float = 0.0005) -> PeakMemory:
    """Extra memory used at the peak of ``fn()`` above what was in use before the call.

    On CUDA this is exact (the caching allocator's ``max_memory_allocated``). On CPU we sample the process's
    resident set size from a background thread every ``interval_s`` seconds: short spikes can be missed, and
    memory the allocator keeps from earlier calls is not counted again, so treat it as a lower bound.
    """
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return PeakMemory(torch.cuda.max_memory_allocated() - before, "cuda max_memory_allocated")
    before = _rss()
    peak = before
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss())
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    peak = max(peak, _rss())
    return PeakMemory(peak - before, f"cpu rss sampled every {interval_s * 1e3:g} ms (lower bound)")
