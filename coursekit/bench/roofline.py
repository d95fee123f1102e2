"""The roofline model: is a kernel limited by memory bandwidth or by arithmetic, on *this* machine?

Williams, Waterman & Patterson, "Roofline: an insightful visual performance model for multicore architectures"
(CACM 52(4), 2009). A kernel that performs ``F`` floating-point operations and moves ``Q`` bytes between memory and
the processor has arithmetic intensity ``I = F / Q`` (FLOP per byte). With peak compute ``P`` (FLOP/s) and memory
bandwidth ``B`` (bytes/s) it can run at most at

    attainable(I) = min(P, I * B)                                    (the roof)

Below the ridge point ``I* = P / B`` a kernel is memory-bound (fewer bytes per FLOP make it faster: weight
quantization); above it, compute-bound (only faster arithmetic helps: INT8 dot products, tensor cores).

This module measures ``P`` and ``B`` on the learner's machine with ``coursekit.bench.timing`` (short runs: a
large read for bandwidth, a square matmul for peak FLOP/s), counts FLOPs and bytes of common kernels, and draws
the roof with kernels placed on it. Counting conventions: a multiply-add is 2 FLOPs; bytes are the minimum
traffic (every input read once, every output written once), so the intensity is an upper bound for the kernel.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from coursekit._env import fast_mode
from coursekit._validate import check_int, check_positive
from coursekit.bench.timing import measure_latency

# Sizes of the measurements: large enough to leave the caches (bandwidth) and to keep the matmul units busy
# (peak), small enough that all of it takes well under a second in fast mode.
BANDWIDTH_BYTES = {True: 128 * 2**20, False: 256 * 2**20}  # fast mode -> bytes read per sample
MATMUL_SIZE = {True: 768, False: 1024}


@dataclass(frozen=True)
class Kernel:
    """One kernel: FLOPs it performs, bytes it must move, and (once measured) its median time in seconds."""

    name: str
    flops: float
    bytes: float
    seconds: float | None = None

    def __post_init__(self):
        check_positive("flops", self.flops, allow_zero=True)
        check_positive("bytes", self.bytes)
        if self.seconds is not None:
            check_positive("seconds", self.seconds)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte."""
        return self.flops / self.bytes

    @property
    def achieved_flops(self) -> float | None:
        """FLOP/s reached in the measurement (None before measuring)."""
        return None if self.seconds is None else self.flops / self.seconds


def linear_kernel(in_features: int, out_features: int, batch: int = 1, weight_bytes: float = 4,
                  activation_bytes: float = 4, name: str | None = None) -> Kernel:
    """``y = x W^T`` for ``x`` of shape (batch, in_features): ``2 * batch * in * out`` FLOPs; bytes = the weight
    matrix once (``in * out * weight_bytes``) plus the input and output activations (``batch * (in + out) *
    activation_bytes``). The bias is left out (``batch * out`` FLOPs, negligible). At batch 1 this is a GEMV,
    whose intensity is about ``2 / weight_bytes`` FLOP/byte; a batch of ``b`` reuses each weight ``b`` times."""
    i = check_int("in_features", in_features, min_value=1)
    o = check_int("out_features", out_features, min_value=1)
    b = check_int("batch", batch, min_value=1)
    wb = check_positive("weight_bytes", weight_bytes)
    ab = check_positive("activation_bytes", activation_bytes)
    kind = "GEMV" if b == 1 else "GEMM"
    return Kernel(name or f"{kind}: Linear({i}, {o}), batch {b}", 2.0 * b * i * o, i * o * wb + b * (i + o) * ab)


def matmul_kernel(n: int, bytes_per_value: float = 4, name: str | None = None) -> Kernel:
    """Square ``C = A @ B`` with n x n matrices: ``2 n^3`` FLOPs, ``3 n^2`` values moved (intensity ``n / 6`` in
    FP32: large matmuls are the compute-bound kernel used to measure peak FLOP/s)."""
    n = check_int("n", n, min_value=1)
    bpv = check_positive("bytes_per_value", bytes_per_value)
    return Kernel(name or f"matmul {n}x{n}x{n}", 2.0 * n**3, 3.0 * n * n * bpv)


