"""Look inside an ONNX file before you ship it: is it really ONNX, which ops are quantized, and in which format.

Two ways to store an INT8 model in ONNX (ONNX Runtime's quantization docs, "Quantization format"):

* **QDQ** (quantize/dequantize): the float ops stay (``Conv``, ``MatMul``, ``Gemm``) and are wrapped in
  ``QuantizeLinear -> DequantizeLinear`` pairs that *simulate* INT8 (Nagel et al. 2021, sec. 2.1, eq. 2-4). A runtime
  that understands the pattern ``DQ -> op -> Q`` fuses it into one integer kernel; one that does not still runs it
  correctly in float. The weights are stored as INT8 initializers behind a ``DequantizeLinear``.
* **QOperator**: integer operators replace the float ones (``QLinearConv``, ``QLinearMatMul``, ``MatMulInteger``,
  ``ConvInteger``, ``QGemm``, the 4-bit ``MatMulNBits``...). Only runtimes that implement those ops can run it.

A graph with neither is ``"float"``: exporting a fake-quant model that lost its quantizers gives one, and
``graph_summary`` makes that mistake visible.
"""
from __future__ import annotations

import os
from pathlib import Path

#: ops that read their weight and/or activations as integers (QOperator format, dynamic quantization, 4-bit)
INTEGER_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QGemm", "QLinearAdd", "QLinearMul",
    "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearConcat",
    "QLinearSoftmax", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits", "QAttention",
})
#: float ops that carry the weights (the "layers" of a model card)
WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
#: ops that do not change values' quantization (a DQ before them still quantizes the next weight op's input)
TRANSPARENT_OPS = frozenset({"MaxPool", "Relu", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
                             "Identity"})
FORMATS = ("QDQ", "QOperator", "float")


