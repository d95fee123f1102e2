"""Observers: collect statistics of a tensor stream and turn them into quantization parameters.

Range setting is the first decision of post-training quantization (Nagel et al. 2021, sec. 3.4;
Krishnamoorthi 2018, sec. 2.5). Every observer here has the same small interface:

* ``update(x)`` (alias ``forward``) records statistics of ``x`` and returns ``x`` unchanged, so an observer can
  sit inside a model during calibration;
* ``qparams()`` (alias ``calculate_qparams``) returns ``(scale, zero_point)`` computed by
  :func:`coursekit.quant.primitives.calc_qparams` from the chosen range;
* ``qmin``/``qmax`` give the integer range the parameters are meant for.

Observers:

* :class:`MinMaxObserver` - running min/max (per tensor or per channel), bit-exact with
  ``torch.ao.quantization.MinMaxObserver`` / ``PerChannelMinMaxObserver``.
* :class:`MovingAverageMinMaxObserver` - exponential moving average of per-batch min/max (Jacob et al. 2018,
  sec. 3.1), bit-exact with torch's observer of the same name.
* :class:`PercentileObserver` - clip at a percentile of the histogram of values (McKinstry et al. 2019).
* :class:`MSEObserver` - the clipping range that minimises the quantization MSE (Nagel et al. 2021, eq. 11).
* :class:`EntropyObserver` - the threshold that minimises the KL divergence between the reference and the
  quantized histogram (Migacz 2017, "8-bit inference with TensorRT").
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from coursekit._validate import check_choice, check_int, check_probability
from coursekit.quant.primitives import (
    CONVENTIONS,
    calc_qparams,
    fake_quantize,
    quant_range,
)


def _check_finite_tensor(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"an observer needs a torch.Tensor, got {type(x).__name__}")
    x = x.detach()
    if not x.is_floating_point():
        raise TypeError(f"an observer needs a floating-point tensor, got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"calibration data contains {bad} NaN/inf value(s); clean the data or the model first")
    return x.to(torch.float32)


class Observer(nn.Module):
    """Base class: integer range, granularity and the ``qparams`` plumbing shared by all observers.

    ``bits``/``signed`` choose the integer range (``quant_range``); ``symmetric`` chooses symmetric (zero point
    0 or the midpoint) or affine parameters; ``axis`` gives per-channel statistics along that dimension
    (``None``: per tensor); ``convention`` is the qparams formula ("torch" or "onnx", see ``calc_qparams``).
    With the "onnx" convention a symmetric signed observer uses the narrow range (``[-127, 127]`` for int8).
    """

    supports_axis = True

    def __init__(self, bits: int = 8, symmetric: bool = False, signed: bool = True, axis: int | None = None,
                 convention: str = "torch"):
        super().__init__()
        self.convention = check_choice("convention", convention, CONVENTIONS)
        self.bits, self.symmetric, self.signed = bits, bool(symmetric), bool(signed)
        narrow = convention == "onnx" and self.symmetric and self.signed
        self.qmin, self.qmax = quant_range(bits, signed, narrow=narrow)
        if axis is not None:
            axis = check_int("axis", axis)
            if not self.supports_axis:
                raise ValueError(f"{type(self).__name__} supports per-tensor statistics only (axis=None), "
                                 f"got axis={axis}")
        self.axis = axis
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))
        self.num_batches = 0

    # -- statistics --------------------------------------------------------------------------------
    def _channel_major(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as a 2-D tensor with one row per channel (the layout torch's per-channel observer uses)."""
        if not -x.dim() <= self.axis < x.dim():
            raise ValueError(f"axis={self.axis} is out of range for a tensor with {x.dim()} dimensions")
        return x.movedim(self.axis, 0).flatten(start_dim=1) if x.dim() > 1 else x.reshape(-1, 1)

    def _batch_min_max(self, x: torch.Tensor):
        if self.axis is None:
            return torch.aminmax(x)
        return torch.aminmax(self._channel_major(x), dim=1)

    def _merge(self, cur_min, cur_max):
        """Combine this batch's min/max with the running values (running min/max by default)."""
        if self.num_batches == 0:
            return cur_min, cur_max
        if cur_min.shape != self.min_val.shape:
            raise ValueError(f"per-channel observer saw {cur_min.numel()} channels, expected "
                             f"{self.min_val.numel()}")
        return torch.min(cur_min, self.min_val), torch.max(cur_max, self.max_val)

    def _observe(self, x: torch.Tensor) -> None:
        """Hook for subclasses that keep more than min/max (histograms, samples)."""

    def update(self, x: torch.Tensor) -> torch.Tensor:
        """Record the statistics of ``x`` and return ``x`` unchanged. Raises ValueError on NaN/inf."""
        data = _check_finite_tensor(x)
        if data.numel() == 0:
            return x
        new_min, new_max = self._merge(*self._batch_min_max(data))
        self.min_val = new_min.clone()
        self.max_val = new_max.clone()
        self._observe(data)
        self.num_batches += 1
        return x

    forward = update

    def reset(self) -> None:
        """Forget everything observed so far."""
        self.min_val = torch.tensor(float("inf"))
        self.max_val = torch.tensor(float("-inf"))
        self.num_batches = 0

    # -- parameters --------------------------------------------------------------------------------
    def _check_seen(self):
        if self.num_batches == 0:
            raise RuntimeError(f"{type(self).__name__} has not seen any data: call update(x) with calibration "
                               "batches before qparams()")

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(min, max)`` range the quantization parameters are computed from (clipped for some observers)."""
        self._check_seen()
        return self.min_val, self.max_val

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, zero_point)``: float32 and int64 tensors of shape ``(1,)`` per tensor, ``(C,)`` per channel
        (the shapes ``torch.ao`` observers return)."""
        lo, hi = self.range()
        scale, zero_point = calc_qparams(lo, hi, self.qmin, self.qmax, self.symmetric, self.convention)
        return scale.reshape(-1), zero_point.reshape(-1)

    calculate_qparams = qparams

    def fake_quantize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` fake-quantized with this observer's current parameters."""
        scale, zero_point = self.qparams()
        rounding = "onnx" if self.convention == "onnx" else "torch"
        return fake_quantize(x, scale, zero_point, self.qmin, self.qmax, axis=self.axis, rounding=rounding)

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, symmetric={self.symmetric}, signed={self.signed}, axis={self.axis}, "
                f"convention={self.convention!r}")


class MinMaxObserver(Observer):
    """Running minimum and maximum (Krishnamoorthi 2018, sec. 2.5; Nagel et al. 2021, sec. 3.4 "min-max").

    Equal to ``torch.ao.quantization.MinMaxObserver`` (``axis=None``) or ``PerChannelMinMaxObserver``
    (``ch_axis=axis``) with ``dtype=qint8`` (``signed=True``) or ``quint8`` and ``qscheme`` per-tensor/per-channel
    affine or symmetric; for other widths, torch's observer with ``quant_min/quant_max = quant_range(bits)``.
    """


class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of per-batch min/max: ``m <- m + c (m_batch - m)`` (Jacob et al. 2018, sec. 3.1).

    The first batch initialises the average. Equal to ``torch.ao.quantization.MovingAverageMinMaxObserver``
    (and the per-channel variant) with the same ``averaging_constant``.
    """

    def __init__(self, bits: int = 8, symmetric: bool = False, signed: bool = True, axis: int | None = None,
                 averaging_constant: float = 0.01, convention: str = "torch"):
        super().__init__(bits, symmetric, signed, axis, convention)
        self.averaging_constant = check_probability("averaging_constant", averaging_constant)

    def _merge(self, cur_min, cur_max):
        if self.num_batches == 0:
            return cur_min, cur_max
        c = self.averaging_constant
        return self.min_val + c * (cur_min - self.min_val), self.max_val + c * (cur_max - self.max_val)


# ------------------------------------------------------------------------------------------- histograms
class _Histogram:
    """Histogram of values on a symmetric range ``[-T, T]`` that widens (keeping its bin width) when new data
    falls outside, as ONNX Runtime's ``HistogramCollector.merge_histogram`` does."""

    def __init__(self, num_bins: int):
        self.half_bins = num_bins // 2
        self.counts: np.ndarray | None = None
        self.threshold = 0.0

    def add(self, x: torch.Tensor) -> None:
        values = x.reshape(-1).double().numpy()
        amax = float(np.abs(values).max())
        if self.counts is None or self.threshold == 0.0:
            old = self.counts
            self.threshold = amax
            if amax == 0.0:
                self.counts = np.zeros(2 * self.half_bins, dtype=np.int64)
                self.counts[self.half_bins] += values.size
            else:
                self.counts = self._hist(values, 2 * self.half_bins)
            if old is not None:
                self.counts[self.half_bins] += old.sum()  # everything seen so far was exactly zero
            return
        if amax > self.threshold:
            stride = self.stride
            extra = int(np.ceil((amax - self.threshold) / stride))
            self.threshold += extra * stride
            counts = np.zeros(self.counts.size + 2 * extra, dtype=np.int64)
            counts[extra:extra + self.counts.size] = self.counts
            self.counts = counts
        self.counts += self._hist(values, self.counts.size)

    def _hist(self, values, bins):
        counts, _ = np.histogram(values, bins=bins, range=(-self.threshold, self.threshold))
        return counts.astype(np.int64)

    @property
    def stride(self) -> float:
        return 2 * self.threshold / self.counts.size

    def edges(self) -> np.ndarray:
        return np.linspace(-self.threshold, self.threshold, self.counts.size + 1)

    def centers(self) -> np.ndarray:
        e = self.edges()
        return (e[:-1] + e[1:]) / 2

    def absolute(self) -> tuple[np.ndarray, np.ndarray]:
        """Histogram of ``|x|`` on ``[0, T]`` (counts, edges): the two halves folded onto each other."""
        half = self.counts.size // 2
        counts = self.counts[half:] + self.counts[:half][::-1]
        return counts, np.linspace(0.0, self.threshold, half + 1)


class _HistogramObserver(Observer):
    supports_axis = False

    def __init__(self, bits=8, symmetric=False, signed=True, axis=None, num_bins: int = 2048,
                 convention: str = "torch"):
        super().__init__(bits, symmetric, signed, axis, convention)
        num_bins = check_int("num_bins", num_bins, min_value=16)
        self.num_bins = num_bins
        self.histogram = _Histogram(2 * num_bins)  # num_bins bins for |x| on [0, T]

    def _observe(self, x):
        self.histogram.add(x)

    def reset(self):
        super().reset()
        self.histogram = _Histogram(2 * self.num_bins)

    def _clip_symmetric(self, threshold: float):
        """Range ``[-t, t]`` intersected with the observed range (so non-negative data stays ``[0, t]``)."""
        t = torch.tensor(threshold, dtype=torch.float32)
        return torch.max(self.min_val, -t), torch.min(self.max_val, t)


class PercentileObserver(_HistogramObserver):
    """Clip the range at a percentile of the observed values (McKinstry et al. 2019; Wu et al. 2020, sec. 4.1).

    Symmetric: the ``percentile`` of ``|x|``. Affine: ``(100 - percentile) / 2`` percent is cut from each tail,
    as in ONNX Runtime's ``CalibrationMethod.Percentile``. Uses a histogram of ``num_bins`` bins for ``|x|``,
    so the threshold is a bin edge.
    """

    def __init__(self, bits=8, symmetric=False, signed=True, percentile: float = 99.99, num_bins: int = 2048,
                 convention: str = "torch", axis: int | None = None):
        super().__init__(bits, symmetric, signed, axis, num_bins, convention)
        self.percentile = check_probability("percentile", percentile, low=50.0, high=100.0)

    def range(self):
        self._check_seen()
        if self.symmetric:
            counts, edges = self.histogram.absolute()
            cdf = np.cumsum(counts) / counts.sum()
            idx = min(int(np.searchsorted(cdf, self.percentile / 100.0)), counts.size - 1)
            return self._clip_symmetric(float(edges[idx + 1]))
        counts, edges = self.histogram.counts, self.histogram.edges()
        cdf = np.cumsum(counts) / counts.sum()
        cut = (100.0 - self.percentile) / 200.0
        lo_idx = min(int(np.searchsorted(cdf, cut)), counts.size - 1)
        hi_idx = min(int(np.searchsorted(cdf, 1.0 - cut)), counts.size - 1)
        lo = torch.max(self.min_val, torch.tensor(float(edges[lo_idx]), dtype=torch.float32))
        hi = torch.min(self.max_val, torch.tensor(float(edges[hi_idx + 1]), dtype=torch.float32))
        return lo, hi


class EntropyObserver(_HistogramObserver):
    """KL-divergence calibration of TensorRT (Migacz 2017, "8-bit Inference with TensorRT", slides 30-40).

    For every candidate threshold ``t`` (a bin edge of the ``|x|`` histogram, from ``levels`` bins upward)
    the reference distribution ``P`` is the histogram clipped at ``t`` (outliers added to the last bin) and
    ``Q`` is ``P`` merged into ``levels`` quantization bins and expanded back over the non-empty bins. The
    threshold minimising ``KL(P || Q)`` is chosen. ``levels = 2^(bits-1)`` (128 for int8) for a signed/symmetric
    range, ``2^bits`` when an affine range covers non-negative data only (post-ReLU activations).
    """

    def __init__(self, bits=8, symmetric=False, signed=True, num_bins: int = 2048, stride: int = 1,
                 convention: str = "torch", axis: int | None = None):
        super().__init__(bits, symmetric, signed, axis, num_bins, convention)
        self.stride = check_int("stride", stride, min_value=1)

    def _levels(self) -> int:
        nonneg = float(self.min_val) >= 0.0
        return 2**self.bits if (nonneg and not self.symmetric) else 2 ** (self.bits - 1)

    def range(self):
        self._check_seen()
        counts, edges = self.histogram.absolute()
        return self._clip_symmetric(float(edges[kl_threshold_index(counts, self._levels(), self.stride)]))


def kl_threshold_index(counts: np.ndarray, levels: int, stride: int = 1) -> int:
    """Index ``i`` of the |x|-histogram edge minimising ``KL(P_i || Q_i)`` (Migacz 2017); threshold = edges[i]."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.size
    if levels >= n or counts.sum() == 0:
        return n
    best_i, best_kl = n, np.inf
    tail = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])  # tail[i] = sum(counts[i:])
    for i in range(levels, n + 1, stride):
        p = counts[:i].copy()
        p[-1] += tail[i]  # clipped outliers land in the last bin
        # merge the i bins into `levels` quantization bins, then spread each back over its non-empty bins
        which = np.minimum((np.arange(i) * levels) // i, levels - 1)
        nonzero = counts[:i] > 0
        q_sum = np.bincount(which, weights=counts[:i], minlength=levels)
        q_cnt = np.bincount(which, weights=nonzero, minlength=levels)
        q = np.where(nonzero, q_sum[which] / np.maximum(q_cnt[which], 1), 0.0)
        p_sum, q_total = p.sum(), q.sum()
        if q_total == 0:
            continue
        p, q = p / p_sum, q / q_total
        mask = p > 0
        if np.any(q[mask] == 0):
            continue  # KL is infinite
        kl = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return best_i


class MSEObserver(Observer):
    """The clipping range minimising the mean squared quantization error (Nagel et al. 2021, sec. 3.4, eq. 11).

    Candidates are the observed range shrunk by factors ``alpha`` in ``(0, 1]`` (``num_candidates`` values):
    ``[alpha min, alpha max]``. Per tensor the error is evaluated on a histogram of the data (bin centres
    weighted by counts, ``num_bins`` bins for |x|); per channel (``axis=``, typically weights) directly on
    the stored values, choosing ``alpha`` independently for every channel.
    """

    def __init__(self, bits=8, symmetric=False, signed=True, axis=None, num_candidates: int = 100,
                 num_bins: int = 2048, convention: str = "torch"):
        super().__init__(bits, symmetric, signed, axis, convention)
        self.num_candidates = check_int("num_candidates", num_candidates, min_value=1)
        self.num_bins = check_int("num_bins", num_bins, min_value=16)
        self.histogram = _Histogram(2 * self.num_bins)
        self._rows: list[torch.Tensor] = []

    def _observe(self, x):
        if self.axis is None:
            self.histogram.add(x)
        else:
            self._rows.append(self._channel_major(x))

    def reset(self):
        super().reset()
        self.histogram = _Histogram(2 * self.num_bins)
        self._rows = []

    def range(self):
        self._check_seen()
        if self.axis is None:
            centers = torch.from_numpy(self.histogram.centers()).float()
            weights = torch.from_numpy(self.histogram.counts).double()
            data, axis = centers.reshape(1, -1), None
        else:
            data, weights, axis = torch.cat(self._rows, dim=1), None, 0
        rounding = "onnx" if self.convention == "onnx" else "torch"
        best_err = torch.full_like(self.min_val, float("inf"), dtype=torch.float64).reshape(-1)
        best_lo, best_hi = self.min_val.clone().reshape(-1), self.max_val.clone().reshape(-1)
        for alpha in torch.linspace(1.0, 0.0, self.num_candidates + 1)[:-1].tolist():
            lo, hi = (self.min_val * alpha).reshape(-1), (self.max_val * alpha).reshape(-1)
            scale, zp = calc_qparams(lo if axis is not None else lo[0], hi if axis is not None else hi[0],
                                     self.qmin, self.qmax, self.symmetric, self.convention)
            fq = fake_quantize(data, scale, zp, self.qmin, self.qmax, axis=axis, rounding=rounding)
            sq = (fq.double() - data.double()) ** 2
            err = (sq * weights).sum().reshape(1) if weights is not None else sq.mean(dim=1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_lo, best_hi = torch.where(better, lo, best_lo), torch.where(better, hi, best_hi)
        return best_lo.reshape(self.min_val.shape), best_hi.reshape(self.max_val.shape)


OBSERVERS = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
    "entropy": EntropyObserver,
}


def make_observer(name: str, **kwargs) -> Observer:
    """Observer by name (``"minmax"``, ``"moving_average"``, ``"percentile"``, ``"mse"``, ``"entropy"``)."""
    check_choice("observer", name, OBSERVERS)
    return OBSERVERS[name](**kwargs)
