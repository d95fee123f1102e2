"""The ``llm`` suite (chapter 07): what weight-only and W8A8 quantization cost a real language model, and
whether 4-bit weights make decoding faster on this CPU.

Four measurements, every one from this run:

* ``tiny_gpt``: held-out bits per character of the shipped TinyGPT (``coursekit.llm.pretrained_gpt``) in FP32
  and with every Linear but ``lm_head`` quantized (``coursekit.llm.apply.quantize_linears``): INT8 per channel,
  INT4 group 128/64 round-to-nearest (RTN), NF4 (blocks of 64, double-quantized scales), INT3 and INT2 (group
  64) RTN vs GPTQ vs GPTQ with act-order, and AWQ at INT3. Bits per weight include scales and zero points.
  Calibrated methods (GPTQ, AWQ) run with several calibration seeds (different random training windows):
  ``bpc`` is their mean and ``bpc_min``/``bpc_max`` the spread. Each record carries a generated sample (same
  prompt and sampling seed) so the damage is visible, and GPTQ/AWQ records the share of the RTN gap they recover,
  ``(bpc_rtn - bpc) / (bpc_rtn - bpc_fp32)``.
* ``tiny_gpt_kv``: the same model reading held-out text through an INT8 KV cache (per token, per head) and the
  cache's bytes for a full 128-token context, against FP32 and the ``kv_cache_bytes`` formula.
* ``minilm``: all-MiniLM-L6-v2 embeddings (cosine to FP32, Spearman of pair similarities on
  ``coursekit.llm.minilm.SENTENCES``) for weight-only INT8/INT4/INT3 RTN and INT3 AWQ, and for W8A8: plain
  per-tensor INT8 activations, SmoothQuant at the paper's default alpha 0.5 and at the alpha chosen on the
  calibration speeches (``coursekit.llm.apply.smoothquant_alpha``: lowest output error over a grid, as the paper
  tunes alpha per model), and the LLM.int8() decomposition; ``minilm_outliers``:
  the outlier dimensions and, per affected layer, the INT8 output error with and without the decomposition.
  MiniLM is calibrated on Shakespeare speeches (never on the evaluation sentences).
* ``int4_decode``: a stack of (d x 4d, 4d x d) Linear layers (d = 2048, 67M weights: 268 MB in FP32, far beyond
  the caches, like an LLM's layers) in ONNX Runtime as FP32 ``MatMul`` and as INT4 ``MatMulNBits`` (blocks of
  32, ``accuracy_level`` 4 = INT8 compute on the activations, and 0 = dequantize to FP32), timed at M = 1 (decode:
  one token, memory-bound) and M = 128 (prefill: compute-bound), interleaved, one pinned thread.

Fast mode shrinks the calibration sets, the held-out text, the seeds, the alpha grid (3 values) and the decode
stack (d = 1024, one block); it measures the same things. ``reading(records)`` turns the numbers into sentences.
The ``llm_decode`` suite runs only ``int4_decode`` (seconds): chapter 07's benchmark cell in fast mode.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from coursekit.bench import find_record, make_record, measure_latency, speed_verdict
from coursekit.bench.timing import pinned_threads
from coursekit.suites import SuiteContext, register

SAME = 0.1  # speedups within 10% of 1 read as "about the same"
PROMPT = "JULIET:\nO Romeo, "
SIZES = {  # calibration windows / sentences, held-out chars (None: all), seeds, sample length, decode stack
    "full": {"gpt_calib": 32, "val_tokens": None, "seeds": (0, 1, 2), "sample": 160, "minilm_calib": 32,
             "sq_alphas": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), "d": 2048, "blocks": 2, "prefill": 128},
    "fast": {"gpt_calib": 8, "val_tokens": 8192, "seeds": (0, 1), "sample": 60, "minilm_calib": 4,
             "sq_alphas": (0.5, 0.7, 0.9), "d": 1024, "blocks": 1, "prefill": 128},
}
# (variant, method, bits, group_size, act_order): every Linear but lm_head
GPT_VARIANTS = (
    ("int8_rtn", "rtn", 8, None, False),
    ("int4_g128_rtn", "rtn", 4, 128, False),
    ("int4_g64_rtn", "rtn", 4, 64, False),
    ("nf4_b64", "nf4", 4, 64, False),
    ("int3_g64_rtn", "rtn", 3, 64, False),
    ("int3_g64_gptq", "gptq", 3, 64, False),
    ("int3_g64_gptq_actorder", "gptq", 3, 64, True),
    ("int3_g64_awq", "awq", 3, 64, False),
    ("int2_g64_rtn", "rtn", 2, 64, False),
    ("int2_g64_gptq", "gptq", 2, 64, False),
    ("int2_g64_gptq_actorder", "gptq", 2, 64, True),
)
MINILM_WEIGHT_VARIANTS = (
    ("int8_rtn", "rtn", 8, None),
    ("int4_g64_rtn", "rtn", 4, 64),
    ("int3_g64_rtn", "rtn", 3, 64),
    ("int3_g64_awq", "awq", 3, 64),
)
# (variant, method, alpha): "calibrated" = the alpha of llm.apply.smoothquant_alpha on the calibration speeches
MINILM_W8A8_VARIANTS = (
    ("w8a8_per_tensor", "w8a8", None),
    ("smoothquant_w8a8", "smoothquant", 0.5),
    ("smoothquant_w8a8_calibrated", "smoothquant", "calibrated"),
    ("llm_int8", "llm_int8", None),
)
MINILM_SKIP = ("pooler.dense",)  # mean pooling never uses BERT's pooler
INT4_BLOCK = 32


def _sizes(ctx: SuiteContext) -> dict:
    return SIZES["fast" if ctx.fast else "full"]


def _record(model: str, variant: str, ctx: SuiteContext, **extra) -> dict:
    return make_record(model, variant, device="cpu", batch=0, threads=ctx.threads, **extra)


# ----------------------------------------------------------------------------------------------- tiny GPT
def gpt_calibration(train_ids: torch.Tensor, windows: int, context: int, seed: int) -> list[torch.Tensor]:
    """``windows`` random training windows of ``context`` characters (seeded), in batches of 8."""
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(train_ids) - context, (windows,), generator=gen).tolist()
    x = torch.stack([train_ids[s:s + context] for s in starts])
    return list(x.split(8))


def _quantized_gpt(base, method, bits, group_size, act_order, calibration):
    from coursekit.llm.apply import quantize_linears

    model = copy.deepcopy(base)
    report = quantize_linears(model, method=method, bits=bits, group_size=group_size, act_order=act_order,
                              calibration=calibration if method in ("gptq", "awq") else None, progress=False)
    return model, report


def tiny_gpt_records(ctx: SuiteContext) -> list[dict]:
    """bpc of the shipped TinyGPT in FP32 and every variant of ``GPT_VARIANTS``; GPTQ/AWQ over several seeds."""
    from coursekit.llm import bits_per_char, corpus_splits, generate, pretrained_gpt

    size = _sizes(ctx)
    base, tok = pretrained_gpt()
    train_ids, val_ids = corpus_splits(fast=False, tokenizer=tok)
    context = base.config.context

    def bpc(model):
        return bits_per_char(model, val_ids, context=context, max_tokens=size["val_tokens"])

    def sample(model):
        return generate(model, tok, PROMPT, size["sample"], seed=0)

    n_tokens = min(len(val_ids) - 1, size["val_tokens"] or len(val_ids))
    fp32 = bpc(base)
    n_weights = sum(m.weight.numel() for n, m in base.named_modules()
                    if isinstance(m, torch.nn.Linear) and n != "lm_head")
    records = [_record("tiny_gpt", "fp32", ctx, bpc=fp32, delta_bpc=0.0, bits_per_weight=32.0,
                       weight_bytes=4 * n_weights, eval_tokens=n_tokens, sample=sample(base), method="fp32")]
    calibrations = {s: gpt_calibration(train_ids, size["gpt_calib"], context, s) for s in size["seeds"]}
    from coursekit._progress import progress_bar

    for variant, method, bits, group_size, act_order in progress_bar(GPT_VARIANTS, desc="tiny_gpt",
                                                                       enabled=ctx.progress):
        seeds = size["seeds"] if method in ("gptq", "awq") else (None,)
        values, model, report = [], None, None
        for s in seeds:
            m, rep = _quantized_gpt(base, method, bits, group_size, act_order, calibrations.get(s))
            values.append(bpc(m))
            if model is None:  # the first seed's model gives the sample and the byte count
                model, report = m, rep
        mean = sum(values) / len(values)
        extra = {"seeds": list(seeds), "bpc_seeds": values, "bpc_min": min(values), "bpc_max": max(values)} \
            if seeds != (None,) else {}
        records.append(_record(
            "tiny_gpt", variant, ctx, bpc=mean, delta_bpc=mean - fp32, bits_per_weight=report.bits_per_weight,
            weight_bytes=report.bytes, method=method, bits=bits, group_size=group_size, act_order=act_order,
            calibration_windows=size["gpt_calib"] if method in ("gptq", "awq") else 0, eval_tokens=n_tokens,
            sample=sample(model), **extra))
    _add_gap_recovered(records)
    return records


def _add_gap_recovered(records: list[dict]) -> None:
    """GPTQ/AWQ records: share of the RTN gap (same bits and group) they recover."""
    fp32 = next(r for r in records if r["variant"] == "fp32")["bpc"]
    for r in records:
        if r.get("method") in ("gptq", "awq"):
            rtn = next((x for x in records if x.get("method") == "rtn" and x["bits"] == r["bits"]
                        and x["group_size"] == r["group_size"]), None)
            if rtn and rtn["bpc"] - fp32 > 0:
                gap = rtn["bpc"] - fp32
                r["rtn_variant"] = rtn["variant"]
                r["gap_recovered"] = (rtn["bpc"] - r["bpc"]) / gap
                if "bpc_min" in r:
                    r["gap_recovered_min"] = (rtn["bpc"] - r["bpc_max"]) / gap
                    r["gap_recovered_max"] = (rtn["bpc"] - r["bpc_min"]) / gap


def kv_cache_records(ctx: SuiteContext) -> list[dict]:
    """bpc through INT8 KV caches and the bytes of a full-context cache."""
    from coursekit.formats.memory import kv_cache_bytes
    from coursekit.llm import Int8KVCache, KVCache, bits_per_char, cache_bytes, corpus_splits, pretrained_gpt

    size = _sizes(ctx)
    model, tok = pretrained_gpt()
    cfg = model.config
    _, val_ids = corpus_splits(fast=False, tokenizer=tok)
    caches = {"fp32": lambda: KVCache(cfg.n_layers),
              "int8_per_token": lambda: Int8KVCache(cfg.n_layers, "per_token"),
              "int8_per_head": lambda: Int8KVCache(cfg.n_layers, "per_head")}
    records = []
    fp32_bpc = None
    for variant, make in caches.items():
        value = bits_per_char(model, val_ids, context=cfg.context, max_tokens=size["val_tokens"], make_cache=make)
        fp32_bpc = value if fp32_bpc is None else fp32_bpc
        cache = make()
        with torch.no_grad():
            model(val_ids[:cfg.context][None], cache=cache)
        records.append(_record(
            "tiny_gpt_kv", variant, ctx, bpc=value, delta_bpc=value - fp32_bpc, cache_bytes=cache_bytes(cache),
            formula_bytes_fp32=kv_cache_bytes(cfg.n_layers, cfg.n_heads, cfg.head_dim, cfg.context, fmt="fp32"),
            formula_bytes_fp16=kv_cache_bytes(cfg.n_layers, cfg.n_heads, cfg.head_dim, cfg.context, fmt="fp16"),
            formula_bytes_int8=kv_cache_bytes(cfg.n_layers, cfg.n_heads, cfg.head_dim, cfg.context, fmt="int8"),
            seq_len=cfg.context))
    return records


# ----------------------------------------------------------------------------------------------- MiniLM
def minilm_calibration(tokenizer, n: int) -> list[dict]:
    """``n`` Shakespeare speeches from the training split as single-sentence MiniLM inputs (no padding)."""
    from coursekit.llm import shakespeare_text
    from coursekit.llm.minilm import tokenize

    text = shakespeare_text()[: int(len(shakespeare_text()) * 0.9)]
    speeches = [" ".join(s.split("\n")[1:]) for s in text.split("\n\n")]
    speeches = [s for s in speeches if 60 <= len(s) <= 300]
    step = max(1, len(speeches) // n)
    return [tokenize(tokenizer, [s]) for s in speeches[::step][:n]]


def minilm_records(ctx: SuiteContext) -> list[dict]:
    """Embedding quality of MiniLM under weight-only and W8A8 quantization; outliers and their INT8 error."""
    from coursekit.llm.apply import output_error, quantize_linears, smoothquant_alpha, w8a8_linears
    from coursekit.llm.minilm import SENTENCES, embed, embedding_quality, load_minilm

    size = _sizes(ctx)
    base, tok = load_minilm()
    ref = embed(base, tok, SENTENCES)
    calibration = minilm_calibration(tok, size["minilm_calib"])
    n_weights = sum(m.weight.numel() for n, m in base.named_modules()
                    if isinstance(m, torch.nn.Linear) and n not in MINILM_SKIP)
    records = [_record("minilm", "fp32", ctx, **embedding_quality(ref, ref), bits_per_weight=32.0,
                       weight_bytes=4 * n_weights, method="fp32")]
    for variant, method, bits, group_size in MINILM_WEIGHT_VARIANTS:
        model = copy.deepcopy(base)
        report = quantize_linears(model, method=method, bits=bits, group_size=group_size, skip=MINILM_SKIP,
                                  calibration=calibration if method == "awq" else None, progress=False)
        records.append(_record("minilm", variant, ctx, **embedding_quality(embed(model, tok, SENTENCES), ref),
                               bits_per_weight=report.bits_per_weight, weight_bytes=report.bytes, method=method,
                               bits=bits, group_size=group_size))
    chosen, alpha_errors = smoothquant_alpha(base, calibration, alphas=size["sq_alphas"], skip=MINILM_SKIP,
                                             progress=ctx.progress)
    plain = copy.deepcopy(base)  # plain W8A8's output error on calibration, as the alpha search measures it
    w8a8_linears(plain, "w8a8", skip=MINILM_SKIP)
    plain_error = output_error(plain, base, calibration)
    for variant, method, alpha in MINILM_W8A8_VARIANTS:
        model = copy.deepcopy(base)
        extra = {}
        if alpha == "calibrated":
            alpha = chosen
            extra = {"alpha_grid": list(alpha_errors), "calibration_errors": list(alpha_errors.values()),
                     "calibration_sentences": len(calibration), "calibration_error_w8a8": plain_error}
        info = w8a8_linears(model, method=method, calibration=calibration, alpha=alpha or 0.5, skip=MINILM_SKIP)
        records.append(_record("minilm", variant, ctx, **embedding_quality(embed(model, tok, SENTENCES), ref),
                               method=method, bits=8, alpha=alpha, **extra,
                               layers_with_outliers=sum(1 for v in info.values() if v.get("outlier_channels"))))
    records.append(minilm_outlier_record(ctx, base, tok))
    return records


def minilm_outlier_record(ctx: SuiteContext, model, tokenizer) -> dict:
    """Outlier dimensions of MiniLM and, for each Linear that reads one, the relative INT8 output error with
    per-tensor activations vs the LLM.int8() decomposition (on the evaluation sentences)."""
    from coursekit.llm.apply import capture_inputs
    from coursekit.llm.int8matmul import int8_matmul
    from coursekit.llm.minilm import SENTENCES, activation_absmax, outlier_dimensions, tokenize
    from coursekit.llm.outliers import int8_decomposed_matmul, outlier_channels

    sentences = SENTENCES[:16] if ctx.fast else SENTENCES
    absmax = activation_absmax(model, tokenizer, sentences)
    dims = outlier_dimensions(absmax)
    affected = [n for n, a in absmax.items() if bool(outlier_channels(a[None]).any())]
    inputs = capture_inputs(model, affected, [tokenize(tokenizer, [s]) for s in sentences])
    layers = dict(model.named_modules())
    errors = {}
    for name in affected:
        x, w = inputs[name], layers[name].weight.detach()
        exact = x.double() @ w.double().T
        rel = {k: float(torch.linalg.norm(y.double() - exact) / torch.linalg.norm(exact)) for k, y in (
            ("per_tensor", int8_matmul(x, w, act="per_tensor")), ("per_token", int8_matmul(x, w, act="per_token")),
            ("llm_int8", int8_decomposed_matmul(x, w)))}
        rel["outlier_columns"] = int(outlier_channels(x).sum())
        errors[name] = rel
    ratios = sorted(e["per_tensor"] / e["llm_int8"] for e in errors.values() if e["llm_int8"] > 0)
    return _record("minilm_outliers", "fp32", ctx, outlier_dims=[{k: r[k] for k in ("dim", "max_abs", "layers",
                                                                                      "median_abs", "where")}
                                                                 for r in dims],
                   layer_int8_errors=errors, median_error_ratio=ratios[len(ratios) // 2] if ratios else None,
                   sentences=len(sentences))


# ----------------------------------------------------------------------------------------------- INT4 decode
def decode_stack(d: int, blocks: int, seed: int = 0):
    """``(float weights, Int4Weight weights)`` of ``blocks`` x (4d x d, d x 4d) Linear layers (random, seeded)."""
    from coursekit.export.matmulnbits import Int4Weight
    from coursekit.llm import quantize_groupwise

    gen = torch.Generator().manual_seed(seed)
    floats = []
    for _ in range(blocks):
        floats += [torch.randn(4 * d, d, generator=gen) * 0.02, torch.randn(d, 4 * d, generator=gen) * 0.02]
    int4 = [Int4Weight.from_groupwise(quantize_groupwise(w, 4, INT4_BLOCK)) for w in floats]
    return floats, int4


def int4_decode_records(ctx: SuiteContext) -> list[dict]:
    """ORT FP32 MatMul vs INT4 MatMulNBits (accuracy level 4 and 0) at M = 1 and M = prefill, interleaved."""
    from coursekit.export import ort_session
    from coursekit.export.matmulnbits import linear_stack_model, save_model
    from coursekit.llm import groupwise_bytes, quantize_groupwise

    size = _sizes(ctx)
    d, blocks = size["d"], size["blocks"]
    floats, int4 = decode_stack(d, blocks)
    n_weights = sum(w.numel() for w in floats)
    int4_bytes = sum(groupwise_bytes(quantize_groupwise(w, 4, INT4_BLOCK)) for w in floats)
    graphs = {"fp32": linear_stack_model(floats, activation="gelu", name="fp32_stack"),
              "int4_acc4": linear_stack_model(int4, activation="gelu", accuracy_level=4, name="int4_acc4"),
              "int4_acc0": linear_stack_model(int4, activation="gelu", accuracy_level=0, name="int4_acc0")}
    del floats, int4
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {k: ort_session(save_model(g, Path(tmp) / f"{k}.onnx"), threads=ctx.threads)
                    for k, g in graphs.items()}
        del graphs
        for m in (1, size["prefill"]):
            x = torch.randn(m, d, generator=torch.Generator().manual_seed(1)).numpy()
            calls = {k: (lambda s=s, feed={"x": x}: s.run(None, feed)) for k, s in sessions.items()}
            outputs = {k: s.run(None, {"x": x})[0] for k, s in sessions.items()}
            stats = measure_latency(calls, repeats=ctx.repeats, warmup=3, threads=ctx.threads,
                                    budget_s=2.0 if ctx.fast else 10.0)
            ref = outputs["fp32"]
            for k, st in stats.items():
                nbytes = 4 * n_weights if k == "fp32" else int4_bytes
                records.append(make_record(
                    "int4_decode", k, device="cpu", batch=m, threads=ctx.threads, stats=st, size_bytes=nbytes,
                    m=m, d=d, layers=2 * blocks, weights=n_weights, runtime="onnxruntime",
                    accuracy_level=None if k == "fp32" else int(k[-1]), block_size=INT4_BLOCK,
                    weight_gb_per_s=nbytes / (st.median_ms * 1e-3) / 1e9,
                    rel_error_vs_fp32=float(((outputs[k] - ref) ** 2).sum() ** 0.5 / ((ref ** 2).sum() ** 0.5))))
    for r in records:
        base = next(b for b in records if b["batch"] == r["batch"] and b["variant"] == "fp32")
        r["speedup"] = base["latency_ms_median"] / r["latency_ms_median"]
        r["speedup_min"] = base["latency_ms_min"] / r["latency_ms_min"]
    return records


@register("llm", "Chapter 07: TinyGPT bits/char under INT8/INT4/NF4/INT3/INT2 RTN, GPTQ, AWQ; INT8 KV cache; MiniLM "
                 "embeddings under weight-only, W8A8, SmoothQuant, LLM.int8(); INT4 MatMulNBits decode vs FP32 (CPU)")
def llm_suite(ctx: SuiteContext) -> list[dict]:
    ctx.require_cpu("llm", "measures CPU inference (ONNX Runtime MatMulNBits)")
    torch.manual_seed(0)
    with pinned_threads(ctx.threads):
        records = tiny_gpt_records(ctx)
        records += kv_cache_records(ctx)
        records += minilm_records(ctx)
    records += int4_decode_records(ctx)
    return records


@register("llm_decode", "Chapter 07 (light): INT4 MatMulNBits vs FP32 MatMul in ONNX Runtime at decode (M=1) and "
                        "prefill (M=128) on this CPU; the speed half of the llm suite")
def llm_decode_suite(ctx: SuiteContext) -> list[dict]:
    ctx.require_cpu("llm_decode", "measures CPU inference (ONNX Runtime MatMulNBits)")
    return int4_decode_records(ctx)


# ----------------------------------------------------------------------------------------------- reading
def _spread(r: dict) -> str:
    if "bpc_min" not in r:
        return ""
    return f" (seeds {r['bpc_min']:.3f}-{r['bpc_max']:.3f})"


def _gpt_lines(records) -> list[str]:
    fp32 = find_record(records, "tiny_gpt", "fp32")
    if not fp32:
        return []
    lines = [f"TinyGPT FP32: {fp32['bpc']:.3f} bits/char on {fp32['eval_tokens']:,} held-out characters."]
    for r in records:
        if r["model"] == "tiny_gpt" and r["variant"] != "fp32":
            lines.append(f"  {r['variant']:<24} {r['bpc']:.3f} bpc ({r['delta_bpc']:+.3f}){_spread(r)}, "
                         f"{r['bits_per_weight']:.3f} bits/weight incl. scales")
    for r in records:
        if r["model"] == "tiny_gpt" and "gap_recovered" in r:
            rtn = find_record(records, "tiny_gpt", r["rtn_variant"])
            rng = (f" (seeds: {r['gap_recovered_min']:.0%} to {r['gap_recovered_max']:.0%})"
                   if "gap_recovered_min" in r else "")
            verb = "recovers" if r["gap_recovered"] >= 0 else "does not recover any of"
            lines.append(f"{r['variant']} {verb} {abs(r['gap_recovered']):.0%}{rng} of the "
                         f"{rtn['delta_bpc']:+.3f} bpc that {rtn['variant']} loses"
                         + ("" if r["gap_recovered"] >= 0 else f" (it is {-r['gap_recovered']:.0%} worse)"))
    int8 = find_record(records, "tiny_gpt", "int8_rtn")
    if int8:
        lines.append(f"INT8 weights cost {int8['delta_bpc']:+.4f} bpc: "
                     + ("within noise of FP32." if abs(int8["delta_bpc"]) < 0.01 else "a visible cost."))
    return lines


def _kv_lines(records) -> list[str]:
    fp32 = find_record(records, "tiny_gpt_kv", "fp32")
    if not fp32:
        return []
    parts = [f"{r['variant']} {r['delta_bpc']:+.4f} bpc, {r['cache_bytes']:,} B"
             for r in records if r["model"] == "tiny_gpt_kv" and r["variant"] != "fp32"]
    return [f"KV cache for {fp32['seq_len']} tokens: FP32 {fp32['cache_bytes']:,} B (formula "
            f"{fp32['formula_bytes_fp32']:,} B); " + "; ".join(parts)]


def _minilm_lines(records) -> list[str]:
    rows = [r for r in records if r["model"] == "minilm" and r["variant"] != "fp32"]
    lines = []
    if rows:
        lines.append("MiniLM embeddings vs FP32 (mean cosine / Spearman of pair similarities): " + "; ".join(
            f"{r['variant']} {r['cosine']:.4f} / {r['spearman']:.4f}" for r in rows))
    rtn, awq = find_record(records, "minilm", "int3_g64_rtn"), find_record(records, "minilm", "int3_g64_awq")
    if rtn and awq:
        better = awq["cosine"] > rtn["cosine"]
        lines.append(f"AWQ at INT3 {'improves' if better else 'does not improve'} cosine: {rtn['cosine']:.4f} -> "
                     f"{awq['cosine']:.4f}.")
    lines += _w8a8_lines(records)
    out = find_record(records, "minilm_outliers", "fp32")
    if out and out["outlier_dims"]:
        top = ", ".join(f"{d['dim']} (|x| up to {d['max_abs']:.1f})" for d in out["outlier_dims"][:4])
        lines.append(f"MiniLM outlier dimensions (> 6): {top}; median channel absmax about "
                     f"{out['outlier_dims'][0]['median_abs']:.1f}.")
        if out["median_error_ratio"]:
            lines.append(f"In the {len(out['layer_int8_errors'])} layers that read an outlier dimension, LLM.int8() "
                         f"cuts the per-tensor INT8 output error by a median {out['median_error_ratio']:.1f}x.")
    return lines


def _w8a8_lines(records) -> list[str]:
    plain, sq, tuned, dec = (find_record(records, "minilm", v) for v in
                             ("w8a8_per_tensor", "smoothquant_w8a8", "smoothquant_w8a8_calibrated", "llm_int8"))
    if not (plain and sq and dec):
        return []
    lines = [f"W8A8 with per-tensor activation scales: cosine {plain['cosine']:.4f}; SmoothQuant alpha "
             f"{sq['alpha']:g} {sq['cosine']:.4f}" + (f"; SmoothQuant alpha {tuned['alpha']:g} (chosen on "
                                                       f"calibration) {tuned['cosine']:.4f}" if tuned else "")
             + f"; LLM.int8() decomposition {dec['cosine']:.4f}."]
    if tuned:
        grid = ", ".join(f"{a:g}: {e:.4f}" for a, e in zip(tuned["alpha_grid"], tuned["calibration_errors"]))
        lines.append(f"The alpha search scored each alpha by MiniLM's output error on "
                     f"{tuned['calibration_sentences']} calibration speeches (never the evaluation sentences): "
                     f"{grid} (plain W8A8: {tuned['calibration_error_w8a8']:.4f}); it chose {tuned['alpha']:g}.")
    for r in (sq, tuned) if tuned and tuned["alpha"] != sq["alpha"] else (sq,):
        label = f"SmoothQuant at alpha {r['alpha']:g}" + (" (chosen on calibration)" if r is tuned else "")
        if r["cosine"] > plain["cosine"]:
            lines.append(f"{label} beats plain per-tensor W8A8 on MiniLM in this run ({r['cosine']:.4f} vs "
                         f"{plain['cosine']:.4f}).")
        else:
            lines.append(f"{label} does not beat plain per-tensor W8A8 on MiniLM in this run ({r['cosine']:.4f} "
                         f"vs {plain['cosine']:.4f}).")
    if tuned and tuned["cosine"] <= plain["cosine"] and min(tuned["calibration_errors"]) < tuned[
            "calibration_error_w8a8"]:
        lines.append("So SmoothQuant wins on the calibration speeches but not on the evaluation sentences: the "
                     "smoothing scales come from the calibration text's channel maxima, and a lower error there "
                     "did not carry over to these inputs (a calibration set closer to the real inputs may).")
    if tuned and tuned["alpha"] == sq["alpha"]:
        lines.append(f"The calibration search chose alpha {tuned['alpha']:g} itself, so both SmoothQuant rows are "
                     "the same model.")
    best = max((sq, tuned) if tuned else (sq,), key=lambda r: r["cosine"])
    verb = "beats" if dec["cosine"] > best["cosine"] else "does not beat"
    lines.append(f"LLM.int8(), which keeps the outlier columns in FP32, {verb} the best SmoothQuant row "
                 f"({dec['cosine']:.4f} vs {best['cosine']:.4f}).")
    return lines


def _decode_lines(records) -> list[str]:
    lines = []
    for m in sorted({r["batch"] for r in records if r["model"] == "int4_decode"}):
        fp32 = find_record(records, "int4_decode", "fp32", m)
        kind = "decode" if m == 1 else "prefill"
        parts = []
        for r in records:
            if r["model"] == "int4_decode" and r["batch"] == m and r["variant"] != "fp32":
                text = f"{r['variant']} {r['latency_ms_median']:.2f} ms, {r['speedup']:.2f}x ({speed_verdict(r['speedup'], SAME)})"
                if abs(r["speedup_min"] / r["speedup"] - 1) > 0.25:
                    text += f" [noisy: min-to-min {r['speedup_min']:.2f}x]"
                parts.append(text)
        lines.append(f"INT4 MatMulNBits, {kind} M={m} (d={fp32['d']}, {fp32['weights'] / 1e6:.0f}M weights): FP32 "
                     f"{fp32['latency_ms_median']:.2f} ms ({fp32['weight_gb_per_s']:.1f} GB/s of weights); "
                     + "; ".join(parts))
    dec = find_record(records, "int4_decode", "int4_acc4", 1)
    pre = next((r for r in records if r["model"] == "int4_decode" and r["variant"] == "int4_acc4"
                and r["batch"] > 1), None)
    if dec and pre:
        ratio = find_record(records, "int4_decode", "fp32", 1)["size_bytes"] / dec["size_bytes"]
        if dec["speedup"] > 1 + SAME:
            text = (f"INT4 (accuracy level 4) reads {ratio:.1f}x fewer weight bytes and decodes {dec['speedup']:.1f}x "
                    "faster at M=1")
            text += (": decode is memory-bound, time follows the bytes read." if dec["speedup"] >= ratio / 2 else
                     ", well short of the byte ratio: here unpacking and scaling the codes, or caches that already "
                     "hold part of the weights, limit the gain.")
        else:
            text = (f"On this machine INT4 weights did not make decode faster ({dec['speedup']:.2f}x at M=1, with "
                    f"{ratio:.1f}x fewer bytes): the smaller weights only pay when reading them from memory is the "
                    "bottleneck.")
        lines.append(text + f" At M={pre['batch']} (prefill) the gain is {pre['speedup']:.2f}x: every weight read "
                     f"now serves {pre['batch']} tokens, so arithmetic, not bytes, sets the time.")
    return lines


def reading(records: list[dict]) -> str:
    """Plain-language reading of an ``llm`` result, generated only from the measured numbers."""
    lines = _gpt_lines(records) + _kv_lines(records) + _minilm_lines(records) + _decode_lines(records)
    return "\n".join(lines) if lines else "no llm records"


__all__ = ["GPT_VARIANTS", "MINILM_W8A8_VARIANTS", "MINILM_WEIGHT_VARIANTS", "decode_stack", "gpt_calibration",
           "int4_decode_records", "kv_cache_records", "llm_decode_suite", "llm_suite", "minilm_calibration",
           "minilm_records", "reading", "tiny_gpt_records"]
