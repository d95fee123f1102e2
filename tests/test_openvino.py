"""OpenVINO runs the same ONNX files as ONNX Runtime (the reference), and NNCF quantizes the course model."""
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from coursekit.export import (
    agreement_stats,
    export_onnx,
    graph_summary,
    nncf_quantize,
    openvino_outputs,
    openvino_session,
    ort_quantize_static,
    ort_run,
    ort_session,
)

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An untrained CNN with spread logits, exported in FP32 and as ORT static INT8 (QDQ), and 300 inputs."""
    folder = tmp_path_factory.mktemp("ov")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(6 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    with torch.no_grad():
        model[-1].weight.mul_(8)
    x = torch.randn(300, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    fp32 = export_onnx(model, x[:1], folder / "cnn.onnx")
    int8 = ort_quantize_static(fp32, folder / "cnn_int8.onnx", [x[:100], x[100:200]])
    return x, fp32, int8


def _output_scale(path) -> float:
    """The scale of the DequantizeLinear that produces the graph output: one step of the INT8 output grid."""
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    node = next(n for n in graph.node if n.output[0] == graph.output[0].name)
    assert node.op_type == "DequantizeLinear"
    return float(inits[node.input[1]])


def test_fp32_file_openvino_equals_onnx_runtime(files):
    x, fp32, _ = files
    ref = ort_run(ort_session(fp32), x)
    for batches in ([x], [x[:1], x[1:64], x[64:]]):  # dynamic batch: one compiled model, several sizes
        out = openvino_outputs(fp32, batches, precision="f32")
        stats = agreement_stats(ref, out)
        # two FP32 engines differ only by summation order and fused kernels: ~1e-7 relative, logits up to ~3
        assert stats["max_abs_error"] < 1e-4 and stats["top1_agreement"] == 1.0
        assert stats["n"] == len(x)


def test_int8_qdq_file_openvino_agrees_with_onnx_runtime(files):
    x, _, int8 = files
    ref = ort_run(ort_session(int8), x)
    out = openvino_outputs(int8, x)
    stats = agreement_stats(ref, out)
    step = _output_scale(int8)
    # Both engines run the QDQ graph with integer kernels and the same scales; they may still round an
    # intermediate requantization differently (one INT8 step), which moves an output by a few output steps and
    # flips the argmax only for near-ties. Tolerance: top-1 >= 98 %, mean error below one output step,
    # max error below 8 steps. (Measured here: identical outputs.)
    assert stats["top1_agreement"] >= 0.98
    assert stats["mean_abs_error"] <= step and stats["max_abs_error"] <= 8 * step
    # and both are really INT8: far from the FP32 outputs compared with two FP32 engines
    fp32_ref = ort_run(ort_session(files[1]), x)
    assert agreement_stats(fp32_ref, out)["max_abs_error"] > 1e-3


def test_openvino_session_settings_and_bad_input(files, tmp_path):
    _, fp32, _ = files
    session = openvino_session(fp32, threads=2, hint="throughput")
    assert session.config == {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "THROUGHPUT",
                              "INFERENCE_PRECISION_HINT": "f32"}
    assert int(session.compiled.get_property("INFERENCE_NUM_THREADS")) == 2
    assert "float32" in str(session.compiled.get_property("INFERENCE_PRECISION_HINT"))
    assert "INFERENCE_PRECISION_HINT" not in openvino_session(fp32, precision="default").config
    with pytest.raises(ValueError, match="hint"):
        openvino_session(fp32, hint="fastest")
    with pytest.raises(ValueError, match="precision"):
        openvino_session(fp32, precision="int8")
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(fp32.read_bytes()[: fp32.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        openvino_session(bad)


@pytest.fixture(scope="module")
def digits_lenet(tmp_path_factory):
    """The course's pretrained digits LeNet (fast recipe, cached), its FP32 export and the digits test set."""
    from coursekit.data import get_loaders
    from coursekit.train import pretrained

    model = pretrained("lenet", "digits", fast=True, progress=False)
    train, _, test = get_loaders("digits", fast=True)
    x = torch.cat([b for b, _ in test])
    y = torch.cat([t for _, t in test]).numpy()
    calib = [b for _, (b, _) in zip(range(4), train)]
    fp32 = export_onnx(model, x[:1], tmp_path_factory.mktemp("lenet") / "lenet.onnx")
    return fp32, calib, x, y


def test_nncf_quantizes_the_course_model_close_to_fp32(digits_lenet, tmp_path):
    import openvino as ov

    fp32, calib, x, y = digits_lenet
    fp32_acc = float((ort_run(ort_session(fp32), x).argmax(1) == y).mean())
    ir = nncf_quantize(fp32, tmp_path / "lenet_nncf", calib, backend="openvino")
    assert ir.suffix == ".xml" and ir.with_suffix(".bin").is_file()
    ops = {op.get_type_name() for op in ov.Core().read_model(str(ir)).get_ops()}
    assert "FakeQuantize" in ops                              # NNCF inserted INT8 quantizers
    qdq = nncf_quantize(fp32, tmp_path / "lenet_nncf.onnx", calib, backend="onnx")
    summary = graph_summary(qdq)
    assert summary["format"] == "QDQ" and summary["quantized_ops"] == 5  # 2 Conv + 3 Gemm
    for out in (openvino_outputs(ir, x), ort_run(ort_session(qdq), x), openvino_outputs(qdq, x)):
        acc = float((out.argmax(1) == y).mean())
        assert acc >= fp32_acc - 0.03, (acc, fp32_acc)
    with pytest.raises(ValueError, match="calibration_batches is empty"):
        nncf_quantize(fp32, tmp_path / "x.onnx", [], backend="onnx")
    with pytest.raises(ValueError, match="backend"):
        nncf_quantize(fp32, tmp_path / "x.onnx", calib, backend="tensorrt")
