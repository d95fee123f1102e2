"""The batching arithmetic of coursekit.serve.queueing against cases computed by hand."""
import math

import pytest

from coursekit.serve import queueing

CURVE = {1: 2.0, 8: 4.0, 32: 10.0}  # ms per batch of b rows


def test_compute_time_interpolates_and_extrapolates_linearly():
    assert queueing.compute_ms_at(CURVE, 8) == 4.0
    assert queueing.compute_ms_at(CURVE, 4) == pytest.approx(2.0 + 3 * (2.0 / 7))  # between 1 and 8
    assert queueing.compute_ms_at(CURVE, 20) == pytest.approx(4.0 + 12 * 0.25)  # between 8 and 32
    assert queueing.compute_ms_at(CURVE, 64) == pytest.approx(10.0 + 32 * 0.25)  # beyond: the last slope
    assert queueing.compute_ms_at({4: 3.0}, 1) == 3.0  # one point: constant


def test_throughput_of_full_batches():
    assert queueing.throughput_per_s(CURVE) == pytest.approx({1: 500.0, 8: 2000.0, 32: 3200.0})


def test_a_batch_closes_when_full_or_when_the_wait_is_over():
    # 1000 requests/s: one every 1 ms. max_batch 8 fills after 7 ms, before a 10 ms wait runs out
    assert queueing.batch_fill(1000, 8, 10) == (8, pytest.approx(7.0))
    # a 2.5 ms wait closes first: the requests at 0, 1, 2 ms are in
    assert queueing.batch_fill(1000, 8, 2.5) == (3, 2.5)
    assert queueing.batch_fill(1000, 8, 0) == (1, 0)  # no wait: one request per batch


def test_latency_is_wait_plus_compute():
    out = queueing.batching_latency(1000, 8, 2.5, CURVE)
    compute = 2.0 + 2 * (2.0 / 7)  # 3 rows
    assert out["batch"] == 3 and out["compute_ms"] == pytest.approx(compute)
    # waits 2.5, 1.5, 0.5 ms: mean 1.5 ms; the first request waits the longest
    assert out["mean_latency_ms"] == pytest.approx(1.5 + compute)
    assert out["max_latency_ms"] == pytest.approx(2.5 + compute)
    assert out["utilisation"] == pytest.approx(compute / 3.0) and out["stable"]
    assert out["throughput_per_s"] == 1000


def test_an_overloaded_server_has_unbounded_latency_and_serves_its_capacity():
    # 1 request every 1 ms, no batching (max_batch 1), 2 ms per request: the queue grows without bound
    out = queueing.batching_latency(1000, 1, 5, CURVE)
    assert out["utilisation"] == pytest.approx(2.0) and not out["stable"]
    assert math.isinf(out["mean_latency_ms"]) and out["throughput_per_s"] == pytest.approx(500.0)
    # the same load with batches of 8 (closed after 7 ms) is comfortably served: 4 ms per 8 ms of arrivals
    batched = queueing.batching_latency(1000, 8, 10, CURVE)
    assert batched["utilisation"] == pytest.approx(0.5) and batched["max_latency_ms"] == pytest.approx(11.0)


def test_md1_latency_grows_without_bound_near_full_utilisation():
    assert queueing.md1_latency_ms(2.0, 0.0) == 2.0
    assert queueing.md1_latency_ms(2.0, 0.5) == pytest.approx(2.0 + 0.5 * 2.0 / (2 * 0.5))  # 3.0
    assert queueing.md1_latency_ms(2.0, 0.9) == pytest.approx(2.0 + 0.9 * 2.0 / 0.2)  # 11.0
    assert math.isinf(queueing.md1_latency_ms(2.0, 1.0))
    curve = queueing.md1_curve(1.0, [0.1, 0.5, 0.9, 0.99])
    latencies = [lat for _, lat in curve]
    assert latencies == sorted(latencies) and latencies[-1] == pytest.approx(1.0 + 0.99 / 0.02)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="curve"):
        queueing.compute_ms_at({}, 1)
    with pytest.raises(ValueError, match="batch_size"):
        queueing.compute_ms_at(CURVE, 0)
    with pytest.raises(ValueError, match="rate_per_s"):
        queueing.batching_latency(0, 8, 1, CURVE)
    with pytest.raises(ValueError, match="utilisation"):
        queueing.md1_latency_ms(1.0, -0.1)
