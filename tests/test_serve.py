"""The inference server over real HTTP on loopback: answers equal ONNX Runtime's, bad input gets a 4xx with a
message and the server keeps serving, overload gets 503 and no accepted request is lost, graceful shutdown,
port in use, files that are not ONNX."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch

from coursekit.cli import main
from coursekit.export import export_onnx, ort_run, ort_session
from coursekit.models import build_model
from coursekit.serve import ServerThread, bind_socket, check_loopback, create_app, load_model
from coursekit.serve.server import base_url

WIDTH = 64


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("linear_heavy", input_shape=(WIDTH,), width=WIDTH)
    return export_onnx(model, torch.randn(1, WIDTH), tmp_path_factory.mktemp("serve") / "lh64.onnx")


@pytest.fixture(scope="module")
def reference(model_path):
    session = ort_session(model_path, threads=1)
    return lambda x: ort_run(session, np.asarray(x, dtype=np.float32))


def inputs(rows, seed):
    return np.random.default_rng(seed).normal(size=(rows, WIDTH)).astype(np.float32)


def check_answer(response, x, reference):
    """A 200 whose outputs equal ORT run directly on the same input (batching must not change the answer)."""
    assert response.status_code == 200, response.text
    body = response.json()
    expected = reference(x)
    np.testing.assert_allclose(np.array(body["outputs"], dtype=np.float32), expected, rtol=1e-5, atol=1e-6)
    assert body["argmax"] == expected.argmax(axis=1).tolist()


def gated(app):
    """Hold the model call at a gate: the test decides when batches may run (the results stay real ORT)."""
    gate = threading.Event()
    batcher = app.state.batcher
    run = batcher.run_batch

    def held(x):
        gate.wait(30)
        return run(x)

    batcher.run_batch = held
    return gate


def wait_for(predicate, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_predictions_equal_ort_on_the_same_inputs_also_when_batched(model_path, reference):
    with ServerThread(model_path, max_batch=8, max_wait_ms=20, queue_size=64) as server:
        health = httpx.get(f"{server.url}/health").json()
        assert health["status"] == "ok" and health["input_shape"] == [None, WIDTH]
        assert health["model"] == str(model_path) and health["max_batch"] == 8
        xs = [inputs(rows, seed) for seed, rows in enumerate((1, 2, 3, 1, 4, 1, 2, 5, 1, 3))]
        with httpx.Client(base_url=server.url) as client, ThreadPoolExecutor(10) as pool:
            responses = list(pool.map(lambda x: client.post("/predict", json={"inputs": x.tolist()}), xs))
        for x, response in zip(xs, responses):
            check_answer(response, x, reference)
        metrics = httpx.get(f"{server.url}/metrics").json()
    assert metrics["accepted"] == metrics["answered"] == len(xs) and metrics["http"]["ok"] == len(xs)
    assert metrics["rows"] == sum(len(x) for x in xs)
    assert sum(int(b) * n for b, n in metrics["batch_size_histogram"].items()) == metrics["rows"]
    assert metrics["latency_ms"]["n"] == len(xs)
    assert metrics["latency_ms"]["p50"] <= metrics["latency_ms"]["p95"] <= metrics["latency_ms"]["p99"]


ROW = [0.5] * WIDTH
BAD_REQUESTS = [
    (b'{"inputs": [[1, 2', 400, "malformed JSON"),
    (b"\xff\xfe not utf-8", 400, "malformed JSON"),
    (json.dumps([ROW]).encode(), 400, 'JSON object {"inputs"'),
    (json.dumps({"x": [ROW]}).encode(), 400, "with keys ['x']"),
    (json.dumps({"inputs": "hello"}).encode(), 422, "must be a list of rows"),
    (json.dumps({"inputs": []}).encode(), 422, "empty batch"),
    (json.dumps({"inputs": [[1.0, 2.0]]}).encode(), 422, f"wrong shape: inputs has shape (1, 2), the model takes (rows, {WIDTH})"),
    (json.dumps({"inputs": ROW}).encode(), 422, "wrong shape"),
    (json.dumps({"inputs": [ROW, ROW[:-1]]}).encode(), 422, "ragged"),
    (json.dumps({"inputs": [["a"] * WIDTH]}).encode(), 422, "numbers only; got strings"),
    (json.dumps({"inputs": [[None] * WIDTH]}).encode(), 422, "numbers only"),
    (json.dumps({"inputs": [[True] * WIDTH]}).encode(), 422, "got booleans"),
    (json.dumps({"inputs": [[float("nan")] + ROW[1:]]}).encode(), 422, "NaN or infinity"),
    (json.dumps({"inputs": [[1e39] + ROW[1:]]}).encode(), 422, "beyond float32"),
    (json.dumps({"inputs": [ROW] * 5}).encode(), 413, "too many rows: inputs has 5 rows"),
]


def test_bad_input_gets_a_4xx_naming_the_problem_and_the_server_keeps_serving(model_path, reference):
    with ServerThread(model_path, max_batch=4, max_wait_ms=1, queue_size=8) as server, \
            httpx.Client(base_url=server.url) as client:
        for body, status, message in BAD_REQUESTS:
            response = client.post("/predict", content=body, headers={"content-type": "application/json"})
            assert response.status_code == status, (body[:40], response.text)
            assert message in response.json()["error"], (body[:40], response.json())
        huge = b'{"inputs": [' + b"1," * 2_000_000 + b"1]}"
        response = client.post("/predict", content=huge)
        assert response.status_code == 413 and "larger than" in response.json()["error"]
        assert client.get("/nowhere").status_code == 404
        x = inputs(2, seed=7)
        check_answer(client.post("/predict", json={"inputs": x.tolist()}), x, reference)  # still serving
        metrics = client.get("/metrics").json()
    assert metrics["http"]["invalid"] == len(BAD_REQUESTS) + 1
    assert metrics["accepted"] == metrics["answered"] == 1 and metrics["batches"] == 1


def test_overload_gets_503_with_retry_after_and_every_accepted_request_is_answered(model_path, reference):
    n_requests, queue_size = 12, 2
    with ServerThread(model_path, max_batch=1, max_wait_ms=0, queue_size=queue_size) as server:
        gate = gated(server.app)
        batcher = server.app.state.batcher
        xs = [inputs(1, seed=100 + i) for i in range(n_requests)]
        with httpx.Client(base_url=server.url, timeout=60) as client, ThreadPoolExecutor(n_requests) as pool:
            futures = [pool.submit(client.post, "/predict", json={"inputs": x.tolist()}) for x in xs]
            # one request is held in the model, `queue_size` wait, the rest are refused at once
            wait_for(lambda: sum(f.done() for f in futures) == n_requests - 1 - queue_size)
            assert batcher.metrics()["queue_depth"] == queue_size and batcher.in_flight == 1
            gate.set()
            responses = [f.result() for f in futures]
        metrics = httpx.get(f"{server.url}/metrics").json()
    ok = [(x, r) for x, r in zip(xs, responses) if r.status_code == 200]
    rejected = [r for r in responses if r.status_code == 503]
    assert len(ok) == 1 + queue_size and len(rejected) == n_requests - len(ok)
    for x, response in ok:
        check_answer(response, x, reference)
    for response in rejected:
        assert "queue is full" in response.json()["error"] and int(response.headers["retry-after"]) >= 1
    assert metrics["accepted"] == metrics["answered"] == len(ok)
    assert metrics["rejected_full"] == metrics["rejected"] == len(rejected)


def test_a_flood_never_loses_an_accepted_request(model_path, reference):
    """Many concurrent clients, a tiny queue: every answer is a correct 200 or a 503, and the counts add up."""
    xs = [inputs(1 + i % 2, seed=200 + i) for i in range(150)]
    with ServerThread(model_path, max_batch=2, max_wait_ms=1, queue_size=2) as server:
        with httpx.Client(base_url=server.url, timeout=60,
                          limits=httpx.Limits(max_connections=32)) as client, ThreadPoolExecutor(24) as pool:
            responses = list(pool.map(lambda x: client.post("/predict", json={"inputs": x.tolist()}), xs))
        assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
        metrics = httpx.get(f"{server.url}/metrics").json()
    assert {r.status_code for r in responses} <= {200, 503}
    ok = [(x, r) for x, r in zip(xs, responses) if r.status_code == 200]
    for x, response in ok:
        check_answer(response, x, reference)
    assert metrics["accepted"] == metrics["answered"] == len(ok)
    assert metrics["rejected"] == len(xs) - len(ok) and metrics["failed"] == metrics["cancelled"] == 0


def test_graceful_shutdown_answers_every_queued_request_then_stops(model_path, reference):
    server = ServerThread(model_path, max_batch=1, max_wait_ms=0, queue_size=8).start()
    gate = gated(server.app)
    xs = [inputs(1, seed=300 + i) for i in range(4)]
    with httpx.Client(base_url=server.url, timeout=60) as client, ThreadPoolExecutor(len(xs) + 1) as pool:
        futures = [pool.submit(client.post, "/predict", json={"inputs": x.tolist()}) for x in xs]
        wait_for(lambda: server.app.state.batcher.metrics()["accepted"] == len(xs))
        stopping = pool.submit(server.stop)
        wait_for(lambda: not server.app.state.batcher.accepting)
        gate.set()  # the model runs again only after shutdown began: the queue must still be answered
        responses = [f.result() for f in futures]
        final = stopping.result()
    for x, response in zip(xs, responses):
        check_answer(response, x, reference)
    assert final["accepted"] == final["answered"] == len(xs) and final["queue_depth"] == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health")


def start_cli_server(model_path, *args):
    process = subprocess.Popen([sys.executable, "-m", "coursekit", "serve", str(model_path), "--port", "0", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = process.stdout.readline()
    match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
    if not match:
        process.kill()
        raise AssertionError(f"no URL in {line!r}; stderr: {process.stderr.read()}")
    return process, match.group(1)


def test_sigterm_drains_the_queue_and_the_counts_match_what_clients_got(model_path, reference):
    process, url = start_cli_server(model_path, "--max-batch", "2", "--max-wait-ms", "2", "--queue-size", "16")
    xs = [inputs(1, seed=400 + i) for i in range(200)]

    def post(x):
        try:
            with httpx.Client(timeout=60) as client:
                return client.post(f"{url}/predict", json={"inputs": x.tolist()})
        except httpx.TransportError:
            return None  # refused: the server had stopped accepting, so the request was never accepted

    try:
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(post, x) for x in xs]
            wait_for(lambda: sum(f.done() for f in futures) >= 5)
            process.send_signal(signal.SIGTERM)
            responses = [f.result() for f in futures]
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    answered = [(x, r) for x, r in zip(xs, responses) if r is not None and r.status_code == 200]
    for x, response in answered:
        check_answer(response, x, reference)
    assert all(r is None or r.status_code in (200, 503) for r in responses)
    final = re.search(r"accepted (\d+), answered (\d+), failed (\d+)", out)
    assert final, out
    assert int(final.group(1)) == int(final.group(2)) == len(answered) and final.group(3) == "0"


def test_port_in_use_is_a_clear_error(model_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"port {port} on 127.0.0.1 is already in use.*--port"):
            bind_socket("127.0.0.1", port)
        code = main(["serve", str(model_path), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"coursekit serve: error: port {port} on 127.0.0.1 is already in use" in err and "--port 0" in err


def test_only_loopback_addresses(model_path):
    assert check_loopback("127.0.0.1") == "127.0.0.1" and check_loopback("localhost") == "127.0.0.1"
    assert check_loopback("::1") == "::1"
    with bind_socket("::1", 0) as sock:
        assert base_url(sock) == f"http://[::1]:{sock.getsockname()[1]}"
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        with pytest.raises(ValueError, match="not a loopback address"):
            bind_socket(host, 0)


def test_a_file_that_is_not_onnx_or_is_truncated_fails_at_start_up_naming_it(model_path, tmp_path, capsys):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    truncated = tmp_path / "truncated.onnx"
    data = model_path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for path in (text, truncated):
        with pytest.raises(ValueError, match=re.escape(str(path))):
            create_app(path)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        load_model(tmp_path / "missing.onnx")
    assert main(["serve", str(truncated), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("coursekit serve: error: model file") and str(truncated) in err


def test_a_model_without_a_batch_dimension_is_refused(tmp_path):
    torch.manual_seed(0)
    model = build_model("linear_heavy", input_shape=(8,), width=8)
    path = export_onnx(model, torch.randn(1, 8), tmp_path / "fixed.onnx", dynamic_batch=False)
    with pytest.raises(ValueError, match="symbolic batch dimension"):
        load_model(path)
