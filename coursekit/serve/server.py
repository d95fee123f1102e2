"""An HTTP inference server for an ONNX model: FastAPI on uvicorn, dynamic batching, a bounded queue.

    POST /predict  {"inputs": [[...], ...]}  ->  {"outputs": [[...], ...], "argmax": [...]}
    GET  /health   model path, input shape, batching settings, "ok" or "draining"
    GET  /metrics  requests accepted/answered/rejected, batches, batch-size histogram, queue depth,
                   server-side latency p50/p95/p99 (ms, from arrival in the queue to the answer)

Every request is checked before it is queued; a bad one gets a 4xx with a message that names the problem
(400 malformed JSON or not an object with "inputs", 413 more rows than ``max_batch`` or a body too large,
422 wrong shape, non-numeric values, NaN/inf, empty batch). A full queue answers 503 with ``Retry-After``
(load shedding: better a fast "try later" than a timeout; Dean & Barroso, "The Tail at Scale", CACM 2013).
SIGTERM/SIGINT shut down gracefully: stop accepting, answer everything already accepted, then exit.

One ONNX Runtime session with pinned intra-op threads (``coursekit.export.ort_session``) runs every batch in a
worker thread (``coursekit.serve.batcher``). The server binds loopback addresses only.
"""
from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import math
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import Request  # at module level: FastAPI resolves the handler's annotation in this module

from coursekit._validate import check_int, check_positive
from coursekit.export import ort_session
from coursekit.export.inspect import check_onnx_file
from coursekit.serve.batcher import DynamicBatcher, QueueFull, ShuttingDown

BYTES_PER_NUMBER = 32  # a generous upper bound for one JSON number ("-1.2345678901234567e-05, ")


class BadInput(ValueError):
    """A request the server refuses: ``status`` is the HTTP status code, the message says what is wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ---- the model ---------------------------------------------------------------------------------------------

def check_model_file(path) -> Path:
    """Raise a clear error naming ``path`` if it is missing, not an ONNX model, or truncated; return it as a Path.

    ``coursekit.export.inspect.check_onnx_file``: FileNotFoundError, IsADirectoryError, or ValueError.
    """
    check_onnx_file(path)
    return Path(path)


@dataclass
class OnnxModel:
    """An ONNX Runtime session and what the server needs to know about its one input."""

    path: Path
    session: object
    input_name: str
    feature_shape: tuple  # the input shape after the batch dimension (None for a symbolic dimension)
    output_shape: tuple

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


def load_model(path, threads: int = 1) -> OnnxModel:
    """Check ``path`` and open it in one ORT session with ``threads`` intra-op threads.

    The model must have one float32 input whose first dimension is a symbolic batch dimension
    (``export_onnx(..., dynamic_batch=True)``), so that requests can be batched together.
    """
    path = check_model_file(path)
    threads = check_int("threads", threads, min_value=1)
    try:
        session = ort_session(path, threads=threads)
    except Exception as exc:  # noqa: BLE001 (onnxruntime's Fail/InvalidGraph/...: parsed, but cannot run)
        raise ValueError(f"model file {path} cannot be loaded by ONNX Runtime: {str(exc).strip()[:300]}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ValueError(f"model file {path} has {len(inputs)} inputs; the server serves models with one input")
    spec = inputs[0]
    if spec.type != "tensor(float)":
        raise ValueError(f"model file {path}: input {spec.name!r} is {spec.type}; the server needs tensor(float)")
    shape = [d if isinstance(d, int) else None for d in spec.shape]
    if not shape or shape[0] is not None:
        raise ValueError(f"model file {path}: input {spec.name!r} has shape {spec.shape}, without a symbolic batch "
                         f"dimension; export it with a dynamic batch axis (export_onnx(..., dynamic_batch=True))")
    output = [d if isinstance(d, int) else None for d in session.get_outputs()[0].shape]
    return OnnxModel(path, session, spec.name, tuple(shape[1:]), tuple(output))


# ---- request validation ------------------------------------------------------------------------------------

def describe_shape(feature_shape: tuple, rows: str | None = "rows") -> str:
    """``(rows, 8, 8)`` style text for an input shape (``?`` for a symbolic dimension; ``rows=None``: one row)."""
    dims = ([rows] if rows else []) + ["?" if d is None else str(d) for d in feature_shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def parse_inputs(body: bytes, feature_shape: tuple, max_batch: int) -> np.ndarray:
    """The request body ``{"inputs": [[...], ...]}`` as a float32 array ``(rows, *feature_shape)``.

    Raises ``BadInput`` with the HTTP status and a message naming the problem.
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(400, f"malformed JSON: {exc}") from None
    expected = describe_shape(feature_shape)
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise BadInput(400, f'the body must be a JSON object {{"inputs": [row, ...]}} with inputs of shape '
                            f'{expected}; got {type(payload).__name__}'
                            + (f" with keys {sorted(payload)}" if isinstance(payload, dict) else ""))
    inputs = payload["inputs"]
    if not isinstance(inputs, list):
        raise BadInput(422, f"inputs must be a list of rows of shape {expected}; got {type(inputs).__name__}")
    if not inputs:
        raise BadInput(422, f"empty batch: inputs has no rows; send 1 to {max_batch} rows of shape {expected}")
    try:
        array = np.asarray(inputs)
    except (ValueError, TypeError):
        raise BadInput(422, f"inputs is ragged (rows or nested lists of different lengths); every row must have "
                            f"shape {describe_shape(feature_shape, rows=None)}") from None
    if array.dtype.kind not in "iuf":
        what = {"b": "booleans", "U": "strings", "S": "strings", "O": "null, objects or mixed values"}
        raise BadInput(422, f"inputs must contain numbers only; got {what.get(array.dtype.kind, array.dtype)}")
    if array.ndim != len(feature_shape) + 1 or any(
            want is not None and got != want for got, want in zip(array.shape[1:], feature_shape)):
        raise BadInput(422, f"wrong shape: inputs has shape {array.shape}, the model takes {expected}")
    if len(array) > max_batch:
        raise BadInput(413, f"too many rows: inputs has {len(array)} rows, this server takes at most "
                            f"max_batch={max_batch} per request; split the batch")
    with np.errstate(over="ignore"):  # numbers beyond float32's range become inf, refused just below
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise BadInput(422, "inputs contain NaN or infinity (or numbers beyond float32's range)")
    return array