def check_onnx_file(path):
    """Load ``path`` as an ONNX model and return the ``onnx.ModelProto``; raise a clear error when it is not one.

    FileNotFoundError for a missing path, IsADirectoryError for a folder, and ValueError naming the file when it
    is empty, is not ONNX at all (a protobuf that does not parse, or parses to a message without a graph), or is
    truncated or corrupt (``onnx.checker.check_model`` rejects it: a cut-off download or an interrupted copy).
    A cut that loses only trailing entries the graph does not need (unused opset imports, metadata) still loads
    and runs; only a checksum catches that: compare ``file_sha256`` with the model card's (``read_model_card``).
    """
    import onnx
    from google.protobuf.message import DecodeError

    target = Path(path)
    if not target.exists():
        raise FileNotFoundError(f"model file {str(target)!r} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"model file {str(target)!r} is a folder; give the path of a .onnx file")
    size = target.stat().st_size
    if size == 0:
        raise ValueError(f"model file {str(target)!r} is empty (0 bytes): not an ONNX model")
    with open(target, "rb") as f:
        head = f.read(16)
    try:
        model = onnx.load(str(target), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(_not_onnx(target, size, head, f"it does not parse as an ONNX protobuf ({err})")) from err
    if not model.ir_version or not model.HasField("graph") or not model.opset_import:
        raise ValueError(_not_onnx(target, size, head, "it parses but has no ir_version, graph or opset_import"))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"model file {str(target)!r} ({size} bytes) is an ONNX model that fails "
                         f"onnx.checker: it is truncated or corrupt ({first}); export or copy it again") from err
    return model


def _not_onnx(target: Path, size: int, head: bytes, why: str) -> str:
    # an ONNX file written by onnx/torch starts with field 1 (ir_version, varint): byte 0x08
    looks = ("its first byte is 0x08 like an ONNX file, so it is probably truncated or corrupt"
             if head[:1] == b"\x08" else f"it starts with {head[:8]!r}, not like an ONNX file")
    return (f"model file {str(target)!r} ({size} bytes) is not a valid ONNX model: {why}; {looks}. "
            "Give a file written by torch.onnx.export / coursekit.export.export_onnx")


def _producers(graph) -> dict:
    """Map each tensor name to the node that produces it."""
    return {out: node for node in graph.node for out in node.output}


def _dtype_name(elem_type: int) -> str:
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name if elem_type else "unknown"


def _dq_dtype(dq, initializers: dict, producers: dict) -> str | None:
    """The integer type a ``DequantizeLinear`` reads: its initializer's dtype, or the type its Q produces."""
    src = dq.input[0]
    if src in initializers:
        return _dtype_name(initializers[src].data_type)
    q = producers.get(src)
    if q is not None and q.op_type == "QuantizeLinear":
        if len(q.input) > 2 and q.input[2] in initializers:
            return _dtype_name(initializers[q.input[2]].data_type)
        return "uint8"  # ONNX default output type of QuantizeLinear without a zero point
    return None


def layer_precisions(path_or_model) -> list[dict]:
    """One entry per weight-carrying op: ``{"name", "op_type", "format", "weight", "activation"}``.

    ``format`` is ``"QDQ"`` (a float op whose inputs come from ``DequantizeLinear``, possibly through ops that keep
    the quantization grid, ``TRANSPARENT_OPS`` such as MaxPool, as NNCF places them), ``"QOperator"`` (an integer
    op from ``INTEGER_OPS``) or ``"float"``; ``weight`` / ``activation`` are the element types the op really
    reads (``"int8"``, ``"uint8"``, ``"float32"``; ``"int4"`` for ``MatMulNBits``).
    """
    model = _as_model(path_or_model)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = _producers(graph)
    layers = []
    for node in graph.node:
        if node.op_type in INTEGER_OPS:
            weight = "int4" if node.op_type == "MatMulNBits" else _integer_weight(node, inits)
            act = "float32" if node.op_type in ("MatMulNBits", "DynamicQuantizeMatMul") else \
                ("int8/uint8 (quantized at run time)" if node.op_type in ("MatMulInteger", "ConvInteger")
                 and producers.get(node.input[0]) is not None
                 and producers[node.input[0]].op_type == "DynamicQuantizeLinear" else _integer_act(node, inits))
            layers.append({"name": node.name, "op_type": node.op_type, "format": "QOperator",
                           "weight": weight, "activation": act})
        elif node.op_type in WEIGHT_OPS:
            types = []
            for name in node.input[:2]:
                src = producers.get(name)
                while src is not None and src.op_type in TRANSPARENT_OPS:  # DQ -> MaxPool -> Conv (NNCF)
                    src = producers.get(src.input[0])
                types.append(_dq_dtype(src, inits, producers) if src is not None and
                             src.op_type == "DequantizeLinear" else None)
            act, weight = types + [None] * (2 - len(types))
            fmt = "QDQ" if (act or weight) else "float"
            layers.append({"name": node.name, "op_type": node.op_type, "format": fmt,
                           "weight": weight or "float32", "activation": act or "float32"})
    return layers


#: where the weight sits among an integer op's inputs (QLinear ops: x, x_scale, x_zero_point, w, ...)
WEIGHT_INPUT = {"QLinearConv": 3, "QLinearMatMul": 3, "QGemm": 3, "MatMulInteger": 1, "ConvInteger": 1,
                "DynamicQuantizeMatMul": 1, "MatMulIntegerToFloat": 1}


def _integer_weight(node, inits: dict) -> str:
    """The dtype of the op's weight initializer (``WEIGHT_INPUT``; else the first integer initializer)."""
    index = WEIGHT_INPUT.get(node.op_type)
    names = [node.input[index]] if index is not None and index < len(node.input) else list(node.input[1:])
    for name in names:
        init = inits.get(name)
        if init is not None and _dtype_name(init.data_type) in ("int8", "uint8"):
            return _dtype_name(init.data_type)
    return "int8/uint8"


def _integer_act(node, inits: dict) -> str:
    """QLinear ops carry the activation zero point as their third input; its dtype is the activation type."""
    if len(node.input) > 2 and node.input[2] in inits:
        return _dtype_name(inits[node.input[2]].data_type)
    return "int8/uint8"


def _as_model(path_or_model):
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    return check_onnx_file(path_or_model)


def opset_version(model) -> int:
    """The version of the default ONNX domain (``""`` or ``"ai.onnx"``) the model imports."""
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _initializer_bytes(graph) -> int:
    """Bytes the initializers (weights, biases, scales, zero points) take: elements x element size."""
    import math

    import onnx

    total = 0
    for init in graph.initializer:
        item = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        total += math.prod(init.dims) * item
    return total


def graph_summary(path_or_model) -> dict:
    """What an ONNX graph contains, read from the graph itself.

    Returns ``{"format", "quantized_ops", "qdq_pairs", "quantize_nodes", "dequantize_nodes", "op_counts",
    "opset", "initializer_bytes", "layers"}``: ``format`` is ``"QOperator"`` when any integer op is present,
    else ``"QDQ"`` when a weight op reads a ``DequantizeLinear`` output, else ``"float"``; ``quantized_ops``
    counts the integer ops plus the QDQ-wrapped weight ops (the ops a runtime can run in INT8); ``qdq_pairs``
    counts ``QuantizeLinear -> DequantizeLinear`` edges (activation quantizers; weight quantizers are stored
    already quantized, as a lone ``DequantizeLinear`` on an initializer); ``layers`` is ``layer_precisions``.
    """
    model = _as_model(path_or_model)
    graph = model.graph
    counts: dict[str, int] = {}
    for node in graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    producers = _producers(graph)
    pairs = sum(1 for node in graph.node if node.op_type == "DequantizeLinear"
                and producers.get(node.input[0]) is not None
                and producers[node.input[0]].op_type == "QuantizeLinear")
    layers = layer_precisions(model)
    integer = sum(1 for layer in layers if layer["format"] == "QOperator")
    qdq = sum(1 for layer in layers if layer["format"] == "QDQ")
    fmt = "QOperator" if integer else "QDQ" if qdq else "float"
    return {"format": fmt, "quantized_ops": integer + qdq, "qdq_pairs": pairs,
            "quantize_nodes": counts.get("QuantizeLinear", 0), "dequantize_nodes": counts.get("DequantizeLinear", 0),
            "op_counts": counts, "opset": opset_version(model), "initializer_bytes": _initializer_bytes(graph),
            "layers": layers}


def io_signature(path_or_model) -> dict:
    """``{"inputs": [...], "outputs": [...]}``, each ``{"name", "shape", "dtype"}`` with symbolic dims by name
    (``"batch"``) and unknown dims as None; initializers listed as graph inputs (old exporters) are skipped."""
    model = _as_model(path_or_model)
    inits = {i.name for i in model.graph.initializer}

    def describe(value) -> dict:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
        return {"name": value.name, "shape": dims, "dtype": _dtype_name(tensor.elem_type)}

    return {"inputs": [describe(v) for v in model.graph.input if v.name not in inits],
            "outputs": [describe(v) for v in model.graph.output]}


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB chunks: identifies exactly which model was deployed."""
    import hashlib

    digest = hashlib.sha256()
    with open(os.fspath(path), "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
