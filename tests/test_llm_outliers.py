"""LLM.int8() decomposition and SmoothQuant W8A8 against float64 references written out here, hand-computed
INT8 matmuls, FP32 equivalence of smoothing, and the error reduction on inputs with outlier channels."""
import pytest
import torch
from torch import nn

from coursekit.llm.int8matmul import int8_matmul
from coursekit.llm.outliers import Int8DecomposedLinear, int8_decomposed_matmul, outlier_channels
from coursekit.llm.smoothquant import SmoothW8A8Linear, W8A8Linear, smooth_linear, smooth_scales

OUTLIER_DIMS = (3, 17, 40)


def _outlier_inputs(seed=0, n=96, d_in=64, d_out=32, magnitude=30.0):
    """Activations like MiniLM's: a few hidden dimensions reach |x| ~ 30 in every token, the rest ~N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    for j in OUTLIER_DIMS:
        x[:, j] = magnitude * (0.5 + torch.rand(n, generator=g)) * torch.sign(torch.randn(n, generator=g))
    return x, torch.randn(d_out, d_in, generator=g) * 0.1


def _rel(y, ref):
    y, ref = y.detach().double(), ref.detach().double()
    return float(torch.linalg.norm(y - ref) / torch.linalg.norm(ref))


def _reference_decomposed(x, w, threshold):
    """Float64 LLM.int8(): outlier columns exact, the rest absmax INT8 per row of x and per row of W."""
    x, w = x.double(), w.double()
    mask = (x.abs() > threshold).any(dim=0)
    xr, wr = x[:, ~mask], w[:, ~mask]
    cx = xr.abs().amax(dim=1, keepdim=True) / 127
    cw = wr.abs().amax(dim=1, keepdim=True) / 127
    y = (torch.round(xr / cx) @ torch.round(wr / cw).T) * cx * cw.T
    return y + x[:, mask] @ w[:, mask].T


def test_int8_matmul_hand_computed():
    x = torch.tensor([[4.0, -1.0, 0.52]])
    w = torch.tensor([[0.5, 2.0, -0.9]])
    # c_x = 4/127 -> codes [127, -32, 17]; c_w = 2/127 -> codes [32, 127, -57]; sum = -969
    torch.testing.assert_close(int8_matmul(x, w), torch.tensor([[-969 * 8 / 127**2]]))
    torch.testing.assert_close(int8_matmul(x, w, act="per_tensor", weight="per_tensor"),
                               torch.tensor([[-969 * 8 / 127**2]]))


def test_outlier_channels_found():
    x, _ = _outlier_inputs()
    mask = outlier_channels(x, 6.0)
    assert torch.nonzero(mask).flatten().tolist() == list(OUTLIER_DIMS)
    assert outlier_channels(torch.tensor([[1.0, -7.0], [6.0, 0.0]]), 6.0).tolist() == [False, True]


def test_decomposition_matches_float64_reference():
    x, w = _outlier_inputs()
    y = int8_decomposed_matmul(x, w, threshold=6.0)
    ref = _reference_decomposed(x, w, 6.0)
    assert _rel(y, ref) < 1e-5
    exact = x.double() @ w.double().T
    assert abs(_rel(y, exact) - _rel(ref.float(), exact)) < 1e-5  # the same quantization error
    lin = nn.Linear(64, 32)
    with torch.no_grad():
        lin.weight.copy_(w)
    torch.testing.assert_close(Int8DecomposedLinear(lin)(x), y + lin.bias)


def test_decomposition_cuts_the_error_of_int8_on_outlier_channels():
    x, w = _outlier_inputs()
    exact = x.double() @ w.double().T
    per_tensor = _rel(int8_matmul(x, w, act="per_tensor", weight="per_tensor"), exact)
    vector_wise = _rel(int8_matmul(x, w), exact)
    decomposed = _rel(int8_decomposed_matmul(x, w), exact)
    assert decomposed < per_tensor / 5 and decomposed < vector_wise / 2
    # without outliers there is nothing to decompose: the same as vector-wise INT8
    x_plain, _ = _outlier_inputs(magnitude=1.0)
    torch.testing.assert_close(int8_decomposed_matmul(x_plain, w), int8_matmul(x_plain, w))


def test_smooth_scales_hand_computed_and_balanced():
    w = torch.tensor([[1.0, 0.25], [-2.0, 0.5]])
    s = smooth_scales(torch.tensor([4.0, 1.0]), w, alpha=0.5)  # sqrt(4)/sqrt(2), sqrt(1)/sqrt(0.5)
    torch.testing.assert_close(s, torch.tensor([2**0.5, 2**0.5]))
    torch.testing.assert_close(smooth_scales(torch.tensor([4.0, 1.0]), w, alpha=1.0), torch.tensor([4.0, 1.0]))
    x, w = _outlier_inputs()
    amax = x.abs().amax(dim=0)
    s = smooth_scales(amax, w, 0.5)
    # alpha = 0.5: after smoothing each channel's activation and weight ranges are equal, sqrt(max|X| max|W|)
    torch.testing.assert_close((x / s).abs().amax(dim=0), (w * s).abs().amax(dim=0), rtol=1e-5, atol=1e-6)


def test_smoothing_is_fp32_equivalent():
    x, w = _outlier_inputs()
    lin = nn.Linear(64, 32).double()
    with torch.no_grad():
        lin.weight.copy_(w.double())
    smoothed = smooth_linear(lin, x.abs().amax(dim=0).double(), alpha=0.6)
    torch.testing.assert_close(smoothed(x.double()), lin(x.double()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_smoothquant_cuts_w8a8_error_on_outlier_channels(alpha):
    x, w = _outlier_inputs()
    lin = nn.Linear(64, 32)
    with torch.no_grad():
        lin.weight.copy_(w)
    exact = lin(x).double()
    naive = _rel(W8A8Linear(lin)(x), exact)
    smooth = _rel(SmoothW8A8Linear(lin, x.abs().amax(dim=0), alpha)(x), exact)
    assert smooth < naive / 2
    # W8A8 with per-tensor activations against a float64 reference of the same scheme
    cx = x.double().abs().max() / 127
    cw = w.double().abs().amax(dim=1, keepdim=True) / 127
    ref = (torch.round(x.double() / cx) @ torch.round(w.double() / cw).T) * cx * cw.T + lin.bias.double()
    assert _rel(W8A8Linear(lin)(x), ref) < 1e-5


def test_static_activation_scale_clips():
    x, w = _outlier_inputs()
    y = int8_matmul(x, w, act="per_tensor", act_scale=1.0 / 127)  # range [-1, 1]: the outliers clip
    clipped = x.clamp(-1, 1)
    torch.testing.assert_close(y, int8_matmul(clipped, w, act="per_tensor", act_scale=1.0 / 127))


def test_bad_input_names_the_argument():
    x, w = _outlier_inputs()
    with pytest.raises(ValueError, match="threshold=0"):
        int8_decomposed_matmul(x, w, threshold=0)
    with pytest.raises(ValueError, match="act='per_row'"):
        int8_matmul(x, w, act="per_row")
    with pytest.raises(ValueError, match="act_scale"):
        int8_matmul(x, w, act="per_token", act_scale=0.1)
    with pytest.raises(ValueError, match="alpha"):
        smooth_scales(x.abs().amax(dim=0), w, alpha=-0.1)
    with pytest.raises(ValueError, match="act_absmax must be a tensor of shape"):
        smooth_scales(torch.ones(5), w)
    with pytest.raises(ValueError, match="do not match"):
        int8_decomposed_matmul(x, w[:, :10])
