"""The ``formats`` suite: how fast this machine multiplies matrices in each number format, and how big a model is.

Two kinds of records:

* **matmul** (one per device, dtype and size ``n``): the square product ``A @ B`` of two ``n x n`` matrices in FP32,
  BF16 and FP16 (and FP8 E4M3 through ``torch._scaled_mm`` on CUDA GPUs of compute capability 8.9 or newer). A
  product costs ``2 n^3`` floating-point operations, so ``gflops = 2 n^3 / median seconds / 1e9``. The dtypes of
  one size are timed interleaved with ``coursekit.bench.measure_latency`` at ``ctx.threads`` threads.
  ``batch`` is ``n``: the rows of ``A``, the tokens a transformer's Linear layer processes at once.
* **size** (one per format): the bytes of the suite's Linear-heavy model (``basics.linear_heavy_model``) stored in
  each format, from ``coursekit.formats.model_memory_report``; 4-bit formats carry one FP16 scale per group of
  ``GROUP_SIZE`` weights. These rows have no latency.

Lower precision is only faster where the hardware has instructions for it: FP32 runs on the FP32 vector units
(AVX-512 FMA), BF16 on AVX512-BF16 / AMX-BF16 tiles (x86) or tensor cores (GPU), FP16 on AVX512-FP16 / AMX-FP16
where torch's kernels use them, otherwise it is converted to FP32 and back (slower than FP32). Where no 16-bit
kernel exists at all, torch falls back to a generic loop that widens each element on its own: that is software
emulation, and it runs one or two orders of magnitude below FP32 (about 1 GFLOP/s against 88 on an AVX-512 core
without AVX512-FP16). ``reading`` calls a format *emulated* when its measured GFLOP/s fall below
``EMULATED_BELOW`` x FP32, and cites the CPU's ISA flags (``coursekit.bench.accelerated_paths``) as the second
witness. Each dtype's timing has a time budget (``BUDGET_S``; at least 3 samples), and a dtype whose next size is
projected from its own measurement to need more than the budget for one product is not timed there (its record
says why), so an emulated format costs seconds, not the half hour that 30 fixed repeats of a 2048^2 FP16 product
took on a CPU without FP16 arithmetic.
"""
from __future__ import annotations

import torch

from coursekit.bench import accelerated_paths, make_record, measure_latency, progress_bar
from coursekit.formats import model_memory_report
from coursekit.suites import SuiteContext, register

MATMUL_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SIZES = (256, 1024, 2048)
FAST_SIZES = (256, 1024)
SIZE_FORMATS = ("fp32", "fp16", "bf16", "fp8_e4m3", "int8", "int4", "nf4")
GROUP_SIZE = 64  # one FP16 scale per 64 weights for int4 / nf4 (QLoRA's block size)
FP8_MIN_CAPABILITY = (8, 9)  # Ada (8.9) and Hopper (9.0) tensor cores have FP8
BUDGET_S, FAST_BUDGET_S = 5.0, 1.0  # seconds of timing per dtype and size (at least MIN_SAMPLES samples)
MIN_SAMPLES = 3
# A 16-bit matmul slower than this fraction of FP32 is not running on any 16-bit (or even FP32-vectorised)
# arithmetic: native 16-bit units give >= 1x, a vectorised widen-to-FP32 kernel about 0.5-1x.
EMULATED_BELOW = 0.25


def matmul_flops(n: int) -> int:
    """Floating-point operations of an ``n x n`` by ``n x n`` product: n^2 outputs, n multiply-adds each."""
    return 2 * n ** 3


def fp8_support(device: str) -> tuple[bool, str]:
    """Whether ``torch._scaled_mm`` FP8 can run on ``device``, and why not when it cannot."""
    if not device.startswith("cuda"):
        return False, "FP8 matmul needs a CUDA GPU of compute capability >= 8.9 (Ada, Hopper, Blackwell)"
    if not hasattr(torch, "_scaled_mm"):
        return False, f"this torch ({torch.__version__}) has no torch._scaled_mm"
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_MIN_CAPABILITY:
        return False, (f"GPU compute capability {capability[0]}.{capability[1]} < 8.9: no FP8 tensor cores "
                       "(A100 is 8.0)")
    return True, ""


