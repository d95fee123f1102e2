"""quantize_model, the fake-quant modules and the integer-only path."""
import copy

import pytest
import torch
from torch import nn

from coursekit.quant import integer as I
from coursekit.quant.modules import FakeQuantizer, QuantConv, QuantLinear
from coursekit.quant.primitives import fake_quantize
from coursekit.quant.ptq import QuantConfig, quantize_model


def _cnn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 32),
                          nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2)
    return model.eval()


def _data(n=4, batch=32, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, 8, 8, generator=gen) for _ in range(n)]


@pytest.mark.parametrize("config", [
    QuantConfig(),
    QuantConfig(granularity="per_tensor", symmetric=False),
    QuantConfig(mode="dynamic"),
    QuantConfig(mode="weight_only", weight_bits=4),
    QuantConfig(observer="entropy"), QuantConfig(observer="percentile"), QuantConfig(observer="mse"),
    QuantConfig(weight_observer="mse", rounding="onnx"),
])
def test_quantize_model_close_to_float(config):
    model, data = _cnn(), _data()
    before = copy.deepcopy(model.state_dict())
    qmodel = quantize_model(model, config, data)
    for k, v in model.state_dict().items():  # input model untouched
        assert torch.equal(v, before[k])
    assert isinstance(model[0], nn.Conv2d) and isinstance(qmodel[0], QuantConv)
    x = _data(1, 64, seed=9)[0]
    ref, out = model(x), qmodel(x)
    tol = 0.25 if config.weight_bits == 4 or config.observer == "entropy" else 0.06
    assert (out - ref).abs().max() < tol * ref.abs().max()
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.85
    summary = qmodel.quant_summary
    assert [r.name for r in summary.layers] == ["0", "3", "6", "8"]
    assert "quantization" in str(summary) and summary.to_dict()["config"]["mode"] == config.mode


def test_static_weights_and_activations_take_grid_values():
    model, data = _cnn(), _data()
    qmodel = quantize_model(model, QuantConfig(), data)
    layer = qmodel[6]
    wq = layer.weight_quantizer
    w = layer.quantized_weight()
    codes = w / wq.scale.reshape(-1, 1)
    assert torch.allclose(codes, codes.round(), atol=1e-3)  # weights lie on the per-channel grid
    assert (codes.round().abs() <= 128).all()
    aq = layer.input_quantizer
    h = qmodel[:6](data[0])
    xq = aq(h)
    assert torch.equal(xq, fake_quantize(h, aq.scale, aq.zero_point, 0, 255))
    assert len(torch.unique(xq)) <= 256


def test_per_group_weight_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    with torch.no_grad():  # input features of very different magnitudes: where per-group scales pay off
        model[0].weight *= torch.logspace(-2, 0, 64)
    cfg = QuantConfig(mode="weight_only", weight_bits=4, granularity="per_group", group_size=16)
    qmodel = quantize_model(model, cfg)
    assert qmodel[0].weight_quantizer.scale.shape == (32, 4)
    x = torch.randn(8, 64)
    assert (qmodel(x) - model(x)).abs().max() < 0.1
    per_tensor = quantize_model(model, QuantConfig(mode="weight_only", weight_bits=4, granularity="per_tensor"))
    err_g = (qmodel[0].quantized_weight() - model[0].weight).pow(2).mean()
    err_t = (per_tensor[0].quantized_weight() - model[0].weight).pow(2).mean()
    assert err_g < err_t


def test_dynamic_uses_batch_range():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 4)).eval()
    qmodel = quantize_model(model, QuantConfig(mode="dynamic"))
    aq = qmodel[0].input_quantizer
    assert aq.dynamic
    x = torch.randn(4, 16) * 10
    lo, hi = torch.aminmax(x)
    scale = (hi - lo) / 255
    assert torch.allclose(aq(x), x, atol=float(scale) / 2 + 1e-6)


