"""Observers against torch.ao observers (bit-exact) and against hand-checked behaviour of the clipping ones."""
import warnings

import numpy as np
import pytest
import torch

from coursekit.quant import observers as O
from coursekit.quant.primitives import fake_quantize


def _torch_ao():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import torch.ao.quantization as tq
    return tq


def _batches(seed=0, n=6, shape=(16, 5, 3)):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=gen) * (1 + i) + 0.3 * i for i in range(n)]


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_minmax_matches_torch(signed, symmetric, axis):
    tq = _torch_ao()
    dtype = torch.qint8 if signed else torch.quint8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if axis is None:
            qs = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
            ref = tq.MinMaxObserver(dtype=dtype, qscheme=qs)
        else:
            qs = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
            ref = tq.PerChannelMinMaxObserver(ch_axis=axis, dtype=dtype, qscheme=qs)
        ours = O.MinMaxObserver(8, symmetric=symmetric, signed=signed, axis=axis)
        for x in _batches():
            ref(x)
            assert ours(x) is x
        rs, rz = ref.calculate_qparams()
    s, z = ours.qparams()
    assert torch.equal(s, rs) and torch.equal(z, rz.long())


@pytest.mark.parametrize("bits,signed", [(4, True), (4, False), (6, True)])
def test_minmax_custom_width_matches_torch(bits, signed):
    tq = _torch_ao()
    ours = O.MinMaxObserver(bits, signed=signed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = tq.MinMaxObserver(dtype=torch.qint8 if signed else torch.quint8, quant_min=ours.qmin,
                                quant_max=ours.qmax)
        for x in _batches(1):
            ref(x)
            ours(x)
        rs, rz = ref.calculate_qparams()
    s, z = ours.qparams()
    assert torch.equal(s, rs) and torch.equal(z, rz.long())


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("axis", [None, 1])
def test_moving_average_matches_torch(symmetric, axis):
    tq = _torch_ao()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if axis is None:
            qs = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
            ref = tq.MovingAverageMinMaxObserver(averaging_constant=0.2, dtype=torch.qint8, qscheme=qs)
        else:
            qs = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
            ref = tq.MovingAveragePerChannelMinMaxObserver(averaging_constant=0.2, ch_axis=axis,
                                                           dtype=torch.qint8, qscheme=qs)
        ours = O.MovingAverageMinMaxObserver(8, symmetric, True, axis, averaging_constant=0.2)
        for x in _batches(2):
            ref(x)
            ours(x)
        rs, rz = ref.calculate_qparams()
    s, z = ours.qparams()
    assert torch.equal(s, rs) and torch.equal(z, rz.long())
    assert torch.equal(ours.min_val, ref.min_val) and torch.equal(ours.max_val, ref.max_val)


def _heavy_tailed(n=20000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen)
    x[:20] *= 30  # a few outliers
    return x


def test_percentile_clips_outliers_and_matches_numpy():
    x = _heavy_tailed()
    obs = O.PercentileObserver(symmetric=True, percentile=99.0, num_bins=4096)
    for chunk in x.chunk(4):
        obs.update(chunk)
    lo, hi = obs.range()
    ref = np.percentile(x.abs().numpy(), 99.0)
    stride = float(x.abs().max()) / 4096 * 1.5  # histogram resolution (range may have widened)
    assert abs(hi.item() - ref) <= 2 * stride and lo.item() == -hi.item()
    asym = O.PercentileObserver(symmetric=False, percentile=99.0)
    asym.update(x)
    lo, hi = asym.range()
    assert abs(lo.item() - np.percentile(x.numpy(), 0.5)) < 0.05
    assert abs(hi.item() - np.percentile(x.numpy(), 99.5)) < 0.05


def test_clipping_observers_beat_minmax_on_heavy_tails():
    """MSE has the lowest total error; KL and percentile give the bulk of the data a finer grid than min-max."""
    x = _heavy_tailed()
    x[:20] *= 10
    bulk = slice(20, None)
    errors, bulk_errors = {}, {}
    for name in ("minmax", "percentile", "mse", "entropy"):
        obs = O.make_observer(name, bits=8, symmetric=True)
        obs.update(x)
        sq = (obs.fake_quantize(x) - x) ** 2
        errors[name], bulk_errors[name] = sq.mean().item(), sq[bulk].mean().item()
    assert errors["mse"] <= min(errors.values()) * 1.0001
    assert errors["mse"] < errors["minmax"]
    assert bulk_errors["entropy"] < 0.1 * bulk_errors["minmax"]
    assert bulk_errors["percentile"] < bulk_errors["minmax"]


def test_mse_per_channel_is_best_per_channel():
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(6, 256, generator=gen)
    w[0, 0] = 25.0
    obs = O.MSEObserver(bits=4, symmetric=True, axis=0, num_candidates=50)
    obs.update(w)
    s, z = obs.qparams()
    fq = fake_quantize(w, s, z, obs.qmin, obs.qmax, axis=0)
    mm = O.MinMaxObserver(bits=4, symmetric=True, axis=0)
    mm.update(w)
    fq_mm = mm.fake_quantize(w)
    err, err_mm = ((fq - w) ** 2).mean(1), ((fq_mm - w) ** 2).mean(1)
    assert torch.all(err <= err_mm + 1e-12)
    assert err[0] < err_mm[0]


def test_entropy_threshold_gaussian():
    """For N(0,1) data and int8 the KL threshold lies well inside the max but above ~3 sigma."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200000, generator=gen)
    obs = O.EntropyObserver(symmetric=True)
    obs.update(x)
    lo, hi = obs.range()
    assert 2.5 < hi.item() < x.abs().max().item() and lo.item() == -hi.item()


def test_kl_threshold_keeps_uniform_range():
    counts = np.ones(1024)
    assert O.kl_threshold_index(counts, 128) == 1024


def test_histogram_widening_keeps_counts():
    obs = O.PercentileObserver(num_bins=64)
    obs.update(torch.linspace(-1, 1, 1000))
    obs.update(torch.linspace(-5, 5, 1000))
    obs.update(torch.zeros(10))
    assert obs.histogram.counts.sum() == 2010
    assert obs.histogram.threshold >= 5.0


def test_observer_errors():
    obs = O.MinMaxObserver()
    with pytest.raises(RuntimeError, match="not seen any data"):
        obs.qparams()
    with pytest.raises(ValueError, match="NaN/inf"):
        obs.update(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="NaN/inf"):
        O.EntropyObserver().update(torch.tensor([float("inf")]))
    with pytest.raises(ValueError, match="bits"):
        O.MinMaxObserver(bits=1)
    with pytest.raises(ValueError, match="bits"):
        O.MinMaxObserver(bits=17)
    with pytest.raises(ValueError, match="axis"):
        O.MinMaxObserver(axis=3).update(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="per-tensor"):
        O.EntropyObserver(axis=0)
    with pytest.raises(ValueError, match="observer"):
        O.make_observer("kl")
    with pytest.raises(ValueError, match="percentile"):
        O.PercentileObserver(percentile=120)
    with pytest.raises(TypeError):
        O.MinMaxObserver().update([1.0, 2.0])
