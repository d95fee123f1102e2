"""Quantization-aware training: STE and LSQ gradients against torch's fake-quant ops, prepare_qat / convert."""
import pytest
import torch
from torch import nn

from coursekit.export import export_onnx, parity
from coursekit.quant import (
    FakeQuantSTE,
    LSQQuantizer,
    QATConfig,
    QATConvBn,
    QATLayer,
    QuantConfig,
    QuantConv,
    QuantLinear,
    STEQuantizer,
    convert,
    fake_quantize,
    fake_quantize_ste,
    freeze_bn_stats,
    lsq_fake_quantize,
    lsq_grad_scale,
    prepare_qat,
    quantize_model,
    step_sizes,
)

RANGES = [(-128, 127), (0, 255), (-8, 7), (0, 15), (-2, 1)]


def _edge_values(scale, zp, qmin, qmax):
    """Values on and next to the rounding ties and the clamp boundaries (code +- 0.5 around qmin and qmax)."""
    codes = torch.tensor([qmin - 1.5, qmin - 0.5, qmin - 0.4999, qmin, qmin + 0.5, 0.5, -0.5, 1.5, qmax - 0.5,
                          qmax, qmax + 0.4999, qmax + 0.5, qmax + 1.5], dtype=torch.float32)
    x = (codes - zp) * scale
    return torch.cat([x, torch.nextafter(x, x + 1), torch.nextafter(x, x - 1)])


@pytest.mark.parametrize("qmin,qmax", RANGES)
def test_ste_matches_torch_per_tensor(qmin, qmax):
    gen = torch.Generator().manual_seed(qmax)
    for trial in range(10):
        scale = float(torch.rand(1, generator=gen) * 0.2 + 0.003)
        zp = int(torch.randint(qmin, qmax + 1, (1,), generator=gen)) if qmin == 0 else 0
        x = torch.cat([torch.randn(500, generator=gen) * scale * (qmax - qmin) / 3, _edge_values(scale, zp, qmin, qmax)])
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        g = torch.randn(x.shape, generator=gen)
        y1 = fake_quantize_ste(x1, scale, zp, qmin, qmax)
        y2 = torch.fake_quantize_per_tensor_affine(x2, scale, zp, qmin, qmax)
        (y1 * g).sum().backward()
        (y2 * g).sum().backward()
        assert torch.equal(y1, y2) and torch.equal(y1, fake_quantize(x, scale, zp, qmin, qmax))
        assert torch.equal(x1.grad, x2.grad), trial


@pytest.mark.parametrize("qmin,qmax", RANGES)
def test_ste_matches_torch_per_channel(qmin, qmax):
    gen = torch.Generator().manual_seed(7 + qmax)
    x = torch.randn(6, 4, 3, 3, generator=gen)
    scale = torch.rand(6, generator=gen) * 0.1 + 0.01
    zp = torch.randint(qmin, qmax + 1, (6,), generator=gen, dtype=torch.int32) if qmin == 0 else \
        torch.zeros(6, dtype=torch.int32)
    for axis in (0, 1):
        s = scale if axis == 0 else scale[:4]
        z = zp if axis == 0 else zp[:4]
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        g = torch.randn(x.shape, generator=gen)
        y1 = fake_quantize_ste(x1, s, z, qmin, qmax, axis=axis)
        y2 = torch.fake_quantize_per_channel_affine(x2, s, z, axis, qmin, qmax)
        (y1 * g).sum().backward()
        (y2 * g).sum().backward()
        assert torch.equal(y1, y2)
        assert torch.equal(x1.grad, x2.grad)


