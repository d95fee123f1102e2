"""Load tests of ``coursekit serve`` with locust, and the batching sweep FP32 vs INT8.

``run_locust`` drives locust HEADLESS AS A SUBPROCESS (``python -m locust -f locustfile.py --headless -u USERS
-r RATE -t DURATION --csv PREFIX``) and parses its CSV statistics. Locust is never imported here: its gevent
monkey-patches sockets and threads of the process that imports it. Every simulated user sends its next request
as soon as the previous one is answered (a closed loop), so ``users`` is the number of requests in the system:
throughput x latency = users (Little's law), and a faster model shows up as more requests/s AND a lower p99.

``batch_sweep`` starts one server per (precision, max_batch, max_wait_ms) in its own subprocess on a free loopback
port, loads it for ``duration_s`` seconds, and stops it with SIGTERM (the server drains, then prints its final
counts); ``prepare_models`` exports the Linear-heavy model in FP32 and in the INT8 variant ONNX Runtime runs
fastest here (dynamic or static QDQ, measured). Everything is bounded: loopback only, a time limit per run, a
request limit per run.
"""
from __future__ import annotations

import csv
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from coursekit._env import fast_mode
from coursekit._progress import progress_bar
from coursekit._validate import check_int, check_positive
from coursekit.bench import format_table, make_record, measure_latency
from coursekit.serve.server import check_loopback

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
MAX_DURATION_S = 600
MAX_USERS = 1000
# (max_batch, max_wait_ms): no batching, then batches of 8 and 32 with no wait, a short and a long wait
DEFAULT_SETTINGS = ((1, 0.0), (8, 0.0), (8, 2.0), (8, 10.0), (32, 0.0), (32, 2.0), (32, 10.0))
FAST_SETTINGS = ((1, 0.0), (8, 2.0), (32, 2.0))
SWEEP_COLUMNS = ["precision", "max_batch", "max_wait_ms", "users", "rps", "p50_ms", "p95_ms", "p99_ms",
                 "server_p99_ms", "mean_batch_rows", "n", "failures", "rejected_503", "accepted", "answered"]


# ---- locust ------------------------------------------------------------------------------------------------

def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def parse_locust_csv(prefix) -> dict:
    """Locust's ``PREFIX_stats.csv`` / ``PREFIX_failures.csv`` as ``{"rps", "p50_ms", "p95_ms", "p99_ms",
    "failures", "n", "rejected_503", "rps_total"}``.

    ``n`` counts every request sent, ``failures`` those not answered 200 (``rejected_503`` of them were 503
    queue full), ``rps`` answered (200) requests per second and ``rps_total`` all of them. Locust rounds its
    percentiles (whole ms below 100 ms, two significant digits above), and they include rejected requests.
    """
    stats_path, failures_path = Path(f"{prefix}_stats.csv"), Path(f"{prefix}_failures.csv")
    if not stats_path.is_file():
        raise RuntimeError(f"locust wrote no statistics ({stats_path} is missing)")
    with open(stats_path, newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows.get("Aggregated")
    if total is None:
        raise RuntimeError(f"{stats_path} has no 'Aggregated' row")
    n, failures = int(total["Request Count"]), int(total["Failure Count"])
    rps_total = _number(total["Requests/s"]) or 0.0
    rejected = 0
    if failures_path.is_file():
        with open(failures_path, newline="") as f:
            rejected = sum(int(r["Occurrences"]) for r in csv.DictReader(f) if "503" in r["Error"])
    return {"rps": rps_total * (n - failures) / n if n else 0.0, "p50_ms": _number(total["50%"]),
            "p95_ms": _number(total["95%"]), "p99_ms": _number(total["99%"]), "failures": failures, "n": n,
            "rejected_503": rejected, "rps_total": rps_total}


def run_locust(url: str, input_shape, users: int = 16, spawn_rate: float | None = None, duration_s: float = 10,
               rows: int = 1, max_requests: int = 200_000, csv_dir=None, seed: int = 0) -> dict:
    """Load ``url``'s ``POST /predict`` with ``users`` locust users for ``duration_s`` seconds; the parsed stats.

    ``input_shape``: one row's shape (the server's ``/health`` ``input_shape`` without the batch dimension);
    ``rows``: rows per request. The run stops after ``duration_s`` or ``max_requests`` requests, whichever comes
    first; the locust process is killed if it overruns by a minute. Statistics are reset once all users are
    running, so the ramp-up is not counted.
    """
    host = urlsplit(url).hostname or ""
    check_loopback(host)
    users = check_int("users", users, min_value=1, max_value=MAX_USERS)
    duration_s = check_positive("duration_s", duration_s)
    if duration_s > MAX_DURATION_S:
        raise ValueError(f"duration_s={duration_s} is too long; at most {MAX_DURATION_S} s per run")
    spawn_rate = check_positive("spawn_rate", spawn_rate if spawn_rate is not None else float(users))
    rows = check_int("rows", rows, min_value=1)
    max_requests = check_int("max_requests", max_requests, min_value=1)
    shape = [int(d) for d in input_shape]
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape={input_shape!r} must list one row's dimensions, e.g. (2048,)")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(csv_dir or tmp) / "locust"
        prefix.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
                   "-r", f"{spawn_rate:g}", "-t", f"{math.ceil(duration_s)}s", "--host", url.rstrip("/"),
                   "--csv", str(prefix), "--only-summary", "--reset-stats", "--exit-code-on-error", "0",
                   "--loglevel", "WARNING", "--stop-timeout", "5"]
        env = {**os.environ, "COURSEKIT_LOADTEST_SHAPE": ",".join(map(str, shape)),
               "COURSEKIT_LOADTEST_ROWS": str(rows), "COURSEKIT_LOADTEST_MAX_REQUESTS": str(max_requests),
               "COURSEKIT_LOADTEST_SEED": str(seed)}
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=duration_s + 60,
                                    check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"locust did not finish within {duration_s + 60:.0f} s") from None
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"locust failed (exit {result.returncode}): " + " | ".join(tail))
        return parse_locust_csv(prefix)


