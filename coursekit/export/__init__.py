"""coursekit.export: ONNX export of float and fake-quant (QDQ) models, ONNX Runtime quantization, parity,
graph inspection, model cards, session options, and OpenVINO/NNCF on the same files."""
from coursekit.export.inspect import (
    check_onnx_file,
    file_sha256,
    graph_summary,
    io_signature,
    layer_precisions,
)
from coursekit.export.matmulnbits import (
    Int4Weight,
    linear_stack_model,
    linear_stack_models,
    matmulnbits_model,
)
from coursekit.export.model_card import read_model_card, write_model_card
from coursekit.export.onnx_export import export_onnx, op_counts
from coursekit.export.openvino_rt import nncf_quantize, openvino_outputs, openvino_run, openvino_session
from coursekit.export.ort import (
    calibration_reader,
    file_size,
    ort_quantize_dynamic,
    ort_quantize_static,
    ort_run,
    ort_session,
    preprocess,
)
from coursekit.export.parity import agreement_stats, collect_outputs, format_parity, parity, parity_report
from coursekit.export.session import optimized_op_counts, session_grid, session_options

__all__ = [
    "Int4Weight", "agreement_stats", "calibration_reader", "check_onnx_file", "collect_outputs", "export_onnx",
    "file_sha256",
    "file_size", "format_parity", "graph_summary", "io_signature", "layer_precisions", "linear_stack_model",
    "linear_stack_models", "matmulnbits_model", "nncf_quantize",
    "op_counts", "openvino_outputs", "openvino_run", "openvino_session", "optimized_op_counts",
    "ort_quantize_dynamic", "ort_quantize_static", "ort_run", "ort_session", "parity", "parity_report",
    "preprocess", "read_model_card", "session_grid", "session_options", "write_model_card",
]
