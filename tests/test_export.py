"""ONNX export and ONNX Runtime quantization: parity with torch, QDQ structure, accuracy on digits, file size."""
import numpy as np
import pytest
import torch
from torch import nn

from coursekit.export import (
    export_onnx,
    file_size,
    op_counts,
    ort_quantize_dynamic,
    ort_quantize_static,
    ort_run,
    ort_session,
    parity,
)
from coursekit.quant import QuantConfig, quantize_model


@pytest.fixture(scope="module")
def digits():
    """A tiny MLP trained on sklearn's bundled digits (offline, ~1 s)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=gen)
    train, test = perm[:1400], perm[1400:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        for idx in train.split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model, x[train], x[test], y[test]


def _accuracy(logits, y):
    return float((torch.as_tensor(logits).argmax(1) == y).float().mean())


@pytest.mark.slow  # trains the digits MLP (about 3 s, once per module)
def test_fp32_parity_and_dynamic_batch(tmp_path, digits):
    model, _, xte, _ = digits
    path = export_onnx(model, xte[:4], tmp_path / "fp32.onnx")
    result = parity(model, path, [xte[:1], xte[:7], xte])
    assert result["max_abs_error"] < 1e-5 and result["top1_agreement"] == 1.0
    assert result["n"] == 1 + 7 + len(xte)


def test_fp32_cnn_parity(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).eval()
    x = torch.randn(16, 1, 8, 8)
    path = export_onnx(model, x, tmp_path / "cnn.onnx")
    assert parity(model, path, x)["max_abs_error"] < 1e-5


@pytest.mark.slow  # trains the digits MLP (about 3 s, once per module)
def test_fake_quant_model_exports_as_qdq_and_matches(tmp_path, digits):
    model, xtr, xte, _ = digits
    qmodel = quantize_model(model, QuantConfig(), [xtr[:256], xtr[256:512]])
    path = export_onnx(qmodel, xte[:4], tmp_path / "qdq.onnx")
    ops = op_counts(path)
    assert ops["QuantizeLinear"] == 6 and ops["DequantizeLinear"] == 6  # input + weight of 3 layers
    result = parity(qmodel, path, xte)
    # ORT runs integer kernels for the same Q/DQ graph: identical up to float accumulation order, which can
    # move a value across a rounding boundary of the next quantizer (one activation step).
    assert result["top1_agreement"] > 0.98
    assert result["max_abs_error"] < 0.2 and result["mean_abs_error"] < 0.01


@pytest.mark.slow  # trains the digits MLP (about 3 s, once per module)
def test_dynamo_exporter_static_shape(tmp_path, digits):
    model, xtr, xte, _ = digits
    qmodel = quantize_model(model, QuantConfig(), [xtr[:256]])
    path = export_onnx(qmodel, xte[:8], tmp_path / "qdq_dynamo.onnx", exporter="dynamo", dynamic_batch=False)
    assert op_counts(path)["QuantizeLinear"] == 6
    out = ort_run(ort_session(path), xte[:8])
    with torch.no_grad():
        np.testing.assert_allclose(out, qmodel(xte[:8]).numpy(), atol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_ort_static_accuracy_on_digits(tmp_path, digits, method):
    model, xtr, xte, yte = digits
    fp32 = export_onnx(model, xte[:4], tmp_path / "fp32.onnx")
    out = ort_quantize_static(fp32, tmp_path / f"int8_{method}.onnx", [xtr[i:i + 100] for i in range(0, 500, 100)],
                              method=method)
    ops = op_counts(out)
    assert ops.get("QuantizeLinear", 0) >= 3 and ops.get("DequantizeLinear", 0) >= 6
    with torch.no_grad():
        acc_fp32 = _accuracy(model(xte), yte)
    acc_int8 = _accuracy(ort_run(ort_session(out), xte), yte)
    assert acc_fp32 > 0.9
    assert acc_int8 >= acc_fp32 - 0.03


@pytest.mark.slow  # trains the digits MLP (about 3 s, once per module)
def test_ort_dynamic_accuracy_on_digits(tmp_path, digits):
    model, _, xte, yte = digits
    fp32 = export_onnx(model, xte[:4], tmp_path / "fp32.onnx")
    out = ort_quantize_dynamic(fp32, tmp_path / "dyn.onnx")
    assert op_counts(out).get("MatMulInteger", 0) == 3
    with torch.no_grad():
        acc_fp32 = _accuracy(model(xte), yte)
    assert _accuracy(ort_run(ort_session(out), xte), yte) >= acc_fp32 - 0.03


def test_int8_file_about_4x_smaller(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(3) for m in (nn.Linear(256, 256), nn.ReLU())], nn.Linear(256, 10)).eval()
    x = torch.randn(32, 256)
    fp32 = export_onnx(model, x, tmp_path / "fp32.onnx")
    static = ort_quantize_static(fp32, tmp_path / "s8.onnx", [x])
    dynamic = ort_quantize_dynamic(fp32, tmp_path / "d8.onnx")
    for path in (static, dynamic):
        ratio = file_size(fp32) / file_size(path)
        assert 3.3 < ratio < 4.1, ratio


def test_export_errors(tmp_path):
    with pytest.raises(TypeError, match="model"):
        export_onnx("not a model", torch.zeros(1, 2), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="exporter"):
        export_onnx(nn.Linear(2, 2), torch.zeros(1, 2), tmp_path / "m.onnx", exporter="tf")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(nn.Linear(2, 2), torch.zeros(1, 2), tmp_path / "m.onnx", opset=11)
    path = export_onnx(nn.Linear(2, 2), torch.zeros(1, 2), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="method"):
        ort_quantize_static(path, tmp_path / "q.onnx", [torch.zeros(1, 2)], method="kl")
    with pytest.raises(ValueError, match="empty"):
        ort_quantize_static(path, tmp_path / "q.onnx", [])
    with pytest.raises(ValueError, match="NaN/inf"):
        ort_quantize_static(path, tmp_path / "q.onnx", [torch.tensor([[float("nan"), 0.0]])])
    with pytest.raises(ValueError, match="threads"):
        ort_session(path, threads=0)


def test_percentile_calibration_accepts_batches_of_unequal_size(tmp_path):
    """ORT's histogram calibrators crash on a short last batch; our reader makes that case work."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    fp32 = export_onnx(model, torch.randn(1, 16), tmp_path / "m.onnx")
    batches = [torch.randn(8, 16), torch.randn(8, 16), torch.randn(3, 16)]
    for method in ("percentile", "entropy"):
        out = ort_quantize_static(fp32, tmp_path / f"q_{method}.onnx", batches, method=method)
        x = torch.randn(64, 16)
        error = np.abs(ort_run(ort_session(out), x) - model(x).detach().numpy())
        assert np.median(error) < 0.02  # clipping may hit a rare outlier; the typical output must match
