"""coursekit.serve.explore: the batcher replay against hand-computed schedules, the closed form for evenly spaced
arrivals (queueing.batching_latency) and the M/D/1 queue (Pollaczek-Khinchine) for Poisson arrivals."""
import numpy as np
import pytest

from coursekit.serve import queueing
from coursekit.serve.explore import batching_explorer, poisson_arrivals_ms, simulate_batcher, simulate_load

LINEAR = {1: 2.5, 64: 34.0}  # c(b) = 2 + 0.5 b ms


def test_burst_by_hand():
    # 10 requests at t=0, max batch 4, max wait 5 ms: batches of 4, 4 (finish 4, 8), then 2 start at
    # max(8, 5) = 8 and finish at 8 + 3 = 11
    out = simulate_batcher([0.0] * 10, 4, 5.0, LINEAR)
    assert out["batch_sizes"] == [4, 4, 2]
    assert out["latency_ms"].tolist() == [4.0] * 4 + [8.0] * 4 + [11.0] * 2
    # 3 requests, max batch 8: the partial batch waits for max wait (4 ms), then computes 3.5 ms
    assert simulate_batcher([0.0] * 3, 8, 4.0, LINEAR)["latency_ms"].tolist() == [7.5] * 3


def test_irregular_arrivals_by_hand():
    # max batch 2, max wait 1 ms; arrivals 0, 0.5, 3, 10
    # batch 1: full at 0.5 -> runs 0.5..3.5 (c(2) = 3); the request at 3 waits until the model is free at 3.5
    # and its wait (1 ms, until 4) -> runs alone 4..6.5; the request at 10 waits 1 ms -> 11..13.5
    out = simulate_batcher([0.0, 0.5, 3.0, 10.0], 2, 1.0, LINEAR)
    assert out["batch_sizes"] == [2, 1, 1]
    assert out["latency_ms"] == pytest.approx([3.5, 3.0, 3.5, 3.5])


def test_evenly_spaced_arrivals_match_the_closed_form():
    for rate, max_batch, wait in ((200, 8, 10.0), (500, 8, 6.0), (500, 4, 50.0), (50, 16, 5.0)):
        arrivals = np.arange(4000) * 1e3 / rate
        out = simulate_batcher(arrivals, max_batch, wait, LINEAR)
        closed = queueing.batching_latency(rate, max_batch, wait, LINEAR)
        assert closed["stable"]
        steady = out["latency_ms"][100:-100]
        assert steady.max() == pytest.approx(closed["max_latency_ms"], rel=1e-9)
        assert int(np.median(out["batch_sizes"])) == closed["batch"]


def test_poisson_without_batching_is_md1():
    # max batch 1, no wait: one FIFO server with a fixed service time, Poisson arrivals -> M/D/1
    service = 1.0
    curve = {1: service, 2: 2 * service}
    for rho in (0.3, 0.6):
        arrivals = poisson_arrivals_ms(rho * 1e3 / service, 200_000, seed=3)
        mean = simulate_batcher(arrivals, 1, 0.0, curve)["latency_ms"].mean()
        assert mean == pytest.approx(queueing.md1_latency_ms(service, rho), rel=0.03)


def test_load_summary_and_overload():
    ok = simulate_load(500, 8, 2.0, LINEAR, n=5000)
    assert ok["p50_ms"] <= ok["p99_ms"] and ok["throughput_per_s"] == pytest.approx(500, rel=0.05)
    over = simulate_load(1000, 1, 0.0, LINEAR, n=5000)  # capacity 400/s at batch 1
    assert over["throughput_per_s"] == pytest.approx(400, rel=0.01) and over["p99_ms"] > 1000


def test_bad_input():
    with pytest.raises(ValueError, match="sorted"):
        simulate_batcher([1.0, 0.0], 2, 1.0, LINEAR)
    with pytest.raises(ValueError, match="non-empty"):
        simulate_batcher([], 2, 1.0, LINEAR)
    with pytest.raises(ValueError, match="max_batch"):
        simulate_batcher([0.0], 0, 1.0, LINEAR)
    with pytest.raises(ValueError, match="max_wait_ms"):
        simulate_batcher([0.0], 1, -1.0, LINEAR)
    with pytest.raises(ValueError, match="rate_per_s"):
        poisson_arrivals_ms(0, 10)


def test_explorer_builds():
    box = batching_explorer(LINEAR, n=500)
    assert "p99" in box.children[1].value