def test_skip_and_summary():
    model, data = _cnn(), _data(1)
    qmodel = quantize_model(model, QuantConfig(skip=("8",)), data)
    assert isinstance(qmodel[8], nn.Linear) and qmodel.quant_summary.skipped == ["8"]


# ----------------------------------------------------------------------------------------- integer path
def test_quantize_multiplier():
    for m in [0.3, 1e-3, 0.5, 0.999999999, 1.0, 2.5, 1 / 3]:
        m0, shift = I.quantize_multiplier(m)
        assert 2**30 <= int(m0) < 2**31
        approx = int(m0) * 2.0 ** (-31 - int(shift))
        assert abs(approx - m) <= m * 2**-30
    m0, shift = I.quantize_multiplier(torch.tensor([0.25, 0.75]))
    assert m0.tolist() == [2**30, 3 * 2**29] and shift.tolist() == [1, 0]
    with pytest.raises(ValueError, match="real_multiplier"):
        I.quantize_multiplier(0.0)


def test_requantize_rounding_hand_computed():
    m0, shift = I.quantize_multiplier(0.5)
    acc = torch.tensor([3, -3, 4, 1000, -1000], dtype=torch.int32)
    out = I.requantize(acc, m0, shift, 10, -128, 127)
    assert out.tolist() == [12, 9, 12, 127, -128]  # 1.5 -> 2, -1.5 -> -1 (ties up), saturation


@pytest.mark.parametrize("granularity", ["per_channel", "per_tensor"])
def test_integer_layers_within_one_step_of_fake_quant(granularity):
    model, data = _cnn(), _data()
    qmodel = quantize_model(model, QuantConfig(granularity=granularity, quantize_outputs=True), data)
    x = _data(1, 64, seed=5)[0]
    for idx in (0, 3, 6, 8):
        layer = qmodel[idx]
        inp = qmodel[:idx](x)
        int_layer = I.to_integer(layer)
        assert int_layer.weight_q.dtype == torch.int8 and int_layer.bias_q.dtype == torch.int32
        ref, out = layer(inp), int_layer(inp)
        steps = (ref - out).abs() / int_layer.out_scale
        assert steps.max() <= 1.0 + 1e-4
        assert (steps > 0.5).float().mean() < 0.01  # almost always bit-exact


def test_integer_linear_functional_matches_module():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8)).eval()
    qmodel = quantize_model(model, QuantConfig(quantize_outputs=True), [torch.randn(32, 16)])
    mod = I.IntegerLinear(qmodel[0])
    x = torch.randn(5, 16)
    xq = mod.quantize_input(x)
    out = I.integer_linear(xq, mod.in_zp, mod.weight_q, mod.bias_q, mod.m0, mod.shift, mod.out_zp, 0, 255)
    assert torch.equal(out, mod.forward_int(xq))


def test_integer_accumulators_equal_float64_conv_and_matmul():
    """The one integer matmul behind IntegerConv2d / IntegerLinear / integer_linear against torch's float64
    conv2d and matmul on the same integer values (exact: every sum is far below 2^53)."""
    model, data = _cnn(), _data()
    qmodel = quantize_model(model, QuantConfig(quantize_outputs=True), data)
    x = _data(1, 16, seed=3)[0]
    for idx in (0, 3, 6, 8):
        layer, inp = qmodel[idx], qmodel[:idx](x)
        int_layer = I.to_integer(layer)
        centred = int_layer.quantize_input(inp).to(torch.int64) - int_layer.in_zp
        w, b = int_layer.weight_q.double(), int_layer.bias_q.double()
        if isinstance(int_layer, I.IntegerConv2d):
            ref = nn.functional.conv2d(centred.double(), w, b, int_layer.stride, int_layer.padding,
                                       int_layer.dilation)
        else:
            ref = centred.double() @ w.T + b
        acc = int_layer._accumulate(centred)
        assert acc.dtype == torch.int32 and torch.equal(acc.to(torch.int64), ref.to(torch.int64))


