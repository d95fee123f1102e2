"""SmoothQuant's alpha chosen on calibration data (``coursekit.llm.apply.smoothquant_alpha``): its per-alpha
errors against a float64 SmoothQuant W8A8 written out here, the choice beats plain W8A8 on held-out inputs with
outlier channels, and only the calibration inputs decide."""
import copy

import pytest
import torch
from torch import nn

from coursekit.llm.apply import output_error, smoothquant_alpha, w8a8_linears

OUTLIER_DIMS = (3, 17, 40)
GRID = (0.3, 0.5, 0.7, 0.9)


def _inputs(seed, n=64, d_in=64, magnitude=30.0, dims=OUTLIER_DIMS):
    """Activations like MiniLM's: a few hidden dimensions reach |x| ~ magnitude in every token, the rest ~N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    for j in dims:
        x[:, j] = magnitude * (0.5 + torch.rand(n, generator=g)) * torch.sign(torch.randn(n, generator=g))
    return x


def _linear(seed=0, d_in=64, d_out=32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, d_out))


def _reference_errors(lin: nn.Linear, batches, alphas):
    """Float64 SmoothQuant W8A8 (eq. 4 scales from the absmax over all batches, per-tensor dynamic INT8
    activations per batch, per-output-channel INT8 weights): relative output error for each alpha."""
    w, b = lin.weight.detach().double(), lin.bias.detach().double()
    amax = torch.cat(batches).double().abs().amax(dim=0)
    errors = {}
    for alpha in alphas:
        s = amax.pow(alpha) / w.abs().amax(dim=0).pow(1 - alpha)
        ws = w * s
        cw = ws.abs().amax(dim=1, keepdim=True) / 127
        num = den = 0.0
        for x in batches:
            xs = x.double() / s
            cx = xs.abs().max() / 127
            y = (torch.round(xs / cx) @ torch.round(ws / cw).T) * cx * cw.T + b
            ref = x.double() @ w.T + b
            num += float(((y - ref) ** 2).sum())
            den += float((ref ** 2).sum())
        errors[alpha] = (num / den) ** 0.5
    return errors


def _plain_w8a8_error(model, batches):
    plain = copy.deepcopy(model)
    w8a8_linears(plain, "w8a8")
    return output_error(plain, model, batches)


def test_errors_match_float64_reference_on_calibration():
    model = _linear()
    calibration = [_inputs(s) for s in (1, 2)]
    best, errors = smoothquant_alpha(model, calibration, alphas=GRID)
    ref = _reference_errors(model[0], calibration, GRID)
    assert list(errors) == list(GRID)
    for alpha in GRID:
        assert errors[alpha] == pytest.approx(ref[alpha], rel=1e-3)
    assert best == min(ref, key=ref.get)


def test_chosen_alpha_beats_plain_w8a8_on_held_out_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48), nn.Linear(48, 16))
    calibration = [_inputs(s) for s in (1, 2, 3)]
    evaluation = [_inputs(s) for s in (10, 11)]
    best, errors = smoothquant_alpha(model, calibration, alphas=GRID)
    assert errors[best] == min(errors.values())
    assert errors[best] < 0.75 * _plain_w8a8_error(model, calibration)
    chosen = copy.deepcopy(model)
    w8a8_linears(chosen, "smoothquant", calibration, alpha=best)
    assert output_error(chosen, model, evaluation) < 0.75 * _plain_w8a8_error(model, evaluation)


def test_only_calibration_decides_and_model_is_unchanged():
    model = _linear(seed=1)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    strong = [_inputs(s, magnitude=60.0) for s in (1, 2)]
    weak = [_inputs(s, magnitude=3.0) for s in (1, 2)]
    best_strong, err_strong = smoothquant_alpha(model, strong, alphas=GRID)
    best_weak, err_weak = smoothquant_alpha(model, weak, alphas=GRID)
    # each choice is the argmin of the float64 reference on ITS calibration set, whatever is evaluated later
    for best, errors, batches in ((best_strong, err_strong, strong), (best_weak, err_weak, weak)):
        ref = _reference_errors(model[0], batches, GRID)
        assert best == min(ref, key=ref.get)
        assert errors == pytest.approx(ref, rel=1e-3)
    assert best_strong != best_weak  # so the calibration set (and nothing else) moved the choice
    assert smoothquant_alpha(model, strong, alphas=GRID) == (best_strong, err_strong)  # deterministic
    assert model.training and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(type(m) is nn.Linear for m in model)


def test_bad_input_names_the_argument():
    model = _linear()
    with pytest.raises(ValueError, match="calibration is empty"):
        smoothquant_alpha(model, [])
    with pytest.raises(ValueError, match="alphas=1.5"):
        smoothquant_alpha(model, [_inputs(1)], alphas=(0.5, 1.5))
    with pytest.raises(ValueError, match="alphas is empty"):
        smoothquant_alpha(model, [_inputs(1)], alphas=())
    with pytest.raises(TypeError, match="output must be a tensor"):
        smoothquant_alpha(model, [_inputs(1)], forward=lambda m, b: [m(b), "not a tensor"][1])