def test_ste_mask_is_on_the_rounded_code():
    # scale 0.5, int8: 63.74 -> code 127.48 -> 127 (inside), 63.9 -> 128 (clamped): the bank's ch03-ste-mask case
    x = torch.tensor([63.9, 63.74, -64.3, 63.5, -64.0], requires_grad=True)
    FakeQuantSTE.apply(x, torch.tensor(0.5), 0, -128, 127).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0, 1.0, 1.0]
    import coursekit.quant.lsq
    import coursekit.quant.primitives
    assert FakeQuantSTE is coursekit.quant.lsq.FakeQuantSTE is coursekit.quant.primitives.FakeQuantSTE   # one copy
    y = torch.tensor([63.9, 63.74], requires_grad=True)
    fake_quantize(y, 0.5, 0, -128, 127).sum().backward()              # fake_quantize's gradient is the same STE
    assert y.grad.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("qmin,qmax", [(-128, 127), (-8, 7), (0, 15), (-2, 1), (0, 3)])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_lsq_gradients_match_torch_learnable_fake_quant(qmin, qmax, axis):
    gen = torch.Generator().manual_seed(qmax + (axis or 0))
    shape = (8, 5, 3, 3)
    for trial in range(8):
        x = torch.randn(shape, generator=gen) * 2
        channels = 1 if axis is None else shape[axis]
        step = torch.rand(channels, generator=gen) * 0.2 + 0.01
        if trial == 0 and axis is None:  # exact ties and clamp boundaries
            edge = _edge_values(float(step[0]), 0, qmin, qmax)
            x = x.flatten()
            x[: edge.numel()] = edge
            x = x.reshape(shape)
        factor = float(torch.rand(1, generator=gen)) + 0.01
        g = torch.randn(shape, generator=gen)
        x1, s1 = x.clone().requires_grad_(), step.clone().requires_grad_()
        x2, s2 = x.clone().requires_grad_(), step.clone().requires_grad_()
        y1 = lsq_fake_quantize(x1, s1, qmin, qmax, factor, axis)
        if axis is None:
            y2 = torch._fake_quantize_learnable_per_tensor_affine(x2, s2, torch.zeros(1), qmin, qmax, factor)
        else:
            y2 = torch._fake_quantize_learnable_per_channel_affine(x2, s2, torch.zeros(channels), axis, qmin, qmax,
                                                                   factor)
        (y1 * g).sum().backward()
        (y2 * g).sum().backward()
        assert torch.equal(y1, y2)
        assert torch.equal(x1.grad, x2.grad)
        assert torch.equal(s1.grad, s2.grad), (trial, (s1.grad - s2.grad).abs().max())


def test_lsq_step_gradient_formula_by_hand():
    # zero point 0, signed int8: x/s = 2.8 -> round 3 -> 3 - 2.8 = 0.2; x = 40, s = 0.25 -> clipped above: qmax = 127
    x = torch.tensor([0.7, 40.0, -40.0])
    step = torch.tensor([0.25], requires_grad=True)
    for i, expected in enumerate([0.2, 127.0, -128.0]):
        step.grad = None
        lsq_fake_quantize(x[i:i + 1], step, -128, 127, 1.0).sum().backward()
        assert step.grad.item() == pytest.approx(expected, abs=1e-5)


def test_lsq_quantizer_init_and_grad_scale():
    w = torch.randn(16, 8, 3, 3)
    q = LSQQuantizer(4, per_channel=True)
    q(w)
    expected = 2 * w.abs().mean(dim=(1, 2, 3)) / 7 ** 0.5  # Esser et al. 2020: 2 mean|w| / sqrt(Qp)
    assert torch.allclose(q.step.detach(), expected)
    assert q.grad_factor(w) == pytest.approx(lsq_grad_scale(8 * 9, 7)) == pytest.approx(1 / (72 * 7) ** 0.5)
    act = LSQQuantizer(8, signed=None, activation=True)
    act(torch.rand(32, 10))  # non-negative data: the unsigned range
    assert (act.qmin, act.qmax) == (0, 255)
    assert act.grad_factor(torch.rand(32, 10)) == pytest.approx(1 / (10 * 255) ** 0.5)


def _cnn(bn=True):
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 6, 3, padding=1, bias=not bn)] + ([nn.BatchNorm2d(6)] if bn else []) + [
        nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 16),
        nn.ReLU(), nn.Linear(16, 10)]
    model = nn.Sequential(*layers)
    if bn:
        with torch.no_grad():
            model[1].running_mean.normal_()
            model[1].running_var.uniform_(0.5, 2)
            model[1].weight.uniform_(0.5, 1.5)
    return model.eval()


def _data(n=4, batch=16, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 1, 8, 8, generator=gen), torch.randint(0, 10, (batch,), generator=gen))
            for _ in range(n)]


@pytest.mark.parametrize("method", ["lsq", "ste"])
@pytest.mark.parametrize("bits", [(8, 8), (4, 8), (2, 4)])
def test_prepare_from_ptq_equals_quantize_model(method, bits):
    """init='ptq': before any training the QAT model *is* chapter 02's PTQ model, and so is its conversion."""
    model, data = _cnn(), _data()
    ptq = quantize_model(model, QuantConfig(weight_bits=bits[0], act_bits=bits[1]), data)
    qat = prepare_qat(model, QATConfig(weight_bits=bits[0], act_bits=bits[1], method=method), data).eval()
    x = _data(1, 64, seed=5)[0][0]
    with torch.no_grad():
        assert torch.equal(qat(x), ptq(x))
        assert torch.equal(convert(qat)(x), ptq(x))


