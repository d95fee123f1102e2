"""The ``lowrank`` suite: when do fewer parameters mean less time, and how small does Deep Compression get?

Four measurements, each on one pinned thread:

* ``linear_d{256,512,1024}``: one square Linear(d, d) and its truncated SVD at ranks d/8, d/4 and d/2 (just above
  the break-even rank d/2 - 1 of Eq. 2 in ``coursekit.lowrank.svd``), timed at batch 1 and 64 in torch eager and in
  ONNX Runtime (each factorized variant is compared with the dense layer of the same runtime: ``speedup``).
* ``conv64``: a 64 -> 64 3x3 conv on a 32x32 feature map and its Tucker-2 (ranks C/4, Kim et al. ICLR 2016) and
  channel-SVD factorizations, timed the same way.
* Accuracy on digits: an MLP with a d x d hidden layer (d = 512, 1024) factorized at rank d/8 before and after a
  short fine-tune (``coursekit.train.fit``), the rank a sensitivity scan picks against the 90%-energy rule, and a
  LeNet with a 64-channel 3x3 conv factorized by Tucker-2 at rank 16 before and after fine-tuning.
* Weight sharing on the LeNet-300-100-shaped digits MLP: k-means 8/4/2-bit codebooks before and after centroid
  fine-tuning (1 epoch at 8 and 4 bits, 5 at 2 bits, as in the MIT HAN lab's lab 2), linear INT4 (per output
  channel) and NF4 (blocks of 64) at the same 4 bits, and Deep Compression (prune 90/90/70% -> fine-tune -> 4-bit
  k-means -> fine-tune -> Huffman) with the compression ratio measured on the encoded bytes.

``lowrank_latency`` is the first measurement alone (no training, about a minute): the notebook's benchmark.

``reading(records)`` turns the numbers into sentences, including where low-rank does not pay. Speedups are ratios
of medians (``speedup``) as in every suite; ``speedup_min`` is the ratio of the fastest samples, which other load
on a shared machine disturbs far less; the reading shows it where the two disagree by more than 25%.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
from torch import nn

from coursekit.bench import find_record, make_record, measure_latency, serialized_size, speed_verdict
from coursekit.suites import SuiteContext, register
from coursekit.suites.ptq import bind_call

LINEAR_SIZES = (256, 512, 1024)
CONV_CHANNELS, CONV_HW = 64, 32
SAME = 0.1
# Deep Compression's per-layer pruning: the small last layer keeps more weights (Han et al. 2016, Table 2)
DC_SPARSITY = {"net.1": 0.9, "net.3": 0.9, "net.5": 0.7}


def _time(variants: dict[str, nn.Module], example: torch.Tensor, ctx: SuiteContext, folder: Path,
          name: str, extra: dict) -> list[dict]:
    """Records for every variant in torch eager and ORT at batch 1 and 64, speedups against the dense one."""
    from coursekit.export import export_onnx, file_size, ort_session

    runners = {}
    for v, module in variants.items():
        module.eval()
        path = export_onnx(module, example, folder / f"{name}_{v}.onnx")
        runners[f"torch_{v}"] = (module, serialized_size(module), "torch", v)
        runners[f"ort_{v}"] = (ort_session(path, threads=ctx.threads), file_size(path), "onnxruntime", v)
    records = []
    budget = 0.4 if ctx.fast else 1.5
    for batch in ctx.batch_sizes:
        x = example[:1].repeat(batch, *([1] * (example.dim() - 1))).contiguous()
        with torch.inference_mode():
            calls = {k: bind_call(r, x) for k, (r, *_) in runners.items()}
            stats = measure_latency(calls, repeats=ctx.repeats, warmup=3, threads=ctx.threads, budget_s=budget)
        for k, (_, size, runtime, v) in runners.items():
            records.append(make_record(name, k, device="cpu", batch=batch, threads=ctx.threads, stats=stats[k],
                                       size_bytes=size, runtime=runtime, factorization=v,
                                       params=sum(p.numel() for p in variants[v].parameters()), **extra.get(v, {})))
    for r in records:
        dense = next(d for d in records if d["model"] == name and d["batch"] == r["batch"]
                     and d["runtime"] == r["runtime"] and d["factorization"] == "dense")
        r["speedup"] = dense["latency_ms_median"] / r["latency_ms_median"]
        # min-to-min: the work itself, robust to other load on a shared machine (medians are not)
        r["speedup_min"] = dense["latency_ms_min"] / r["latency_ms_min"]
    return records


def _speedup_text(r: dict) -> str:
    """"1.26x (faster)", plus the min-based ratio when the median was disturbed (they differ by over 25%)."""
    text = f"{r['factorization']} {r['speedup']:.2f}x ({speed_verdict(r['speedup'], SAME)})"
    low = r.get("speedup_min")
    if low and abs(low / r["speedup"] - 1) > 0.25:
        text += f" [noisy: min-to-min {low:.2f}x]"
    return text


def layer_latency(ctx: SuiteContext, folder: Path) -> list[dict]:
    from coursekit import lowrank

    torch.manual_seed(0)
    records = []
    for d in LINEAR_SIZES:
        dense = nn.Linear(d, d)
        variants, extra = {"dense": dense}, {"dense": {"rank": d}}
        for r in (d // 8, d // 4, d // 2):
            variants[f"rank{r}"] = lowrank.svd_factorize(dense, r)
            extra[f"rank{r}"] = {"rank": r, "break_even_rank": lowrank.break_even_rank(d, d),
                                 "flop_ratio": d * d / (r * 2 * d)}
        records += _time(variants, torch.randn(1, d), ctx, folder, f"linear_d{d}", extra)
    conv = nn.Conv2d(CONV_CHANNELS, CONV_CHANNELS, 3, padding=1)
    r = CONV_CHANNELS // 4
    variants = {"dense": conv, f"tucker2_r{r}": lowrank.tucker2_conv(conv, r),
                f"channel_svd_r{r}": lowrank.factorize_conv(conv, r)}
    records += _time(variants, torch.randn(1, CONV_CHANNELS, CONV_HW, CONV_HW), ctx, folder, "conv64", {})
    return records


def _acc(model, loader) -> float:
    from coursekit.train import evaluate

    return evaluate(model, loader)["accuracy"]


def _fit(model, loaders, epochs: int, lr: float, callbacks=()) -> None:
    from coursekit.train import fit, seed_everything

    seed_everything(0)
    fit(model, loaders.train, epochs=epochs, lr=lr, progress=False, callbacks=callbacks)


def _accuracy_record(model_name: str, variant: str, ctx: SuiteContext, accuracy: float, **extra) -> dict:
    return make_record(model_name, variant, device="cpu", batch=0, threads=ctx.threads, accuracy=accuracy, **extra)


def lowrank_accuracy(ctx: SuiteContext, loaders) -> list[dict]:
    """Factorize the d x d hidden layer at d/8, before and after fine-tuning; sensitivity scan vs energy rule."""
    from coursekit import lowrank
    from coursekit.train import pretrained

    records = []
    epochs = 2 if ctx.fast else 5
    for d in (LINEAR_SIZES[1:2] if ctx.fast else LINEAR_SIZES[1:]):
        base = pretrained("mlp", "digits", hidden=(d, d), progress=False, fast=ctx.fast).eval()
        dense_acc = _acc(base, loaders.test)
        name = f"mlp_digits_{d}"
        records.append(_accuracy_record(name, "dense", ctx, dense_acc, rank=d,
                                        params=sum(p.numel() for p in base.parameters())))
        hidden = base.net[3]
        rank = d // 8
        model = copy.deepcopy(base)
        lowrank.factorize_model(model, ranks={"net.3": rank})
        before = _acc(model, loaders.test)
        _fit(model, loaders, epochs, 1e-4)
        after = _acc(model, loaders.test)
        records.append(_accuracy_record(name, f"rank{rank}", ctx, after, accuracy_before_finetune=before, rank=rank,
                                        finetune_epochs=epochs, params=sum(p.numel() for p in model.parameters())))
        # sensitivity scan on validation data, no fine-tuning: the smallest rank within 0.5 points of dense
        val_dense = _acc(base, loaders.val)
        scan = {}
        for r in (2, 4, 8, 16, 32, 64, 128, 256):
            if r > lowrank.break_even_rank(d, d):
                break
            m = copy.deepcopy(base)
            lowrank.factorize_model(m, ranks={"net.3": r})
            scan[r] = _acc(m, loaders.val)
        chosen = min((r for r, a in scan.items() if a >= val_dense - 0.005), default=None)
        records.append(_accuracy_record(
            name, "rank_choice", ctx, None, scan_rank=chosen, energy90_rank=lowrank.rank_for_energy(hidden.weight, 0.9),
            scan_val_accuracy={str(r): a for r, a in scan.items()}, val_accuracy_dense=val_dense))
    return records


def tucker_accuracy(ctx: SuiteContext, loaders) -> list[dict]:
    """LeNet with a 64 -> 64 3x3 conv, Tucker-2 at rank 16, before and after fine-tuning."""
    from coursekit import lowrank
    from coursekit.train import pretrained

    base = pretrained("lenet", "digits", channels=(CONV_CHANNELS, CONV_CHANNELS), kernel_size=3, progress=False,
                      fast=ctx.fast).eval()
    name = "lenet64_digits"
    records = [_accuracy_record(name, "dense", ctx, _acc(base, loaders.test),
                                params=sum(p.numel() for p in base.parameters()))]
    model = copy.deepcopy(base)
    conv_name = "features.4"
    r = CONV_CHANNELS // 4
    lowrank.factorize_model(model, ranks={conv_name: r}, conv="tucker2")
    before = _acc(model, loaders.test)
    epochs = 2 if ctx.fast else 5
    _fit(model, loaders, epochs, 1e-4)
    records.append(_accuracy_record(name, f"tucker2_r{r}", ctx, _acc(model, loaders.test),
                                    accuracy_before_finetune=before, finetune_epochs=epochs,
                                    params=sum(p.numel() for p in model.parameters())))
    return records


def _per_row(weight: torch.Tensor, fmt: str) -> torch.Tensor:
    from coursekit.formats import quantize_dequantize

    return torch.stack([quantize_dequantize(row, fmt) for row in weight])


def sharing(ctx: SuiteContext, loaders) -> list[dict]:
    """k-means 8/4/2 bits before/after centroid fine-tuning; INT4 and NF4; Deep Compression bytes."""
    from coursekit import share
    from coursekit.formats import nf4_cast
    from coursekit.surgery import LINEAR_TYPES, named_layers
    from coursekit.train import pretrained

    base = pretrained("mlp", "digits", hidden=(300, 100), progress=False, fast=ctx.fast).eval()
    name = "mlp_digits_300_100"
    _, dense_sizes = share.encode_model(_shared_copy(base, 8))  # any encoding: only "dense_fp32" is used
    dense_bytes = dense_sizes["dense_fp32"]
    records = [_accuracy_record(name, "fp32", ctx, _acc(base, loaders.test), size_bytes=dense_bytes)]
    for bits, epochs in ((8, 1), (4, 1), (2, 5)):
        model = copy.deepcopy(base)
        q = share.KMeansQuantizer(model, bits)
        before = _acc(model, loaders.test)
        _fit(model, loaders, epochs, 1e-3)
        q.remove()
        blob, sizes = share.encode_model(model)
        records.append(_accuracy_record(name, f"kmeans{bits}", ctx, _acc(model, loaders.test),
                                        accuracy_before_finetune=before, finetune_epochs=epochs, bits=bits,
                                        size_bytes=len(blob), compression=dense_bytes / len(blob)))
    for fmt, fn in (("int4_per_channel", lambda w: _per_row(w, "int4")), ("nf4", nf4_cast)):
        model = copy.deepcopy(base)
        with torch.no_grad():
            for _, layer in named_layers(model, LINEAR_TYPES):
                layer.weight.copy_(fn(layer.weight))
        records.append(_accuracy_record(name, fmt, ctx, _acc(model, loaders.test), bits=4))
    # Deep Compression: prune 90% -> fine-tune with the mask -> 4-bit k-means -> fine-tune centroids -> Huffman
    model = copy.deepcopy(base)
    share.magnitude_prune(model, DC_SPARSITY)
    pruned_acc = _acc(model, loaders.test)
    _fit(model, loaders, 5 if ctx.fast else 10, 1e-3, callbacks=[share.PruningMask(model)])
    retrained = _acc(model, loaders.test)
    q = share.KMeansQuantizer(model, 4)
    _fit(model, loaders, 1 if ctx.fast else 3, 1e-3)
    q.remove()
    blob, sizes = share.encode_model(model)
    copy_model = copy.deepcopy(base)
    share.decode_model(blob, copy_model)
    records.append(_accuracy_record(
        name, "deep_compression", ctx, _acc(copy_model, loaders.test), size_bytes=len(blob),
        compression=dense_bytes / len(blob), accuracy_pruned=pruned_acc, accuracy_pruned_retrained=retrained,
        bytes_by_part={k: v for k, v in sizes.items() if k not in ("total", "dense_fp32")},
        sparsity=dict(DC_SPARSITY), bits=4))
    return records


def _shared_copy(model, bits):
    from coursekit import share

    m = copy.deepcopy(model)
    share.KMeansQuantizer(m, bits).remove()
    return m


@register("lowrank", "Low-rank (SVD, Tucker-2) latency in torch and ORT vs rank, accuracy after fine-tuning, "
                     "k-means weight sharing and Deep Compression bytes (CPU)")
def lowrank_suite(ctx: SuiteContext) -> list[dict]:
    from coursekit.data import get_loaders

    ctx.require_cpu("lowrank", "measures CPU latency in torch and ONNX Runtime")
    loaders = get_loaders("digits", fast=ctx.fast)
    with tempfile.TemporaryDirectory() as tmp:
        records = layer_latency(ctx, Path(tmp))
    records += lowrank_accuracy(ctx, loaders)
    records += tucker_accuracy(ctx, loaders)
    records += sharing(ctx, loaders)
    return records


@register("lowrank_latency", "Latency only: SVD-factorized Linear layers and Tucker-2 / channel-SVD convs vs dense, "
                             "torch and ORT, batch 1 and 64 (CPU, no training)")
def lowrank_latency_suite(ctx: SuiteContext) -> list[dict]:
    ctx.require_cpu("lowrank_latency", "measures CPU latency in torch and ONNX Runtime")
    with tempfile.TemporaryDirectory() as tmp:
        return layer_latency(ctx, Path(tmp))


# ----------------------------------------------------------------------------------------------- reading
def reading(records: list[dict]) -> str:
    """Plain-language reading of a ``lowrank`` result, generated only from the measured numbers."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in records if r["model"].startswith(("linear_d", "conv64"))):
        for batch in sorted({r["batch"] for r in records if r["model"] == model}):
            for runtime in ("onnxruntime", "torch"):
                rows = [r for r in records if r["model"] == model and r["batch"] == batch
                        and r["runtime"] == runtime and r["factorization"] != "dense"]
                if rows:
                    parts = ", ".join(_speedup_text(r) for r in rows)
                    lines.append(f"{model}, batch {batch}, {runtime}: {parts}")
        above = [r for r in records if r["model"] == model and r.get("break_even_rank")
                 and r["rank"] > r["break_even_rank"]]
        if above:
            r = above[0]
            dense = next(d for d in records if d["model"] == model and d["factorization"] == "dense")
            lines.append(f"  rank {r['rank']} is above the break-even rank {r['break_even_rank']}: no fewer "
                         f"parameters than the dense layer ({r['params']:,} vs {dense['params']:,}), so any speedup "
                         "it shows above is not from saved work")
    slow = [r for r in records if r.get("speedup") and r["factorization"] != "dense" and r["speedup"] < 1 - SAME
            and r.get("speedup_min", 0) < 1 - SAME and not (r.get("break_even_rank") and r["rank"] > r["break_even_rank"])]
    if slow:
        lines.append("where low-rank does not pay here (below break-even, yet slower): " + "; ".join(
            f"{r['model']} {r['factorization']} {r['runtime']} batch {r['batch']} {r['speedup']:.2f}x" for r in slow))
    for r in records:
        if r["batch"] == 0 and r.get("accuracy_before_finetune") is not None:
            dense = find_record(records, r["model"], "dense") or find_record(records, r["model"], "fp32")
            loss = 100 * (dense["accuracy"] - r["accuracy"]) if dense else float("nan")
            side = "below" if loss >= 0 else "above"
            lines.append(f"{r['model']} {r['variant']}: accuracy {r['accuracy_before_finetune']:.1%} before, "
                         f"{r['accuracy']:.1%} after {r['finetune_epochs']} fine-tuning epoch(s) "
                         f"({abs(loss):.1f} points {side} dense {dense['accuracy']:.1%})")
        if r["variant"] == "rank_choice":
            lines.append(f"{r['model']}: the sensitivity scan keeps validation accuracy (within 0.5 points) at rank "
                         f"{r['scan_rank']}, the 90%-energy rule asks for rank {r['energy90_rank']}")
    for fmt in ("int4_per_channel", "nf4"):
        r = next((x for x in records if x["variant"] == fmt), None)
        if r:
            lines.append(f"{r['model']} {fmt} (no fine-tuning): accuracy {r['accuracy']:.1%}")
    dc = next((r for r in records if r["variant"] == "deep_compression"), None)
    if dc:
        parts = ", ".join(f"{k} {v:,} B" for k, v in dc["bytes_by_part"].items())
        lines.append(f"Deep Compression on {dc['model']}: {dc['size_bytes']:,} bytes on disk, "
                     f"{dc['compression']:.1f}x smaller than FP32 ({parts}); accuracy {dc['accuracy']:.1%} "
                     f"(pruned {dc['accuracy_pruned']:.1%}, after retraining {dc['accuracy_pruned_retrained']:.1%})")
    return "\n".join(lines)
