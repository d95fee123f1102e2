"""Model cards and parity reports, checked against the file (onnx.load, os.stat, hashlib) and a direct numpy
computation on ONNX Runtime's outputs."""
import hashlib
import json
import math
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from coursekit.export import (
    agreement_stats,
    export_onnx,
    format_parity,
    ort_quantize_static,
    parity,
    parity_report,
    read_model_card,
    write_model_card,
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small untrained CNN on 8x8 inputs, exported in FP32 and as ORT static INT8 (QDQ)."""
    folder = tmp_path_factory.mktemp("card")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(6 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    with torch.no_grad():  # spread the logits so an untrained model predicts every class
        model[-1].weight.mul_(8)
    x = torch.randn(300, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    fp32 = export_onnx(model, x[:1], folder / "cnn.onnx")
    int8 = ort_quantize_static(fp32, folder / "cnn_int8.onnx", [x[:100], x[100:200]])
    return model, x, fp32, int8


def _ort_outputs(path, batches):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {session.get_inputs()[0].name: x.numpy()})[0] for x in batches])


def test_model_card_fields_come_from_the_file(exported):
    model, _, fp32, int8 = exported
    for path, precision, fmt in ((fp32, "fp32", "float"), (int8, "int8", "QDQ")):
        card_path = write_model_card(path, model=model, accuracy={"test": 0.5}, latency_ms={"batch 1": 0.1},
                                     calibration="200 random N(0, 1) inputs", dataset="random",
                                     parity={"per_class_agreement": [1.0, float("nan")], "n": 2,
                                             "max_abs_error": 0.0, "top1_agreement": 1.0})
        assert card_path == path.with_name(path.stem + ".card.json") and card_path.is_file()
        assert path.with_name(path.stem + ".card.md").is_file()
        card = json.loads(card_path.read_text())
        proto = onnx.load(str(path))
        assert card["opset"] == next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        assert card["ir_version"] == proto.ir_version
        assert card["size_bytes"] == os.stat(path).st_size
        assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (card["precision"], card["format"]) == (precision, fmt)
        weight_nodes = [n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
        assert [layer["name"] for layer in card["layers"]] == weight_nodes
        expected = "int8" if precision == "int8" else "float32"
        assert {layer["weight"] for layer in card["layers"]} == {expected}
        assert card["inputs"] == [{"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
        assert card["outputs"][0]["shape"] == ["batch", 10]
        assert card["accuracy"] == {"test": 0.5} and card["latency_ms"] == {"batch 1": 0.1}
        assert card["torch_model"]["parameters"] == sum(p.numel() for p in model.parameters())
        assert card["software"]["onnxruntime"] == ort.__version__ and card["software"]["coursekit"]
        assert card["hardware"]["logical_cpus"] == os.cpu_count()
        assert read_model_card(path) == card == read_model_card(card_path)
        assert "NaN" not in card_path.read_text()  # strict JSON for every reader
        assert precision in path.with_name(path.stem + ".card.md").read_text()


def test_a_stale_card_is_detected(exported, tmp_path):
    _, _, fp32, _ = exported
    copy = tmp_path / "model.onnx"
    copy.write_bytes(fp32.read_bytes())
    write_model_card(copy, hardware={"cpu": {"model": "test cpu"}})
    assert read_model_card(copy)["hardware"] == {"cpu": {"model": "test cpu"}}
    copy.write_bytes(fp32.read_bytes()[:-40])  # truncated after the card was written: loads, but is not the same
    with pytest.raises(ValueError, match="does not describe"):
        read_model_card(copy)
    assert read_model_card(copy, verify=False)["file"] == "model.onnx"
    with pytest.raises(FileNotFoundError, match="write_model_card"):
        read_model_card(tmp_path / "other.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        write_model_card(bad)
    assert not (tmp_path / "bad.card.json").exists()


def _numpy_parity(ref, out, classes=10):
    """The parity numbers computed directly, row by row, in float64."""
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    diff = np.abs(ref - out)
    same = ref.argmax(1) == out.argmax(1)
    per_class = []
    for c in range(classes):
        rows = ref.argmax(1) == c
        per_class.append(float(same[rows].mean()) if rows.any() else float("nan"))
    return diff.max(), diff.mean(), same.mean(), per_class


def _assert_report_matches(report, ref, out, n):
    max_err, mean_err, agree, per_class = _numpy_parity(ref, out)
    assert report["n"] == n
    assert report["max_abs_error"] == pytest.approx(max_err, rel=1e-12)
    assert report["mean_abs_error"] == pytest.approx(mean_err, rel=1e-9)
    assert report["top1_agreement"] == pytest.approx(agree)
    assert len(report["per_class_agreement"]) == 10
    for got, want in zip(report["per_class_agreement"], per_class):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)


def test_parity_report_equals_a_direct_numpy_computation(exported):
    model, x, fp32, int8 = exported
    batches = [x[:1], x[1:77], x[77:]]  # several sizes (kernels may round differently per batch size)
    with torch.no_grad():
        ref = torch.cat([model(b) for b in batches]).numpy()
    assert len(set(ref.argmax(1).tolist())) >= 6  # per-class numbers are exercised on many classes
    for path in (fp32, int8):
        report = parity_report(model, path, batches)
        _assert_report_matches(report, ref, _ort_outputs(path, batches), n=len(x))
    fp = parity_report(model, fp32, x)
    assert fp["max_abs_error"] < 1e-5 and fp["top1_agreement"] == 1.0
    q = parity_report(model, int8, x)
    assert q["max_abs_error"] > 10 * fp["max_abs_error"]   # INT8 really is a different computation
    legacy = parity(model, int8, x)                          # the chapter 02/03 call keeps working
    assert json.dumps(legacy) == json.dumps(q)               # NaN (a class never predicted) compares equal


def test_agreement_stats_hand_computed_case():
    ref = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 2.0, 1.0], [1.0, 0.0, 0.5]])
    out = np.array([[2.5, 1.0, 0.0], [0.0, 1.0, 2.0], [0.0, 2.0, 1.0], [1.0, 0.0, 0.5]])
    stats = agreement_stats(ref, out)
    assert stats["max_abs_error"] == 2.0 and stats["mean_abs_error"] == pytest.approx(3.5 / 12)
    assert stats["top1_agreement"] == 0.75 and stats["n"] == 4
    assert stats["per_class_agreement"] == [1.0, 0.5, pytest.approx(float("nan"), nan_ok=True)]
    text = format_parity(stats)
    assert "75.00%" in text and "class 1 50.0%" in text
    with pytest.raises(ValueError, match="equal shape"):
        agreement_stats(ref, out[:3])
    with pytest.raises(ValueError, match="inputs is empty"):
        parity_report(nn.Identity(), lambda x: x, [])