def max_body_bytes(feature_shape: tuple, max_batch: int) -> int:
    """The largest request body accepted: ``max_batch`` rows of numbers, generously written, plus slack."""
    numbers = math.prod(d or 1024 for d in feature_shape) * max_batch
    return numbers * BYTES_PER_NUMBER + 4096


# ---- the app -----------------------------------------------------------------------------------------------

def create_app(model_path, max_batch: int = 8, max_wait_ms: float = 5.0, queue_size: int = 64, threads: int = 1):
    """The FastAPI app serving ``model_path`` (see the module docstring for the endpoints).

    ``app.state.batcher`` is the ``DynamicBatcher``, ``app.state.model`` the ``OnnxModel``. The model is checked
    and loaded here, so a bad file fails before any port is bound.
    """
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    model = load_model(model_path, threads=threads)
    batcher = DynamicBatcher(model, max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size)
    body_limit = max_body_bytes(model.feature_shape, batcher.max_batch)
    http = {"ok": 0, "invalid": 0, "errors": 0}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.drain()  # graceful shutdown: every accepted request is answered first

    app = FastAPI(title="coursekit serve", lifespan=lifespan)
    app.state.model, app.state.batcher, app.state.http = model, batcher, http

    def refuse(status: int, message: str, headers=None):
        http["invalid" if status < 500 else "errors"] += 1
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.post("/predict")
    async def predict(request: Request):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > body_limit:
            return refuse(413, f"request body of {length} bytes is larger than this server's limit of {body_limit} "
                               f"bytes (max_batch={batcher.max_batch} rows)")
        body = await request.body()
        if len(body) > body_limit:
            return refuse(413, f"request body of {len(body)} bytes is larger than the limit of {body_limit} bytes")
        try:
            x = parse_inputs(body, model.feature_shape, batcher.max_batch)
            y = await batcher.submit(x)
        except BadInput as exc:
            return refuse(exc.status, str(exc))
        except QueueFull as exc:
            return refuse(503, str(exc), {"Retry-After": str(exc.retry_after_s)})
        except ShuttingDown as exc:
            return refuse(503, str(exc), {"Retry-After": "1", "Connection": "close"})
        except Exception as exc:  # noqa: BLE001 (the model call failed: 500 for this batch, serving goes on)
            return refuse(500, f"the model failed on this batch: {type(exc).__name__}: {str(exc)[:300]}")
        http["ok"] += 1
        return JSONResponse({"outputs": y.tolist(), "argmax": np.asarray(y).argmax(axis=-1).tolist()})

    @app.get("/health")
    async def health():
        return {"status": "ok" if batcher.accepting else "draining", "model": str(model.path),
                "input_name": model.input_name, "input_shape": [None, *model.feature_shape],
                "output_shape": list(model.output_shape), "max_batch": batcher.max_batch,
                "max_wait_ms": batcher.max_wait_ms, "queue_size": batcher.queue_size, "threads": threads}

    @app.get("/metrics")
    async def metrics():
        return {**batcher.metrics(), "http": dict(http)}

    return app