def _fp8_call(n: int, device: str):
    """A zero-argument FP8 E4M3 product (per-tensor scales 1, BF16 output), or None if torch refuses it."""
    a = torch.randn(n, n, device=device).to(torch.float8_e4m3fn)
    b = torch.randn(n, n, device=device).to(torch.float8_e4m3fn).t()  # _scaled_mm wants B column-major
    one = torch.ones((), device=device)

    def call():
        return torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

    try:
        call()
    except (RuntimeError, TypeError):
        return None
    return call


def projected_seconds(per_call_ms: float, from_n: int, to_n: int) -> float:
    """Seconds one ``to_n``-sized product should take, scaled from a measured ``from_n``-sized one by the FLOP
    count (n^3). Small products carry overheads, so this tends to underestimate: a conservative skip rule."""
    return per_call_ms / 1e3 * (to_n / from_n) ** 3


def matmul_records(ctx: SuiteContext, device: str) -> list[dict]:
    """GFLOP/s of square matmuls per dtype and size on ``device`` (dtypes interleaved within a size).

    Sizes go from small to large. A dtype whose next product is projected (``projected_seconds``, from its own
    measurement at the previous size) to take longer than the whole time budget is not timed at that size or any
    larger one: its record says so (``note``, ``projected_s``) instead of spending minutes on an emulated format.
    """
    sizes = FAST_SIZES if ctx.fast else SIZES
    budget = FAST_BUDGET_S if ctx.fast else BUDGET_S
    fp8_ok, fp8_note = fp8_support(device)
    records = []
    measured: dict[str, tuple[int, float, float]] = {}  # dtype -> (n, median ms per call, GFLOP/s) at its last size
    for n in progress_bar(sizes, desc=f"formats: matmul on {device}", enabled=ctx.progress):
        torch.manual_seed(n)
        calls, skipped = {}, {}
        for name, dtype in MATMUL_DTYPES.items():
            if name in measured and projected_seconds(measured[name][1], measured[name][0], n) > budget:
                skipped[name] = projected_seconds(measured[name][1], measured[name][0], n)
                continue
            a = torch.randn(n, n, device=device).to(dtype)
            b = torch.randn(n, n, device=device).to(dtype)
            calls[name] = lambda a=a, b=b: a @ b
        if fp8_ok:
            call = _fp8_call(n, device)
            if call is not None:
                calls["fp8_e4m3"] = call
            else:
                fp8_note = "torch._scaled_mm refused FP8 on this GPU / torch build"
        stats = measure_latency(calls, repeats=ctx.repeats, warmup=2, device=device, threads=ctx.threads,
                                budget_s=budget, min_samples=MIN_SAMPLES) if calls else {}
        for name, s in stats.items():
            gflops = matmul_flops(n) / (s.median_ms * 1e-3) / 1e9
            measured[name] = (n, s.median_ms, gflops)
            records.append(make_record(
                "matmul", name, device=device, batch=n, threads=ctx.threads, stats=s, size=n,
                gflops=gflops, budget_s=budget, note="",
            ))
        for name, seconds in skipped.items():
            last_n, _, last_gflops = measured[name]
            records.append(make_record(
                "matmul", name, device=device, batch=n, threads=ctx.threads, size=n, gflops=None,
                budget_s=budget, projected_s=seconds,
                note=(f"skipped: at {last_gflops:.2g} GFLOP/s (measured at n={last_n}) one {n}x{n} product would "
                      f"take about {seconds:,.0f} s, more than the {budget:g} s time budget"),
            ))
        if not fp8_ok or "fp8_e4m3" not in calls:
            records.append(make_record("matmul", "fp8_e4m3", device=device, batch=n, threads=ctx.threads,
                                       size=n, gflops=None, note=f"skipped: {fp8_note}"))
    return records


