"""quantize_linears / w8a8_linears on small models: each layer against the single-layer functions applied by
hand (sequential calibration included), bytes, skip, error ordering, and bad input."""
import copy

import pytest
import torch
from torch import nn

from coursekit.llm.apply import capture_inputs, quantize_linears, w8a8_linears
from coursekit.llm.gptq import gptq_quantize, hessian
from coursekit.llm.groupwise import groupwise_bytes, quantize_groupwise
from coursekit.llm.nf4dq import nf4_double_quantize


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64), nn.GELU(), nn.Linear(64, 10))


def _calibration(seed=0, batches=8, n=64):
    """Correlated inputs: one fixed mixing matrix, fresh samples per ``seed`` (held-out = another seed)."""
    mix = torch.eye(64) + 2 * torch.randn(64, 64, generator=torch.Generator().manual_seed(123)) / 8
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 64, generator=g) @ mix for _ in range(batches)]


def _out_err(model, ref, xs):
    with torch.no_grad():
        y, r = torch.cat([model(x) for x in xs]), torch.cat([ref(x) for x in xs])
    return float(torch.linalg.norm(y - r) / torch.linalg.norm(r))


def test_rtn_replaces_each_weight_and_counts_bytes():
    model, ref = _mlp(), _mlp()
    report = quantize_linears(model, "rtn", bits=4, group_size=32, skip=("4",), progress=False)
    assert [r.name for r in report.layers] == ["0", "2"]
    for name in ("0", "2"):
        gq = quantize_groupwise(getattr(ref, name).weight, 4, 32)
        assert torch.equal(getattr(model, name).weight, gq.dequantize())
    assert torch.equal(model[4].weight, ref[4].weight)  # skipped: still FP32
    expected = groupwise_bytes(quantize_groupwise(ref[0].weight, 4, 32)) + groupwise_bytes(
        quantize_groupwise(ref[2].weight, 4, 32))
    assert report.bytes == expected and report.bits_per_weight == pytest.approx(4 + 20 / 32)
    assert all(r.output_error is None for r in report.layers)


def test_sequential_gptq_calibrates_each_layer_on_the_partially_quantized_model():
    model, ref, calib = _mlp(), _mlp(), _calibration()
    report = quantize_linears(model, "gptq", bits=3, group_size=32, calibration=calib, skip=(), progress=False)
    # by hand: layer 0 on the raw inputs; layer 2 on the inputs produced by the model with layer 0 quantized
    manual = copy.deepcopy(ref)
    x0 = torch.cat(calib)
    with torch.no_grad():
        manual[0].weight.copy_(gptq_quantize(ref[0].weight, hessian(x0), 3, 32)[0])
        x2 = manual[1](manual[0](x0))
        manual[2].weight.copy_(gptq_quantize(ref[2].weight, hessian(x2), 3, 32)[0])
    torch.testing.assert_close(model[0].weight, manual[0].weight, rtol=0, atol=0)
    torch.testing.assert_close(model[2].weight, manual[2].weight, rtol=1e-6, atol=1e-7)
    assert all(r.output_error is not None and r.output_error > 0 for r in report.layers)
    held_out = _calibration(seed=1)
    rtn = _mlp()
    quantize_linears(rtn, "rtn", bits=3, group_size=32, skip=(), progress=False)
    assert _out_err(model, ref, held_out) < _out_err(rtn, ref, held_out)


def test_one_pass_calibration_uses_fp32_inputs_and_awq_beats_rtn():
    model, ref, calib = _mlp(), _mlp(), _calibration()
    x = capture_inputs(ref, ["2"], calib)["2"]
    with torch.no_grad():
        torch.testing.assert_close(x, ref[1](ref[0](torch.cat(calib))))
    report = quantize_linears(model, "awq", bits=3, group_size=32, calibration=calib, sequential=False,
                              progress=False)
    assert all(0 <= r.extra["alpha"] < 1 for r in report.layers)
    rtn = _mlp()
    quantize_linears(rtn, "rtn", bits=3, group_size=32, progress=False)
    assert _out_err(model, ref, calib) <= _out_err(rtn, ref, calib)


def test_nf4_method_uses_double_quantization():
    model, ref = _mlp(), _mlp()
    report = quantize_linears(model, "nf4", bits=4, group_size=64, skip=("4",), progress=False)
    dq = nf4_double_quantize(ref[0].weight, 64)
    assert torch.equal(model[0].weight, dq.dequantize())
    assert report.layers[0].bytes == dq.nbytes()


def test_w8a8_methods_on_outlier_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32))
    x = torch.randn(128, 64)
    x[:, [5, 40]] *= 40  # outlier channels
    errs = {}
    for method in ("w8a8", "smoothquant", "llm_int8"):
        m = copy.deepcopy(model)
        info = w8a8_linears(m, method, calibration=[x])
        assert info["0"]["outlier_channels"] == 2
        errs[method] = _out_err(m, model, [x])
    assert errs["smoothquant"] < errs["w8a8"] / 2 and errs["llm_int8"] < errs["w8a8"] / 5


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="calibration is empty: method='gptq'"):
        quantize_linears(_mlp(), "gptq", calibration=[], progress=False)
    with pytest.raises(ValueError, match="calibration is empty: method='awq'"):
        quantize_linears(_mlp(), "awq", progress=False)
    with pytest.raises(ValueError, match="method='hqq'"):
        quantize_linears(_mlp(), "hqq", progress=False)
    with pytest.raises(ValueError, match="bits=3"):
        quantize_linears(_mlp(), "nf4", bits=3, progress=False)
    with pytest.raises(ValueError, match="group_size=48 does not divide in_features=64"):
        quantize_linears(_mlp(), "rtn", group_size=48, progress=False)
    with pytest.raises(ValueError, match="calibration is empty: method='smoothquant'"):
        w8a8_linears(_mlp(), "smoothquant")
