"""``coursekit serve``: serve an ONNX model over HTTP (loopback only) with dynamic batching."""
from __future__ import annotations

import argparse

from coursekit.cli.errors import int_at_least
from coursekit.serve import run_server

HELP = "serve an ONNX model over HTTP on loopback with dynamic batching and a bounded queue"
DESCRIPTION = """\
Serve MODEL.onnx on http://127.0.0.1:PORT (loopback addresses only) with FastAPI on uvicorn.

  POST /predict  {"inputs": [[...], ...]}  ->  {"outputs": [[...], ...], "argmax": [...]}
  GET  /health   model path, input shape, settings, status
  GET  /metrics  requests, batches, batch-size histogram, queue depth, rejected, latency p50/p95/p99 (ms)

Concurrent requests are gathered into one ONNX Runtime call of at most --max-batch rows; the oldest request
waits at most --max-wait-ms for others to join. At most --queue-size requests wait; more get 503 with
Retry-After. A bad request gets a 4xx with a message (malformed JSON, wrong shape, non-numeric values, empty
batch, too many rows). SIGTERM or Ctrl-C stops accepting, answers every accepted request, then exits.

examples:
  coursekit serve model.onnx                               port 8000, max batch 8, max wait 5 ms
  coursekit serve model.onnx --port 0                      any free port (printed when ready)
  coursekit serve int8.onnx --max-batch 32 --max-wait-ms 2 --queue-size 128 --threads 2
  curl -s -X POST localhost:8000/predict -d '{"inputs": [[0.1, 0.2, ...]]}'
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help=HELP, description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL.onnx", help="the ONNX model to serve (one float32 input, dynamic batch)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (127.0.0.1, ::1, localhost)")
    p.add_argument("--port", type=int_at_least(0, example="--port 8001"), default=8000,
                   help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--max-batch", type=int_at_least(1, example="--max-batch 8"), default=8,
                   help="most rows in one model call, also the most rows one request may send (default 8)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="longest the oldest queued request waits for a batch to fill, in ms (default 5; 0: never)")
    p.add_argument("--queue-size", type=int_at_least(1, example="--queue-size 64"), default=64,
                   help="requests that may wait; one more is answered 503 (default 64)")
    p.add_argument("--threads", type=int_at_least(1, example="--threads 1"), default=1,
                   help="ONNX Runtime intra-op threads (default 1)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default warning)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    run_server(args.model, host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
               queue_size=args.queue_size, threads=args.threads, log_level=args.log_level)
    return 0
