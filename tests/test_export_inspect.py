"""Graph inspection and session options, checked against hand-built ONNX graphs, onnx itself and ONNX Runtime."""
import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from coursekit.export import (
    check_onnx_file,
    export_onnx,
    graph_summary,
    io_signature,
    optimized_op_counts,
    ort_quantize_static,
    ort_session,
    session_grid,
    session_options,
)

RNG = np.random.default_rng(0)


def _save(graph, path, opset=17):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _qdq_model(path):
    """x -> Q -> DQ -> MatMul(DQ(int8 W1)) -> Relu -> MatMul(float W2): one QDQ layer, one float layer."""
    w1 = RNG.integers(-127, 128, size=(4, 3), dtype=np.int8)
    w2 = RNG.standard_normal((3, 2)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1_q"), numpy_helper.from_array(np.float32(0.05), "w1_s"),
             numpy_helper.from_array(np.int8(0), "w1_zp"), numpy_helper.from_array(np.float32(0.1), "x_s"),
             numpy_helper.from_array(np.int8(0), "x_zp"), numpy_helper.from_array(w2, "w2")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "x_zp"], ["xdq"]),
             helper.make_node("DequantizeLinear", ["w1_q", "w1_s", "w1_zp"], ["w1"]),
             helper.make_node("MatMul", ["xdq", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], inits)
    return _save(graph, path)


def _qoperator_model(path):
    """x -> Q (uint8) -> QLinearMatMul(int8 W) -> DQ: the QOperator format."""
    w = RNG.integers(-127, 128, size=(4, 3), dtype=np.int8)
    inits = [numpy_helper.from_array(np.float32(0.1), "x_s"), numpy_helper.from_array(np.uint8(128), "x_zp"),
             numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(np.float32(0.05), "w_s"),
             numpy_helper.from_array(np.int8(0), "w_zp"), numpy_helper.from_array(np.float32(0.2), "y_s"),
             numpy_helper.from_array(np.uint8(128), "y_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["xq"]),
             helper.make_node("QLinearMatMul", ["xq", "x_s", "x_zp", "w_q", "w_s", "w_zp", "y_s", "y_zp"], ["yq"],
                              name="fc"),
             helper.make_node("DequantizeLinear", ["yq", "y_s", "y_zp"], ["y"])]
    graph = helper.make_graph(nodes, "qop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])], inits)
    return _save(graph, path)


def _reference_counts(path):
    return dict(collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node))


def _reference_bytes(path):
    return sum(numpy_helper.to_array(i).nbytes for i in onnx.load(str(path)).graph.initializer)


def test_qdq_graph_summary_matches_the_hand_built_graph(tmp_path):
    path = _qdq_model(tmp_path / "qdq.onnx")
    s = graph_summary(path)
    assert s["format"] == "QDQ"
    assert s["quantized_ops"] == 1            # fc1 only; fc2 stays float
    assert s["qdq_pairs"] == 1                # the activation Q -> DQ; the weight DQ reads an initializer
    assert (s["quantize_nodes"], s["dequantize_nodes"]) == (1, 2)
    assert s["op_counts"] == _reference_counts(path)
    assert s["opset"] == onnx.load(str(path)).opset_import[0].version == 17
    assert s["initializer_bytes"] == _reference_bytes(path) == 12 + 4 + 1 + 4 + 1 + 24
    fc1, fc2 = s["layers"]
    assert (fc1["name"], fc1["format"], fc1["weight"], fc1["activation"]) == ("fc1", "QDQ", "int8", "int8")
    assert (fc2["name"], fc2["format"], fc2["weight"], fc2["activation"]) == ("fc2", "float", "float32", "float32")
    # the graph is valid: ONNX Runtime runs it
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": RNG.standard_normal((5, 4)).astype(np.float32)})[0]
    assert out.shape == (5, 2)


def test_qoperator_graph_summary(tmp_path):
    path = _qoperator_model(tmp_path / "qop.onnx")
    s = graph_summary(path)
    assert s["format"] == "QOperator" and s["quantized_ops"] == 1 and s["qdq_pairs"] == 0
    assert s["op_counts"] == _reference_counts(path) == {"QuantizeLinear": 1, "QLinearMatMul": 1,
                                                           "DequantizeLinear": 1}
    (layer,) = s["layers"]
    assert (layer["op_type"], layer["weight"], layer["activation"]) == ("QLinearMatMul", "int8", "uint8")
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    assert ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0].shape == (3, 3)


