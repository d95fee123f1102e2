"""The ``formats`` suite: record keys, GFLOP/s consistent with 2 n^3 / latency, sizes equal the memory arithmetic."""
import io
import math
import sys

import pytest
import torch

from coursekit.bench import RECORD_KEYS, LatencyStats
from coursekit.formats import memory_bytes
from coursekit.suites import SuiteContext, list_suites, run_suite
from coursekit.suites import formats as formats_suite
from coursekit.suites.basics import linear_heavy_model
from coursekit.suites.formats import (
    EMULATED_BELOW,
    FAST_BUDGET_S,
    FAST_SIZES,
    GROUP_SIZE,
    MATMUL_DTYPES,
    fp8_support,
    matmul_flops,
    plot_gflops,
    reading,
)


@pytest.fixture(scope="module")
def result():
    return run_suite("formats", fast=True, progress=False, repeats=3)


def test_suite_is_registered():
    assert "formats" in list_suites()


def test_every_record_has_the_standard_keys(result):
    assert result["suite"] == "formats" and "cpu" in result["hardware"]
    for r in result["records"]:
        assert set(RECORD_KEYS) <= set(r), r


def test_matmul_records_are_consistent(result):
    rows = [r for r in result["records"] if r["model"] == "matmul" and r["variant"] in MATMUL_DTYPES]
    assert {(r["variant"], r["batch"]) for r in rows} == {(v, n) for v in MATMUL_DTYPES for n in FAST_SIZES}
    assert {r["variant"] for r in rows if r["batch"] == FAST_SIZES[0] and r["gflops"]} == set(MATMUL_DTYPES)
    for r in rows:
        assert r["device"] == "cpu" and r["threads"] == 1 and r["size"] == r["batch"]
        if r["gflops"] is None:  # skipped: projected from this dtype's own smaller product, over the budget
            smaller = next(m for m in rows if m["variant"] == r["variant"] and m["batch"] == FAST_SIZES[0])
            expected = smaller["latency_ms_median"] / 1e3 * (r["batch"] / smaller["batch"]) ** 3
            assert math.isclose(r["projected_s"], expected, rel_tol=1e-9) and r["projected_s"] > r["budget_s"]
            assert r["note"].startswith("skipped") and "time budget" in r["note"]
            continue
        assert 0 < r["latency_ms_min"] <= r["latency_ms_median"] <= r["latency_ms_p90"]
        expected = 2 * r["size"] ** 3 / (r["latency_ms_median"] * 1e-3) / 1e9
        assert math.isclose(r["gflops"], expected, rel_tol=1e-9)
        assert math.isclose(r["throughput_per_s"], r["batch"] * 1e3 / r["latency_ms_median"], rel_tol=1e-9)


def test_fp8_is_skipped_with_a_reason_on_cpu(result):
    skipped = [r for r in result["records"] if r["model"] == "matmul" and r["variant"] == "fp8_e4m3"]
    assert len(skipped) == len(FAST_SIZES)
    for r in skipped:
        assert r["gflops"] is None and r["latency_ms_median"] is None
        assert r["note"].startswith("skipped") and "8.9" in r["note"]
    assert fp8_support("cpu")[0] is False


def test_flops_of_a_square_product():
    assert matmul_flops(1) == 2 and matmul_flops(1024) == 2 * 1024 ** 3


