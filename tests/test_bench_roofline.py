"""coursekit.bench.roofline and amdahl: the arithmetic against hand-computed cases (never the machine's speed)."""
import math

import pytest
import torch

from coursekit.bench import roofline
from coursekit.bench.amdahl import amdahl_speedup
from coursekit.bench.timing import LatencyStats


def test_gemv_intensity_is_about_one_flop_per_byte_in_fp16():
    # 4096 x 4096 FP16 weights, batch 1: 2 * 4096^2 FLOPs over 4096^2 * 2 weight bytes (+ 2 * 4096 * 2 for x and y)
    k = roofline.linear_kernel(4096, 4096, batch=1, weight_bytes=2, activation_bytes=2)
    assert k.flops == 2 * 4096**2
    assert k.bytes == 4096**2 * 2 + (4096 + 4096) * 2
    assert k.intensity == pytest.approx(33554432 / 33570816)  # 0.99951...
    assert k.name.startswith("GEMV")


def test_batch_reuses_weights():
    k1 = roofline.linear_kernel(2048, 1024, batch=1)
    k64 = roofline.linear_kernel(2048, 1024, batch=64)
    assert k64.flops == 64 * k1.flops == 2 * 64 * 2048 * 1024
    assert k64.bytes == 2048 * 1024 * 4 + 64 * (2048 + 1024) * 4  # weights once, 64 rows of activations
    assert k64.intensity == pytest.approx(268435456 / 9175040)  # 29.26 FLOP/byte
    assert k64.name.startswith("GEMM")


def test_elementwise_add_and_matmul_intensity():
    add = roofline.elementwise_kernel(1000)  # 1 FLOP, reads 2 floats, writes 1
    assert (add.flops, add.bytes, add.intensity) == (1000, 12000, pytest.approx(1 / 12))
    mm = roofline.matmul_kernel(1024)
    assert mm.flops == 2 * 1024**3 and mm.bytes == 3 * 1024**2 * 4
    assert mm.intensity == pytest.approx(1024 / 6)


def test_ridge_and_roof_match_the_bank_example():
    # 100 TFLOP/s and 2 TB/s: ridge at 50 FLOP/byte (quiz ch00-ridge-point)
    assert roofline.ridge_point(100e12, 2e12) == 50
    assert roofline.attainable_flops(1.0, 100e12, 2e12) == 2e12  # below the ridge: I * B
    assert roofline.attainable_flops(80.0, 100e12, 2e12) == 100e12  # above: the peak
    assert roofline.bound(roofline.Kernel("x", 10, 10), 100e12, 2e12) == "memory"
    assert roofline.bound(roofline.Kernel("x", 1000, 10), 100e12, 2e12) == "compute"


def test_measurements_turn_the_fastest_sample_into_rates(monkeypatch):
    seen = {}

    def fake_measure_latency(candidates, **kwargs):
        seen.update(kwargs)
        (name, fn), = candidates.items()
        fn()  # the kernel must be callable
        return {name: LatencyStats(name, [9.0, 4.0, 5.0])}  # fastest sample 4 ms

    monkeypatch.setattr(roofline, "measure_latency", fake_measure_latency)
    assert roofline.measure_bandwidth(4_000_000, repeats=3) == pytest.approx(4_000_000 / 4e-3)
    assert seen["threads"] == 1 and seen["repeats"] == 3
    assert roofline.measure_peak_flops(torch.float32, n=64, repeats=3) == pytest.approx(2 * 64**3 / 4e-3)
    k = roofline.measure_kernel(roofline.elementwise_kernel(1000), lambda: None, repeats=3)
    assert k.seconds == pytest.approx(4e-3) and k.achieved_flops == pytest.approx(1000 / 4e-3)


def test_reading_and_figure_use_the_numbers_given():
    k = roofline.Kernel("gemv", flops=2e6, bytes=4e6, seconds=1e-3)  # 0.5 FLOP/B, 2 GFLOP/s measured
    text = roofline.roofline_reading(50e9, 10e9, [k])
    assert "ridge point 5.0 FLOP/byte" in text
    assert "gemv: 0.5 FLOP/byte, memory-bound, roof 5.00 GFLOP/s, measured 2.00 GFLOP/s (40% of its roof)" in text
    fig = roofline.roofline_figure(50e9, 10e9, [k, roofline.matmul_kernel(256)])
    roof = fig.axes[0].lines[0]
    assert max(roof.get_ydata()) == pytest.approx(50.0) and min(roof.get_xdata()) < 0.5 and max(roof.get_xdata()) > 64


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="batch"):
        roofline.linear_kernel(16, 16, batch=0)
    with pytest.raises(ValueError, match="bandwidth"):
        roofline.ridge_point(1e9, 0)
    with pytest.raises(TypeError, match="dtype"):
        roofline.measure_peak_flops(torch.int8, n=8)


def test_amdahl_hand_cases():
    assert amdahl_speedup(0.6, 4) == pytest.approx(1 / 0.55)  # 1.818x (quiz ch00-amdahl)
    assert amdahl_speedup(0.6, math.inf) == pytest.approx(2.5)  # the limit 1 / (1 - p)
    assert amdahl_speedup(0.0, 100) == 1.0 and amdahl_speedup(1.0, 3) == pytest.approx(3.0)
    assert amdahl_speedup(1.0, math.inf) == math.inf
    with pytest.raises(ValueError, match="fraction"):
        amdahl_speedup(1.5, 2)
