"""The ``lowrank`` suite: latency records of factorized layers (torch and ORT), and the generated reading.

No timing thresholds (CONTRIBUTING: speed claims live in the benchmark output, not in unit tests). The training
parts of the suite run in ``coursekit bench --suite lowrank``; here the reading is checked on fixed records.
"""
import math
from pathlib import Path

import torch
from torch import nn

from coursekit import lowrank
from coursekit.bench import RECORD_KEYS
from coursekit.suites import SuiteContext, list_suites
from coursekit.suites.lowrank import _time, reading


def test_registered():
    assert "lowrank" in list_suites() and "lowrank_latency" in list_suites()


def test_latency_records_cover_runtimes_batches_and_speedups(tmp_path: Path):
    torch.manual_seed(0)
    dense = nn.Linear(32, 32)
    variants = {"dense": dense, "rank4": lowrank.svd_factorize(dense, 4)}
    ctx = SuiteContext(fast=True, progress=False, repeats=3)
    records = _time(variants, torch.randn(1, 32), ctx, tmp_path, "linear_d32", {"rank4": {"rank": 4}})
    assert len(records) == 2 * 2 * 2  # variants x runtimes x batch sizes
    for r in records:
        assert set(RECORD_KEYS) <= set(r)
        assert r["runtime"] in ("torch", "onnxruntime") and r["batch"] in (1, 64)
        assert r["params"] == (32 * 32 + 32 if r["factorization"] == "dense" else 4 * 64 + 32)
        dense_r = next(d for d in records if d["batch"] == r["batch"] and d["runtime"] == r["runtime"]
                       and d["factorization"] == "dense")
        assert math.isclose(r["speedup"], dense_r["latency_ms_median"] / r["latency_ms_median"])
        assert math.isclose(r["speedup_min"], dense_r["latency_ms_min"] / r["latency_ms_min"])
    # the ONNX file of the factorized layer holds r (m + n) + m floats, not m n + m
    sizes = {(r["runtime"], r["factorization"]): r["size_bytes"] for r in records}
    assert sizes[("onnxruntime", "rank4")] < sizes[("onnxruntime", "dense")]


def _lat(model, variant, runtime, batch, speedup, **extra):
    return {"model": model, "variant": f"{runtime[:4]}_{variant}", "batch": batch, "runtime": runtime,
            "factorization": variant, "speedup": speedup, "speedup_min": extra.pop("speedup_min", speedup),
            "latency_ms_median": 1.0 / speedup, **extra}


def test_reading_is_generated_from_the_numbers():
    records = [
        _lat("linear_d256", "dense", "onnxruntime", 1, 1.0, params=65_792, rank=256),
        _lat("linear_d256", "rank32", "onnxruntime", 1, 1.24, params=16_640, rank=32, break_even_rank=127),
        _lat("linear_d256", "rank128", "onnxruntime", 1, 0.61, params=65_792 + 256, rank=128, break_even_rank=127),
        _lat("linear_d256", "dense", "torch", 1, 1.0, params=65_792, rank=256),
        _lat("linear_d256", "rank32", "torch", 1, 0.64, params=16_640, rank=32, break_even_rank=127),
        _lat("linear_d512", "dense", "onnxruntime", 1, 1.0, params=262_656, rank=512),
        _lat("linear_d512", "rank64", "onnxruntime", 1, 0.73, params=65_536 + 512, rank=64, break_even_rank=255,
             speedup_min=2.22),
        {"model": "mlp_digits_512", "variant": "dense", "batch": 0, "accuracy": 0.975},
        {"model": "mlp_digits_512", "variant": "rank64", "batch": 0, "accuracy": 0.972,
         "accuracy_before_finetune": 0.95, "finetune_epochs": 5},
        {"model": "mlp_digits_512", "variant": "rank_choice", "batch": 0, "scan_rank": 8, "energy90_rank": 74},
        {"model": "mlp", "variant": "deep_compression", "batch": 0, "accuracy": 0.97, "size_bytes": 9_000,
         "compression": 22.5, "accuracy_pruned": 0.5, "accuracy_pruned_retrained": 0.96,
         "bytes_by_part": {"index": 3000, "labels": 2000}},
    ]
    text = reading(records)
    assert "linear_d256, batch 1, onnxruntime: rank32 1.24x (faster), rank128 0.61x (slower)" in text
    assert "linear_d256, batch 1, torch: rank32 0.64x (slower)" in text
    assert "rank 128 is above the break-even rank 127" in text
    assert "where low-rank does not pay here" in text and "torch batch 1 0.64x" in text
    assert "rank128" not in text.split("where low-rank does not pay here")[1]  # above break-even is explained apart
    # a median disturbed by other load is flagged with the min-to-min ratio, and not listed as "does not pay"
    assert "rank64 0.73x (slower) [noisy: min-to-min 2.22x]" in text
    assert "linear_d512" not in text.split("where low-rank does not pay here")[1]
    assert "95.0% before, 97.2% after 5 fine-tuning epoch(s) (0.3 points below dense 97.5%)" in text
    assert "at rank 8, the 90%-energy rule asks for rank 74" in text
    assert "9,000 bytes on disk, 22.5x smaller than FP32 (index 3,000 B, labels 2,000 B)" in text