# ---- a server in a subprocess ------------------------------------------------------------------------------

class ServerProcess:
    """``run_server`` (``coursekit serve``) in a subprocess on a free loopback port: ``url``, and the ``final``
    counts after ``stop``."""

    def __init__(self, model_path, max_batch: int = 8, max_wait_ms: float = 5.0, queue_size: int = 64,
                 threads: int = 1, start_timeout_s: float = 180.0):
        # run_server itself (what `coursekit serve` calls), without importing every other command's modules
        settings = {"model_path": str(model_path), "port": 0, "max_batch": max_batch, "max_wait_ms": max_wait_ms,
                    "queue_size": queue_size, "threads": threads}
        code = "import json, sys; from coursekit.serve.server import run_server; run_server(**json.loads(sys.argv[1]))"
        command = [sys.executable, "-c", code, json.dumps(settings)]
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_url(start_timeout_s)
        self.final: dict | None = None

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _error_text(self) -> str:
        self._stderr.seek(0)
        return " | ".join(self._stderr.read().strip().splitlines()[-3:])

    def _wait_for_url(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            match = re.search(r" on (http://[^\s]+) ", line)
            if match:
                return match.group(1)
        self.process.kill()
        raise RuntimeError(f"the server did not start within {timeout_s:.0f} s: {self._error_text()}")

    def stop(self, timeout_s: float = 120.0) -> dict:
        """SIGTERM (graceful: drain, then exit) and the final counts the server printed."""
        if self.final is not None:
            return self.final
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise RuntimeError(f"the server on {self.url} did not drain within {timeout_s:.0f} s") from None
        lines = []
        while (line := self._lines.get(timeout=5)) is not None:
            lines.append(line)
        text = "".join(lines)
        counts = re.search(r"accepted (\d+), answered (\d+), failed (\d+), cancelled (\d+), rejected (\d+)", text)
        if self.process.returncode != 0 or not counts:
            raise RuntimeError(f"the server on {self.url} exited with {self.process.returncode}: "
                               f"{self._error_text()}")
        self.final = dict(zip(("accepted", "answered", "failed", "cancelled", "rejected"), map(int, counts.groups())))
        self._stderr.close()
        return self.final

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            if self.process.poll() is None:
                self.process.kill()


# ---- one load test -----------------------------------------------------------------------------------------

def _server_info(url: str) -> tuple[dict, dict]:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        return client.get("/health").json(), client.get("/metrics").json()


def load_test(target, users: int = 16, spawn_rate: float | None = None, duration_s: float = 10, rows: int = 1,
              max_requests: int = 200_000, max_batch: int = 8, max_wait_ms: float = 5.0, queue_size: int = 64,
              threads: int = 1) -> dict:
    """Locust against ``target``: a running server's URL, or an ONNX file to serve in a subprocess for the run.

    Returns the locust numbers (``rps``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``failures``, ``n``,
    ``rejected_503``), the server's view (``server_p99_ms``, ``mean_batch_rows``, ``batch_size_histogram``) and,
    for a model file, the counts the server printed after draining (``accepted``, ``answered``: equal when no
    accepted request was lost). The server settings apply only when ``target`` is a model file.
    """
    target = str(target)
    if target.startswith(("http://", "https://")):
        health, _ = _server_info(target)
        stats = run_locust(target, health["input_shape"][1:], users, spawn_rate, duration_s, rows, max_requests)
        return {**stats, **_server_view(_server_info(target)[1])}
    with ServerProcess(target, max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size,
                       threads=threads) as server:
        health, _ = _server_info(server.url)
        stats = run_locust(server.url, health["input_shape"][1:], users, spawn_rate, duration_s, rows, max_requests)
        view = _server_view(_server_info(server.url)[1])
        final = server.stop()
    return {**stats, **view, "accepted": final["accepted"], "answered": final["answered"],
            "server_failed": final["failed"]}


def _server_view(metrics: dict) -> dict:
    return {"server_p50_ms": metrics["latency_ms"]["p50"], "server_p99_ms": metrics["latency_ms"]["p99"],
            "mean_batch_rows": metrics["mean_batch_rows"], "batch_size_histogram": metrics["batch_size_histogram"],
            "server_rejected": metrics["rejected"]}


# ---- the FP32 vs INT8 sweep --------------------------------------------------------------------------------

def prepare_models(out_dir, width: int = 2048, batch_sizes=(1, 8, 32), threads: int = 1) -> dict:
    """Export the Linear-heavy model (``width`` x ``width``, 4 layers, seeded) in FP32 and INT8 to ``out_dir``.

    INT8 is made both ways ONNX Runtime offers (dynamic: weights int8 ahead of time, activations quantized per
    batch at run time; static QDQ calibrated on Gaussian batches) and the faster one here is kept: the geometric
    mean of its latency ratio over ``batch_sizes`` (``bench.measure_latency``, interleaved, pinned threads).
    Returns ``{"fp32": path, "int8": path, "int8_method": "dynamic"|"static", "latency_ms": {"fp32"|"dynamic"|
    "static": {batch: median ms of one ORT call}}, "int8_batch_dependence": max |row alone - same row in a
    batch|}``. The ORT latencies are the model's ceiling: ``batch * 1000 / ms`` rows/s with no HTTP at all.
    Dynamic quantization picks its activation scale per batch, so a row's answer depends on its neighbours.
    """
    import torch

    from coursekit.export import export_onnx, ort_quantize_dynamic, ort_quantize_static, ort_session
    from coursekit.models import build_model

    width = check_int("width", width, min_value=8)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model("linear_heavy", input_shape=(width,), width=width).eval()
    fp32 = export_onnx(model, torch.randn(1, width), out / f"linear_heavy{width}_fp32.onnx")
    paths = {"dynamic": ort_quantize_dynamic(fp32, out / f"linear_heavy{width}_int8_dynamic.onnx"),
             "static": ort_quantize_static(fp32, out / f"linear_heavy{width}_int8_qdq.onnx",
                                           [torch.randn(32, width) for _ in range(4)])}
    sessions = {name: ort_session(path, threads=threads) for name, path in {"fp32": fp32, **paths}.items()}
    rng = np.random.default_rng(0)
    latency: dict[str, dict[int, float]] = {name: {} for name in sessions}
    for b in batch_sizes:
        x = rng.normal(size=(b, width)).astype(np.float32)
        stats = measure_latency({name: (lambda s=s, x=x: s.run(None, {"input": x})) for name, s in sessions.items()},
                                threads=None, repeats=10 if fast_mode() else 30, budget_s=2.0)
        for name in sessions:
            latency[name][b] = stats[name].median_ms
    ratio = math.prod(latency["dynamic"][b] / latency["static"][b] for b in batch_sizes) ** (1 / len(batch_sizes))
    method = "dynamic" if ratio <= 1 else "static"
    # the probe: row 0 of np.random.default_rng(1).normal(size=(8, width)) alone, and next to 7 rows 10x larger
    x = np.random.default_rng(1).normal(size=(8, width)).astype(np.float32)
    x[1:] *= 10
    alone = sessions[method].run(None, {"input": x[:1]})[0]
    batched = sessions[method].run(None, {"input": x})[0][:1]
    return {"fp32": fp32, "int8": paths[method], "int8_method": method, "latency_ms": latency,
            "int8_batch_dependence": float(np.abs(alone - batched).max())}


def batch_sweep(models: dict, settings=None, users: int = 32, duration_s: float | None = None,
                queue_size: int = 64, threads: int = 1, progress: bool = True, model_name: str = "linear_heavy",
                overload: bool = True) -> list[dict]:
    """Load-test every model (``{"fp32": path, "int8": path}``) at every ``(max_batch, max_wait_ms)`` setting.

    One server subprocess per run, ``users`` closed-loop locust users for ``duration_s`` seconds (default 10,
    4 in fast mode). With ``overload``, one more run per model sends 4x ``users`` at a queue of ``users // 4``:
    it must answer 503s, keep serving, and answer every request it accepted. Returns records
    (``bench.make_record``) with the locust and server numbers and the load average before each run.
    """
    settings = tuple(settings or (FAST_SETTINGS if fast_mode() else DEFAULT_SETTINGS))
    duration_s = duration_s or (4.0 if fast_mode() else 10.0)
    runs = [(precision, b, w, users, queue_size) for b, w in settings for precision in models]
    if overload:
        runs += [(precision, settings[-1][0], settings[-1][1], 4 * users, max(1, users // 4)) for precision in models]
    records = []
    for precision, max_batch, max_wait_ms, n_users, queue_rows in progress_bar(runs, desc="load tests",
                                                                               enabled=progress):
        load = os.getloadavg()[0]
        result = load_test(models[precision], users=n_users, duration_s=duration_s, max_batch=max_batch,
                           max_wait_ms=max_wait_ms, queue_size=queue_rows, threads=threads)
        records.append(make_record(
            model_name, f"{precision} b{max_batch} w{max_wait_ms:g}" + (" overload" if n_users > users else ""),
            device="cpu", batch=max_batch, threads=threads, precision=precision, max_batch=max_batch,
            max_wait_ms=max_wait_ms, users=n_users, queue_size=queue_rows, duration_s=duration_s,
            overload=n_users > users, load_average=load, **result))
    return records


def format_sweep(records: list[dict]) -> str:
    """The sweep as a table, one row per run."""
    return format_table(records, columns=[c for c in SWEEP_COLUMNS if any(r.get(c) is not None for r in records)])


def compare_precisions(records: list[dict], baseline: str = "fp32", other: str = "int8") -> list[dict]:
    """Per setting (overload runs excluded): requests/s and p99 of ``other`` vs ``baseline``, and the ratio."""
    runs = {(r["precision"], r["max_batch"], r["max_wait_ms"]): r for r in records if not r.get("overload")}
    rows = []
    for (precision, b, w), base in runs.items():
        if precision != baseline or (other, b, w) not in runs:
            continue
        new = runs[(other, b, w)]
        rows.append({"max_batch": b, "max_wait_ms": w, f"{baseline}_rps": base["rps"], f"{other}_rps": new["rps"],
                     "rps_ratio": new["rps"] / base["rps"] if base["rps"] else None,
                     f"{baseline}_p99_ms": base["p99_ms"], f"{other}_p99_ms": new["p99_ms"]})
    return rows


def reading(records: list[dict]) -> str:
    """What the sweep measured, in words: generated from the numbers, with the load average of the machine."""
    rows = compare_precisions(records)
    lines = []
    if rows:
        best = max(rows, key=lambda r: r["rps_ratio"] or 0)
        worst = min(rows, key=lambda r: r["rps_ratio"] or math.inf)
        lines.append(f"INT8 served {worst['rps_ratio']:.2f}x to {best['rps_ratio']:.2f}x the requests/s of FP32 "
                     f"across {len(rows)} batch settings (best at max_batch={best['max_batch']}, "
                     f"max_wait={best['max_wait_ms']:g} ms: {best['int8_rps']:.0f} vs {best['fp32_rps']:.0f} req/s, "
                     f"p99 {best['int8_p99_ms']} vs {best['fp32_p99_ms']} ms).")
        top = {p: max((r for r in records if r["precision"] == p and not r.get("overload")), key=lambda r: r["rps"])
               for p in ("fp32", "int8")}
        lines.append(f"Best setting per precision: FP32 {top['fp32']['rps']:.0f} req/s (max_batch="
                     f"{top['fp32']['max_batch']}, p99 {top['fp32']['p99_ms']} ms), INT8 {top['int8']['rps']:.0f} "
                     f"req/s (max_batch={top['int8']['max_batch']}, p99 {top['int8']['p99_ms']} ms): "
                     f"{top['int8']['rps'] / top['fp32']['rps']:.2f}x.")
    for r in records:
        if r.get("overload"):
            kept = r.get("accepted") == r.get("answered")
            lines.append(f"Overload ({r['precision']}, {r['users']} users, queue {r['queue_size']}): "
                         f"{r['rejected_503']} of {r['n']} requests answered 503; accepted {r.get('accepted')}, "
                         f"answered {r.get('answered')}" + (" (none lost)." if kept else " (REQUESTS LOST)."))
    loads = [r["load_average"] for r in records]
    if loads:
        lines.append(f"1-minute load average during the runs: {min(loads):.1f} to {max(loads):.1f} on "
                     f"{os.cpu_count()} CPUs (the server, locust and anything else share them).")
    return "\n".join(lines)

