"""The fixture the Java deployment (``deploy/java``) is tested against: one INT8 ONNX model and ORT's answers.

``export_java_fixture`` trains (or loads from the cache) the course's digits model, exports it to ONNX, quantizes
it with ONNX Runtime's static PTQ (QDQ, S8S8, per-channel weights, MinMax calibration on training batches;
Krishnamoorthi 2018, sec. 3.1) and runs the whole digits test set through Python ONNX Runtime. The Java tests
then check that DJL's ONNX Runtime engine gives the same top-1 class on every image and logits within 1e-4:
parity across languages, the last check before a model is deployed in another runtime.

Files written to ``out_dir`` (read by ``deploy/java``; see deploy/java/README.md):

* ``model.onnx``: the QDQ INT8 model (input ``input`` of shape ``[batch, *input_shape]``, output ``output``
  of shape ``[batch, 10]``);
* ``fixture.json``: ``input_shape``, the test ``inputs`` (each image flattened to 64 floats), ``labels``,
  ORT's ``logits`` and ``classes``, its ``accuracy``, and the versions that produced them.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from coursekit import __version__
from coursekit._paths import check_output_file
from coursekit._validate import check_choice, check_int
from coursekit.data import get_loaders
from coursekit.export import export_onnx, ort_quantize_static, ort_run, ort_session

MODELS = ("lenet", "mlp")
FIXTURE_FILE = "fixture.json"
MODEL_FILE = "model.onnx"


def _test_arrays(loader) -> tuple[np.ndarray, np.ndarray]:
    """All (inputs, labels) of ``loader`` as float32 / int64 arrays, in the loader's order."""
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in loader), strict=True)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def _rows(array: np.ndarray) -> list[list[float]]:
    """A float32 array as JSON-ready rows; ``float(np.float32)`` is exact, so Java reads back the same floats."""
    return [[float(v) for v in row] for row in array.reshape(array.shape[0], -1)]


def export_java_fixture(out_dir, *, model: str = "lenet", fast: bool | None = None,
                        calibration_batches: int = 8, progress: bool = False) -> dict:
    """Write ``model.onnx`` (QDQ INT8) and ``fixture.json`` (test set + ORT logits) into ``out_dir``.

    ``model``: ``"lenet"`` or ``"mlp"`` trained on the 8x8 digits with ``coursekit.train.pretrained`` (cached);
    ``calibration_batches``: how many training batches calibrate the static quantization. Returns a summary:
    ``{"model_path", "fixture_path", "n", "accuracy", "input_shape"}``.
    """
    from coursekit.train import pretrained

    check_choice("model", model, MODELS)
    calibration_batches = check_int("calibration_batches", calibration_batches, min_value=1)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    model_path = check_output_file("out_dir", out / MODEL_FILE)
    fixture_path = check_output_file("out_dir", out / FIXTURE_FILE)

    net = pretrained(model, "digits", fast=fast, progress=progress).eval()
    loaders = get_loaders("digits", fast=fast)
    inputs, labels = _test_arrays(loaders.test)
    calibration = [x for x, _ in itertools.islice(loaders.train, calibration_batches)]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(net, torch.from_numpy(inputs[:1]), Path(tmp) / "fp32.onnx")
        staged = Path(tmp) / MODEL_FILE
        ort_quantize_static(fp32, staged, calibration, method="minmax", per_channel=True)
        logits = ort_run(ort_session(staged, threads=1), inputs)
        shutil.move(staged, model_path)
    if not np.isfinite(logits).all():
        raise ValueError(f"the quantized {model} model produced non-finite logits; the fixture is not usable")
    classes = logits.argmax(axis=1)
    accuracy = float((classes == labels).mean())
    import onnxruntime

    record = {
        "model": model, "dataset": "digits", "input_shape": list(inputs.shape[1:]), "n": len(labels),
        "inputs": _rows(inputs), "labels": labels.tolist(), "logits": _rows(logits), "classes": classes.tolist(),
        "accuracy": accuracy, "onnxruntime_version": onnxruntime.__version__, "coursekit_version": __version__,
        "quantization": "ort_quantize_static QDQ S8S8 per-channel MinMax",
    }
    tmp_json = fixture_path.with_name(f".{fixture_path.name}.{os.getpid()}.tmp")
    tmp_json.write_text(json.dumps(record))
    os.replace(tmp_json, fixture_path)
    return {"model_path": model_path, "fixture_path": fixture_path, "n": record["n"], "accuracy": accuracy,
            "input_shape": record["input_shape"]}
