"""AWQ: the scale formula by hand, the grid search against a brute-force float64 search, exact FP32
equivalence of the scale migration (explicit and folded into a LayerNorm / a previous Linear), error vs RTN."""
import pytest
import torch
from torch import nn

from coursekit.llm.awq import activation_scale, awq_channel_scales, awq_quantize, awq_search
from coursekit.llm.gptq import layer_error
from coursekit.llm.groupwise import fake_quantize_groupwise, quantize_groupwise
from coursekit.llm.scaling import fold_input_scales, scaled_linear


def _salient_layer(seed=0, n=512, d_in=128, d_out=32):
    """Inputs where 6 channels are 20x larger than the rest (AWQ's salient channels), a Gaussian weight."""
    g = torch.Generator().manual_seed(seed)
    gain = torch.ones(d_in)
    gain[torch.randperm(d_in, generator=g)[:6]] = 20.0
    x = torch.randn(n, d_in, generator=g) * gain
    return x, torch.randn(d_out, d_in, generator=g) * 0.05


def test_channel_scales_hand_computed():
    act = torch.tensor([1.0, 4.0, 16.0])
    s = awq_channel_scales(act, 0.5)  # [1, 2, 4] / sqrt(4 * 1)
    torch.testing.assert_close(s, torch.tensor([0.5, 1.0, 2.0]))
    assert torch.equal(awq_channel_scales(act, 0.0), torch.ones(3))
    x = torch.tensor([[1.0, -2.0], [-3.0, 0.0]])
    torch.testing.assert_close(activation_scale([x[:1], x[1:]]), torch.tensor([2.0, 1.0]))


def test_grid_search_matches_brute_force_float64():
    x, w = _salient_layer()
    found = awq_search(w, x, 3, 32, n_grid=10)
    act = x.double().abs().mean(0)
    ref_losses = []
    for i in range(10):
        s = act.pow(i / 10).clamp(min=1e-4)
        s = (s / (s.max() * s.min()).sqrt()).float()
        w_eff = fake_quantize_groupwise(w * s, 3, 32).double() / s.double()
        ref_losses.append(float((x.double() @ (w_eff - w.double()).T).pow(2).mean()))
    torch.testing.assert_close(torch.tensor(found["losses"]), torch.tensor(ref_losses), rtol=1e-4, atol=0)
    assert found["alpha"] == min(range(10), key=ref_losses.__getitem__) / 10
    assert found["alpha"] > 0  # salient channels: scaling helps
    rtn = ref_losses[0]  # alpha = 0 is RTN
    assert min(ref_losses) < 0.8 * rtn


@pytest.mark.parametrize("bits", [4, 3])
def test_awq_beats_rtn_on_held_out_inputs(bits):
    x, w = _salient_layer(n=1024)
    calib, held_out = x[:512], x[512:]
    w_hat, gq, scales, alpha = awq_quantize(w, calib, bits, 32)
    assert 0 < alpha < 1
    rtn = layer_error(held_out, w, quantize_groupwise(w, bits, 32).dequantize())
    awq = layer_error(held_out, w, w_hat)
    assert awq < 0.85 * rtn
    # what is stored is Q(W diag(s)); w_hat is that divided by s (the 1/s folded into the input)
    torch.testing.assert_close(w_hat * scales, gq.dequantize(), rtol=1e-6, atol=1e-7)


def test_scale_migration_is_exact_before_quantization():
    x, w = _salient_layer(d_out=16)
    s = awq_channel_scales(activation_scale(x), 0.7)
    lin = nn.Linear(128, 16).double()
    with torch.no_grad():
        lin.weight.copy_(w.double())
    scaled = scaled_linear(lin, s.double())
    torch.testing.assert_close(scaled(x.double()), lin(x.double()), rtol=1e-12, atol=1e-12)
    lin32 = nn.Linear(128, 16)
    torch.testing.assert_close(scaled_linear(lin32, s)(x), lin32(x), rtol=1e-5, atol=1e-5)


def test_fold_into_layernorm_and_previous_linear_is_exact():
    torch.manual_seed(0)
    x = torch.randn(20, 12, dtype=torch.float64)
    ln, q, k = nn.LayerNorm(12).double(), nn.Linear(12, 5).double(), nn.Linear(12, 7).double()
    with torch.no_grad():
        ln.weight.uniform_(0.5, 2.0)
        ln.bias.uniform_(-1, 1)
    ref = (q(ln(x)), k(ln(x)))
    s = torch.rand(12, dtype=torch.float64) * 3 + 0.1
    fold_input_scales(ln, [q, k], s)
    torch.testing.assert_close(q(ln(x)), ref[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(k(ln(x)), ref[1], rtol=1e-12, atol=1e-12)
    fc1, fc2 = nn.Linear(12, 9).double(), nn.Linear(9, 4).double()
    ref = fc2(fc1(x))
    fold_input_scales(fc1, fc2, torch.rand(9, dtype=torch.float64) + 0.5)
    torch.testing.assert_close(fc2(fc1(x)), ref, rtol=1e-12, atol=1e-12)


def test_bad_input_names_the_argument():
    x, w = _salient_layer(n=8)
    with pytest.raises(ValueError, match="inputs is empty"):
        awq_quantize(w, [], 4, 32)
    with pytest.raises(ValueError, match="inputs is empty"):
        awq_quantize(w, torch.empty(0, 128), 4, 32)
    with pytest.raises(ValueError, match="in_features=128"):
        awq_quantize(w, torch.randn(4, 64), 4, 32)
    with pytest.raises(ValueError, match="bits=6"):
        awq_quantize(w, x, 6, 32)
    with pytest.raises(ValueError, match="group_size=48"):
        awq_quantize(w, x, 4, 48)
    with pytest.raises(ValueError, match="alpha"):
        awq_channel_scales(torch.ones(3), 1.5)
    with pytest.raises(ValueError, match="scales must be finite and > 0"):
        fold_input_scales(nn.LayerNorm(3), nn.Linear(3, 2), torch.tensor([1.0, 0.0, 1.0]))
