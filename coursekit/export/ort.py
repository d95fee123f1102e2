"""ONNX Runtime: sessions and static/dynamic quantization of ONNX files (parity checks: ``parity.py``).

``ort_quantize_static`` is post-training static quantization done by ONNX Runtime itself (QDQ format, S8S8:
int8 activations, symmetric int8 weights), calibrated with MinMax, Entropy (KL, Migacz 2017) or Percentile;
``ort_quantize_dynamic`` quantizes weights ahead of time and activations per batch at run time
(Krishnamoorthi 2018, sec. 2.5 and 3.1). Measured speed-ups live in the ``ptq`` benchmark suite.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from coursekit._validate import check_choice
from coursekit.export.session import session_options
from coursekit.surgery import batches as input_batches

METHODS = ("minmax", "entropy", "percentile")


def ort_session(path, threads: int = 1, optimization: str = "all", execution_mode: str = "sequential",
                allow_spinning: bool = True, providers=("CPUExecutionProvider",)):
    """An ``onnxruntime.InferenceSession`` with ``threads`` intra-op threads (1 inter-op thread), the graph
    optimization level ``optimization``, ``execution_mode`` and ``allow_spinning``
    (``coursekit.export.session.session_options`` explains each), on ``providers`` (CPU by default)."""
    import onnxruntime as ort

    options = session_options(threads=threads, optimization=optimization, execution_mode=execution_mode,
                              allow_spinning=allow_spinning)
    return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))


def ort_run(session, x) -> np.ndarray:
    """Run a single-input, single-output session on ``x`` (tensor or array); returns the first output."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return session.run(None, {session.get_inputs()[0].name: arr.astype(np.float32, copy=False)})[0]


def _calibration_reader_class():
    from onnxruntime.quantization import CalibrationDataReader

    class TensorCalibrationReader(CalibrationDataReader):
        """Feeds calibration batches (tensors, arrays, or (input, target) tuples) to ORT's calibrators."""

        def __init__(self, batches, input_name: str):
            self.input_name = input_name
            self._batches = []
            for x in input_batches(batches):
                arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
                if arr.size == 0:
                    continue
                if not np.isfinite(arr).all():
                    raise ValueError("calibration batch contains NaN/inf values")
                self._batches.append(arr.astype(np.float32))
            if not self._batches:
                raise ValueError("calibration_batches is empty: give at least one non-empty batch")
            if len({b.shape[0] for b in self._batches}) > 1:
                # ORT's histogram calibrators (percentile, entropy) stack batches with np.asarray and fail on
                # unequal batch sizes (e.g. a short last batch): one concatenated batch is equivalent for them.
                self._batches = [np.concatenate(self._batches)]
            self._iter = iter(self._batches)

        def get_next(self):
            arr = next(self._iter, None)
            return None if arr is None else {self.input_name: arr}

        def rewind(self):
            self._iter = iter(self._batches)

    return TensorCalibrationReader


def calibration_reader(batches, input_name: str):
    """A ``onnxruntime.quantization.CalibrationDataReader`` over ``batches`` for the input ``input_name``."""
    return _calibration_reader_class()(batches, input_name)


def _input_name(path) -> str:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return next(i.name for i in graph.input if i.name not in initializers)


@contextlib.contextmanager
def _quiet():
    """ORT's quantization tools print progress to stdout and log warnings; keep graded cells clean."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def preprocess(onnx_in, onnx_out) -> Path:
    """``onnxruntime.quantization.quant_pre_process``: shape inference + graph optimisation (offline)."""
    from onnxruntime.quantization import quant_pre_process

    with _quiet():
        quant_pre_process(str(onnx_in), str(onnx_out), skip_symbolic_shape=False)
    return Path(onnx_out)


def ort_quantize_static(onnx_in, onnx_out, calibration_batches, method: str = "minmax", per_channel: bool = True,
                        activation_type: str = "int8", weight_type: str = "int8", percentile: float = 99.999,
                        preprocess_model: bool = True, reduce_range: bool = False, extra_options=None) -> Path:
    """Static INT8 quantization of an ONNX file in QDQ format (ONNX Runtime ``quantize_static``).

    ``method``: ``"minmax"``, ``"entropy"`` or ``"percentile"`` calibration; ``activation_type``/``weight_type``
    ``"int8"`` (S8S8, the default, fastest with VNNI) or ``"uint8"``; ``per_channel`` weight scales. The model
    is pre-processed with ``quant_pre_process`` first (``preprocess_model``).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    check_choice("method", method, METHODS)
    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    check_choice("activation_type", activation_type, types)
    check_choice("weight_type", weight_type, types)
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    options = {"CalibMovingAverage": False}
    if method == "percentile":
        options["CalibPercentile"] = percentile
    options.update(extra_options or {})
    reader = calibration_reader(calibration_batches, _input_name(onnx_in))
    with tempfile.TemporaryDirectory() as tmp:
        src = preprocess(onnx_in, os.path.join(tmp, "pre.onnx")) if preprocess_model else onnx_in
        with _quiet():
            quantize_static(str(src), str(onnx_out), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=types[activation_type], weight_type=types[weight_type],
                            calibrate_method=calib, reduce_range=reduce_range, extra_options=options)
    return Path(onnx_out)


def ort_quantize_dynamic(onnx_in, onnx_out, weight_type: str = "int8", per_channel: bool = False,
                         preprocess_model: bool = True) -> Path:
    """Dynamic quantization (ONNX Runtime ``quantize_dynamic``): int8 weights, activations quantized per batch
    at run time (``DynamicQuantizeLinear`` + ``MatMulInteger``/``ConvInteger``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    check_choice("weight_type", weight_type, types)
    with tempfile.TemporaryDirectory() as tmp:
        src = preprocess(onnx_in, os.path.join(tmp, "pre.onnx")) if preprocess_model else onnx_in
        with _quiet():
            quantize_dynamic(str(src), str(onnx_out), weight_type=types[weight_type], per_channel=per_channel)
    return Path(onnx_out)


def file_size(path) -> int:
    """Size of an ONNX file in bytes."""
    return Path(path).stat().st_size
