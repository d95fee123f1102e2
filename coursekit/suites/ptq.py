"""The ``ptq`` suite: from a fake-quantized idea to a real INT8 model, measured in ONNX Runtime.

For each model five variants, at batch 1 and 64, one pinned thread. Models: the Linear-heavy model of the
``basics`` suite (4 x Linear(2048, 2048), untrained so accuracy does not apply), the pretrained digits LeNet
(tiny: 8x8 inputs, about 20 us per call in ORT, so fixed per-call costs dominate), and a wider LeNet on 32x32
inputs (``conv_heavy``, untrained) that shows when static INT8 convolutions pay off. Variants:

* ``torch_fp32``: eager PyTorch, the number most people wrongly compare INT8 against;
* ``ort_fp32``: the same model exported to ONNX, run by ONNX Runtime: **the baseline** of every speedup here
  (``speedup`` and ``speedup_vs_ort_fp32``), so the gain of INT8 is not mixed up with the gain of a graph runtime;
* ``ort_int8_static``: ONNX Runtime static quantization (QDQ, S8S8, per-channel weights, MinMax calibration on
  training batches; Krishnamoorthi 2018 sec. 3.1, Nagel et al. 2021 sec. 4);
* ``ort_int8_dynamic``: ONNX Runtime dynamic quantization (weights INT8 ahead of time, activations per batch);
* ``torch_int8_dynamic``: torch.ao dynamic quantization, an independent oracle for the dynamic numbers.

All five variants of one model at one batch size are timed in a single interleaved ``measure_latency`` call.
Records carry the test accuracy (digits; ORT variants run their session over the test loader), the file size
(ONNX file for ORT variants, ``torch.save`` size for torch ones) and, for the untrained model, the top-1
agreement of each variant with ORT FP32 on random inputs.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from coursekit.bench import find_record, make_record, measure_latency, serialized_size, speed_verdict
from coursekit.suites import SuiteContext, register
from coursekit.suites.basics import LINEAR_HEAVY_WIDTH, linear_heavy_model, quantize_dynamic_int8

VARIANTS = ("torch_fp32", "ort_fp32", "ort_int8_static", "ort_int8_dynamic", "torch_int8_dynamic")
BASELINE = "ort_fp32"
CALIBRATION_BATCHES = {"full": 16, "fast": 4}
SAME = 0.1  # speedups within 10% of 1 read as "about the same"
CONV_HEAVY_SHAPE = (1, 32, 32)


def conv_heavy_model() -> torch.nn.Module:
    """A LeNet with 32 and 64 channels on 32x32 inputs (2.2 MB, untrained, seeded): enough convolution work per
    call for INT8 kernels to pay for their quantize/dequantize steps, unlike the 8x8 digits LeNet."""
    from coursekit.models import build_model

    torch.manual_seed(0)
    return build_model("lenet", input_shape=CONV_HEAVY_SHAPE, channels=(32, 64)).eval()


def as_model(runner):
    """A torch module as is; an ORT session as a callable from an input tensor to its first output."""
    if isinstance(runner, torch.nn.Module):
        return runner
    from coursekit.export import ort_run

    return lambda x: ort_run(runner, x)


def build_variants(model, example: torch.Tensor, calibration, folder, threads: int = 1) -> dict:
    """The five variants of ``model``: ``{name: (callable taking an input tensor, size in bytes)}``.

    ``calibration``: input batches for ORT's static quantization; ``folder``: where the ONNX files go.
    """
    from coursekit.export import (
        export_onnx,
        file_size,
        ort_quantize_dynamic,
        ort_quantize_static,
        ort_session,
    )

    folder = Path(folder)
    fp32 = export_onnx(model, example, folder / "fp32.onnx")
    static = ort_quantize_static(fp32, folder / "int8_static.onnx", calibration, method="minmax", per_channel=True)
    dynamic = ort_quantize_dynamic(fp32, folder / "int8_dynamic.onnx")
    qdyn = quantize_dynamic_int8(model)
    variants = {"torch_fp32": (model, serialized_size(model))}
    for name, path in (("ort_fp32", fp32), ("ort_int8_static", static), ("ort_int8_dynamic", dynamic)):
        variants[name] = (ort_session(path, threads=threads), file_size(path))
    variants["torch_int8_dynamic"] = (qdyn, serialized_size(qdyn))
    return variants


def bind_call(runner, x: torch.Tensor):
    """A zero-argument call of a torch module or an ORT session on ``x`` (the numpy input prepared once)."""
    if isinstance(runner, torch.nn.Module):
        return lambda: runner(x)
    feed = {runner.get_inputs()[0].name: x.numpy()}
    return lambda: runner.run(None, feed)


def benchmark_ptq(name: str, model, example: torch.Tensor, calibration, ctx: SuiteContext,
                  test_loader=None) -> list[dict]:
    """Records for the five variants of ``model`` at batch 1 and 64 (latencies interleaved per batch size)."""
    from coursekit.train import evaluate, top1_agreement

    model = model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        variants = build_variants(model, example, calibration, tmp, threads=ctx.threads)
        accuracies = dict.fromkeys(VARIANTS)
        n_test = len(test_loader.dataset) if test_loader is not None else None
        agreement = dict.fromkeys(VARIANTS)
        if test_loader is not None:
            for v, (runner, _) in variants.items():
                accuracies[v] = evaluate(as_model(runner), test_loader)["accuracy"]
        else:  # no labels: how often does each variant pick the same top-1 as ORT FP32 on random inputs?
            probe = [torch.randn(256, *example.shape[1:], generator=torch.Generator().manual_seed(1))]
            base = as_model(variants[BASELINE][0])
            agreement = {v: top1_agreement(as_model(r), base, probe) for v, (r, _) in variants.items()}
        records = []
        for batch in ctx.batch_sizes:
            x = example[:1].repeat(batch, *([1] * (example.dim() - 1))).contiguous()
            calls = {v: bind_call(r, x) for v, (r, _) in variants.items()}
            stats = measure_latency(calls, repeats=ctx.repeats, warmup=3, threads=ctx.threads)
            for v, (_, size) in variants.items():
                records.append(make_record(
                    name, v, device="cpu", batch=batch, threads=ctx.threads, stats=stats[v], size_bytes=size,
                    accuracy=accuracies[v], agreement_vs_ort_fp32=agreement[v], test_examples=n_test,
                    runtime="onnxruntime" if v.startswith("ort") else "torch"))
    return records


def add_ort_speedups(records: list[dict]) -> list[dict]:
    """``speedup`` and ``speedup_vs_ort_fp32`` (ORT FP32 median / this median) and ``speedup_vs_torch_fp32``."""
    from coursekit.bench import add_speedups

    for r in add_speedups(records, "torch_fp32"):
        r["speedup_vs_torch_fp32"] = r.pop("speedup")
    for r in add_speedups(records, BASELINE):
        r["speedup_vs_ort_fp32"] = r["speedup"]
    return records


@register("ptq", "ONNX Runtime INT8 (static QDQ, dynamic) vs ORT FP32 vs torch on a Linear-heavy model and the "
                 "digits CNN: latency, file size, accuracy (CPU)")
def ptq_suite(ctx: SuiteContext) -> list[dict]:
    from coursekit.data import get_loaders
    from coursekit.train import pretrained

    ctx.require_cpu("ptq", "measures ONNX Runtime's CPU INT8 kernels")
    n_calib = CALIBRATION_BATCHES["fast" if ctx.fast else "full"]
    generator = torch.Generator().manual_seed(0)
    # the untrained Linear-heavy model has no data set: calibrate on the distribution it is fed, N(0, 1)
    calib = [torch.randn(8, LINEAR_HEAVY_WIDTH, generator=generator) for _ in range(n_calib)]
    records = benchmark_ptq("linear_heavy", linear_heavy_model(), torch.randn(1, LINEAR_HEAVY_WIDTH), calib, ctx)
    calib = [torch.randn(8, *CONV_HEAVY_SHAPE, generator=generator) for _ in range(n_calib)]
    records += benchmark_ptq("conv_heavy", conv_heavy_model(), torch.randn(1, *CONV_HEAVY_SHAPE), calib, ctx)
    cnn = pretrained("lenet", "digits", progress=ctx.progress, fast=ctx.fast).eval()
    train_loader, _, test_loader = get_loaders("digits", fast=ctx.fast)
    calib = [x for _, (x, _) in zip(range(n_calib), train_loader)]
    records += benchmark_ptq("lenet_digits", cnn, calib[0][:1], calib, ctx, test_loader)
    return add_ort_speedups(records)


# ----------------------------------------------------------------------------------------------- reading
def _dynamic_lines(records, model) -> list[str]:
    """"dynamic quantization of X is slower" when ORT dynamic loses to ORT FP32 or torch.ao dynamic to torch FP32."""
    slow = []
    for variant, base in (("ort_int8_dynamic", "speedup_vs_ort_fp32"), ("torch_int8_dynamic", "speedup_vs_torch_fp32")):
        for r in records:
            if r["model"] == model and r["variant"] == variant and r.get(base) and r[base] < 1 - SAME:
                ref = "ORT FP32" if variant.startswith("ort") else "torch FP32"
                slow.append(f"{variant} {r[base]:.2f}x vs {ref} at batch {r['batch']}")
    if not slow:
        return []
    what = "the CNN" if model == "lenet_digits" else f"the {model} model"
    return [(f"  dynamic quantization of {what} is slower ({'; '.join(slow)}): quantizing every activation at "
             "run time (and ORT's ConvInteger path, or torch.ao leaving convolutions in FP32) costs more than the "
             "INT8 arithmetic saves")]


def reading(records: list[dict]) -> str:
    """Plain-language reading of a ``ptq`` result, generated only from the measured numbers."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in records):
        for batch in sorted({r["batch"] for r in records if r["model"] == model}):
            base, eager = find_record(records, model, BASELINE, batch), find_record(records, model, "torch_fp32", batch)
            if not base:
                continue
            parts = []
            for v in ("ort_int8_static", "ort_int8_dynamic", "torch_int8_dynamic"):
                r = find_record(records, model, v, batch)
                if r and r.get("speedup_vs_ort_fp32"):
                    parts.append(f"{v} {r['speedup_vs_ort_fp32']:.2f}x ({speed_verdict(r['speedup_vs_ort_fp32'], SAME)})")
            lines.append(f"{model}, batch {batch}: vs ORT FP32 ({base['latency_ms_median']:.3g} ms) "
                         + ", ".join(parts))
            if eager and eager.get("speedup_vs_ort_fp32"):
                ratio = 1 / eager["speedup_vs_ort_fp32"]
                if abs(ratio - 1) <= SAME:
                    lines.append(f"  torch eager FP32 and ORT FP32 are about as fast here ({ratio:.2f}x)")
                else:
                    lines.append(f"  ORT FP32 is {ratio:.2f}x the speed of torch eager FP32: measured against torch "
                                 f"eager, INT8 would look {ratio:.2f}x {'better' if ratio > 1 else 'worse'} than it is")
        lines += _dynamic_lines(records, model)
        slow = [r for r in records if r["model"] == model and r["variant"] == "ort_int8_static"
                and r.get("speedup_vs_ort_fp32") and r["speedup_vs_ort_fp32"] < 1 - SAME]
        if slow:
            fp32_ms = {b: find_record(records, model, BASELINE, b)["latency_ms_median"] for b in (r["batch"] for r in slow)}
            lines.append(f"  static INT8 is slower than ORT FP32 on {model} (batch "
                         f"{', '.join(str(b) for b in fp32_ms)}): an FP32 call takes only "
                         f"{', '.join(f'{ms * 1e3:.0f} us' for ms in fp32_ms.values())}, too little work for the "
                         "INT8 kernels to repay quantizing the input, layout changes and dequantizing the output")
        base, static = find_record(records, model, BASELINE, 1), find_record(records, model, "ort_int8_static", 1)
        if base and static and base["size_bytes"] and static["size_bytes"]:
            ratio = base["size_bytes"] / static["size_bytes"]
            lines.append(f"  file: ORT FP32 {base['size_bytes'] / 1e6:.3g} MB -> INT8 static "
                         f"{static['size_bytes'] / 1e6:.3g} MB ({ratio:.1f}x smaller"
                         + (": on a model this small the graph, FP32 biases and scales are a large share)"
                            if ratio < 3 else ")"))
        if base and static and base.get("accuracy") is not None and static.get("accuracy") is not None:
            delta = 100 * (static["accuracy"] - base["accuracy"])
            dyn = find_record(records, model, "ort_int8_dynamic", 1)
            lines.append(f"  accuracy: FP32 {base['accuracy']:.2%}, INT8 static {static['accuracy']:.2%} "
                         f"({delta:+.2f} points = {round(abs(delta) * (base.get('test_examples') or 0) / 100)} "
                         f"of {base.get('test_examples')} test images), INT8 dynamic {dyn['accuracy']:.2%}")
        elif static and static.get("agreement_vs_ort_fp32") is not None:
            lines.append(f"  no labels (untrained model): INT8 static picks the same top-1 class as FP32 on "
                         f"{static['agreement_vs_ort_fp32']:.1%} of random inputs")
    return "\n".join(lines)
