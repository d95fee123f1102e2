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
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split(":")[1].split()
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


# ---- time budget (issue 17: an emulated FP16 matmul must not take half an hour) ----------------------------

class FakeClock:
    """A clock that only moves when a fake workload says so: budget logic tested without waiting."""

    def __init__(self):
        self.now = 0.0
        self.calls = {}

    def __call__(self):
        return self.now

    def work(self, name, seconds):
        def fn():
            self.calls[name] = self.calls.get(name, 0) + 1
            self.now += seconds
        return fn


def test_budget_stops_a_slow_call_after_the_minimum_samples():
    clock = FakeClock()
    stats = bench.measure_latency({"slow": clock.work("slow", 2.0)}, repeats=30, warmup=2, budget_s=5.0,
                                  clock=clock)["slow"]
    # warm-up stops after one 2 s call (>= a quarter of 5 s); 2000 ms >= min_sample_ms needs no calibration call;
    # then 3 samples (the floor), although the budget was spent after the second
    assert clock.calls["slow"] == 1 + 3
    assert (stats.samples, stats.number, stats.stopped_by, stats.budget_s) == (3, 1, "budget", 5.0)
    assert stats.median_ms == pytest.approx(2000.0)
    assert stats.summary()["samples"] == 3 and stats.summary()["stopped_by"] == "budget"


def test_budget_counts_warmup_and_samples_of_a_medium_call():
    clock = FakeClock()
    stats = bench.measure_latency({"mid": clock.work("mid", 0.4)}, repeats=30, warmup=2, budget_s=5.0,
                                  clock=clock)["mid"]
    # 2 warm-up calls (0.8 s < 1.25 s), then samples while the total is under 5 s: 0.8 + 0.4 k >= 5 at k = 11
    assert stats.samples == 11 and clock.calls["mid"] == 2 + 11 and stats.stopped_by == "budget"


def test_budget_lets_fast_variants_take_every_repeat_while_slow_ones_stop():
    clock = FakeClock()
    stats = bench.measure_latency({"fast": clock.work("fast", 0.001), "slow": clock.work("slow", 2.0)},
                                  repeats=30, warmup=2, budget_s=5.0, clock=clock)
    # fast: 2 warm-up calls, 1 calibration call (1 ms < 2 ms), then 30 samples of 3 calls each (~2 ms)
    assert stats["fast"].number == 3 and stats["fast"].samples == 30 and stats["fast"].stopped_by == "repeats"
    assert clock.calls["fast"] == 2 + 1 + 30 * 3
    assert stats["slow"].samples == 3 and clock.calls["slow"] == 1 + 3
    assert stats["fast"].median_ms == pytest.approx(1.0) and stats["slow"].median_ms == pytest.approx(2000.0)


def test_no_budget_keeps_the_fixed_repeat_count():
    clock = FakeClock()
    stats = bench.measure_latency({"slow": clock.work("slow", 2.0)}, repeats=7, warmup=2, budget_s=None,
                                  clock=clock)["slow"]
    assert stats.samples == 7 and clock.calls["slow"] == 2 + 7 and stats.stopped_by == "repeats"


def test_min_samples_never_exceeds_repeats_and_records_carry_the_sample_count():
    clock = FakeClock()
    stats = bench.measure_latency({"slow": clock.work("slow", 9.0)}, repeats=2, warmup=0, budget_s=1.0,
                                  clock=clock)["slow"]
    assert stats.samples == 2 and stats.stopped_by == "repeats"  # repeats=2 wins over min_samples=3
    assert clock.calls["slow"] == 1 + 2  # no warm-up: one calibration call
    record = bench.make_record("m", "slow", device="cpu", batch=1, threads=1, stats=stats)
    assert (record["samples"], record["stopped_by"]) == (2, "repeats")
    assert "samples" in bench.format_table([record])


def test_calibration_is_bounded():
    for seconds, number in ((1e-9, 10_000), (3.0, 1), (0.0003, 7)):  # capped; slow; int(2 ms / 0.3 ms) + 1
        clock = FakeClock()
        assert bench.calibrate_number(clock.work("f", seconds), clock=clock) == number
        assert clock.calls["f"] == 1


def test_budget_rejects_bad_values():
    with pytest.raises(ValueError, match="budget_s"):
        bench.measure_latency({"a": lambda: None}, budget_s=0)
    with pytest.raises(ValueError, match="budget_s"):
        bench.measure_latency({"a": lambda: None}, budget_s=float("inf"))
    with pytest.raises(ValueError, match="min_samples"):
        bench.measure_latency({"a": lambda: None}, min_samples=0)


# ---- progress bars stay out of logs ----------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_shows_on_a_terminal_and_disables_itself_elsewhere():
    piped, terminal, off = io.StringIO(), _Terminal(), _Terminal()
    assert list(bench.progress_bar(range(3), desc="piped", file=piped)) == [0, 1, 2]
    assert piped.getvalue() == ""  # not a terminal: no carriage-return frames in logs
    assert list(bench.progress_bar(range(3), desc="shown", file=terminal)) == [0, 1, 2]
    assert "shown" in terminal.getvalue()
    list(bench.progress_bar(range(3), desc="off", enabled=False, file=off))
    assert off.getvalue() == ""