def elementwise_kernel(numel: int, flops_per_element: float = 1, inputs: int = 2, outputs: int = 1,
                       bytes_per_element: float = 4, name: str | None = None) -> Kernel:
    """An elementwise op over ``numel`` elements (``a + b``: 1 FLOP, 2 inputs, 1 output, so 1/12 FLOP/byte in
    FP32): always memory-bound, which is why compilers fuse elementwise ops into their neighbours."""
    n = check_int("numel", numel, min_value=1)
    f = check_positive("flops_per_element", flops_per_element, allow_zero=True)
    k = check_int("inputs", inputs, min_value=0) + check_int("outputs", outputs, min_value=1)
    bpe = check_positive("bytes_per_element", bytes_per_element)
    return Kernel(name or f"elementwise ({n:,} elements)", f * n, float(k * n * bpe))


def ridge_point(peak_flops: float, bandwidth: float) -> float:
    """The intensity (FLOP/byte) where the roof bends: ``peak_flops / bandwidth``."""
    return check_positive("peak_flops", peak_flops) / check_positive("bandwidth", bandwidth)


def attainable_flops(intensity: float, peak_flops: float, bandwidth: float) -> float:
    """The roof at ``intensity``: ``min(peak_flops, intensity * bandwidth)`` FLOP/s."""
    intensity = check_positive("intensity", intensity, allow_zero=True)
    return min(check_positive("peak_flops", peak_flops), intensity * check_positive("bandwidth", bandwidth))


def bound(kernel: Kernel, peak_flops: float, bandwidth: float) -> str:
    """``"memory"`` if the kernel's intensity is below the ridge point, else ``"compute"``."""
    return "memory" if kernel.intensity < ridge_point(peak_flops, bandwidth) else "compute"


def _best_seconds(fn: Callable[[], object], *, repeats: int, warmup: int, device: str, threads: int | None) -> float:
    """Seconds of the fastest sample (coursekit.bench.timing: warm-up, pinned threads, synchronised devices)."""
    stats = measure_latency({"kernel": fn}, repeats=repeats, warmup=warmup, device=device, threads=threads)["kernel"]
    return stats.min_ms / 1e3


