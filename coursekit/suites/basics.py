"""The ``basics`` suite: what changing the number format alone does to speed, size and accuracy.

FP32, BF16, FP16 and INT8 dynamic quantization (torch.ao, weights INT8, activations quantized on the fly) on
a Linear-heavy model (4 x Linear(2048, 2048): matmul-bound, where INT8 shines) and on the digits CNN
(convolutions dominate, and dynamic quantization only touches the Linear layers), at batch 1 and 64.
Each variant's timing stops at ``measure_latency``'s time budget (at least 3 samples): FP16 on a CPU without
FP16 arithmetic is emulated and can be 100x slower than FP32.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from coursekit.bench import find_record, make_record, measure_latency, progress_bar, serialized_size
from coursekit.suites import SuiteContext, register

VARIANTS = ("fp32", "bf16", "fp16", "int8_dynamic")
# 4 x Linear(2048, 2048): a transformer-MLP-sized GEMV at batch 1, where reading the weights dominates.
LINEAR_HEAVY_WIDTH = 2048


def linear_heavy_model() -> nn.Module:
    """The suite's Linear-heavy model (4 x 2048x2048 + head, 67 MB in FP32), seeded."""
    from coursekit.models import build_model

    torch.manual_seed(0)
    return build_model("linear_heavy", input_shape=(LINEAR_HEAVY_WIDTH,), width=LINEAR_HEAVY_WIDTH).eval()


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """torch.ao's dynamic INT8 quantization of every nn.Linear (its deprecation warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def make_variant(model: nn.Module, variant: str) -> tuple[nn.Module, torch.dtype]:
    """A copy of ``model`` in ``variant``'s format, and the dtype its inputs must have."""
    if variant == "fp32":
        return copy.deepcopy(model).eval(), torch.float32
    if variant == "bf16":
        return copy.deepcopy(model).eval().to(torch.bfloat16), torch.bfloat16
    if variant == "fp16":
        return copy.deepcopy(model).eval().to(torch.float16), torch.float16
    if variant == "int8_dynamic":
        return quantize_dynamic_int8(model), torch.float32
    raise ValueError(f"variant={variant!r}; choose one of {VARIANTS}")


@torch.inference_mode()
def accuracy(model: nn.Module, loader, dtype: torch.dtype) -> float:
    """Top-1 accuracy of ``model`` on ``loader`` with inputs cast to ``dtype``."""
    correct = total = 0
    for x, y in loader:
        correct += (model(x.to(dtype)).float().argmax(1) == y).sum().item()
        total += len(y)
    return correct / total


def benchmark_formats(name: str, model: nn.Module, example: torch.Tensor, ctx: SuiteContext,
                      test_loader=None) -> list[dict]:
    """Records for every variant of ``model`` at batch 1 and a large batch, latencies interleaved."""
    variants = {v: make_variant(model, v) for v in VARIANTS}
    accuracies = {v: accuracy(m, test_loader, dt) if test_loader is not None else None
                  for v, (m, dt) in variants.items()}
    sizes = {v: serialized_size(m) for v, (m, _) in variants.items()}
    records = []
    for batch in progress_bar(ctx.batch_sizes, desc=f"basics: {name}", enabled=ctx.progress):
        x = example[:1].repeat(batch, *([1] * (example.dim() - 1)))
        inputs = {v: x.to(dt) for v, (_, dt) in variants.items()}
        calls = {v: (lambda m=m, xi=inputs[v]: m(xi)) for v, (m, _) in variants.items()}
        stats = measure_latency(calls, repeats=ctx.repeats, warmup=3, threads=ctx.threads)
        for v in variants:
            records.append(make_record(name, v, device="cpu", batch=batch, threads=ctx.threads, stats=stats[v],
                                       size_bytes=sizes[v], accuracy=accuracies[v]))
    return records


@register("basics", "FP32 vs BF16 vs FP16 vs INT8-dynamic on a Linear-heavy model and the digits CNN (CPU)")
def basics(ctx: SuiteContext) -> list[dict]:
    from coursekit.bench.report import add_speedups
    from coursekit.data import get_loaders
    from coursekit.train import pretrained

    ctx.require_cpu("basics", "measures CPU formats (torch.ao INT8 runs on CPU only)")
    records = benchmark_formats("linear_heavy", linear_heavy_model(), torch.randn(1, LINEAR_HEAVY_WIDTH), ctx)
    cnn = pretrained("lenet", "digits", progress=ctx.progress).eval()
    _, _, test_loader = get_loaders("digits")
    example = next(iter(test_loader))[0][:1]
    records += benchmark_formats("lenet_digits", cnn, example, ctx, test_loader)
    return add_speedups(records, "fp32")


def reading(records: list[dict]) -> str:
    """Plain-language reading of a ``basics`` result, built only from the measured numbers."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in records):
        for batch in sorted({r["batch"] for r in records if r["model"] == model}):
            fp32 = find_record(records, model, "fp32", batch)
            parts = []
            for variant in VARIANTS[1:]:
                r = find_record(records, model, variant, batch)
                if fp32 and r and r.get("speedup"):
                    verdict = "faster" if r["speedup"] > 1.1 else "slower" if r["speedup"] < 0.9 else "about the same"
                    parts.append(f"{variant} {r['speedup']:.2f}x ({verdict})")
            lines.append(f"{model}, batch {batch}: vs fp32 " + ", ".join(parts))
        fp32 = find_record(records, model, "fp32", 1)
        int8 = find_record(records, model, "int8_dynamic", 1)
        if fp32 and int8 and fp32["size_bytes"] and int8["size_bytes"]:
            lines.append(f"  size: fp32 {fp32['size_bytes'] / 1e6:.2f} MB -> int8_dynamic "
                         f"{int8['size_bytes'] / 1e6:.2f} MB ({fp32['size_bytes'] / int8['size_bytes']:.1f}x smaller)")
        if fp32 and int8 and fp32.get("accuracy") is not None:
            lines.append(f"  accuracy: fp32 {fp32['accuracy']:.2%}, int8_dynamic {int8['accuracy']:.2%}, "
                         f"bf16 {find_record(records, model, 'bf16', 1)['accuracy']:.2%}")
    return "\n".join(lines)
