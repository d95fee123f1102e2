"""``coursekit loadtest``: locust (headless, in a subprocess) against ``coursekit serve``; the FP32 vs INT8 sweep."""
from __future__ import annotations

import argparse
import os
import tempfile

from coursekit._paths import check_output_file
from coursekit.cli.errors import UsageError, int_at_least, positive_number
from coursekit.serve import loadtest

HELP = "load-test a model server with locust: requests/s and p50/p95/p99 latency; --sweep: FP32 vs INT8"
DESCRIPTION = """\
Drive `coursekit serve` with locust, headless, for a bounded time on loopback, and report requests/s (answered),
p50/p95/p99 latency (ms, as the client saw it), failures and 503 rejections, and the server's own view (its p99,
the mean batch it formed, accepted vs answered after draining).

TARGET is a model file (served in a subprocess on a free loopback port for the run) or the URL of a running
server (http://127.0.0.1:PORT). --sweep exports the Linear-heavy model in FP32 and INT8 (the INT8 variant ONNX
Runtime runs faster here: dynamic or static QDQ, measured) and load-tests both at several max-batch/max-wait
settings, plus an overload run per precision; it prints a table and a reading of the numbers. Each user sends
its next request when the previous one is answered, so --users is the number of requests in flight.

examples:
  coursekit loadtest model.onnx --users 16 --duration 10 --max-batch 8 --max-wait-ms 2
  coursekit loadtest http://127.0.0.1:8000 --users 32 --duration 20
  coursekit loadtest --sweep --json serve_sweep.json          FP32 vs INT8, 7 settings + overload (~8 min)
  coursekit loadtest --sweep --fast                           3 settings, 4 s each
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("loadtest", help=HELP, description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", nargs="?", metavar="TARGET", help="MODEL.onnx or http://127.0.0.1:PORT")
    p.add_argument("--sweep", action="store_true", help="the FP32 vs INT8 batching sweep (no TARGET)")
    p.add_argument("--users", type=int_at_least(1, example="--users 16"), default=None,
                   help="concurrent locust users (default 16; 32 for --sweep)")
    p.add_argument("--spawn-rate", type=positive_number("users per second", "--spawn-rate 8"), default=None,
                   help="users started per second (default: all in the first second)")
    p.add_argument("--duration", type=positive_number("seconds", "--duration 10"), default=None,
                   help="seconds per run (default 10; 4 in fast mode; at most 600)")
    p.add_argument("--rows", type=int_at_least(1, example="--rows 1"), default=1, help="rows per request (default 1)")
    p.add_argument("--max-requests", type=int_at_least(1, example="--max-requests 10000"), default=200_000,
                   help="stop a run after this many requests (default 200000)")
    p.add_argument("--max-batch", type=int_at_least(1, example="--max-batch 8"), default=8,
                   help="server setting for a model TARGET (default 8)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="server setting for a model TARGET (default 5)")
    p.add_argument("--queue-size", type=int_at_least(1, example="--queue-size 64"), default=64,
                   help="server queue size (default 64)")
    p.add_argument("--threads", type=int_at_least(1, example="--threads 1"), default=1,
                   help="ONNX Runtime intra-op threads of the server (default 1)")
    p.add_argument("--width", type=int_at_least(8, example="--width 2048"), default=2048,
                   help="--sweep: width of the Linear-heavy model (default 2048: 4 x 2048x2048, 67 MB in FP32)")
    p.add_argument("--models-dir", metavar="DIR", default=None,
                   help="--sweep: where to write the exported models (default: a temporary folder)")
    p.add_argument("--json", metavar="PATH", help="--sweep: also save the records and the hardware report as JSON")
    p.add_argument("--fast", action="store_true", help="--sweep: fewer settings and shorter runs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    if args.sweep:
        if args.target:
            raise UsageError("TARGET", "give either TARGET or --sweep, not both")
        return run_sweep(args)
    if not args.target:
        raise UsageError("TARGET", "give a model file or a server URL, e.g. `coursekit loadtest model.onnx`, "
                                   "or use --sweep")
    result = loadtest.load_test(args.target, users=args.users or 16, spawn_rate=args.spawn_rate,
                                duration_s=args.duration or 10, rows=args.rows, max_requests=args.max_requests,
                                max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, queue_size=args.queue_size,
                                threads=args.threads)
    for key in ("rps", "p50_ms", "p95_ms", "p99_ms", "n", "failures", "rejected_503", "server_p99_ms",
                "mean_batch_rows", "accepted", "answered"):
        if result.get(key) is not None:
            value = result[key]
            print(f"{key:16s} {value:.1f}" if isinstance(value, float) else f"{key:16s} {value}")
    return 0


def run_sweep(args) -> int:
    if args.json:
        check_output_file("--json", args.json)
    if args.fast:
        os.environ["COURSEKIT_FAST"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        models = loadtest.prepare_models(args.models_dir or tmp, width=args.width, threads=args.threads)
        print(f"one ONNX Runtime call, median ms ({args.threads} thread(s); the ceiling without HTTP: "
              f"batch x 1000 / ms rows/s):")
        for name, lat in models["latency_ms"].items():
            print(f"  {name:8s} " + ", ".join(f"batch {b}: {ms:.2f} ms ({b * 1e3 / ms:,.0f}/s)" for b, ms in lat.items()))
        print(f"INT8 served: {models['int8_method']} (the faster here); one row alone vs in a batch of 8 differs by "
              f"up to {models['int8_batch_dependence']:.2g}")
        records = loadtest.batch_sweep({"fp32": models["fp32"], "int8": models["int8"]}, users=args.users or 32,
                                       duration_s=args.duration, queue_size=args.queue_size, threads=args.threads,
                                       progress=not args.quiet, model_name=f"linear_heavy{args.width}")
    print(loadtest.format_sweep(records))
    print(loadtest.reading(records))
    if args.json:
        from coursekit.bench import hardware_report, save_results

        for r in records:
            r["int8_method"] = models["int8_method"]
        print(f"saved {save_results(args.json, hardware_report(), records, 'serve-loadtest')}")
    return 0
