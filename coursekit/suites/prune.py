"""The ``prune`` suite: what pruning saves in latency, storage and accuracy on this machine.

One pinned thread, batch 1 and 64; all variants of one model at one batch size (ONNX Runtime and torch eager)
are timed in a single interleaved ``measure_latency`` call, so ratios are side by side:

* ``dense``; ``unstructured50/75/90``: global magnitude pruning (Han et al. 2015), ``remove``d and exported
  as ordinary dense weights (dense kernels multiply the zeros); ``nm2:4``: a 2:4 mask (Mishra et al. 2021) on
  every layer whose input dimension divides by 4, also dense kernels; ``channel30/50/70``: structured channel
  pruning (Li et al. 2017) with kept counts rounded to multiples of 8; ``channel50_odd``: the same widths minus
  one channel (not a multiple of 8).
* Models: the pretrained digits LeNet (accuracy after fine-tuning for every variant) and the 32x32 conv-heavy
  LeNet of the ``ptq`` suite (untrained: latency on random inputs, since no 32x32 data set ships offline).
* Records carry MACs (``count_macs``: zeros still counted), non-zero parameters, dense ONNX file size, the
  gzip-compressed ONNX size and the exact CSR (int32 indices) size of the weights.
* ``csr_linear``: a 1024x1024 Linear at batch 1 and 64, dense ``F.linear`` vs ``torch.sparse`` CSR matmul at
  50-99% sparsity; the reading locates the break-even sparsity.
* ``semi_structured``: 2:4 via ``torch.sparse.to_sparse_semi_structured``, timed only when CUDA is present
  (torch refuses CPU tensors); otherwise one record says the row was skipped.
* ``mnist1d``: gradual (cubic, Zhu & Gupta 2017) vs one-shot pruning to 95% with the same fine-tuning budget,
  and lottery tickets (Frankle & Carbin 2019) vs random re-initialisation of the same mask, per seed.
"""
from __future__ import annotations

import copy
import gzip
import tempfile
import warnings
from pathlib import Path

import torch
from torch.nn import functional as F

from coursekit.bench import make_record, measure_latency
from coursekit.suites import SuiteContext, register
from coursekit.suites.ptq import CONV_HEAVY_SHAPE, bind_call, conv_heavy_model

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

UNSTRUCTURED = (0.5, 0.75, 0.9)
CHANNEL = (0.3, 0.5, 0.7)
CSR_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
CSR_WIDTH = 1024
MULTIPLE = 8
SAME = 0.05  # latency ratios within 5% of 1 read as "the same"
FINETUNE_EPOCHS = {"full": 10, "fast": 0}  # fast mode: accuracy right after pruning
MNIST1D_SPARSITY = 0.95


def _weight_targets(model):
    from coursekit.surgery import WEIGHT_LAYER_TYPES, named_layers

    return [(layer, "weight") for _, layer in named_layers(model, WEIGHT_LAYER_TYPES)]


