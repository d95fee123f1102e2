"""coursekit.export: ONNX export of float and fake-quant (QDQ) models, ONNX Runtime quantization, parity."""
from coursekit.export.onnx_export import export_onnx, op_counts
from coursekit.export.ort import (
    calibration_reader,
    file_size,
    ort_quantize_dynamic,
    ort_quantize_static,
    ort_run,
    ort_session,
    parity,
    preprocess,
)

__all__ = [
    "calibration_reader", "export_onnx", "file_size", "op_counts", "ort_quantize_dynamic", "ort_quantize_static",
    "ort_run", "ort_session", "parity", "preprocess",
]
