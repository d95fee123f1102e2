"""coursekit loadtest: locust (headless, in a subprocess) against a real server, CSV parsing, the sweep's reading."""
import httpx
import pytest
import torch

from coursekit.cli import main
from coursekit.export import export_onnx
from coursekit.models import build_model
from coursekit.serve import ServerThread, loadtest

WIDTH = 64


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("linear_heavy", input_shape=(WIDTH,), width=WIDTH)
    return export_onnx(model, torch.randn(1, WIDTH), tmp_path_factory.mktemp("loadtest") / "lh64.onnx")


STATS = """Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,\
Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
POST,/predict,400,100,12,13.5,2,80,300,80.0,20.0,12,14,15,16,20,31,45,60,78,80,80
,Aggregated,400,100,12,13.5,2,80,300,80.0,20.0,12,14,15,16,20,31,45,60,78,80,80
"""
FAILURES = """Method,Name,Error,Occurrences
POST,/predict,CatchResponseError('503 queue full'),90
POST,/predict,CatchResponseError('HTTP 500'),10
"""


def test_parse_locust_csv_by_hand(tmp_path):
    (tmp_path / "run_stats.csv").write_text(STATS)
    (tmp_path / "run_failures.csv").write_text(FAILURES)
    stats = loadtest.parse_locust_csv(tmp_path / "run")
    # 400 requests at 80/s, 100 failed: 300 answered -> 60 answered per second
    assert stats == {"rps": 60.0, "p50_ms": 12.0, "p95_ms": 31.0, "p99_ms": 60.0, "failures": 100, "n": 400,
                     "rejected_503": 90, "rps_total": 80.0}
    with pytest.raises(RuntimeError, match="no statistics"):
        loadtest.parse_locust_csv(tmp_path / "missing")


def test_a_short_locust_run_measures_a_real_server(model_path):
    with ServerThread(model_path, max_batch=8, max_wait_ms=2, queue_size=64) as server:
        stats = loadtest.run_locust(server.url, (WIDTH,), users=4, duration_s=3)
        metrics = httpx.get(f"{server.url}/metrics").json()
    assert stats["n"] > 0 and stats["failures"] == 0 and stats["rejected_503"] == 0
    assert stats["rps"] > 0 and stats["rps"] == stats["rps_total"]
    assert 0 <= stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    # every request locust counted was answered by the server (it also answered the ramp-up, not counted)
    assert metrics["answered"] >= stats["n"] and metrics["accepted"] == metrics["answered"]
    assert metrics["rejected"] == 0


def test_sweep_with_overload_through_served_model_files_sheds_load_and_loses_nothing(model_path):
    records = loadtest.batch_sweep({"fp32": model_path}, settings=((1, 0.0),), users=6, duration_s=2,
                                   queue_size=64, progress=False, model_name="lh64")
    normal, overload = records
    assert (normal["users"], normal["queue_size"], normal["overload"]) == (6, 64, False)
    assert normal["n"] > 0 and normal["failures"] == 0 and normal["accepted"] == normal["answered"] >= normal["n"]
    # 4x the users at a queue of users // 4 = 1: load is shed with 503s, nothing accepted is lost
    assert (overload["users"], overload["queue_size"], overload["overload"]) == (24, 1, True)
    assert overload["rejected_503"] > 0 and overload["failures"] == overload["rejected_503"]  # only 503s
    assert overload["rejected_503"] <= overload["server_rejected"]
    assert overload["accepted"] == overload["answered"] > 0 and overload["server_failed"] == 0
    assert overload["batch_size_histogram"].keys() == {"1"}
    assert {"rps", "p50_ms", "p95_ms", "p99_ms", "load_average"} <= overload.keys()
    assert "lh64" == overload["model"] and "fp32 b1 w0 overload" == overload["variant"]


def test_prepare_models_keeps_the_faster_int8_and_reports_its_batch_dependence(tmp_path):
    import numpy as np

    from coursekit.export import ort_session

    models = loadtest.prepare_models(tmp_path, width=WIDTH, batch_sizes=(1, 4))
    assert models["int8_method"] in ("dynamic", "static") and models["int8"].is_file() and models["fp32"].is_file()
    lat = models["latency_ms"]
    assert lat.keys() == {"fp32", "dynamic", "static"} and all(set(v) == {1, 4} for v in lat.values())
    other = "static" if models["int8_method"] == "dynamic" else "dynamic"
    geo = {m: (lat[m][1] * lat[m][4]) ** 0.5 for m in ("dynamic", "static")}
    assert geo[models["int8_method"]] <= geo[other]
    session = ort_session(models["int8"])
    x = np.random.default_rng(1).normal(size=(8, WIDTH)).astype(np.float32)
    x[1:] *= 10
    alone, batched = session.run(None, {"input": x[:1]})[0], session.run(None, {"input": x})[0][:1]
    assert models["int8_batch_dependence"] == float(np.abs(alone - batched).max())
    if models["int8_method"] == "static":  # fixed scales: a row's answer does not depend on its neighbours
        assert models["int8_batch_dependence"] == 0.0


def test_bounds_and_loopback_only():
    with pytest.raises(ValueError, match="not a loopback address"):
        loadtest.run_locust("http://10.0.0.1:8000", (4,), duration_s=1)
    with pytest.raises(ValueError, match="duration_s=601"):
        loadtest.run_locust("http://127.0.0.1:8000", (4,), duration_s=601)
    with pytest.raises(ValueError, match="users=1001"):
        loadtest.run_locust("http://127.0.0.1:8000", (4,), users=1001)


def record(precision, b, w, rps, p99, **extra):
    return {"precision": precision, "max_batch": b, "max_wait_ms": w, "rps": rps, "p99_ms": p99,
            "load_average": 1.5, **extra}


def test_the_reading_compares_precisions_at_each_setting():
    records = [record("fp32", 1, 0, 100.0, 80), record("int8", 1, 0, 250.0, 30),
               record("fp32", 8, 2, 200.0, 40), record("int8", 8, 2, 300.0, 25),
               record("int8", 8, 2, 310.0, 900, overload=True, users=128, queue_size=8, rejected_503=50, n=400,
                      accepted=350, answered=350)]
    rows = loadtest.compare_precisions(records)
    assert [(r["max_batch"], r["rps_ratio"]) for r in rows] == [(1, 2.5), (8, 1.5)]
    text = loadtest.reading(records)
    assert "1.50x to 2.50x" in text and "250 vs 100 req/s" in text
    assert "50 of 400 requests answered 503; accepted 350, answered 350 (none lost)" in text


def test_cli_usage_errors(capsys):
    assert main(["loadtest"]) == 2
    assert "give a model file or a server URL" in capsys.readouterr().err
    assert main(["loadtest", "model.onnx", "--sweep"]) == 2
    assert "not both" in capsys.readouterr().err
    for command in ("serve", "loadtest"):
        assert main([command, "--help"]) == 0
        assert "examples:" in capsys.readouterr().out
