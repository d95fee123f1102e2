"""OpenVINO: Intel's inference runtime, run on the same ONNX files as ONNX Runtime, and NNCF's INT8 quantization.

OpenVINO reads an ONNX file directly (``Core.read_model``), converts it to its own graph and compiles it for a
device (``"CPU"`` here). A QDQ INT8 ONNX file runs as INT8: OpenVINO's "low precision transformations" turn the
``FakeQuantize`` it makes from each Q/DQ pair into integer kernels, as ORT's QDQ fusion does.

Two settings matter for a fair comparison:

* ``INFERENCE_NUM_THREADS`` (``threads``): pinned like ORT's ``intra_op_num_threads``.
* ``INFERENCE_PRECISION_HINT`` (``precision``): on a CPU with BF16 instructions (AVX-512 BF16, AMX) OpenVINO
  runs *float* models in bfloat16 by default, trading about three significant digits for speed. ``"f32"``
  (our default) keeps parity with ORT's FP32; ``"bf16"`` opts in; ``"default"`` takes the device's choice.
* ``PERFORMANCE_HINT`` (``hint``): ``"latency"`` (one request at a time, all threads on it) or
  ``"throughput"`` (several parallel streams, for many concurrent requests).

NNCF (Neural Network Compression Framework) is OpenVINO's post-training quantizer: MinMax ranges on a calibration
set, symmetric INT8 weights per channel, (asymmetric where it helps) INT8 activations, and fast bias correction
(Nagel et al. 2019, "Data-Free Quantization", sec. 4.2: correct each layer's output mean shifted by weight rounding).
OpenVINO and NNCF are imported only when these functions are called.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from coursekit._validate import check_choice, check_int
from coursekit.surgery import batches as input_batches

HINTS = ("latency", "throughput")
PRECISIONS = ("f32", "bf16", "default")
NNCF_BACKENDS = ("openvino", "onnx")


@dataclass
class OpenVINOSession:
    """A compiled OpenVINO model and one reusable infer request; call it like a function on a batch."""

    compiled: object
    path: Path
    config: dict
    request: object = field(repr=False, default=None)

    def __post_init__(self):
        self.request = self.compiled.create_infer_request()

    def __call__(self, x) -> np.ndarray:
        return openvino_run(self, x)


def _core():
    try:
        import openvino as ov
    except ImportError as err:  # pragma: no cover - openvino is a pinned dependency
        raise ImportError("OpenVINO is not installed: pip install -c constraints.txt openvino") from err
    return ov.Core()


def openvino_session(path, threads: int = 1, hint: str = "latency", precision: str = "f32",
                     device: str = "CPU") -> OpenVINOSession:
    """Compile the ONNX (or OpenVINO IR ``.xml``) model at ``path`` for ``device`` with ``threads`` inference
    threads, performance ``hint`` (``"latency"``/``"throughput"``) and inference ``precision`` (``"f32"``,
    ``"bf16"`` or ``"default"``: the device's own choice, bfloat16 on BF16-capable CPUs)."""
    threads = check_int("threads", threads, min_value=1)
    check_choice("hint", hint, HINTS)
    check_choice("precision", precision, PRECISIONS)
    path = Path(path)
    if path.suffix != ".xml":
        from coursekit.export.inspect import check_onnx_file

        check_onnx_file(path)
    elif not path.is_file():
        raise FileNotFoundError(f"OpenVINO IR file {str(path)!r} does not exist")
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": hint.upper()}
    if precision != "default":
        config["INFERENCE_PRECISION_HINT"] = precision
    core = _core()
    compiled = core.compile_model(core.read_model(os.fspath(path)), device, config)
    return OpenVINOSession(compiled, path, config)


def openvino_run(session: OpenVINOSession, x) -> np.ndarray:
    """Run a single-input model on ``x`` (tensor or array) and return a copy of its first output."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    session.request.infer({0: np.ascontiguousarray(arr, dtype=np.float32)})
    return session.request.get_output_tensor(0).data.copy()


@contextlib.contextmanager
def _quiet_nncf():
    """NNCF draws progress bars and logs warnings ("dataset smaller than subset size"): keep cells clean."""
    import nncf

    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def nncf_quantize(onnx_path, out_path, calibration_batches, backend: str = "openvino", preset: str = "performance",
                  fast_bias_correction: bool = True) -> Path:
    """NNCF post-training INT8 quantization of the ONNX model at ``onnx_path``; returns the written path.

    ``backend="openvino"`` quantizes the OpenVINO model and saves OpenVINO IR (``out_path`` gets the suffix
    ``.xml``, weights in the ``.bin`` beside it); ``backend="onnx"`` quantizes the ONNX graph itself and saves a
    QDQ ONNX file that ONNX Runtime can run too. ``calibration_batches``: tensors/arrays or ``(input, target)``
    batches; every batch is one calibration sample (NNCF's ``subset_size`` is their count). ``preset``:
    ``"performance"`` (symmetric activations) or ``"mixed"`` (asymmetric activations).
    """
    import nncf

    check_choice("backend", backend, NNCF_BACKENDS)
    check_choice("preset", preset, ("performance", "mixed"))
    from coursekit.export.inspect import check_onnx_file

    proto = check_onnx_file(onnx_path)
    data = [x.detach().cpu().numpy().astype(np.float32) if isinstance(x, torch.Tensor) else
            np.asarray(x, dtype=np.float32) for x in input_batches(calibration_batches)]
    data = [d for d in data if d.size]
    if not data:
        raise ValueError("calibration_batches is empty: give at least one non-empty batch")
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    out = Path(out_path)
    with _quiet_nncf():
        if backend == "openvino":
            import openvino as ov

            model = _core().read_model(os.fspath(onnx_path))
            quantized = nncf.quantize(model, nncf.Dataset(data), preset=presets[preset], subset_size=len(data),
                                      fast_bias_correction=fast_bias_correction)
            out = out.with_suffix(".xml")
            ov.save_model(quantized, os.fspath(out))
        else:
            import onnx

            name = next(i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer})
            quantized = nncf.quantize(proto, nncf.Dataset(data, lambda d: {name: d}), preset=presets[preset],
                                      subset_size=len(data), fast_bias_correction=fast_bias_correction)
            onnx.save(quantized, os.fspath(out))
    return out


def openvino_outputs(path, inputs, threads: int = 1, precision: str = "f32") -> np.ndarray:
    """Stacked outputs of the model at ``path`` in OpenVINO over ``inputs`` (tensor or iterable of batches)."""
    session = openvino_session(path, threads=threads, precision=precision)
    outs = [openvino_run(session, x) for x in input_batches(inputs) if len(x)]
    if not outs:
        raise ValueError("inputs is empty: give at least one non-empty batch")
    return np.concatenate(outs)


def ir_size(xml_path) -> int:
    """Bytes on disk of an OpenVINO IR model: the ``.xml`` graph plus the ``.bin`` weights."""
    xml = Path(xml_path)
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
