"""IntegerNet: a fully int8 chain, checked against float torch layers, the FP32 model and bad inputs."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from coursekit.data import load_dataset
from coursekit.quant.integer_net import IntegerNet
from coursekit.train import evaluate, pretrained, top1_agreement


@pytest.fixture(scope="module")
def lenet():
    model = pretrained("lenet", "digits", progress=False, fast=True).eval()
    calibration = [load_dataset("digits", "train", fast=True).x[:256]]
    test = load_dataset("digits", "test", fast=True)
    return model, calibration, test


def _codes_per_layer(net, x):
    """Input codes and output codes of every Conv/Linear step, from the integer run."""
    q, seen = net.quantize_input(x), []
    for kind, module, relu in zip(net.kinds, net.steps, net.relu):
        if kind == "layer":
            out = module.forward_int(q).to(torch.int64)
            out = torch.clamp(out, min=module.out_zp) if relu else out
            seen.append((module, relu, q, out))
            q = out
        elif kind == "maxpool":
            q = F.max_pool2d(q.float(), module.kernel_size).to(torch.int64)
        else:
            q = module(q)
    return seen


def test_each_layer_is_within_one_step_of_float_torch(lenet):
    """Given the same input codes, every integer layer matches a float torch conv/linear on the dequantized
    int8 weights with a float bias, quantized once at the end: at most 1 output step apart, and mostly equal."""
    model, calibration, test = lenet
    net = IntegerNet.from_float(model, calibration)
    for module, relu, q_in, q_out in _codes_per_layer(net, test.x):
        x = (q_in - module.in_zp).double() * module.in_scale
        w = module.weight_q.double() * module.w_scale.double().reshape(-1, *[1] * (module.weight_q.dim() - 1))
        b = module.bias_q.double() * module.in_scale * module.w_scale.double()
        y = F.conv2d(x, w, b, padding=module.padding) if module.weight_q.dim() == 4 else F.linear(x, w, b)
        y = torch.relu(y) if relu else y
        expected = torch.clamp(torch.round(y / module.out_scale) + module.out_zp, -128, 127)
        diff = (expected - q_out).abs()
        assert diff.max() <= 1
        assert (diff == 0).double().mean() > 0.99


def test_accuracy_and_agreement_with_fp32(lenet):
    model, calibration, test = lenet
    loader = [(test.x, test.y)]
    net = IntegerNet.from_float(model, calibration)
    fp32, int8 = evaluate(model, loader)["accuracy"], evaluate(net, loader)["accuracy"]
    assert abs(int8 - fp32) <= 0.01
    assert top1_agreement(net, model, loader) >= 0.98
    torch_net = IntegerNet.from_float(model, calibration, convention="torch")
    assert abs(evaluate(torch_net, loader)["accuracy"] - fp32) <= 0.01


def test_codes_and_params(lenet):
    model, calibration, test = lenet
    net = IntegerNet.from_float(model, calibration)
    codes = net.forward_int(net.quantize_input(test.x[:16]))
    assert codes.dtype == torch.int64 and codes.shape == (16, 10)
    assert codes.min() >= -128 and codes.max() <= 127
    p = net.params()
    assert [layer["kind"] for layer in p["layers"]] == ["conv", "conv", "linear", "linear", "linear"]
    assert [layer["relu"] for layer in p["layers"]] == [True, True, True, True, False]
    assert [layer["pool"] for layer in p["layers"]] == [2, 2, None, None, None]
    # the output grid of each layer is the input grid of the next: nothing is dequantized in between
    for a, b in zip(p["layers"], p["layers"][1:]):
        assert (a["out_scale"], a["out_zp"]) == (b["in_scale"], b["in_zp"])
    # ReLU ranges start at 0: zero point qmin, so the requantization clamp is the ReLU
    assert all(layer["out_zp"] == -128 for layer in p["layers"][:4])
    # ONNX convention: S = (max - min) / 255 from the FP32 input range [0, 1], weights on [-127, 127]
    lo, hi = float(calibration[0].min()), float(calibration[0].max())
    assert p["input_scale"] == float(torch.tensor((hi - min(lo, 0.0)) / 255, dtype=torch.float32))
    assert all(layer["weight_q"].abs().max() <= 127 for layer in p["layers"])
    w = model.classifier[1].weight.detach()
    assert torch.equal(p["layers"][2]["w_scale"], (w.abs().amax(1).double() / 127).float())


def test_forward_is_dequantized_codes(lenet):
    model, calibration, test = lenet
    net = IntegerNet.from_float(model, calibration)
    codes = net.forward_int(net.quantize_input(test.x[:8]))
    assert torch.equal(net(test.x[:8]), (codes - net.last.out_zp).float() * net.last.out_scale)


def test_bad_inputs():
    x = [torch.randn(4, 6)]
    with pytest.raises(ValueError, match="Sigmoid"):
        IntegerNet.from_float(nn.Sequential(nn.Linear(6, 3), nn.Sigmoid()), x)
    with pytest.raises(ValueError, match="calibration"):
        IntegerNet.from_float(nn.Sequential(nn.Linear(6, 3)), [])
    with pytest.raises(TypeError, match="model"):
        IntegerNet.from_float("not a model", x)
    with pytest.raises(ValueError, match="convention"):
        IntegerNet.from_float(nn.Sequential(nn.Linear(6, 3)), x, convention="tflite")
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        IntegerNet.from_float(nn.Sequential(nn.ReLU()), x)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x):
            return x + self.fc(x)

    with pytest.raises(ValueError, match="not a chain"):
        IntegerNet.from_float(Residual(), x)