@pytest.mark.parametrize("method,bn", [("lsq", "fold"), ("ste", "fold"), ("lsq", "simulate"), ("ste", "simulate")])
def test_train_then_convert_round_trip(method, bn):
    model, data = _cnn(), _data()
    qat = prepare_qat(model, QATConfig(weight_bits=4, act_bits=4, method=method, bn=bn), data)
    assert isinstance(qat[0], QATConvBn if bn == "simulate" else QATLayer)
    before = step_sizes(qat)
    opt = torch.optim.SGD(qat.parameters(), lr=0.05, momentum=0.9)
    for x, y in data * 3:
        loss = nn.functional.cross_entropy(qat(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if method == "lsq":
        assert not torch.equal(step_sizes(qat)["0"]["weight"], before["0"]["weight"]), "steps must learn"
    freeze_bn_stats(qat)
    qat.eval()
    converted = convert(qat)
    assert isinstance(converted[0], QuantConv) and isinstance(converted[-1], QuantLinear)
    assert not any(isinstance(m, (nn.BatchNorm2d, QATLayer)) for m in converted.modules())
    x = _data(1, 64, seed=9)[0][0]
    with torch.no_grad():
        ref, out = qat(x), converted(x)
    if bn == "fold":
        assert torch.equal(ref, out)
    else:  # BN applied after the conv vs folded into its bias: equal up to float rounding
        assert torch.allclose(ref, out, atol=1e-4, rtol=1e-4)
        assert (ref.argmax(1) == out.argmax(1)).all()
    assert all(not q.calibrating for q in converted.modules() if hasattr(q, "observer_name"))


def test_convert_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    model, data = _cnn(), _data()
    qat = prepare_qat(model, QATConfig(), data)
    converted = convert(qat)
    path = export_onnx(converted, data[0][0], tmp_path / "qat.onnx")
    report = parity(converted, path, [x for x, _ in data])
    assert report["top1_agreement"] >= 0.95 and report["max_abs_error"] < 0.5


def test_policies_and_config():
    cfg = QATConfig(weight_bits=2, act_bits=4, keep_first_last_8bit=True, layer_bits={"4": (6, 6)})
    model = prepare_qat(_cnn(), cfg, _data())
    assert model.qat_bits == {"0": (8, 8), "4": (6, 6), "7": (2, 4), "9": (8, 8)}
    assert model[0].weight_quantizer.bits == 8 and model[7].weight_quantizer.qmin == -2
    skipped = prepare_qat(_cnn(), QATConfig(skip=("9",)), _data())
    assert isinstance(skipped[9], nn.Linear)


def test_clear_errors():
    for bits in (1, 17, 3.5):
        with pytest.raises((ValueError, TypeError), match="bits"):
            QATConfig(weight_bits=bits)
    with pytest.raises(ValueError, match="act_bits"):
        QATConfig(act_bits=0)
    with pytest.raises(ValueError, match="bits"):
        LSQQuantizer(1)
    with pytest.raises(ValueError, match="prepare_qat"):
        convert(_cnn())
    with pytest.raises(ValueError, match="no quantizable layers"):
        prepare_qat(nn.Sequential(nn.ReLU(), nn.Flatten()), QATConfig(init="lsq"))
    with pytest.raises(ValueError, match="calibration_data"):
        prepare_qat(_cnn(), QATConfig())
    with pytest.raises(ValueError, match="channel axis"):
        LSQQuantizer(4, per_channel=True)(torch.randn(10))
    with pytest.raises(ValueError, match="channel axis"):
        STEQuantizer(4, symmetric=True, signed=True, axis=0, track="current")(torch.randn(10))
    with pytest.raises(ValueError, match="method"):
        QATConfig(method="pact")
    with pytest.raises(ValueError, match="never initialised"):
        convert(prepare_qat(_cnn(), QATConfig(init="lsq")))
    with pytest.raises(ValueError, match="step must be > 0"):
        lsq_fake_quantize(torch.randn(3), torch.tensor([0.0]), -8, 7)


def test_lsq_init_without_calibration_happens_on_first_batch():
    qat = prepare_qat(_cnn(), QATConfig(init="lsq", weight_bits=4))
    x, _ = _data(1)[0]
    qat(x)
    assert all(bool(m.input_quantizer.initialized) for m in qat.modules() if isinstance(m, QATLayer))
    assert convert(qat)(x).shape == (16, 10)
