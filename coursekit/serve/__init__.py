"""coursekit.serve (chapter 08): an HTTP inference server with dynamic batching, and its load test.

    coursekit serve model.onnx --max-batch 8 --max-wait-ms 5      # POST /predict, GET /health, GET /metrics
    coursekit loadtest --model model.onnx --users 16 --duration 10

``batcher``: the dynamic batcher (max batch size, max wait, bounded queue), testable without HTTP;
``server``: the FastAPI app, request validation, graceful shutdown, loopback-only uvicorn;
``loadtest``: locust (headless, in a subprocess) against a server, and the FP32-vs-INT8 batching sweep;
``queueing``: the latency/throughput arithmetic of dynamic batching (wait + compute, M/D/1).
"""
from coursekit.serve.batcher import DynamicBatcher, QueueFull, ShuttingDown
from coursekit.serve.server import (
    BadInput,
    OnnxModel,
    ServerThread,
    bind_socket,
    check_loopback,
    check_model_file,
    create_app,
    load_model,
    parse_inputs,
    run_server,
)

__all__ = [
    "BadInput", "DynamicBatcher", "OnnxModel", "QueueFull", "ServerThread", "ShuttingDown", "bind_socket",
    "check_loopback", "check_model_file", "create_app", "load_model", "parse_inputs", "run_server",
]
