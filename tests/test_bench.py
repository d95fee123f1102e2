"""coursekit.bench against independent references: numpy percentiles, torch.save, /proc/cpuinfo, hand cases."""
import io
import time

import numpy as np
import pytest
import torch

from coursekit import bench
from coursekit.bench.hardware import accelerated_paths


def test_percentile_matches_numpy():
    values = list(np.random.default_rng(0).exponential(size=101))
    for q in (0, 10, 50, 90, 99, 100):
        assert bench.percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_latency_stats_on_known_samples():
    stats = bench.LatencyStats("x", [5.0, 1.0, 3.0, 2.0, 4.0])
    assert (stats.min_ms, stats.median_ms, stats.mean_ms) == (1.0, 3.0, 3.0)
    assert stats.p90_ms == pytest.approx(np.percentile([1, 2, 3, 4, 5], 90))


def test_measure_latency_interleaves_warms_up_and_restores_threads():
    calls = []
    before = torch.get_num_threads()
    stats = bench.measure_latency(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        repeats=4, warmup=2, threads=1, min_sample_ms=0.0,
    )
    assert torch.get_num_threads() == before
    assert calls[:4] == ["a", "a", "b", "b"]  # warm-up first, per variant
    timed = calls[-8:]  # number=1 per sample with min_sample_ms=0: rounds alternate which goes first
    assert timed == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(stats["a"].samples_ms) == 4


def test_measured_latency_reflects_a_known_sleep():
    stats = bench.measure_latency({"sleep": lambda: time.sleep(0.005)}, repeats=5, warmup=1)
    assert 4.5 <= stats["sleep"].min_ms <= 60  # the instrument, not a speed claim: it sees a 5 ms sleep


def test_measure_latency_rejects_bad_input():
    with pytest.raises(ValueError, match="candidates"):
        bench.measure_latency({})
    with pytest.raises(ValueError, match="repeats"):
        bench.measure_latency({"a": lambda: None}, repeats=0)
    with pytest.raises(ValueError, match="device"):
        bench.measure_latency({"a": lambda: None}, device="tpu")


def test_serialized_size_equals_torch_save_bytes(tmp_path):
    model = torch.nn.Linear(100, 10)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert bench.serialized_size(model) == len(buffer.getvalue())
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    assert bench.serialized_size(path) == path.stat().st_size


def test_parameter_memory_counts_bits():
    model = torch.nn.Linear(1000, 1000)  # 1,001,000 parameters
    memory = bench.parameter_memory(model, formats=("fp32", "fp16", "int8"))
    assert memory == {"fp32": 4_004_000, "fp16": 2_002_000, "int8": 1_001_000}


def test_peak_memory_sees_a_64_mb_allocation():
    peak = bench.peak_memory(lambda: torch.ones(4096, 4096).sum())  # 64 MiB of float32
    assert 48 * 2**20 <= peak.peak_bytes <= 256 * 2**20


def test_isa_flags_agree_with_torch_capability():
    report = bench.hardware_report()
    capability = report["cpu"]["torch_cpu_capability"]
    isa = set(report["cpu"]["isa"])
    if capability.startswith("AVX512"):
        assert "avx512f" in isa
    if capability.startswith("AVX2"):
        assert "avx2" in isa


def test_isa_flags_match_proc_cpuinfo():
    pytest.importorskip("psutil")
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags on this system")
    isa = set(bench.cpu_info()["isa"])
    for flag in ("avx2", "avx512f", "avx512_vnni", "amx_int8", "avx512_bf16"):
        assert (flag in isa) == (flag in flags)


def _report(isa, gpus=()):
    return {"cpu": {"isa": isa, "arch": "x86_64"}, "cuda": list(gpus), "software": {}}


def test_accelerated_paths_follow_the_isa():
    with_vnni = {p.path: p.accelerated for p in accelerated_paths(_report(["avx2", "avx512_vnni"]))}
    assert with_vnni["CPU INT8"] and not with_vnni["CPU BF16"]
    without = {p.path: p.accelerated for p in accelerated_paths(_report(["avx2"]))}
    assert not without["CPU INT8"] and not without["GPU"]


def test_accelerated_paths_for_gpu_generations():
    gpus = [{"index": 0, "name": "A100", "capability": "8.0"}, {"index": 1, "name": "H100", "capability": "9.0"}]
    paths = {p.path.split(", sm_")[0].split(" (")[0] + " " + p.path.split()[-1]: p.accelerated
             for p in accelerated_paths(_report([], gpus))}
    assert paths["GPU 0 BF16"] and not paths["GPU 0 FP8"]
    assert paths["GPU 1 FP8"]


def test_report_table_json_round_trip(tmp_path):
    stats = bench.LatencyStats("fp32", [2.0, 2.0, 2.0])
    fast = bench.LatencyStats("int8", [0.5, 0.5, 0.5])
    records = [bench.make_record("m", "fp32", device="cpu", batch=8, threads=1, stats=stats, size_bytes=100),
               bench.make_record("m", "int8", device="cpu", batch=8, threads=1, stats=fast, size_bytes=25)]
    bench.add_speedups(records, "fp32")
    assert records[1]["speedup"] == pytest.approx(4.0)
    assert records[1]["throughput_per_s"] == pytest.approx(8 * 1e3 / 0.5)
    table = bench.format_table(records)
    assert "int8" in table and "speedup" in table
    path = bench.save_results(tmp_path / "r.json", bench.hardware_report(), records, "demo")
    loaded = bench.load_results(path)
    assert loaded["records"] == records and loaded["suite"] == "demo"
    ax = bench.plot_latency(records, batch=8)
    assert len(ax.patches) == 2


def test_parameter_memory_with_groups_counts_scales_per_tensor():
    model = torch.nn.Linear(256, 3)  # weight 768 (6 groups of 128), bias 3 (one short group)
    memory = bench.parameter_memory(model, formats=("int4",), group_size=128)
    assert memory["int4"] == -(-(771 * 4 + 7 * 16) // 8)  # bits rounded up to whole bytes