def size_records(ctx: SuiteContext) -> list[dict]:
    """Bytes of the Linear-heavy model in each of ``SIZE_FORMATS`` (4-bit formats with group scales)."""
    from coursekit.suites.basics import linear_heavy_model

    model = linear_heavy_model()
    plain = model_memory_report(model, [f for f in SIZE_FORMATS if f not in ("int4", "nf4")])
    grouped = model_memory_report(model, ["int4", "nf4"], group_size=GROUP_SIZE)
    records = []
    for report, group in ((plain, None), (grouped, GROUP_SIZE)):
        for name, size in report.bytes_by_format.items():
            records.append(make_record(
                "linear_heavy", name, device="cpu", batch=1, threads=ctx.threads, size_bytes=size,
                num_params=report.num_params, group_size=group, bits_per_param=8 * size / report.num_params,
            ))
    return records


@register("formats", "matmul GFLOP/s in FP32 / BF16 / FP16 (FP8 on new GPUs) and model size per format")
def formats_suite(ctx: SuiteContext) -> list[dict]:
    records = matmul_records(ctx, ctx.device)
    if ctx.device != "cpu":  # the CPU is always worth knowing: it is the baseline the GPU is compared with
        records = matmul_records(ctx, "cpu") + records
    return records + size_records(ctx)


def _matmul(records, device, variant, n):
    return next((r for r in records if r["model"] == "matmul" and r["device"] == device
                 and r["variant"] == variant and r["batch"] == n and r.get("gflops")), None)


def _verdict(ratio: float) -> str:
    return "faster" if ratio > 1.1 else "slower" if ratio < 0.9 else "about the same"


