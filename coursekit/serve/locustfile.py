"""The locust load for ``coursekit loadtest``: each simulated user POSTs /predict back to back (closed loop).

Run only by locust in its own process (``coursekit.serve.loadtest.run_locust`` starts
``python -m locust -f coursekit/serve/locustfile.py --headless ...``): it must never be imported by coursekit
itself, because locust's gevent monkey-patches sockets and threads in the importing process.

Settings come from environment variables set by ``run_locust``: ``COURSEKIT_LOADTEST_SHAPE`` (one row's shape,
e.g. ``2048`` or ``1,8,8``), ``COURSEKIT_LOADTEST_ROWS`` (rows per request), ``COURSEKIT_LOADTEST_MAX_REQUESTS``
(stop the test after this many requests) and ``COURSEKIT_LOADTEST_SEED``. A 503 (queue full) counts as a failure
named "503 queue full", so the failures table separates load shedding from errors.
"""
import itertools
import json
import math
import os
import random

from locust import FastHttpUser, constant, task

SHAPE = tuple(int(d) for d in os.environ.get("COURSEKIT_LOADTEST_SHAPE", "2048").split(","))
ROWS = int(os.environ.get("COURSEKIT_LOADTEST_ROWS", "1"))
MAX_REQUESTS = int(os.environ.get("COURSEKIT_LOADTEST_MAX_REQUESTS", "1000000"))
BODY_VARIANTS = 16  # distinct request bodies, built once: the load generator should not spend its CPU on JSON


def _nested(values, shape):
    if len(shape) == 1:
        return values
    step = math.prod(shape[1:])
    return [_nested(values[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _bodies(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    size = math.prod(SHAPE)
    return [json.dumps({"inputs": [_nested([round(rng.gauss(0, 1), 6) for _ in range(size)], SHAPE)
                                   for _ in range(ROWS)]}).encode() for _ in range(BODY_VARIANTS)]


BODIES = _bodies(int(os.environ.get("COURSEKIT_LOADTEST_SEED", "0")))
SENT = itertools.count(1)


class InferenceUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def predict(self):
        if next(SENT) > MAX_REQUESTS:
            self.environment.runner.quit()
            return
        body = random.choice(BODIES)
        with self.client.post("/predict", data=body, headers={"Content-Type": "application/json"},
                              catch_response=True, name="/predict") as response:
            if response.status_code == 503:
                response.failure("503 queue full")
            elif response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
            else:
                response.success()