def test_size_records_equal_the_memory_arithmetic(result):
    model = linear_heavy_model()
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    sizes = {r["variant"]: r for r in result["records"] if r["model"] == "linear_heavy"}
    assert set(sizes) == {"fp32", "fp16", "bf16", "fp8_e4m3", "int8", "int4", "nf4"}
    for name in ("fp32", "fp16", "bf16", "fp8_e4m3", "int8"):
        assert sizes[name]["size_bytes"] == memory_bytes(n, name), name
        assert sizes[name]["latency_ms_median"] is None
    assert sizes["fp32"]["size_bytes"] == sum(p.numel() * 4 for p in params)
    # 4 bits per weight + one 16-bit scale per group, groups counted per tensor (a short last group has a scale)
    groups = sum(-(-p.numel() // GROUP_SIZE) for p in params)
    for name in ("int4", "nf4"):
        assert sizes[name]["size_bytes"] == -(-(n * 4 + groups * 16) // 8)
        assert sizes[name]["group_size"] == GROUP_SIZE
        assert 4 < sizes[name]["bits_per_param"] < 4 + 16 / GROUP_SIZE + 0.01


def test_reading_is_built_from_the_numbers(result):
    text = reading(result["records"])
    fp32 = next(r for r in result["records"] if r["variant"] == "fp32" and r["batch"] == FAST_SIZES[-1]
                and r["model"] == "matmul")
    assert f"fp32 {fp32['gflops']:,.0f} GFLOP/s" in text
    assert "BF16" in text and "FP16" in text and "skipped" in text
    assert "linear_heavy" in text and "67.2 MB" in text


def test_reading_explains_slow_fp16():
    def row(variant, gflops):
        return {"model": "matmul", "variant": variant, "device": "cpu", "batch": 512, "threads": 1,
                "gflops": gflops}

    text = reading([row("fp32", 100.0), row("bf16", 400.0), row("fp16", 50.0)])
    assert "BF16 is 4.0x FP32" in text and "FP16 is slower than FP32" in text
    text = reading([row("fp32", 100.0), row("bf16", 60.0), row("fp16", 100.0)])
    assert "BF16 is slower than FP32" in text and "FP16 is about as fast" in text


def test_plot_gflops(result):
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_gflops(result["records"])
    assert len(ax.get_lines()) == len(MATMUL_DTYPES)
    with pytest.raises(ValueError, match="no matmul rows"):
        plot_gflops([])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_run_also_measures_the_cpu():
    records = run_suite("formats", device="cuda", fast=True, progress=False, repeats=3)["records"]
    assert {r["device"] for r in records if r["model"] == "matmul"} == {"cpu", "cuda"}


def test_matmul_timing_has_a_budget_and_reports_its_samples(result):
    rows = [r for r in result["records"] if r["model"] == "matmul" and r["gflops"] is not None]
    for r in rows:
        assert r["budget_s"] == FAST_BUDGET_S and r["samples"] == 3  # repeats=3 in the fixture, min_samples=3
        assert r["stopped_by"] == "repeats"


def test_a_dtype_too_slow_for_the_budget_is_not_timed_at_larger_sizes(monkeypatch):
    """A fake timer: FP16 takes 50 ms at n=256, so n=1024 is projected to 50 ms * 64 = 3.2 s > the 1 s budget."""
    seen = []

    def fake_measure_latency(calls, **kwargs):
        seen.append((sorted(calls), kwargs["budget_s"]))
        ms = {"fp32": 1.0, "bf16": 2.0, "fp16": 50.0}
        return {name: LatencyStats(name, [ms[name]] * 3, 1, kwargs["budget_s"]) for name in calls}

    monkeypatch.setattr(formats_suite, "measure_latency", fake_measure_latency)
    records = formats_suite.matmul_records(SuiteContext(fast=True, repeats=3, progress=False), "cpu")
    assert seen == [(["bf16", "fp16", "fp32"], FAST_BUDGET_S), (["bf16", "fp32"], FAST_BUDGET_S)]
    fp16 = {r["batch"]: r for r in records if r["variant"] == "fp16"}
    assert fp16[256]["gflops"] == pytest.approx(2 * 256 ** 3 / 0.05 / 1e9)
    assert fp16[1024]["gflops"] is None and fp16[1024]["projected_s"] == pytest.approx(3.2)
    assert "one 1024x1024 product would take about 3 s, more than the 1 s time budget" in fp16[1024]["note"]
    text = reading(records)
    assert "fp16 at n=1024 skipped" in text and "FP16 is emulated in software here" in text
    assert "at n=256 (0.020x)" in text  # the verdict uses the largest size measured for both dtypes


def _row(variant, gflops, **extra):
    return {"model": "matmul", "variant": variant, "device": "cpu", "batch": 1024, "threads": 1, "gflops": gflops,
            **extra}


def _hardware(*isa):
    return {"cpu": {"isa": list(isa), "arch": "x86_64"}, "cuda": []}


def test_reading_calls_a_far_slower_format_emulated_from_the_measurement():
    rows = [_row("fp32", 88.0), _row("bf16", 44.0), _row("fp16", 0.9, samples=3, stopped_by="budget", budget_s=5.0)]
    text = reading(rows)  # no hardware report: the measurement alone decides
    assert "FP16 is emulated in software here: 0.9 GFLOP/s against FP32's 88 at n=1024 (0.010x)" in text
    assert "BF16 is slower than FP32 at n=1024 (0.50x)" in text and "BF16 is emulated" not in text
    assert "fp16 0.9 (0.01x, slower; 3 samples, 5 s budget)" in text and "ISA" not in text
    # the ISA flags as a second witness, from the learner's own report
    text = reading(rows, _hardware("avx512f", "avx512_vnni", "f16c"))
    assert "the ISA flags agree: no native FP16 arithmetic" in text
    text = reading(rows, _hardware("avx512f", "avx512_fp16"))
    assert "although the CPU reports avx512_fp16" in text
    # just above the threshold it is slow, not emulated
    text = reading([_row("fp32", 100.0), _row("fp16", 100.0 * EMULATED_BELOW * 1.01)])
    assert "emulated" not in text and "FP16 is slower than FP32" in text


def test_reading_with_the_measured_hardware_report(result):
    text = reading(result["records"], result["hardware"])
    matmul = {(r["variant"], r["batch"]): r for r in result["records"] if r["model"] == "matmul" and r["gflops"]}
    n = max(m for v, m in matmul if v == "fp16")  # the largest size where FP16 was timed
    emulated = matmul["fp16", n]["gflops"] / matmul["fp32", n]["gflops"] < EMULATED_BELOW
    assert ("FP16 is emulated in software here" in text) == emulated
    assert f"at n={n}" in text
    if emulated and "avx512_fp16" not in result["hardware"]["cpu"]["isa"]:
        assert "the ISA flags agree" in text


def test_suite_progress_bar_stays_out_of_pipes(monkeypatch, capsys):
    monkeypatch.setattr(formats_suite, "FAST_SIZES", (16,))
    ctx = SuiteContext(fast=True, repeats=3, progress=True)
    records = formats_suite.matmul_records(ctx, "cpu")
    assert {r["variant"] for r in records} == {"fp32", "bf16", "fp16", "fp8_e4m3"}
    assert capsys.readouterr().out == ""  # captured stdout is not a terminal: the bar disabled itself

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    formats_suite.matmul_records(ctx, "cpu")
    assert "formats: matmul on cpu" in terminal.getvalue()