def test_integer_matmul_raises_on_int32_overflow_instead_of_wrapping():
    a = torch.full((1, 2), 40000, dtype=torch.int32)
    b = torch.full((2, 1), 30000, dtype=torch.int32)                  # 2 * 1.2e9 = 2.4e9 > 2^31 - 1
    assert (a @ b).item() < 0                                          # what a plain int32 matmul does
    with pytest.raises(OverflowError, match="int32 accumulator overflow"):
        I.integer_matmul(a, b)
    with pytest.raises(OverflowError, match="int32"):
        I.integer_linear(a, 0, b.T, None, torch.tensor(2**30), torch.tensor(0), 0)
    ok = I.integer_matmul(a, b, torch.tensor([-(2**31)]))              # a bias that brings the sum back in range
    assert ok.item() == 2_400_000_000 - 2**31                          # no int32 intermediate wrapped
    edge = I.integer_matmul(torch.tensor([[2**15]]), torch.tensor([[2**16 - 1]]), torch.tensor([2**15 - 1]))
    assert edge.item() == 2**31 - 1 and edge.dtype == torch.int32     # the largest int32 still fits
    with pytest.raises(TypeError, match="a must be an integer tensor"):
        I.integer_matmul(torch.ones(1, 1), b[:1])


def test_integer_needs_output_quantizer():
    model, data = _cnn(), _data(1)
    qmodel = quantize_model(model, QuantConfig(), data)
    with pytest.raises(ValueError, match="quantize_outputs"):
        I.to_integer(qmodel[6])


# ----------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,match", [
    ({"weight_bits": 1}, "weight_bits"), ({"act_bits": 17}, "act_bits"), ({"mode": "qat"}, "mode"),
    ({"granularity": "per_row"}, "granularity"), ({"granularity": "per_group"}, "group_size"),
    ({"observer": "kl"}, "observer"), ({"group_size": 32}, "group_size"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantConfig(**kwargs)


def test_quantize_model_errors():
    model = _cnn()
    with pytest.raises(ValueError, match="calibration_data"):
        quantize_model(model, QuantConfig())
    with pytest.raises(ValueError, match="empty"):
        quantize_model(model, QuantConfig(), [])
    bad = _data(1)[0]
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN/inf"):
        quantize_model(model, QuantConfig(), [bad])
    with pytest.raises(ValueError, match="no quantizable layers"):
        quantize_model(nn.Sequential(nn.ReLU(), nn.Tanh()), QuantConfig(mode="dynamic"))
    with pytest.raises(ValueError, match="no quantizable layers"):
        quantize_model(nn.Sequential(nn.Linear(2, 2)), QuantConfig(mode="dynamic", skip=("0",)))
    with pytest.raises(ValueError, match="does not divide"):
        quantize_model(nn.Sequential(nn.Linear(12, 2)),
                       QuantConfig(mode="weight_only", granularity="per_group", group_size=5))
    with pytest.raises(TypeError, match="config"):
        quantize_model(model, {"mode": "static"})


def test_fake_quantizer_module_errors():
    with pytest.raises(ValueError, match="bits"):
        FakeQuantizer(bits=20)
    with pytest.raises(ValueError, match="not both"):
        FakeQuantizer(axis=0, group_size=8)
    with pytest.raises(TypeError, match="QuantLinear wraps"):
        QuantLinear(nn.Conv2d(1, 1, 1))


def test_calibration_progress_bar_only_on_a_terminal_and_never_on_stderr(capfd, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    model, data = _cnn(), _data(2)
    quantize_model(model, QuantConfig(), data, progress=True)       # stdout is captured: not a terminal
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    quantize_model(model, QuantConfig(), data, progress=True)
    quantize_model(model, QuantConfig(), data, progress=False)
    monkeypatch.undo()
    shown = terminal.getvalue()
    assert "calibrating" in shown and "2/2" in shown and shown.count("\n") == 1      # one bar: progress=False is silent
    assert capfd.readouterr().err == ""