def _nm_targets(model, m: int = 4):
    return [(layer, name) for layer, name in _weight_targets(model)
            if (layer.weight.numel() // layer.weight.shape[0]) % m == 0]


QUICK_VARIANTS = ("dense", "unstructured90", "nm2:4", "channel50", "channel50_odd")


def pruned_variants(model, only=None) -> dict:
    """``{variant: model with masks or smaller layers}`` for every variant of the suite (or those in ``only``)."""
    from coursekit import prune

    variants = {"dense": copy.deepcopy(model)}
    for amount in UNSTRUCTURED:
        m = copy.deepcopy(model)
        prune.global_magnitude_prune(_weight_targets(m), amount)
        variants[f"unstructured{round(amount * 100)}"] = m
    m = copy.deepcopy(model)
    for layer, name in _nm_targets(m):
        prune.nm_prune(layer, name, 2, 4)
    variants["nm2:4"] = m
    for amount in CHANNEL:
        variants[f"channel{round(amount * 100)}"] = prune.channel_prune(model, amount, multiple_of=MULTIPLE)
    keep = {}
    for layer in prune.prunable_layers(model):
        scores = prune.channel_importance(model, layer)
        k = prune.kept_count(len(scores), 0.5, MULTIPLE, layer)
        keep[layer] = torch.topk(scores, max(1, k - 1) if k % MULTIPLE == 0 else k).indices.sort().values
    variants["channel50_odd"] = prune.remove_channels(model, keep)
    return {k: v for k, v in variants.items() if only is None or k in only}


def _sizes(model, example, folder: Path, name: str) -> dict:
    from coursekit import prune
    from coursekit.export import export_onnx, file_size

    path = export_onnx(model, example, folder / f"{name.replace(':', '_')}.onnx")
    raw = path.read_bytes()
    return {"path": path, "onnx_bytes": file_size(path), "onnx_gzip_bytes": len(gzip.compress(raw, 9)),
            "csr_bytes": prune.model_storage_bytes(model, "csr_int32"),
            "dense_bytes": prune.model_storage_bytes(model, "dense"),
            "params_nonzero": sum(int((t != 0).sum()) for t in model.state_dict().values() if t.is_floating_point()),
            "params": sum(t.numel() for t in model.state_dict().values() if t.is_floating_point()),
            "macs": prune.count_macs(model, example[:1])["total"],
            "sparsity": prune.sparsity(model)}


def benchmark_model(name: str, model, example: torch.Tensor, ctx: SuiteContext, loaders=None,
                    only=None) -> list[dict]:
    """Records for every pruning variant of ``model`` (or those in ``only``), fine-tuned and evaluated when
    ``loaders`` are given."""
    from coursekit import prune
    from coursekit.export import ort_session
    from coursekit.train import evaluate, finetune

    variants = pruned_variants(model.eval(), only)
    accuracy, before = {}, {}
    epochs = FINETUNE_EPOCHS["fast" if ctx.fast else "full"]
    if loaders is not None:
        train_loader, _, test_loader = loaders
        for v, m in variants.items():
            before[v] = evaluate(m, test_loader)["accuracy"]
            if v != "dense" and epochs:
                torch.manual_seed(0)
                finetune(m, train_loader, epochs=epochs, lr=0.01)
            accuracy[v] = evaluate(m.eval(), test_loader)["accuracy"]
    for m in variants.values():
        prune.remove_all(m)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        info = {v: _sizes(m, example, Path(tmp), v) for v, m in variants.items()}
        sessions = {v: ort_session(info[v]["path"], threads=ctx.threads) for v in variants}
        for batch in ctx.batch_sizes:
            x = example[:1].repeat(batch, *([1] * (example.dim() - 1))).contiguous()
            calls = {}
            for v in variants:
                calls[f"{v}|ort"] = bind_call(sessions[v], x)
                if not ctx.fast:  # fast mode times ONNX Runtime only
                    calls[f"{v}|torch"] = bind_call(variants[v], x)
            with torch.no_grad():
                stats = measure_latency(calls, repeats=ctx.repeats, warmup=3, threads=ctx.threads,
                                        budget_s=0.1 if ctx.fast else 1.0)
            for key, s in stats.items():
                v, runtime = key.split("|")
                extra = {k: val for k, val in info[v].items() if k != "path"}
                records.append(make_record(
                    name, v, device="cpu", batch=batch, threads=ctx.threads, stats=s,
                    size_bytes=info[v]["onnx_bytes"], accuracy=accuracy.get(v), runtime=runtime,
                    accuracy_before_finetune=before.get(v), finetune_epochs=epochs if loaders else None,
                    **extra))
    base = {(r["batch"], r["runtime"]): r["latency_ms_median"] for r in records if r["variant"] == "dense"}
    for r in records:
        r["speedup"] = base[r["batch"], r["runtime"]] / r["latency_ms_median"]
    return records


def _bind(fn, *args):
    return lambda: fn(*args)


def csr_records(ctx: SuiteContext) -> list[dict]:
    """Dense vs CSR matmul for a CSR_WIDTH x CSR_WIDTH weight at each sparsity, batch 1 and 64 (torch)."""
    from coursekit.prune import magnitude_mask

    g = torch.Generator().manual_seed(0)
    weight = torch.randn(CSR_WIDTH, CSR_WIDTH, generator=g)
    records = []
    for batch in ctx.batch_sizes:
        x = torch.randn(batch, CSR_WIDTH, generator=g)
        xt = x.t().contiguous()
        calls = {"dense": _bind(F.linear, x, weight)}
        sparse = {}
        for s in CSR_SPARSITIES:
            sparse[s] = (weight * magnitude_mask(weight, s)).to_sparse_csr()
            calls[f"csr{s:g}"] = _bind(torch.sparse.mm, sparse[s], xt)
        with torch.no_grad():
            stats = measure_latency(calls, repeats=ctx.repeats, warmup=3, threads=ctx.threads,
                                    budget_s=0.1 if ctx.fast else 1.0)
        dense = stats["dense"].median_ms
        records.append(make_record("csr_linear", "dense", device="cpu", batch=batch, threads=ctx.threads,
                                   stats=stats["dense"], size_bytes=weight.numel() * 4, sparsity=0.0, speedup=1.0,
                                   runtime="torch"))
        for s in CSR_SPARSITIES:
            csr = sparse[s]
            size = sum(t.numel() * 4 for t in (csr.values(), csr.col_indices(), csr.crow_indices()))
            records.append(make_record("csr_linear", f"csr{s:g}", device="cpu", batch=batch, threads=ctx.threads,
                                       stats=stats[f"csr{s:g}"], size_bytes=size, sparsity=s, runtime="torch",
                                       speedup=dense / stats[f"csr{s:g}"].median_ms))
    return records


def semi_structured_records(ctx: SuiteContext) -> list[dict]:
    """2:4 through ``to_sparse_semi_structured`` on CUDA (fp16, 4096x4096 weight); a 'skipped' record elsewhere."""
    if not torch.cuda.is_available():
        return [make_record("semi_structured", "2:4", device="cpu", batch=1, threads=ctx.threads, runtime="torch",
                            skipped="no CUDA GPU: torch's 2:4 kernels (to_sparse_semi_structured) refuse CPU "
                                    "tensors, so 2:4 has no fast path here; the nm2:4 rows above run dense kernels")]
    from torch.sparse import to_sparse_semi_structured

    from coursekit.prune import nm_mask

    records = []
    weight = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    sparse_w = weight * nm_mask(weight.float(), 2, 4).half()
    semi = to_sparse_semi_structured(sparse_w)
    for batch in (64, 1024):
        x = torch.randn(batch, 4096, device="cuda", dtype=torch.float16)
        stats = measure_latency({"dense": _bind(F.linear, x, sparse_w), "2:4": _bind(F.linear, x, semi)},
                                repeats=ctx.repeats, warmup=5, device="cuda", threads=None)
        for v in ("dense", "2:4"):
            records.append(make_record("semi_structured", v, device="cuda", batch=batch, threads=None,
                                       stats=stats[v], runtime="torch",
                                       speedup=stats["dense"].median_ms / stats[v].median_ms))
    return records


def mnist1d_records(ctx: SuiteContext) -> list[dict]:
    """Gradual vs one-shot pruning to 95% and lottery tickets vs random re-init on MNIST-1D (MLP), per seed."""
    from coursekit import prune
    from coursekit.data import get_loaders
    from coursekit.models import build_model
    from coursekit.train import evaluate, finetune, fit, pretrained, recipe, seed_everything

    train_loader, _, test_loader = get_loaders("mnist1d", batch_size=100, fast=ctx.fast)
    acc = lambda m: evaluate(m, test_loader)["accuracy"]
    seeds = (0,) if ctx.fast else (0, 1, 2)
    epochs = 1 if ctx.fast else 20
    dense = pretrained("mlp1d", "mnist1d", progress=False, fast=ctx.fast)
    records = [make_record("mnist1d_mlp", "dense", device="cpu", batch=0, threads=ctx.threads, accuracy=acc(dense),
                           seed=0)]
    steps = epochs * len(train_loader)
    for seed in seeds:
        one = copy.deepcopy(dense)
        prune.global_magnitude_prune(_weight_targets(one), MNIST1D_SPARSITY)
        zero_shot = acc(one)
        seed_everything(seed)
        finetune(one, train_loader, epochs=epochs, lr=0.01)
        grad = copy.deepcopy(dense)
        pruner = prune.GradualPruning(_weight_targets(grad), MNIST1D_SPARSITY, begin=0, end=max(2, 2 * steps // 3),
                                      every=max(1, steps // 50))
        seed_everything(seed)
        finetune(grad, train_loader, epochs=epochs, lr=0.01, callbacks=[pruner])
        for v, m, extra in (("one_shot95", one, {"accuracy_before_finetune": zero_shot}), ("gradual95", grad, {})):
            records.append(make_record("mnist1d_mlp", v, device="cpu", batch=0, threads=ctx.threads,
                                       accuracy=acc(m), sparsity=prune.sparsity(m), seed=seed,
                                       finetune_epochs=epochs, **extra))
    r = recipe("mlp1d", "mnist1d", fast=ctx.fast)
    train_epochs = 2 if ctx.fast else 40
    rounds, rate = (1, 0.8) if ctx.fast else (4, 0.55)
    for seed in seeds:
        seed_everything(seed)
        model = build_model("mlp1d", "mnist1d")

        def train(m, seed=seed):
            seed_everything(seed)
            fit(m, train_loader, epochs=train_epochs, lr=r["lr"], progress=False)

        out = prune.lottery_ticket(model, train, acc, rounds=rounds, rate=rate, seed=seed)
        common = {"device": "cpu", "batch": 0, "threads": ctx.threads, "seed": seed, "train_epochs": train_epochs}
        records.append(make_record("mnist1d_lottery", "dense_from_init", accuracy=out["dense"], sparsity=0.0,
                                   **common))
        records.append(make_record("mnist1d_lottery", "winning_ticket", accuracy=out["ticket"][-1],
                                   sparsity=out["sparsity"][-1], rounds=rounds, **common))
        records.append(make_record("mnist1d_lottery", "random_reinit", accuracy=out["random_reinit"],
                                   sparsity=out["sparsity"][-1], rounds=rounds, **common))
    return records


@register("prune", "pruning on CPU: unstructured (dense kernels), 2:4, channel pruning, CSR break-even, gradual vs "
                   "one-shot, lottery tickets: latency (ORT and torch), sizes, MACs, accuracy")
def prune_suite(ctx: SuiteContext) -> list[dict]:
    from coursekit.data import get_loaders
    from coursekit.train import pretrained

    ctx.require_cpu("prune", "measures CPU kernels (2:4 on CUDA is timed automatically when present)")
    lenet = pretrained("lenet", "digits", progress=ctx.progress, fast=ctx.fast).eval()
    loaders = get_loaders("digits", fast=ctx.fast)
    records = benchmark_model("lenet_digits", lenet, torch.zeros(1, 1, 8, 8), ctx, loaders)
    example = torch.randn(1, *CONV_HEAVY_SHAPE, generator=torch.Generator().manual_seed(0))
    records += benchmark_model("conv_heavy", conv_heavy_model(), example, ctx)
    records += csr_records(ctx)
    records += semi_structured_records(ctx)
    records += mnist1d_records(ctx)
    return records


@register("prune_quick", "the quick part of 'prune' (chapter 04 in fast mode): dense vs 90% unstructured vs 2:4 vs "
                         "50% channels on the 32x32 conv-heavy model, and the CSR break-even (CPU, ORT + torch)")
def prune_quick_suite(ctx: SuiteContext) -> list[dict]:
    ctx.require_cpu("prune_quick", "measures CPU kernels")
    example = torch.randn(1, *CONV_HEAVY_SHAPE, generator=torch.Generator().manual_seed(0))
    return (benchmark_model("conv_heavy", conv_heavy_model(), example, ctx, only=QUICK_VARIANTS)
            + csr_records(ctx) + semi_structured_records(ctx))


# ----------------------------------------------------------------------------------------------- reading
def _get(records, model, variant, batch=1, runtime="ort"):
    return next((r for r in records if r["model"] == model and r["variant"] == variant and r["batch"] == batch
                 and r.get("runtime", runtime) == runtime), None)


def break_even(records: list[dict], batch: int = 1) -> tuple[float | None, float | None]:
    """(highest sparsity where CSR is still slower than dense, lowest sparsity where it is faster)."""
    rows = sorted((r for r in records if r["model"] == "csr_linear" and r["variant"] != "dense"
                   and r["batch"] == batch), key=lambda r: r["sparsity"])
    slower = [r["sparsity"] for r in rows if r["speedup"] < 1]
    faster = [r["sparsity"] for r in rows if r["speedup"] >= 1]
    below = max((s for s in slower if not faster or s < min(faster)), default=None)
    return below, (min(faster) if faster else None)


def reading(records: list[dict]) -> str:
    """Plain-language reading of a ``prune`` result, generated only from the measured numbers."""
    lines = []
    for model in ("lenet_digits", "conv_heavy"):
        dense = _get(records, model, "dense")
        if not dense:
            continue
        for batch in sorted({r["batch"] for r in records if r["model"] == model}):
            parts = [f"{v} {_get(records, model, v, batch)['speedup']:.2f}x"
                     for v in ("unstructured90", "nm2:4", "channel30", "channel50", "channel70")
                     if _get(records, model, v, batch)]
            d = _get(records, model, "dense", batch)
            lines.append(f"{model}, batch {batch}, ONNX Runtime (dense {d['latency_ms_median'] * 1e3:.0f} us): "
                         + ", ".join(parts))
        ch50, u90 = _get(records, model, "channel50"), _get(records, model, "unstructured90")
        if not (ch50 and u90):
            continue
        lines.append(f"  channel50 does {dense['macs'] / ch50['macs']:.1f}x fewer MACs and runs "
                     f"{ch50['speedup']:.2f}x faster at batch 1: latency falls less than MACs (fixed per-call and "
                     f"per-layer costs, memory traffic)" if ch50['speedup'] < dense['macs'] / ch50['macs'] else
                     f"  channel50 does {dense['macs'] / ch50['macs']:.1f}x fewer MACs and runs "
                     f"{ch50['speedup']:.2f}x faster at batch 1")
        odd = _get(records, model, "channel50_odd")
        if odd:
            ratio = ch50["latency_ms_median"] / odd["latency_ms_median"]
            lines.append(f"  kept widths one below a multiple of {MULTIPLE} (channel50_odd) run at {ratio:.2f}x the "
                         f"speed of the multiple-of-{MULTIPLE} widths despite fewer MACs"
                         + (" (slower: vector lanes left idle)" if ratio < 1 - SAME else
                            " (no penalty measured here)"))
        verdict = ("within 5% of dense: zeros in a dense tensor cost the same time" if abs(u90["speedup"] - 1) <= SAME
                   else f"{'faster' if u90['speedup'] > 1 else 'slower'} than dense by more than 5% (noise or "
                        f"cache effects: the kernels are the same)")
        lines.append(f"  90% unstructured: {u90['speedup']:.2f}x dense latency, {verdict}; weights in CSR "
                     f"{u90['dense_bytes'] / u90['csr_bytes']:.1f}x smaller than dense storage, ONNX file "
                     f"{dense['onnx_bytes'] / u90['onnx_bytes']:.2f}x (no saving: dense storage), gzip-compressed "
                     f"ONNX {dense['onnx_bytes'] / u90['onnx_gzip_bytes']:.1f}x smaller than the dense file")
        if dense.get("accuracy") is not None:
            acc = ", ".join(f"{v} {_get(records, model, v)['accuracy']:.2%}" for v in
                            ("unstructured50", "unstructured90", "nm2:4", "channel50", "channel70")
                            if _get(records, model, v))
            epochs = dense.get("finetune_epochs")
            when = f"after {epochs} fine-tuning epochs" if epochs else "right after pruning (fast mode: no fine-tuning)"
            lines.append(f"  accuracy {when} (dense {dense['accuracy']:.2%}): {acc}; channel50 changes accuracy by "
                         f"{100 * (ch50['accuracy'] - dense['accuracy']):+.2f} points")
    below, above = break_even(records)
    if above is not None:
        lines.append(f"CSR 1024x1024 at batch 1: slower than dense up to {below:.0%} sparsity, faster from "
                     f"{above:.0%}: the break-even on this CPU lies between them" if below is not None else
                     f"CSR 1024x1024 at batch 1: faster than dense already at {above:.0%} sparsity")
    elif any(r["model"] == "csr_linear" for r in records):
        lines.append("CSR 1024x1024 at batch 1: slower than dense at every measured sparsity (up to 99%)")
    b64 = break_even(records, 64)
    if any(r["model"] == "csr_linear" and r["batch"] == 64 for r in records):
        lines.append(f"  at batch 64 CSR first wins at {b64[1]:.0%}" if b64[1] is not None else
                     "  at batch 64 CSR never wins (a dense GEMM reuses each weight 64 times)")
    semi = [r for r in records if r["model"] == "semi_structured"]
    if semi and semi[0].get("skipped"):
        lines.append(f"2:4 semi-structured kernels: skipped ({semi[0]['skipped']})")
    elif semi:
        lines.append("2:4 on CUDA: " + ", ".join(f"batch {r['batch']} {r['speedup']:.2f}x" for r in semi
                                                  if r["variant"] == "2:4"))
    one = [r for r in records if r["variant"] == "one_shot95"]
    grad = [r for r in records if r["variant"] == "gradual95"]
    if one and grad:
        diffs = [100 * (g["accuracy"] - o["accuracy"]) for g, o in zip(grad, one)]
        lines.append("MNIST-1D MLP at 95%: gradual minus one-shot = "
                     + ", ".join(f"{d:+.1f} (seed {o['seed']})" for d, o in zip(diffs, one))
                     + f" points; one-shot before fine-tuning {one[0]['accuracy_before_finetune']:.1%}"
                     + (": gradual wins on every seed" if all(d > 0 for d in diffs) else
                        ": no consistent winner at this budget"))
    tickets = [r for r in records if r["variant"] == "winning_ticket"]
    controls = [r for r in records if r["variant"] == "random_reinit"]
    if tickets:
        diffs = [100 * (t["accuracy"] - c["accuracy"]) for t, c in zip(tickets, controls)]
        lines.append(f"lottery ticket at {tickets[0]['sparsity']:.0%} sparsity minus random re-init = "
                     + ", ".join(f"{d:+.1f} (seed {t['seed']})" for d, t in zip(diffs, tickets))
                     + " points" + (": the ticket wins on every seed" if all(d > 0 for d in diffs) else
                                    ": not a consistent win at this size"))
    return "\n".join(lines)
