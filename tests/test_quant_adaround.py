"""AdaRound (Nagel et al. 2020): the rectified sigmoid and regulariser by hand, the learned rounding on the
grid, and its output error against round-to-nearest (torch's fake quantization)."""
import itertools

import pytest
import torch
from torch import nn

from coursekit.quant.adaround import (
    adaround_layer,
    beta_schedule,
    init_v,
    rectified_sigmoid,
    round_to_nearest,
    rounding_regularizer,
    weight_scale,
)


def test_rectified_sigmoid_reaches_zero_and_one_and_inverts():
    v = torch.tensor([-20.0, -3.0, 0.0, 3.0, 20.0])
    h = rectified_sigmoid(v)
    assert h[0].item() == 0.0 and h[-1].item() == 1.0          # the stretch makes the ends exact
    assert h[2].item() == pytest.approx(0.5 * 1.2 - 0.1)       # sigmoid(0) (zeta - gamma) + gamma
    rest = torch.linspace(0.01, 0.99, 50)
    assert torch.allclose(rectified_sigmoid(init_v(rest)), rest, atol=1e-5)


def test_regularizer_by_hand():
    v = init_v(torch.tensor([0.25, 0.5, 0.9]))
    want = sum(1 - abs(2 * r - 1) ** 3 for r in (0.25, 0.5, 0.9))
    assert rounding_regularizer(v, 3.0).item() == pytest.approx(want, abs=1e-4)
    assert rounding_regularizer(torch.tensor([-30.0, 30.0]), 2.0).item() == 0.0


def test_beta_schedule():
    betas = [beta_schedule(i, 100, warmup=0.2) for i in range(100)]
    assert betas[0] == betas[19] == 20.0
    assert betas[20] == pytest.approx(20.0) and betas[-1] == pytest.approx(2.0, abs=0.01)
    assert all(a >= b for a, b in itertools.pairwise(betas))


def _torch_rtn(w, bits):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    scale = w.abs().flatten(1).amax(1) / ((qmax - qmin) / 2)    # torch's symmetric observer, signed range
    return scale, torch.fake_quantize_per_channel_affine(w, scale, torch.zeros(len(scale), dtype=torch.int32),
                                                          0, qmin, qmax)


@pytest.mark.parametrize("bits", [2, 4])
def test_linear_layer_rounds_on_the_grid_and_beats_nearest(bits):
    torch.manual_seed(0)
    layer = nn.Linear(32, 16)
    before = layer.weight.detach().clone()
    basis = torch.randn(4, 32)
    x = torch.randn(256, 4) @ basis + 0.1 * torch.randn(256, 32)    # correlated inputs: rounding errors interact
    out = adaround_layer(layer, [x[:128], x[128:]], bits=bits, steps=300)
    assert torch.equal(layer.weight, before)
    scale, rtn = _torch_rtn(before, bits)
    assert torch.allclose(out["scale"], scale, rtol=1e-6)
    assert torch.allclose(out["rtn_weight"], rtn, atol=1e-7) and torch.allclose(weight_scale(before, bits), scale)
    assert torch.allclose(round_to_nearest(before, scale, bits), rtn, atol=1e-7)
    codes = out["weight"] / scale[:, None]
    assert torch.allclose(codes, codes.round(), atol=1e-4)                      # on the grid
    assert ((codes.round() - before / scale[:, None]).abs() < 1 + 1e-4).all()   # floor or ceil of w/s
    ref = nn.functional.linear
    mse = lambda w: (ref(x, w, layer.bias) - ref(x, before, layer.bias)).pow(2).mean().item()
    assert out["mse_rtn"] == pytest.approx(mse(rtn), rel=1e-4)
    assert out["mse_adaround"] == pytest.approx(mse(out["weight"]), rel=1e-4)
    assert out["mse_adaround"] < 0.8 * out["mse_rtn"]
    assert 0 < out["flipped"] < 0.5 and len(out["loss"]) == 300


def test_conv_layer():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    x = torch.randn(32, 3, 6, 6)
    out = adaround_layer(conv, x, bits=3, steps=100)
    assert out["weight"].shape == conv.weight.shape
    assert out["mse_adaround"] <= out["mse_rtn"]


def test_bad_input():
    with pytest.raises(TypeError, match="Linear or nn.Conv"):
        adaround_layer(nn.ReLU(), torch.ones(2, 2))
    with pytest.raises(ValueError, match="empty"):
        adaround_layer(nn.Linear(2, 2), [])
    with pytest.raises(ValueError):
        adaround_layer(nn.Linear(2, 2), torch.ones(2, 2), steps=0)