def test_exported_float_and_ort_int8_models(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)).eval()
    x = torch.randn(8, 1, 8, 8)
    fp32 = export_onnx(model, x[:1], tmp_path / "fp32.onnx")
    int8 = ort_quantize_static(fp32, tmp_path / "int8.onnx", [x])
    s32, s8 = graph_summary(fp32), graph_summary(int8)
    assert s32["format"] == "float" and s32["quantized_ops"] == 0 and s32["qdq_pairs"] == 0
    assert s8["format"] == "QDQ" and s8["quantized_ops"] == 2   # the Conv and the Gemm
    assert {layer["op_type"] for layer in s8["layers"]} == {"Conv", "Gemm"}
    assert all(layer["weight"] == "int8" and layer["activation"] == "int8" for layer in s8["layers"])
    assert s8["op_counts"] == _reference_counts(int8)
    assert s8["initializer_bytes"] == _reference_bytes(int8) < s32["initializer_bytes"] == _reference_bytes(fp32)
    sig = io_signature(fp32)
    assert sig["inputs"] == [{"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
    assert sig["outputs"] == [{"name": "output", "shape": ["batch", 10], "dtype": "float32"}]


def test_ort_fuses_qdq_into_integer_ops_only_from_the_extended_level(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    x = torch.randn(32, 16)
    int8 = ort_quantize_static(export_onnx(model, x[:1], tmp_path / "fp32.onnx"), tmp_path / "int8.onnx", [x])
    basic, extended = optimized_op_counts(int8, "basic"), optimized_op_counts(int8, "extended")
    integer = {"QGemm", "QLinearMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"}
    assert not integer & set(basic) and basic.get("Gemm") == 2
    assert integer & set(extended) and "Gemm" not in extended


def _write_truncations(src, folder):
    data = src.read_bytes()
    for cut in (1, 7, len(data) // 3, len(data) // 2, len(data) - 3):
        path = folder / f"cut{cut}.onnx"
        path.write_bytes(data[:cut])
        yield path


def test_truncated_and_non_onnx_files_raise_clear_errors(tmp_path):
    good = _qdq_model(tmp_path / "good.onnx")
    assert check_onnx_file(good).graph.name == "qdq"
    for path in _write_truncations(good, tmp_path):
        with pytest.raises(ValueError, match=r"truncated or corrupt|not a valid ONNX model") as err:
            check_onnx_file(path)
        assert str(path) in str(err.value)
    text = tmp_path / "notes.onnx"
    text.write_text("this is a README, not a model\n" * 20)
    with pytest.raises(ValueError, match="not a valid ONNX model.*not like an ONNX file"):
        check_onnx_file(text)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        check_onnx_file(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_onnx_file(tmp_path / "missing.onnx")
    with pytest.raises(IsADirectoryError, match="folder"):
        check_onnx_file(tmp_path)
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        graph_summary(text)


def test_session_options_are_set_as_asked():
    opts = session_options(threads=3, optimization="basic", execution_mode="parallel", inter_threads=2)
    assert opts.intra_op_num_threads == 3 and opts.inter_op_num_threads == 2
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert opts.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert session_options(allow_spinning=False).get_session_config_entry("session.intra_op.allow_spinning") == "0"
    default = session_options()
    assert default.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert default.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL and default.intra_op_num_threads == 1
    with pytest.raises(ValueError, match="optimization"):
        session_options(optimization="max")
    with pytest.raises(ValueError, match="execution_mode"):
        session_options(execution_mode="async")
    with pytest.raises(ValueError, match="threads"):
        session_options(threads=0)
    grid = session_grid(threads=(1, 2), optimization=("none", "all"), execution_mode=("sequential",))
    assert len(grid) == 4 and {g["threads"] for g in grid} == {1, 2}
    with pytest.raises(ValueError, match="optimization"):
        session_grid(optimization=("fastest",))


def test_every_session_option_gives_the_same_outputs(tmp_path):
    """Options change speed, never results (FP32: up to float reassociation in fused kernels)."""
    path = _qdq_model(tmp_path / "qdq.onnx")
    x = RNG.standard_normal((6, 4)).astype(np.float32)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for config in session_grid(threads=(1, 2), optimization=("none", "basic", "extended", "all")):
        out = ort_session(path, **config).run(None, {"x": x})[0]
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5, err_msg=str(config))