def _gflops(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def _ratio(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def _samples_note(r: dict) -> str:
    if r.get("stopped_by") == "budget":
        return f"; {r['samples']} samples, {r.get('budget_s') or 0:g} s budget"
    return ""


def _isa_witness(hardware: dict | None, device: str, variant: str) -> tuple[bool | None, str]:
    """Whether ``hardware``'s CPU flags promise native ``variant`` arithmetic, and the flags behind the answer."""
    if not hardware or device != "cpu" or "cpu" not in hardware:
        return None, ""
    report = {"cpu": hardware["cpu"], "cuda": hardware.get("cuda", [])}
    path = next((p for p in accelerated_paths(report) if p.path == f"CPU {variant.upper()}"), None)
    return (path.accelerated, path.reason) if path else (None, "")


def _format_line(label: str, ratio: float, r: dict, base: dict, n: int, device: str, native: str,
                 hardware: dict | None) -> str:
    """One reading line for a 16-bit format against FP32, from the measured ratio and the ISA flags."""
    accelerated, flags = _isa_witness(hardware, device, label)
    if ratio > 1.5:
        return f"  -> {label} is {ratio:.1f}x FP32 at n={n}: this {device.upper()} has a native {label} matrix path " \
               f"({native})."
    if ratio < EMULATED_BELOW:
        line = (f"  -> {label} is emulated in software here: {_gflops(r['gflops'])} GFLOP/s against FP32's "
                f"{base['gflops']:,.0f} at n={n} ({ratio:.3f}x). A kernel that widens blocks to FP32 would reach "
                f"about half of FP32 or more, so at this speed no vectorised {label} kernel ran: torch fell back "
                "to a generic loop that converts each element on its own")
        if accelerated is False:
            line += f"; the ISA flags agree: {flags}"
        elif accelerated:
            line += f", although the CPU reports {flags.removeprefix('has ')}: torch's kernels do not use it"
        return line + f". Keep {label} for storage on this machine and compute in FP32."
    if ratio < 0.9:
        line = (f"  -> {label} is slower than FP32 at n={n} ({ratio:.2f}x): no native {label} matmul is used, so "
                "values are widened to FP32 and back, a cost on top of the FP32 work")
        if accelerated is False:
            line += f" (ISA flags: {flags})"
        elif accelerated:
            line += f", although the CPU reports {flags.removeprefix('has ')}"
        return line + f"; {label} only saves memory on this machine."
    return (f"  -> {label} is about as fast as FP32 at n={n} ({ratio:.2f}x): the kernel computes in FP32 "
            f"(no native {label} matmul used); {label} only halves the memory here.")


NATIVE_PATHS = {"BF16": "AMX-BF16 / AVX512-BF16 on x86 CPUs, tensor cores on GPUs",
                "FP16": "AVX512-FP16 / AMX-FP16 on x86 CPUs, tensor cores on GPUs"}


def reading(records: list[dict], hardware: dict | None = None) -> str:
    """Plain-language reading of a ``formats`` result, built only from the measured numbers.

    Pass ``hardware`` (``result["hardware"]`` from ``run_suite``) to have the CPU's ISA flags cited next to the
    measured ratios: a 16-bit format far below FP32 (< ``EMULATED_BELOW`` x) is called emulated in software.
    """
    lines = []
    matmuls = [r for r in records if r["model"] == "matmul"]
    for device in dict.fromkeys(r["device"] for r in matmuls):
        sizes = sorted({r["batch"] for r in matmuls if r["device"] == device})
        lines.append(f"{device}, {matmuls[0]['threads']} thread(s):")
        for n in sizes:
            base = _matmul(records, device, "fp32", n)
            parts = []
            for variant in ("bf16", "fp16", "fp8_e4m3"):
                r = _matmul(records, device, variant, n)
                if base and r:
                    ratio = r["gflops"] / base["gflops"]
                    parts.append(f"{variant} {_gflops(r['gflops'])} ({_ratio(ratio)}x, {_verdict(ratio)}{_samples_note(r)})")
            if base:
                lines.append(f"  n={n}: fp32 {base['gflops']:,.0f} GFLOP/s; " + ", ".join(parts))
        for variant in ("bf16", "fp16"):
            both = [m for m in sizes if _matmul(records, device, "fp32", m) and _matmul(records, device, variant, m)]
            if both:
                n = both[-1]
                base, r = _matmul(records, device, "fp32", n), _matmul(records, device, variant, n)
                label = variant.upper()
                lines.append(_format_line(label, r["gflops"] / base["gflops"], r, base, n, device,
                                          NATIVE_PATHS[label], hardware))
        notes = {}
        for r in matmuls:
            if r["device"] == device and r.get("note", "").startswith("skipped"):
                notes.setdefault(r["variant"], (r["batch"], r["note"]))
        for variant, (n, note) in notes.items():
            where = "" if variant == "fp8_e4m3" else f" at n={n}"
            lines.append(f"  -> {variant}{where} {note}")
    sizes = {r["variant"]: r for r in records if r["model"] != "matmul" and r.get("size_bytes")}
    if "fp32" in sizes:
        fp32 = sizes["fp32"]["size_bytes"]
        parts = [f"{name} {r['size_bytes'] / 1e6:.1f} MB ({fp32 / r['size_bytes']:.1f}x)" for name, r in sizes.items()]
        model = sizes["fp32"]["model"]
        lines.append(f"{model} ({sizes['fp32']['num_params']:,} parameters): " + ", ".join(parts))
    return "\n".join(lines)


def plot_gflops(records: list[dict], ax=None):
    """GFLOP/s against matrix size, one line per (device, dtype)."""
    import matplotlib.pyplot as plt

    rows = [r for r in records if r["model"] == "matmul" and r.get("gflops")]
    if not rows:
        raise ValueError("records has no matmul rows with gflops to plot")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.4))
    for device, variant in dict.fromkeys((r["device"], r["variant"]) for r in rows):
        pts = sorted((r["batch"], r["gflops"]) for r in rows if (r["device"], r["variant"]) == (device, variant))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{variant} ({device})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("n (n x n @ n x n)")
    ax.set_ylabel("GFLOP/s (median)")
    ax.set_title(f"matmul throughput, {rows[0]['threads']} thread(s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax
