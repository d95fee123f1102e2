"""coursekit.quant.primitives against torch's fused fake-quant kernels and ONNX Runtime's qparams."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coursekit.quant import primitives as P


def _adversarial(scale: float, zp: int, qmin: int, qmax: int, n: int = 64) -> torch.Tensor:
    """Exact .5 ties (in code space), clamping edges, +-0, huge values and values one ulp around ties."""
    codes = torch.arange(qmin - 3, qmax + 4, dtype=torch.float32) - zp
    ties = (codes + 0.5) * scale
    ulp_up = torch.nextafter(ties, torch.full_like(ties, math.inf))
    ulp_dn = torch.nextafter(ties, torch.full_like(ties, -math.inf))
    edges = torch.tensor([(qmin - zp) * scale, (qmax - zp) * scale, (qmin - zp - 0.5) * scale,
                          (qmax - zp + 0.5) * scale, 0.0, -0.0, 1e30, -1e30, 1e-30])
    return torch.cat([ties, ulp_up, ulp_dn, edges, torch.randn(n) * scale * (qmax - qmin) / 3])


@pytest.mark.parametrize("qmin,qmax", [(-128, 127), (0, 255), (-8, 7), (0, 15), (-127, 127)])
def test_fake_quantize_per_tensor_bit_exact(qmin, qmax):
    gen = torch.Generator().manual_seed(qmax)
    for _ in range(40):
        scale = float(torch.rand(1, generator=gen)) * 0.2 + 1e-4
        zp = int(torch.randint(qmin, qmax + 1, (1,), generator=gen))
        x = _adversarial(scale, zp, qmin, qmax)
        ref = torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)
        assert torch.equal(P.fake_quantize(x, scale, zp, qmin, qmax), ref)
        # and quantize / dequantize compose to the same thing
        q = P.quantize(x, scale, zp, qmin, qmax)
        assert torch.equal(P.dequantize(q, scale, zp), ref)


@settings(max_examples=150, deadline=None)
@given(scale=st.floats(2**-20, 1e3, allow_nan=False, width=32), zp=st.integers(-128, 127),
       values=st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=32))
def test_fake_quantize_per_tensor_bit_exact_hypothesis(scale, zp, values):
    x = torch.tensor(values, dtype=torch.float32)
    ref = torch.fake_quantize_per_tensor_affine(x, scale, zp, -128, 127)
    assert torch.equal(P.fake_quantize(x, scale, zp, -128, 127), ref)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("qmin,qmax", [(-128, 127), (0, 255)])
def test_fake_quantize_per_channel_bit_exact(axis, qmin, qmax):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(6, 5, 4, generator=gen) * 3
    channels = x.shape[axis]
    scale = torch.rand(channels, generator=gen) * 0.1 + 1e-3
    zp = torch.randint(qmin, qmax + 1, (channels,), generator=gen, dtype=torch.int32)
    # put exact ties and clamp edges into the first row along the axis
    view = [1] * x.dim()
    view[axis % x.dim()] = channels
    s, z = scale.reshape(view), zp.reshape(view).float()
    ax = axis % x.dim()
    other = (ax + 1) % x.dim()
    ties = ((torch.ones_like(x) * 2.5 - z) * s).narrow(other, 0, 1)
    edge = ((qmax + 0.5 - z) * s).expand_as(x).narrow(other, 0, 1)
    x = torch.cat([x, ties, edge], dim=other)
    ref = torch.fake_quantize_per_channel_affine(x, scale, zp, ax, qmin, qmax)
    assert torch.equal(P.fake_quantize(x, scale, zp, qmin, qmax, axis=axis), ref)


def test_rounding_conventions_disagree_for_some_scales():
    """x * (1/S) and x / S round differently for some (x, S): the reason the convention is an option."""
    gen = torch.Generator().manual_seed(0)
    diffs = 0
    for _ in range(200):
        scale = float(torch.rand(1, generator=gen)) * 0.01 + 1e-4
        x = (torch.arange(-100, 100, dtype=torch.float32) + 0.5) * scale
        a = P.quantize(x, scale, 0, -128, 127, rounding="torch")
        b = P.quantize(x, scale, 0, -128, 127, rounding="onnx")
        assert (a.int() - b.int()).abs().max() <= 1
        diffs += int((a != b).sum())
        # onnx form is exactly round(x / S) (numpy float32 division, half to even)
        ref = np.clip(np.rint(x.numpy() / np.float32(scale)), -128, 127)
        assert np.array_equal(b.numpy().astype(np.float32), ref)
    assert diffs > 0


def test_per_group_matches_reshaped_per_channel():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(8, 32, generator=gen)
    groups = w.reshape(8, 4, 8)
    amax = groups.abs().amax(dim=-1)
    scale, zp = P.calc_qparams(-amax.reshape(-1), amax.reshape(-1), -8, 7, symmetric=True)
    out = P.fake_quantize(w, scale.reshape(8, 4), zp.reshape(8, 4), -8, 7, group_size=8)
    ref = torch.fake_quantize_per_channel_affine(w.reshape(32, 8), scale, zp.int(), 0, -8, 7).reshape(8, 32)
    assert torch.equal(out, ref)
    q = P.quantize(w, scale.reshape(8, 4), 0, -8, 7, group_size=8)
    assert q.dtype == torch.int8 and q.min() >= -8 and q.max() <= 7
    assert torch.equal(P.dequantize(q, scale.reshape(8, 4), 0, group_size=8), out)


def test_quantize_dtypes_and_range():
    x = torch.linspace(-10, 10, 101)
    assert P.quantize(x, 0.1, 0, -128, 127).dtype == torch.int8
    assert P.quantize(x, 0.1, 128, 0, 255).dtype == torch.uint8
    assert P.quantize(x, 0.001, 0, -32768, 32767).dtype == torch.int16
    q = P.quantize(x, 0.01, 0, -128, 127)
    assert q.min() == -128 and q.max() == 127


def test_ste_gradient_matches_torch():
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(200, generator=gen) * 2).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    for scale, zp in [(0.01, 3), (0.02, -5)]:
        y = P.fake_quantize(x, scale, zp, -128, 127)
        y2 = torch.fake_quantize_per_tensor_affine(x2, scale, zp, -128, 127)
        g = torch.randn(200, generator=gen)
        (gx,) = torch.autograd.grad(y, x, g)
        (gx2,) = torch.autograd.grad(y2, x2, g)
        assert torch.equal(gx, gx2)


# --------------------------------------------------------------------------- qparams
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("qmin,qmax", [(-128, 127), (0, 255)])
def test_calc_qparams_torch_matches_determine_qparams(symmetric, qmin, qmax):
    from torch.ao.quantization.utils import determine_qparams

    gen = torch.Generator().manual_seed(5)
    lo = torch.randn(20, generator=gen) * 3 - 1
    hi = lo + torch.rand(20, generator=gen) * 5
    lo[0], hi[0] = 0.0, 0.0  # empty range -> eps floor
    lo[1], hi[1] = 0.5, 2.0  # range not containing zero
    dtype = torch.qint8 if qmin < 0 else torch.quint8
    qscheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    ref_s, ref_z = determine_qparams(lo, hi, qmin, qmax, dtype, torch.tensor(torch.finfo(torch.float32).eps),
                                     has_customized_qrange=False, qscheme=qscheme)
    s, z = P.calc_qparams(lo, hi, qmin, qmax, symmetric=symmetric)
    assert torch.equal(s, ref_s) and torch.equal(z, ref_z.long())


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("signed", [True, False])
def test_calc_qparams_onnx_matches_ort(symmetric, signed):
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    qtype = TensorProto.INT8 if signed else TensorProto.UINT8
    ort_qmin, ort_qmax = get_qmin_qmax_for_qType(qtype, symmetric=symmetric)
    qmin, qmax = P.quant_range(8, signed)
    rng = np.random.default_rng(0)
    for _ in range(50):
        lo, hi = np.sort(rng.normal(size=2).astype(np.float32) * rng.uniform(0.01, 10))
        ref_z, ref_s = compute_scale_zp(lo, hi, ort_qmin, ort_qmax, symmetric=symmetric)
        s, z = P.calc_qparams(float(lo), float(hi), qmin, qmax, symmetric=symmetric, convention="onnx")
        assert s.item() == float(ref_s) and s.dtype == torch.float32
        assert z.item() == int(ref_z)
    if signed and symmetric:
        s, _ = P.calc_qparams(-1.0, 2.54, -128, 127, symmetric=True, convention="onnx")
        assert s.item() == np.float32(2.54 / 127)


def test_calc_qparams_hand_computed():
    s, z = P.calc_qparams(-1.0, 3.0, 0, 255)
    assert math.isclose(s.item(), 4 / 255, rel_tol=1e-7) and z.item() == 64
    s, z = P.calc_qparams(-1.0, 2.55, -128, 127, symmetric=True)
    assert math.isclose(s.item(), 2.55 / 127.5, rel_tol=1e-7) and z.item() == 0
    s, z = P.calc_qparams(-1.0, 2.55, 0, 255, symmetric=True)
    assert z.item() == 128
    s, z = P.calc_qparams(1.0, 2.0, -128, 127)  # widened to [0, 2]
    assert z.item() == -128


def test_quant_range():
    assert P.quant_range(8) == (-128, 127)
    assert P.quant_range(8, signed=False) == (0, 255)
    assert P.quant_range(8, narrow=True) == (-127, 127)
    assert P.quant_range(4) == (-8, 7)
    assert P.quant_range(16, signed=False) == (0, 65535)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bits", [1, 17, 0, -3])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        P.quant_range(bits)


def test_bad_bits_type():
    with pytest.raises(TypeError, match="bits"):
        P.quant_range(8.0)


@pytest.mark.parametrize("qmin,qmax", [(5, 5), (10, 3)])
def test_qmin_not_below_qmax(qmin, qmax):
    with pytest.raises(ValueError, match="qmin"):
        P.calc_qparams(-1.0, 1.0, qmin, qmax)
    with pytest.raises(ValueError, match="qmin"):
        P.fake_quantize(torch.zeros(3), 0.1, qmin, qmin, qmax)


@pytest.mark.parametrize("scale", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        P.fake_quantize(torch.zeros(3), scale, 0, -128, 127)
    with pytest.raises(ValueError, match="scale"):
        P.quantize(torch.zeros(3), torch.tensor([0.1, scale, 0.1]), 0, -128, 127, axis=0)
    with pytest.raises(ValueError, match="scale"):
        P.dequantize(torch.zeros(3, dtype=torch.int8), scale, 0)


def test_bad_axis_and_shapes():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="axis"):
        P.fake_quantize(x, torch.ones(3), torch.zeros(3), -128, 127, axis=2)
    with pytest.raises(ValueError, match="axis"):
        P.fake_quantize(x, torch.ones(3), torch.zeros(3), -128, 127, axis=-3)
    with pytest.raises(ValueError, match="entries"):
        P.fake_quantize(x, torch.ones(4), torch.zeros(4), -128, 127, axis=1)
    with pytest.raises(ValueError, match="per-tensor"):
        P.fake_quantize(x, torch.ones(3), 0, -128, 127)


def test_bad_group_size():
    with pytest.raises(ValueError, match="group_size=5 does not divide"):
        P.fake_quantize(torch.zeros(2, 12), torch.ones(2, 2), 0, -8, 7, group_size=5)
    with pytest.raises(ValueError, match="group_size"):
        P.fake_quantize(torch.zeros(2, 12), torch.ones(2, 2), 0, -8, 7, group_size=0)
    with pytest.raises(ValueError, match="shape"):
        P.fake_quantize(torch.zeros(2, 12), torch.ones(2, 3), 0, -8, 7, group_size=6)


def test_bad_zero_point_and_minmax():
    with pytest.raises(ValueError, match="zero_point"):
        P.fake_quantize(torch.zeros(3), 0.1, 300, 0, 255)
    with pytest.raises(ValueError, match="finite"):
        P.calc_qparams(float("nan"), 1.0, -128, 127)
    with pytest.raises(ValueError, match="min_val must be <= max_val"):
        P.calc_qparams(2.0, 1.0, -128, 127)
    with pytest.raises(ValueError, match="convention"):
        P.calc_qparams(-1.0, 1.0, -128, 127, convention="tf")
    with pytest.raises(ValueError, match="rounding"):
        P.fake_quantize(torch.zeros(3), 0.1, 0, -128, 127, rounding="floor")
    with pytest.raises(TypeError, match="floating-point"):
        P.fake_quantize(torch.zeros(3, dtype=torch.int32), 0.1, 0, -128, 127)


def test_calc_qparams_accepts_numpy_scalars():
    import numpy as np

    from coursekit.quant import calc_qparams

    low, high = np.percentile(np.array([-1.0, 0.5, 2.0]), [0, 100])
    assert [float(t) for t in calc_qparams(low, high, -128, 127)] == [float(t) for t in calc_qparams(-1.0, 2.0, -128, 127)]


def test_nan_is_rejected_by_quantize_and_inf_saturates():
    x = torch.tensor([0.1, math.nan, 0.3])
    with pytest.raises(ValueError, match="x contains NaN"):
        P.quantize(x, 0.1, 0, -128, 127)
    with pytest.raises(ValueError, match="x contains NaN"):
        P.quantize(torch.tensor([[0.1, 0.2], [math.nan, 0.0]]), torch.tensor([0.1, 0.2]), 0, -8, 7, axis=0)
    got = P.quantize(torch.tensor([math.inf, -math.inf, 1.0]), 0.1, 3, -128, 127)
    assert got.tolist() == [127, -128, 13]
    assert torch.isnan(P.fake_quantize(x, 0.1, 0, -128, 127)[1])          # NaN stays visible, never a code


@pytest.mark.parametrize("zero_point", [2.5, -0.5, torch.tensor(2.5), torch.tensor([1.0, 2.5]), math.nan])
def test_fractional_zero_point_is_rejected_not_truncated(zero_point):
    q = torch.tensor([[1, 2], [3, 4]], dtype=torch.int8)
    axis = 0 if isinstance(zero_point, torch.Tensor) and zero_point.numel() == 2 else None
    scale = torch.tensor([0.5, 0.5]) if axis == 0 else 0.5
    with pytest.raises(ValueError, match="zero_point"):
        P.dequantize(q, scale, zero_point, axis=axis)
    with pytest.raises(ValueError, match="zero_point"):
        P.quantize(q.float(), scale, zero_point, -128, 127, axis=axis)


def test_integer_valued_zero_points_of_any_type_still_work():
    q = torch.tensor([1, 2], dtype=torch.int8)
    expected = [-0.5, 0.0]                                                  # 0.5 * (q - 2)
    for zp in (2, 2.0, torch.tensor(2), torch.tensor(2.0), np.int64(2)):
        assert P.dequantize(q, 0.5, zp).tolist() == expected
    with pytest.raises(TypeError, match="zero_point"):
        P.dequantize(q, 0.5, "2")
    with pytest.raises(TypeError, match="zero_point"):
        P.dequantize(q, 0.5, True)
