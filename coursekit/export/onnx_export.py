"""Export a float or fake-quantized (QDQ) torch model to ONNX.

A fake-quant model exports its quantizers as ``QuantizeLinear``/``DequantizeLinear`` pairs (the "QDQ" format
of ONNX Runtime; Nagel et al. 2021, sec. 2.1 for the quantize/dequantize simulation): ONNX Runtime then
fuses ``DQ -> op -> Q`` patterns into integer kernels.
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from coursekit._validate import check_choice, check_int

EXPORTERS = ("torchscript", "dynamo")


def export_onnx(model: nn.Module, example_input: torch.Tensor, path, dynamic_batch: bool = True, opset: int = 17,
                exporter: str = "torchscript", input_name: str = "input", output_name: str = "output") -> Path:
    """Write ``model`` (evaluated in eval mode on ``example_input``) to ``path`` and return the path.

    ``exporter="torchscript"`` (default) uses ``torch.onnx.export(dynamo=False)``: fast, and turns
    ``torch.fake_quantize_per_tensor_affine`` / ``..._per_channel_affine`` (8-bit ranges) into Q/DQ pairs.
    ``exporter="dynamo"`` uses the ``torch.export`` based exporter (needs onnxscript; opset >= 18) which also
    produces Q/DQ pairs, but (torch 2.14) only with ``dynamic_batch=False`` for fake-quant models: with a
    symbolic batch dimension torch.export meets fake-quant kernels without a fake-tensor implementation and
    fails. ``dynamic_batch`` makes dimension 0 of input and output symbolic. The model is checked
    with ``onnx.checker`` after export.
    """
    import onnx

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a torch.Tensor, got {type(example_input).__name__}")
    check_choice("exporter", exporter, EXPORTERS)
    opset = check_int("opset", opset, min_value=17)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
                torch.onnx.export(model, (example_input,), str(path), dynamo=False, opset_version=opset,
                                  input_names=[input_name], output_names=[output_name], dynamic_axes=axes,
                                  do_constant_folding=True)
            else:
                # frozen copy: with parameters requiring grad, torch.export meets the "cachemask" (training)
                # variant of the fake-quant ops, which has no fake-tensor kernel
                model = copy.deepcopy(model).requires_grad_(False)
                shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
                torch.onnx.export(model, (example_input,), str(path), dynamo=True, opset_version=max(opset, 18),
                                  input_names=[input_name], output_names=[output_name], dynamic_shapes=shapes,
                                  verbose=False, external_data=False)
    finally:
        model.train(was_training)
    onnx.checker.check_model(str(path))
    return path


def op_counts(path) -> dict[str, int]:
    """How many nodes of each op type the ONNX graph at ``path`` has (e.g. to count QuantizeLinear nodes)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