def measure_bandwidth(size_bytes: int | None = None, *, repeats: int = 15, device: str = "cpu",
                      threads: int | None = 1) -> float:
    """Memory read bandwidth in bytes/s: the fastest of ``repeats`` sums over a ``size_bytes`` FP32 tensor (a
    STREAM-like read kernel, McCalpin 1995; the tensor is far larger than the caches, so every byte comes from
    DRAM). ``threads=1`` measures what one core can pull, the roof of single-thread kernels; the default size is
    256 MiB (128 MiB in fast mode). The fastest sample is kept because other load only ever slows a sample down:
    on a busy machine more ``repeats`` give a truer roof."""
    size = BANDWIDTH_BYTES[fast_mode()] if size_bytes is None else check_int("size_bytes", size_bytes, min_value=4)
    x = torch.ones(size // 4, dtype=torch.float32, device=device)
    seconds = _best_seconds(x.sum, repeats=check_int("repeats", repeats, min_value=1), warmup=1, device=device,
                            threads=threads)
    return x.numel() * 4 / seconds


def measure_peak_flops(dtype: torch.dtype = torch.float32, n: int | None = None, *, repeats: int = 10,
                       device: str = "cpu", threads: int | None = 1) -> float:
    """Peak FLOP/s in ``dtype``: the fastest of ``repeats`` n x n matmuls (2 n^3 FLOPs each; n = 1024, 768 in fast
    mode). On a CPU without native FP16/BF16 arithmetic those dtypes are emulated and can be 100x slower than FP32:
    pass a small ``n`` for them."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype (torch.float32, torch.bfloat16, ...), got {dtype!r}")
    n = MATMUL_SIZE[fast_mode()] if n is None else check_int("n", n, min_value=1)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dtype=dtype, device=device)
    b = torch.randn(n, n, generator=gen).to(dtype=dtype, device=device)
    seconds = _best_seconds(lambda: a @ b, repeats=check_int("repeats", repeats, min_value=1), warmup=1,
                            device=device, threads=threads)
    return matmul_kernel(n).flops / seconds


def measure_kernel(kernel: Kernel, fn: Callable[[], object], *, repeats: int = 10, device: str = "cpu",
                   threads: int | None = 1) -> Kernel:
    """``kernel`` with ``seconds`` set to the fastest of ``repeats`` timed calls of ``fn`` (which must do the work
    ``kernel`` counts). The fastest sample, as for the roof itself: both are "the best this machine did"."""
    seconds = _best_seconds(fn, repeats=check_int("repeats", repeats, min_value=1), warmup=2, device=device,
                            threads=threads)
    return replace(kernel, seconds=seconds)


def roofline_reading(peak_flops: float, bandwidth: float, kernels: Sequence[Kernel] = ()) -> str:
    """A plain-language reading of a roofline, built only from the numbers given (measured on this machine)."""
    ridge = ridge_point(peak_flops, bandwidth)
    lines = [(f"roof: peak {peak_flops / 1e9:.1f} GFLOP/s, bandwidth {bandwidth / 1e9:.1f} GB/s, "
              f"ridge point {ridge:.1f} FLOP/byte")]
    for k in kernels:
        roof = attainable_flops(k.intensity, peak_flops, bandwidth)
        line = f"{k.name}: {k.intensity:.3g} FLOP/byte, {bound(k, peak_flops, bandwidth)}-bound, roof {roof / 1e9:.2f} GFLOP/s"
        if k.achieved_flops is not None:
            share = k.achieved_flops / roof
            line += f", measured {k.achieved_flops / 1e9:.2f} GFLOP/s ({share:.0%} of its roof)"
            if share > 1.1:
                line += (": above the measured roof, which comes from a read-only sum (caches, or reads and writes "
                         "overlapping, can beat it; load during the roof's own measurement lowers it: rerun)")
        lines.append(line)
    return "\n".join(lines)


def roofline_figure(peak_flops: float, bandwidth: float, kernels: Sequence[Kernel] = (), *, ax=None,
                    title: str | None = None):
    """Log-log roofline: the roof ``min(P, I * B)``, the ridge point, and each kernel at its intensity (a filled
    marker at its measured FLOP/s when measured, a line up to its roof). Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    ridge = ridge_point(peak_flops, bandwidth)
    intensities = [k.intensity for k in kernels if k.intensity > 0] + [ridge]
    lo = 10 ** math.floor(math.log10(min(intensities) / 3))
    hi = 10 ** math.ceil(math.log10(max(intensities) * 3))
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.loglog(xs, [attainable_flops(x, peak_flops, bandwidth) / 1e9 for x in xs], c="k", lw=2,
              label=f"roof: {bandwidth / 1e9:.1f} GB/s, {peak_flops / 1e9:.1f} GFLOP/s")
    ax.axvline(ridge, c="0.6", ls=":", lw=1)
    ax.annotate(f"ridge {ridge:.1f} FLOP/B", (ridge, peak_flops / 1e9), textcoords="offset points",
                xytext=(4, -14), fontsize=8)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, color in zip(kernels, colors * (len(kernels) // len(colors) + 1)):
        roof = attainable_flops(k.intensity, peak_flops, bandwidth) / 1e9
        y = k.achieved_flops / 1e9 if k.achieved_flops is not None else roof
        ax.plot([k.intensity, k.intensity], [min(y, roof), max(y, roof)], c=color, ls="--", lw=1)
        ax.plot(k.intensity, y, "o", c=color, mfc=color if k.achieved_flops is not None else "none", label=k.name)
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(title or "roofline of this machine")
    ax.legend(fontsize=7, loc="lower right")
    return ax.figure


__all__ = [
    "Kernel", "attainable_flops", "bound", "elementwise_kernel", "linear_kernel", "matmul_kernel",
    "measure_bandwidth", "measure_kernel", "measure_peak_flops", "ridge_point", "roofline_figure", "roofline_reading",
]