# ---- running it --------------------------------------------------------------------------------------------

def check_loopback(host: str) -> str:
    """Return ``host`` if it is a loopback address (``127.0.0.1``, ``::1``, ``localhost``); else ValueError."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"host={host!r} is not a loopback address; this server only binds loopback addresses "
                         f"(127.0.0.1, ::1 or localhost)")
    return host


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free port); a port in use is a clear error."""
    host = check_loopback(host)
    port = check_int("port", port, min_value=0, max_value=65535)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            error = OSError(f"port {port} on {host} is already in use (another server?); pick another with "
                            f"--port, e.g. --port {port + 1 if port < 65535 else 8000}, or --port 0 for any free port")
            error.errno = errno.EADDRINUSE
            raise error from None
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket (an IPv6 host in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_server(app, log_level: str):
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's server; SIGTERM/SIGINT also close the batcher and end the process normally (exit 0)."""

        def handle_exit(self, sig, frame) -> None:
            app.state.batcher.accepting = False  # a plain flag: safe inside a signal handler
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: stop without waiting
            self.should_exit = True

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", http="h11",
                            timeout_graceful_shutdown=None, timeout_keep_alive=30)
    return GracefulServer(config)


def run_server(model_path, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 8, max_wait_ms: float = 5.0,
               queue_size: int = 64, threads: int = 1, log_level: str = "warning") -> dict:
    """Serve ``model_path`` on ``http://host:port`` until SIGTERM/SIGINT; returns the final metrics.

    Prints one line with the URL when ready (``port=0`` picks a free port and prints it) and one line with the
    counts after the queue has drained.
    """
    check_positive("max_wait_ms", max_wait_ms, allow_zero=True)
    app = create_app(model_path, max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size,
                     threads=threads)
    sock = bind_socket(host, port)
    url = base_url(sock)
    server = _uvicorn_server(app, log_level)
    print(f"coursekit serve: {model_path} on {url} (max_batch={max_batch}, max_wait_ms={max_wait_ms:g}, "
          f"queue_size={queue_size}, threads={threads}); SIGTERM or Ctrl-C drains the queue and stops", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    final = app.state.batcher.metrics()
    print(f"coursekit serve: stopped after draining: accepted {final['accepted']}, answered {final['answered']}, "
          f"failed {final['failed']}, cancelled {final['cancelled']}, rejected {final['rejected']}", flush=True)
    return final


class ServerThread:
    """The server running in a background thread of this process (tests, notebooks): ``with ServerThread(...)``.

    ``url`` is the base URL; ``app`` the FastAPI app (``app.state.batcher`` for the metrics); ``stop()`` shuts
    down gracefully (drains the queue) and waits for the thread.
    """

    def __init__(self, model_path, host: str = "127.0.0.1", port: int = 0, **settings):
        self.app = create_app(model_path, **settings)
        self._sock = bind_socket(host, port)
        self.url = base_url(self._sock)
        self._server = _uvicorn_server(self.app, "warning")
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self, timeout_s: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start within {timeout_s} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 60.0) -> dict:
        """Graceful shutdown: stop accepting, answer the queued requests, end the thread; the final metrics."""
        self.app.state.batcher.accepting = False
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._sock.close()
        if self._thread.is_alive():
            raise RuntimeError(f"the server on {self.url} did not stop within {timeout_s} s")
        return self.app.state.batcher.metrics()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
