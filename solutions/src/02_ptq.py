# %% [markdown] locked="title"
# # 02 · Linear quantization and post-training quantization (PTQ)
#
# **The deployment problem.** Your model is trained, validated and shipped in FP32, and now it must run on a CPU
# fleet that costs money per millisecond, or on a phone that has a quarter of the memory. Retraining is not on the
# table. Post-training quantization (PTQ) is the first tool everyone reaches for: store weights (and activations)
# as 8-bit integers, calibrate a few numbers on a handful of batches, export, done. Done *well*, it is 4x smaller
# and several times faster at the same accuracy; done carelessly, it is slower, or quietly less accurate.
#
# In this chapter you build PTQ from its parts and then use the real thing:
#
# 1. the affine map between real numbers and integers (scale, zero point, clipping), symmetric vs asymmetric,
#    and the bit-exact conventions of PyTorch and ONNX;
# 2. granularity: one scale per tensor, per channel or per group, measured on real weights;
# 3. calibration of activations: min/max vs percentile vs MSE vs entropy, and when each one wins;
# 4. batch-norm folding and the integer-only arithmetic of Jacob et al. 2018 (int8 x int8 -> int32 -> int8);
# 5. a real INT8 model in ONNX Runtime, its accuracy, and its speed *on your CPU*;
# 6. how far PTQ goes: INT8 vs INT4 vs INT2.
#
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below it.
# `coursekit check notebooks/02_ptq.ipynb` grades the whole notebook (hidden tests included) from a terminal.

# %% locked="setup"
# Setup: run this first. Warnings are silenced so that graded cells stay clean.
import math
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import coursekit
from coursekit import bench, quant
from coursekit._env import fast_mode
from coursekit.data import get_loaders
from coursekit.formats.metrics import error_metrics
from coursekit.quant import explore
from coursekit.train import evaluate, pretrained

FAST = fast_mode()  # True under COURSEKIT_FAST=1 and during grading: smaller runs, same checks
torch.manual_seed(0)
print(f"coursekit {coursekit.__version__}, torch {torch.__version__}, fast mode: {FAST}")

# %% [markdown]
# ## 1 · The affine map
#
# Quantization replaces a real number $r$ by an integer code $q$ from a small range $[q_\min, q_\max]$
# ($[-128, 127]$ for signed INT8, $[0, 255]$ for unsigned). The map used everywhere (TFLite, PyTorch, ONNX Runtime,
# TensorRT) is *affine* (Jacob et al. 2018, eq. 1):
#
# $$r \approx S\,(q - Z), \qquad q = \operatorname{clamp}\!\left(\operatorname{round}\!\left(\frac{r}{S}\right) + Z,\ q_\min,\ q_\max\right)$$
#
# * the **scale** $S > 0$ is the step between neighbouring representable values;
# * the **zero point** $Z$ is the integer that represents real $0$ *exactly*: zero padding, ReLU outputs and
#   sparse weights must not be perturbed, so the range is always widened to contain $0$;
# * values beyond $S(q_\min - Z)$ and $S(q_\max - Z)$ are **clipped**; inside the range the error is at most $S/2$
#   (rounding). Choosing the range is a trade-off between the two errors: a wide range clips nothing but rounds
#   coarsely, a narrow one rounds finely but clips.
#
# From an observed range $[\min, \max]$ (widened to contain 0), PyTorch's *affine* parameters are
#
# $$S = \frac{\max - \min}{q_\max - q_\min}, \qquad Z = \operatorname{clamp}\!\left(q_\min - \operatorname{round}\!\left(\frac{\min}{S}\right),\ q_\min, q_\max\right).$$
#
# The figure shows a 3-bit grid (8 codes) so that each code is visible:

# %%
fig, axes = plt.subplots(2, 1, figsize=(9, 5.4))
explore.plot_affine_map(-0.6, 1.4, bits=3, symmetric=False, ax=axes[0])
explore.plot_affine_map(-0.6, 1.4, bits=3, symmetric=True, ax=axes[1])
plt.tight_layout()
plt.show()

# %% [markdown]
# **Symmetric** quantization forces $Z = 0$ and uses the range $[-a, a]$ with $a = \max(|\min|, |\max|)$: the
# arithmetic gets simpler (no zero-point terms in the matrix product, section 5), which is why weights are almost
# always symmetric. The price, visible in the lower panel: codes on the side the data never reaches are wasted. For
# post-ReLU activations ($\geq 0$) a signed symmetric grid wastes half of the codes, so activations are usually affine
# (often unsigned, `[0, 255]`).
#
# **Two conventions, bit-exactly.** PyTorch and ONNX Runtime agree on the idea but not on every bit:
#
# | | PyTorch (`torch.ao` observers) | ONNX Runtime (`quantize_static`) |
# |---|---|---|
# | symmetric INT8 range | $[-128, 127]$, $S = a / 127.5$ | $[-127, 127]$ (narrow), $S = a / 127$ |
# | rounding | `round(x * (1/S))`, float32 reciprocal | `round(x / S)` (division) |
# | tiny ranges | $S \geq$ float32 eps | $S = 1$ when the range is 0 |
#
# `coursekit.quant.calc_qparams` implements both (`convention="torch"` / `"onnx"`), tested bit-exactly against
# each library:

# %%
from coursekit.quant import calc_qparams, dequantize, quant_range, quantize

for convention in ("torch", "onnx"):
    for symmetric in (False, True):
        s, z = calc_qparams(-0.6, 1.4, -128, 127, symmetric=symmetric, convention=convention)
        print(f"{convention:5s} {'symmetric' if symmetric else 'affine   '}  S = {float(s):.8f}  Z = {int(z)}")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torch.ao.quantization import MinMaxObserver

    obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
    obs(torch.tensor([-0.6, 1.4]))
    s_ref, z_ref = obs.calculate_qparams()
s, z = calc_qparams(-0.6, 1.4, -128, 127)
print("torch.ao MinMaxObserver agrees bit-exactly:", torch.equal(s.reshape(1), s_ref), int(z) == int(z_ref))

# the two roundings disagree, rarely: x * (1/S) and x / S can land on different sides of a .5 tie in float32
x = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0))
s, z = calc_qparams(-2.7, 2.9, -128, 127)
q_torch, q_onnx = quantize(x, s, z, -128, 127, rounding="torch"), quantize(x, s, z, -128, 127, rounding="onnx")
differ = q_torch != q_onnx
print(f"torch vs onnx rounding differ on {int(differ.sum())} of {x.numel():,} values, by at most "
      f"{int((q_torch.int() - q_onnx.int()).abs().max())} code: rare, but a bit-exact test must pick a convention")

# %% [markdown]
# ### Exercise 1 · Scale and zero point
#
# Write `my_qparams(min_val, max_val, bits)` returning `(scale, zero_point)` (a Python float and int) for PyTorch's
# **affine** convention on a **signed** `bits`-bit range $[-2^{b-1}, 2^{b-1}-1]$: widen the range to contain 0, use
# the formulas above (round half to even, as `torch.round` and Python's `round` do), floor the scale at
# `torch.finfo(torch.float32).eps` (what PyTorch does for an all-zero range) and clamp the zero point into the range.

# %% solution="ex1_qparams"
def my_qparams(min_val, max_val, bits):
    """PyTorch affine (scale, zero_point) of [min_val, max_val] on the signed `bits`-bit range."""
    ### BEGIN SOLUTION
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo, hi = min(float(min_val), 0.0), max(float(max_val), 0.0)
    scale = max((hi - lo) / (qmax - qmin), torch.finfo(torch.float32).eps)
    zero_point = qmin - round(lo / scale)
    return float(scale), int(min(max(zero_point, qmin), qmax))
    ### END SOLUTION

# %% tests="ex1_qparams_tests" points=2
s, z = my_qparams(-1.0, 3.0, 8)
assert abs(s - 4 / 255) < 1e-9 and z == -128 + 64, (s, z)  # round(-1 / (4/255)) = round(-63.75) = -64
s, z = my_qparams(0.5, 2.0, 8)  # the range is widened to [0, 2]: real 0 is code -128
assert abs(s - 2 / 255) < 1e-9 and z == -128
### BEGIN HIDDEN TESTS
rng = np.random.default_rng(2)
for _ in range(200):
    bits = int(rng.choice([2, 4, 8, 12]))
    lo, hi = sorted(rng.normal(0, 3, size=2).tolist())
    s, z = my_qparams(lo, hi, bits)
    qmin, qmax = quant_range(bits)
    s_ref, z_ref = calc_qparams(lo, hi, qmin, qmax, convention="torch")
    assert math.isclose(s, float(s_ref), rel_tol=1e-6), (lo, hi, bits, s, float(s_ref))
    assert z == int(z_ref), (lo, hi, bits, z, int(z_ref))
s, z = my_qparams(0.0, 0.0, 8)
assert s == float(torch.finfo(torch.float32).eps) and z == -128, "an all-zero range: eps scale"
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torch.ao.quantization import MinMaxObserver

    for _ in range(20):
        data = torch.from_numpy(rng.normal(rng.normal(), rng.uniform(0.1, 5), size=100)).float()
        o = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
        o(data)
        s_ref, z_ref = o.calculate_qparams()
        s, z = my_qparams(data.min().item(), data.max().item(), 8)
        assert math.isclose(s, s_ref.item(), rel_tol=1e-6) and z == int(z_ref), "must match torch.ao's observer"
### END HIDDEN TESTS
print("ex1 passed")

# %% [markdown]
# ### Exercise 2 · Quantize and dequantize
#
# Write `my_quantize(x, scale, zero_point, qmin, qmax)` returning the integer codes
# $\operatorname{clamp}(\operatorname{round}(x / S) + Z, q_\min, q_\max)$ as an `int64` tensor (use division, the ONNX
# convention, and `torch.round`, which rounds half to even), and `my_dequantize(q, scale, zero_point)` returning
# $S (q - Z)$ as float32.

# %% solution="ex2_qdq"
def my_quantize(x, scale, zero_point, qmin, qmax):
    """Integer codes of x (int64), ONNX QuantizeLinear semantics."""
    ### BEGIN SOLUTION
    return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int64)
    ### END SOLUTION


def my_dequantize(q, scale, zero_point):
    """Real values S (q - Z) in float32."""
    ### BEGIN SOLUTION
    return (scale * (q.to(torch.float32) - zero_point)).to(torch.float32)
    ### END SOLUTION

# %% tests="ex2_qdq_tests" points=2
q = my_quantize(torch.tensor([-1.0, 0.0, 0.25, 0.75, 100.0]), 0.5, 3, -8, 7)
assert q.dtype == torch.int64 and q.tolist() == [1, 3, 3, 5, 7], q  # 0.5 and 1.5 round to even; 100 clips
assert my_dequantize(q, 0.5, 3).tolist() == [-1.0, 0.0, 0.0, 1.0, 2.0]
### BEGIN HIDDEN TESTS
gen = torch.Generator().manual_seed(3)
for bits, signed in [(8, True), (8, False), (4, True), (2, False)]:
    qmin, qmax = quant_range(bits, signed)
    x = torch.randn(5000, generator=gen) * 3
    s, z = calc_qparams(x.min() * 0.7, x.max() * 0.7, qmin, qmax, convention="onnx")
    q = my_quantize(x, float(s), int(z), qmin, qmax)
    assert torch.equal(q, quantize(x, s, z, qmin, qmax, rounding="onnx").to(torch.int64)), (bits, signed)
    assert torch.allclose(my_dequantize(q, float(s), int(z)), dequantize(q, s, z), rtol=0, atol=1e-6)
    err = (my_dequantize(q, float(s), int(z)) - x).abs()
    inside = (x >= float(s) * (qmin - int(z))) & (x <= float(s) * (qmax - int(z)))
    assert err[inside].max() <= float(s) / 2 + 1e-6, "rounding error is at most half a step"
### END HIDDEN TESTS
print("ex2 passed")

# %% [markdown]
# ## 2 · Granularity: per tensor, per channel, per group
#
# One scale for a whole weight matrix must cover its largest value, so output channels with small weights get only
# a few of the 256 codes. Giving each **output channel** its own scale (Krishnamoorthi 2018, sec. 2.3) costs one
# float per row and no extra arithmetic: the per-channel scale simply multiplies that output in the requantization
# step. **Per group** goes further (one scale per `g` consecutive inputs of a row, the norm for 4-bit LLM weights,
# chapter 07) but needs a kernel that rescales inside the dot product.
#
# Below: the SQNR (signal-to-quantization-noise ratio, higher is better, +6 dB per extra bit) of every layer of the
# pretrained digits LeNet, at 8 and 4 bits, symmetric min/max ranges.

# %%
model = pretrained("lenet", "digits", progress=False).eval()
folded = quant.fold_batchnorms(model)
weights = {name: m.weight.detach() for name, m in folded.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
for name, w in weights.items():
    rows = w.reshape(w.shape[0], -1).abs().amax(1)
    print(f"{name:14s} {tuple(w.shape)!s:18s} per-row max |w| from {rows.min():.3f} to {rows.max():.3f} "
          f"({rows.max() / rows.min():.0f}x)")
fig, axes = plt.subplots(1, 2, figsize=(12, 3.2))
for ax, bits in zip(axes, (8, 4)):
    explore.plot_granularity_errors(weights, bits=bits, group_size=5, ax=ax)
    ax.set_title(f"{bits}-bit weights")
plt.tight_layout()
plt.show()

# %% [markdown]
# The gap between per tensor and per channel is largest where the per-row ranges differ most (the convolutions
# after BN folding: folding multiplies each row by $\gamma/\sigma$, which spreads the ranges). Per group (5 consecutive weights of a row; no bar where 5 does not divide the row) adds a
# little more. Because each step costs nothing at 8 bits on modern runtimes, *per-channel symmetric weights* are
# the default of PyTorch, ONNX Runtime and TensorRT.
#
# ### Exercise 3 · Per-channel quantization of a weight matrix
#
# Write `quantize_per_channel(w, bits)` for a 2-D weight `w` of shape `(out, in)`: one **symmetric** scale per row in
# ONNX Runtime's convention, $S_i = \max_j |w_{ij}| / (2^{b-1} - 1)$, codes
# $q_{ij} = \operatorname{clamp}(\operatorname{round}(w_{ij}/S_i), -(2^{b-1}-1), 2^{b-1}-1)$ (the narrow range: $-127..127$
# for 8 bits). A row of zeros gets scale `1.0` (as ORT does). Return `(q, scale)`: an int64 tensor shaped like `w` and
# a float32 tensor of shape `(out,)`.

# %% solution="ex3_per_channel"
def quantize_per_channel(w, bits):
    """Symmetric per-output-channel codes (narrow range) and scales of a 2-D weight."""
    ### BEGIN SOLUTION
    qmax = 2 ** (bits - 1) - 1
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax)).to(torch.float32)
    q = torch.clamp(torch.round(w / scale[:, None]), -qmax, qmax).to(torch.int64)
    return q, scale
    ### END SOLUTION

# %% tests="ex3_per_channel_tests" points=3
w = torch.tensor([[0.5, -1.0, 0.25], [0.03, 0.01, -0.04]])
q, s = quantize_per_channel(w, 8)
assert s.shape == (2,) and torch.allclose(s, torch.tensor([1 / 127, 0.04 / 127]))
assert q.tolist() == [[64, -127, 32], [95, 32, -127]], q  # both rows use the full range
### BEGIN HIDDEN TESTS
gen = torch.Generator().manual_seed(4)
for bits in (8, 4, 3):
    w = torch.randn(32, 48, generator=gen) * torch.logspace(-3, 0, 32)[:, None]
    w[5] = 0.0
    q, s = quantize_per_channel(w, bits)
    qmax = 2 ** (bits - 1) - 1
    amax = w.abs().amax(1)
    s_ref, z_ref = calc_qparams(-amax, amax, -qmax - 1, qmax, symmetric=True, convention="onnx")
    assert torch.allclose(s, s_ref, rtol=1e-6, atol=0) and float(s[5]) == 1.0
    q_ref = quantize(w, s_ref, z_ref, -qmax, qmax, axis=0, rounding="onnx").to(torch.int64)
    assert q.dtype == torch.int64 and (q - q_ref).abs().max() <= 1 and (q != q_ref).float().mean() < 1e-3
    per_channel = error_metrics(w, s[:, None] * q)[0]
    s_t, _ = calc_qparams(-w.abs().max(), w.abs().max(), -qmax - 1, qmax, symmetric=True, convention="onnx")
    per_tensor = error_metrics(w, quantize(w, s_t, 0, -qmax, qmax, rounding="onnx") * s_t)[0]
    assert per_channel < per_tensor, "per-channel must beat per-tensor on rows of different scales"
### END HIDDEN TESTS
print("ex3 passed")

# %% [markdown]
# ## 3 · Calibrating activations: min/max, percentile, MSE, entropy
#
# Weights are known in advance; activations are not. *Static* PTQ runs a few hundred representative inputs through
# the model (**calibration**), records statistics at every quantized tensor with an **observer**, and freezes one
# range per tensor. Four observers, all in `coursekit.quant` (`make_observer(name)`):
#
# * **min/max**: the full observed range. Never clips, but one outlier stretches the step for everyone.
# * **percentile** (McKinstry et al. 2019; Wu et al. 2020): clip at e.g. the 99.99th percentile.
# * **MSE** (Nagel et al. 2021, eq. 11): the range that minimises $\mathbb{E}[(x - \hat x)^2]$ over shrunken
#   candidates $[\alpha \min, \alpha \max]$.
# * **entropy** (TensorRT, Migacz 2017): the threshold that minimises the KL divergence between the histogram and
#   its quantized version.
#
# Which one wins depends on the *data* and on the *bits*. Three cases, the error measured on the calibration data:

# %%
gen = torch.Generator().manual_seed(0)
n = 20_000 if FAST else 100_000
cases = {
    "heavy tail (|Student-t|, 3 dof)": torch.distributions.StudentT(3.0).sample((n,)).abs(),
    "bounded (uniform [0, 4])": torch.rand(n, generator=gen) * 4,
    "bounded + rare large values that matter": torch.cat([torch.rand(n, generator=gen) * 4,
                                                          torch.full((n // 5000,), 40.0)]),
}
bins = 512 if FAST else 2048  # histogram resolution of the percentile/MSE/entropy observers
fig, axes = plt.subplots(2, 3, figsize=(15, 6))
for col, (label, data) in enumerate(cases.items()):
    for row, bits in enumerate((8, 4)):
        res = explore.calibration_errors(data, bits=bits, percentile=99.9, num_bins=bins)
        explore.plot_calibration(data, res, ax=axes[row, col], title=f"{label}, {bits} bits")
        best = min(res, key=lambda m: res[m]["mse"])
        print(f"{label:42s} {bits} bits: " + ", ".join(f"{m} {r['mse']:.2e}" for m, r in res.items())
              + f"  -> lowest MSE: {best}")
plt.tight_layout()
plt.show()

# %% [markdown]
# How to read it (check each claim against the printed MSEs; the data are seeded, your numbers are these):
#
# * **Heavy tails** are where clipping can pay: most values sit near zero and min/max spends the grid on a few
#   extremes. At 8 bits the grid is fine enough that min/max is already close to the best (MSE matches it or trims
#   a little; the fixed 99.9% percentile and entropy clip too much). At 4 bits the step of min/max is 16x coarser,
#   the rounding error of the bulk dominates, and every clipping method beats min/max.
# * **Bounded data** (uniform, or anything with a hard limit such as ReLU6 or a sigmoid): there is nothing to clip;
#   min/max is already (nearly) optimal and the other methods at best reproduce it.
# * **Outliers that carry information** (a rare but real large activation, like the "massive activations" of LLMs,
#   chapter 07): here 0.02% of the values are 40. At 8 bits, percentile clipping at 99.9% cuts them to 4 and its
#   error is about 100x that of min/max; MSE keeps them. At 4 bits every clipping method sacrifices them, because
#   on *average* squared error the bulk wins. If those few values decide the prediction, the tensor-level error is
#   the wrong criterion: only the model's accuracy tells.
#
# MSE is the safest default of the four because it optimises the quantity we care about on the calibration set, but
# the real criterion is the model's accuracy: the explorer in section 7 lets you compare them on the digits CNN.
#
# ### Exercise 4 · Percentile calibration
#
# Write `percentile_range(x, pct)` returning `(lo, hi)` as Python floats: the `(100 - pct)`-th and the `pct`-th
# percentiles of all values of `x`, with linear interpolation (what `np.percentile` and `torch.quantile` do by
# default). For `pct = 100` it is the min/max range.

# %% solution="ex4_percentile"
def percentile_range(x, pct):
    """(lo, hi) clipping range that cuts (100 - pct) percent from each tail."""
    ### BEGIN SOLUTION
    values = x.detach().flatten().double().numpy()
    return float(np.percentile(values, 100 - pct)), float(np.percentile(values, pct))
    ### END SOLUTION

# %% tests="ex4_percentile_tests" points=2
lo, hi = percentile_range(torch.arange(101.0), 99.0)
assert abs(lo - 1.0) < 1e-9 and abs(hi - 99.0) < 1e-9
assert percentile_range(torch.tensor([-2.0, 5.0, 1.0]), 100) == (-2.0, 5.0)
### BEGIN HIDDEN TESTS
gen = torch.Generator().manual_seed(5)
for pct in (90.0, 99.0, 99.9, 99.99):
    x = torch.randn(4, 3000, generator=gen) * 2 + 0.3
    lo, hi = percentile_range(x, pct)
    ref = torch.quantile(x.flatten().double(), torch.tensor([1 - pct / 100, pct / 100], dtype=torch.float64))
    assert abs(lo - ref[0].item()) < 1e-5 and abs(hi - ref[1].item()) < 1e-5, pct
# agrees with coursekit's histogram-based PercentileObserver (same cut from each tail) on a large sample
x = torch.randn(200_000, generator=gen)
obs = quant.PercentileObserver(percentile=2 * 99.0 - 100, num_bins=8192)
obs.update(x)
(lo, hi), (olo, ohi) = percentile_range(x, 99.0), obs.range()
assert abs(lo - float(olo)) < 0.02 and abs(hi - float(ohi)) < 0.02
# and it beats min/max on heavy-tailed data at 4 bits
torch.manual_seed(8)
heavy = torch.distributions.Laplace(0.0, 1.0).sample((50_000,))
qmin, qmax = quant_range(4)


def mse_with(lo, hi):
    s, z = calc_qparams(lo, hi, qmin, qmax)
    return error_metrics(heavy, quant.fake_quantize(heavy, s, z, qmin, qmax))[0]


assert mse_with(*percentile_range(heavy, 99.0)) < mse_with(heavy.min().item(), heavy.max().item())
### END HIDDEN TESTS
print("ex4 passed")

# %% [markdown]
# ## 4 · Batch-norm folding
#
# At inference, a BatchNorm after a convolution is an affine function per output channel, so it can be merged into
# the convolution's weights and bias (Jacob et al. 2018, sec. 3.2; Krishnamoorthi 2018, eq. 13-14):
#
# $$W' = W \cdot \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}}, \qquad b' = (b - \mu)\frac{\gamma}{\sqrt{\sigma^2 + \epsilon}} + \beta .$$
#
# Fold **before** quantizing: the weights that get quantized must be the ones used at inference (a BN folded after
# quantization rescales the integer grid and breaks it), and a folded model has one layer fewer to run.
# `quant.fold_batchnorm(conv, bn)` does it for one pair, `quant.fold_batchnorms(model)` for a whole model:

# %%
test_loader = get_loaders("digits")[2]
x_test = torch.cat([x for x, _ in test_loader])
with torch.no_grad():
    ref, out = model(x_test), folded(x_test)
print(f"BatchNorm layers before: {sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())}, "
      f"after: {sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())}")
print(f"max |logit difference| over {len(x_test)} test images: {(ref - out).abs().max():.2e} (float rounding)")
print(f"same predictions: {bool((ref.argmax(1) == out.argmax(1)).all())}")

# %% [markdown]
# ### Exercise 5 · Fold a BatchNorm into a convolution
#
# Write `fold_bn(conv, bn)` returning a **new** `nn.Conv2d` (same hyper-parameters, with a bias) whose output equals
# `bn(conv(x))` in eval mode. Use `bn.running_mean`, `bn.running_var`, `bn.eps`, `bn.weight` ($\gamma$) and `bn.bias`
# ($\beta$); `conv.bias` may be `None`. Do not modify the inputs (`copy.deepcopy` the conv first).

# %% solution="ex5_fold"
import copy


def fold_bn(conv, bn):
    """A new Conv2d equal to bn(conv(x)) in eval mode."""
    ### BEGIN SOLUTION
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.weight = nn.Parameter(conv.weight * factor.reshape(-1, 1, 1, 1))
        fused.bias = nn.Parameter((bias - bn.running_mean) * factor + bn.bias)
    return fused
    ### END SOLUTION

# %% tests="ex5_fold_tests" points=3
conv, bn = model.features[0], model.features[1]
fused = fold_bn(conv, bn)
with torch.no_grad():
    xb = x_test[:16]
    assert isinstance(fused, nn.Conv2d) and fused is not conv
    assert torch.allclose(fused(xb), bn.eval()(conv(xb)), atol=1e-5)
### BEGIN HIDDEN TESTS
from torch.nn.utils.fusion import fuse_conv_bn_eval

gen = torch.Generator().manual_seed(6)
for bias, stride in ((True, 1), (False, 2)):
    conv = nn.Conv2d(3, 8, 3, stride=stride, padding=1, bias=bias)
    bn = nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(8, generator=gen))
        bn.running_var.copy_(torch.rand(8, generator=gen) + 0.1)
        bn.weight.copy_(torch.randn(8, generator=gen))
        bn.bias.copy_(torch.randn(8, generator=gen))
    conv.eval(), bn.eval()
    before = copy.deepcopy(conv.state_dict())
    fused = fold_bn(conv, bn)
    xb = torch.randn(4, 3, 9, 9, generator=gen)
    with torch.no_grad():
        expected = bn(conv(xb))
        assert torch.allclose(fused(xb), expected, atol=1e-5)
        assert torch.allclose(fused(xb), quant.fold_batchnorm(conv, bn)(xb), atol=1e-5)
        assert torch.allclose(fused(xb), fuse_conv_bn_eval(conv, bn)(xb), atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in conv.state_dict().items()), "conv must not be modified"
    assert fused.stride == conv.stride and fused.padding == conv.padding
### END HIDDEN TESTS
print("ex5 passed")

# %% [markdown]
# ## 5 · The integer-only path (Jacob et al. 2018)
#
# A fake-quantized layer (what `quantize_model` builds) still computes in float: it only restricts values to the
# grid. Real INT8 hardware computes with the integers. For a linear layer with input $x = S_x(q_x - Z_x)$,
# symmetric weights $W = S_w q_w$ and output $y = S_y(q_y - Z_y)$ (Jacob et al. 2018, eq. 4-7):
#
# $$q_y = Z_y + \underbrace{\frac{S_x S_w}{S_y}}_{M}\Big(\underbrace{\textstyle\sum_j (q_{x,j} - Z_x)\, q_{w,ij}}_{\text{int8} \times \text{int8} \to \text{int32}} + q_b\Big), \qquad q_b = \operatorname{round}\!\left(\frac{b}{S_x S_w}\right) \text{ in int32}.$$
#
# * 8-bit x 8-bit products need 16 bits, and summing thousands of them needs **32-bit accumulators**;
# * the bias is stored as **int32** with scale $S_x S_w$ and zero point 0, so it adds directly to the accumulator;
# * the only real number left is $M$ (typically in $(0, 1)$). It is stored as a **fixed-point** multiplier
#   $M = M_0 \cdot 2^{-n}$ with $M_0 \in [0.5, 1)$ held as an int32 $m_0 = \operatorname{round}(M_0 \cdot 2^{31})$
#   (eq. 6), so requantization is an integer multiply and a rounding right shift by $31 + n$ bits.
#
# `quant.quantize_multiplier` computes $(m_0, n)$ and `quant.to_integer` turns a calibrated fake-quant layer into an
# integer-only one. They agree with the fake-quant layer to within one output step (the fake-quant layer rounds
# once in float, the integer one rounds the bias and the multiplier as well):

# %%
m0, shift = quant.quantize_multiplier(0.0123)
print(f"M = 0.0123 ~ {int(m0)} * 2^-31 * 2^-{int(shift)} = {int(m0) * 2.0 ** (-31 - int(shift)):.10f}")

train_loader = get_loaders("digits")[0]
calibration = [x for _, (x, _) in zip(range(4 if FAST else 16), train_loader)]
cfg = quant.QuantConfig(quantize_outputs=True)  # static W8A8, output quantizers too: what integer kernels need
qmodel = quant.quantize_model(model, cfg, calibration)
qfc = qmodel.classifier[1]  # QuantLinear(64 -> 120)
ifc = quant.to_integer(qfc)
with torch.no_grad():
    feats = qmodel.features(x_test).flatten(1)
    fq, iq = qfc(feats), ifc(feats)
steps = ((fq - iq).abs() / ifc.out_scale).round()
print(f"integer vs fake-quant on {feats.shape[0]} inputs: identical on {(steps == 0).float().mean():.2%} of outputs, "
      f"max difference {int(steps.max())} step(s) of S_y = {ifc.out_scale:.4g}")
print(f"int8 weights {ifc.weight_q.dtype}, int32 bias {ifc.bias_q.dtype}, multipliers m0 {ifc.m0[:3].tolist()} "
      f"shifts {ifc.shift[:3].tolist()} (per output channel)")

# %% [markdown]
# ### Exercise 6 · An integer-only linear layer
#
# Write `my_integer_linear(x_q, x_zp, w_q, bias_q, m0, shift, out_zp, qmin=-128, qmax=127)` using integer arithmetic
# only:
#
# 1. `acc = (x_q - x_zp) @ w_q.T + bias_q`, computed in `int32` (inputs `(..., in)`, weights `(out, in)`,
#    `bias_q` int32 of shape `(out,)`);
# 2. requantize: `total = 31 + shift`; `y = (acc * m0 + 2**(total - 1)) >> total` in `int64` (a rounding right
#    shift); `m0`, `shift` are integer tensors of shape `()` or `(out,)`;
# 3. add `out_zp`, clamp to `[qmin, qmax]`, and return an `int64` tensor.

# %% solution="ex6_integer"
def my_integer_linear(x_q, x_zp, w_q, bias_q, m0, shift, out_zp, qmin=-128, qmax=127):
    """Integer-only Linear: int32 accumulation, fixed-point requantization."""
    ### BEGIN SOLUTION
    acc = (x_q.to(torch.int32) - x_zp) @ w_q.to(torch.int32).T + bias_q.to(torch.int32)
    total = 31 + torch.as_tensor(shift, dtype=torch.int64)
    prod = acc.to(torch.int64) * torch.as_tensor(m0, dtype=torch.int64)
    y = torch.bitwise_right_shift(prod + torch.bitwise_left_shift(torch.ones_like(total), total - 1), total)
    return torch.clamp(y + out_zp, qmin, qmax).to(torch.int64)
    ### END SOLUTION

# %% tests="ex6_integer_tests" points=4
# one output: acc = (5 - 1) * 3 + (2 - 1) * (-2) + 10 = 20; M = 0.25 = 2^30 * 2^-31 * 2^-1 -> 5; + zp 2 = 7
out = my_integer_linear(torch.tensor([[5, 2]]), 1, torch.tensor([[3, -2]]), torch.tensor([10], dtype=torch.int32),
                        torch.tensor(2**30), torch.tensor(1), 2)
assert out.dtype == torch.int64 and out.tolist() == [[7]], out
### BEGIN HIDDEN TESTS
gen = torch.Generator().manual_seed(7)
for per_channel in (False, True):
    x_q = torch.randint(0, 256, (16, 64), generator=gen)
    w_q = torch.randint(-127, 128, (24, 64), generator=gen)
    bias_q = torch.randint(-5000, 5000, (24,), generator=gen).to(torch.int32)
    real = torch.rand(24 if per_channel else (), generator=gen, dtype=torch.float64) * 0.01 + 1e-4
    m0, shift = quant.quantize_multiplier(real)
    got = my_integer_linear(x_q, 128, w_q, bias_q, m0, shift, 3, -128, 127)
    ref = quant.integer_linear(x_q, 128, w_q, bias_q, m0, shift, 3, -128, 127)
    assert torch.equal(got, ref.to(torch.int64)), "must equal coursekit.quant.integer_linear exactly"
# the calibrated LeNet layer: exactly the integer layer, within one step of fake-quant
xq_in = ifc.quantize_input(feats)
got = my_integer_linear(xq_in, ifc.in_zp, ifc.weight_q, ifc.bias_q, ifc.m0, ifc.shift, ifc.out_zp,
                        *ifc.out_range)
assert torch.equal(got, ifc.forward_int(xq_in).to(torch.int64))
y = (got - ifc.out_zp).float() * ifc.out_scale
assert ((y - fq).abs() / ifc.out_scale).round().max() <= 1, "within one output step of fake-quant"
### END HIDDEN TESTS
print("ex6 passed")

# %% [markdown]
# ## 6 · From fake-quant to a real INT8 model in ONNX Runtime
#
# Fake-quant is a *simulation*: it is slower than FP32 (every tensor is quantized and dequantized in float) and
# exists to measure accuracy and to export. Speed comes from a runtime with integer kernels. Two routes:
#
# 1. **Export the fake-quant model.** Its quantizers become `QuantizeLinear`/`DequantizeLinear` (QDQ) pairs; ONNX
#    Runtime fuses `DQ -> Conv -> Q` into an integer convolution.
# 2. **Let ONNX Runtime quantize an FP32 ONNX file** (`quantize_static`, with a calibration data reader that feeds
#    training batches; coursekit wraps it as `export.ort_quantize_static`).
#
# Either way, check **parity** (does the INT8 model compute what you validated?) and **accuracy** on the test set.
# Note the file sizes below: the exported fake-quant model stores FP32 weights followed by Q/DQ nodes (no smaller
# than FP32, ORT folds them when it loads the model), while ORT's own quantizer stores INT8 weights.

# %%
from coursekit import export

tmp = tempfile.mkdtemp()
example = x_test[:1]
t0 = time.perf_counter()
fp32_path = export.export_onnx(model, example, f"{tmp}/lenet_fp32.onnx")
qdq_path = export.export_onnx(qmodel, example, f"{tmp}/lenet_qdq_from_torch.onnx")
ort_path = export.ort_quantize_static(fp32_path, f"{tmp}/lenet_int8_ort.onnx", calibration, method="minmax")
print(f"export + ORT calibration: {time.perf_counter() - t0:.1f} s")
print("ops of the exported fake-quant model:", export.op_counts(qdq_path))
print("parity, fake-quant torch vs its ONNX export:", export.parity(qmodel, qdq_path, [x_test]))
print("parity, FP32 torch vs ORT INT8:          ", export.parity(model, ort_path, [x_test]))


def ort_accuracy(path):
    session = export.ort_session(path)
    correct = sum(int((export.ort_run(session, x).argmax(1) == y.numpy()).sum()) for x, y in test_loader)
    return correct / len(test_loader.dataset)


print(f"\naccuracy: torch FP32 {evaluate(model, test_loader)['accuracy']:.2%}, torch fake-quant "
      f"{evaluate(qmodel, test_loader)['accuracy']:.2%}, ORT INT8 {ort_accuracy(ort_path):.2%}")
for path in (fp32_path, qdq_path, ort_path):
    print(f"{path.name:28s} {export.file_size(path) / 1e3:7.1f} kB")

# %% [markdown]
# ### Benchmark your machine: ORT FP32 vs ORT INT8 (the `ptq` suite)
#
# The `ptq` suite (also `coursekit bench --suite ptq`) measures five variants of three models at batch 1 and 64 with
# one pinned thread, all variants of a model interleaved: torch eager FP32, **ORT FP32 (the baseline)**, ORT INT8
# static (QDQ, per-channel weights, calibrated on training batches), ORT INT8 dynamic, and torch.ao INT8 dynamic as an
# independent oracle. Models: the Linear-heavy model (4 x 2048x2048), a convolution-heavy LeNet (32/64 channels on
# 32x32 inputs, untrained) and the digits LeNet (with test accuracy). `speedup` is relative to ORT FP32.

# %%
from coursekit.suites import run_suite
from coursekit.suites.ptq import reading

result = run_suite("ptq", progress=False, repeats=5 if FAST else None)
records = result["records"]
print(bench.format_table(records, columns=["model", "variant", "batch", "latency_ms_min", "latency_ms_median",
                                           "speedup", "size_bytes", "accuracy"]))

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
for ax, b in zip(axes, (1, 64)):
    bench.plot_latency(records, batch=b, ax=ax)
plt.tight_layout()
plt.show()
print(reading(records))

# %% [markdown]
# ### Reading the numbers honestly (and when PTQ does *not* help)
#
# Read the generated lines above against these explanations:
#
# * **Compare with ORT FP32, not torch eager.** Moving to ONNX Runtime is itself a speedup (a fused graph, no
#   Python per layer). Quoting INT8 against torch eager credits quantization with the runtime's gain: the reading
#   prints by how much.
# * **Linear-heavy at batch 1** is memory-bound: every weight is read once per call, so 4x fewer bytes plus VNNI
#   dot products give the largest gains. This is the case of LLM decoding.
# * **Static INT8 needs enough work per call.** The digits LeNet runs in microseconds: quantizing the input,
#   layout changes and dequantizing the output cost as much as the arithmetic saved, and INT8 can be *slower*. The
#   wider CNN, with the same structure, shows the gain once the convolutions dominate.
# * **Dynamic quantization is for Linear/LSTM-heavy models.** On CNNs it is slower: activations are quantized at
#   run time for every layer, and ORT's dynamic convolution path is slow.
# * **File sizes** follow the bits (about 4x) only when the weights dominate the file; a tiny model carries
#   fixed overhead.
# * **Hardware decides.** Without INT8 dot-product instructions (VNNI on x86, `dotprod`/`i8mm` on Arm) INT8 can lose
#   to FP32 everywhere. Run `coursekit doctor` before promising a speedup.
#
# ## 7 · How far does PTQ go? INT8 vs INT4 vs INT2
#
# Same model, same calibration, fewer bits (`W` weight bits, `A` activation bits; per-channel symmetric weights,
# min/max affine activations):

# %%
configs = {"W8A8": (8, 8), "W4A8": (4, 8), "W8A4": (8, 4), "W4A4": (4, 4), "W2A8": (2, 8)}
fp32_acc = evaluate(model, test_loader)["accuracy"]
print(f"{'config':6s} {'min/max':>9s} {'mse':>9s}   (FP32 {fp32_acc:.2%})")
accs = {}
for label, (wb, ab) in configs.items():
    accs[label] = [evaluate(quant.quantize_model(model, quant.QuantConfig(weight_bits=wb, act_bits=ab,
                                                                          observer=obs), calibration),
                            test_loader)["accuracy"] for obs in ("minmax", "mse")]
    print(f"{label:6s} {accs[label][0]:9.2%} {accs[label][1]:9.2%}")
fig, ax = plt.subplots(figsize=(7, 2.8))
ax.bar(np.arange(len(accs)) - 0.2, [100 * a[0] for a in accs.values()], 0.4, label="min/max activations")
ax.bar(np.arange(len(accs)) + 0.2, [100 * a[1] for a in accs.values()], 0.4, label="MSE activations")
ax.axhline(100 * fp32_acc, color="k", ls="--", lw=0.8, label="FP32")
ax.set_xticks(range(len(accs)), list(accs))
ax.set_ylabel("test accuracy (%)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Read the table with the test set's resolution in mind: one digit image is 1/360 = 0.28 points, so differences
# of a point or less between the 8- and 4-bit rows are one to three images, noise (quantization can even "gain"
# accuracy by chance). On this small, easy model INT8 PTQ is free and 4 bits costs little; 2-bit weights break
# post-training quantization whatever the calibration: that is where quantization-aware training (chapter 03)
# earns its cost. On larger models 4-bit activations hurt much more than 4-bit weights (one range per tensor, and
# outlier channels; chapter 07).
#
# ### Explore: bits, granularity and calibration, live
#
# Change the bit widths, the granularity of the weights and the activation calibration method; the model is
# re-quantized on the calibration batches and evaluated on the digits test set, and the chart shows each layer's
# weight SQNR. Things to try: 4-bit weights per tensor vs per channel; 3-bit activations with min/max vs MSE;
# 2-bit weights with every setting (nothing saves them).

# %%
explorer = explore.ptq_explorer(model, calibration, test_loader, group_size=4)
explorer

# %% [markdown]
# ## 8 · Common mistakes
#
# * **Skipping accuracy validation.** A quantized model that loads and runs is not a correct model. Evaluate on the
#   real test set, compare with FP32 in the same runtime, and check parity after export.
# * **Deploying INT8 on hardware without INT8 acceleration.** Without VNNI/AMX (x86) or dot-product instructions
#   (Arm) INT8 can be slower than FP32. Check `coursekit doctor`.
# * **Skipping the benchmark.** Quantization promises speed; only a measurement on the target delivers it.
# * **Calibrating on too few or unrepresentative batches.** A range learned from ten images of one class, or from
#   inputs preprocessed differently from production, clips real inputs. Use a few hundred samples drawn like
#   production traffic; watch for ranges that change when you add more.
# * **Quantizing the first and last layers aggressively.** The input layer sees raw data with few channels and the
#   last layer produces the logits: both are sensitive and cheap. Keep them at 8 bits (or in float) when lower
#   bit widths are used elsewhere (`QuantConfig(skip=...)`).
# * **Comparing INT8 against torch eager instead of ORT FP32.** That conflates the runtime's speedup with
#   quantization's.
# * **Expecting fake-quant to be faster.** It is a float simulation (slower than FP32); only integer kernels in a
#   runtime are fast.
# * **Folding BatchNorm after quantizing**, or forgetting the model was in train mode during calibration.
# * **Dynamic quantization on a CNN**: slower, as measured above.
#
# ## 9 · Interview questions
#
# Practise with the quiz below (immediate feedback and explanations), or in a terminal with
# `coursekit drill --chapter 02`.

# %%
from coursekit import quiz

quiz.show(chapter="02", n=5)

# %% [markdown]
# ### Graded interview questions
#
# Answer each question in a dictionary called `answers` that maps the question id to your answer: a letter for a
# choice question (`"B"`, or `"A,C"` when several are right), a number for a numeric one. The hidden test checks
# them against the bank installed with coursekit.

# %% locked="quiz_questions"
QUIZ_IDS = ["ch02-dequant-formula", "ch02-bn-fold-bias", "ch02-requant-shift", "ch02-common-mistakes"]
quiz.render(QUIZ_IDS)

# %% solution="quiz_answers"
### BEGIN SOLUTION
answers = {
    "ch02-dequant-formula": "D",
    "ch02-bn-fold-bias": -0.7,
    "ch02-requant-shift": 9,
    "ch02-common-mistakes": "A,B,C,D",
}
### END SOLUTION

# %% tests="quiz_answers_tests" points=4
assert isinstance(answers, dict) and set(answers) == set(QUIZ_IDS), "answer every question id"
### BEGIN HIDDEN TESTS
quiz.grade_answers(answers, QUIZ_IDS)
### END HIDDEN TESTS
print("quiz passed")

# %% [markdown]
# ## Summary
#
# * Quantization is the affine map $r = S(q - Z)$: the range decides the trade-off between clipping and rounding;
#   real 0 is always exact. PyTorch and ONNX Runtime differ in symmetric range and rounding: name the convention.
# * Weights: symmetric, per output channel (per group at 4 bits). Activations: affine, one range per tensor,
#   calibrated; clipping (percentile/MSE/entropy) helps heavy tails and low bit widths, hurts when outliers matter.
# * Fold BatchNorm before quantizing. Integer inference is int8 x int8 -> int32 + int32 bias, then a fixed-point
#   multiplier and a shift.
# * Speed comes from a runtime with integer kernels, measured against the same runtime in FP32, on hardware with
#   INT8 instructions, with enough work per call. Always validate accuracy.
#
# Next: **03 · Quantization-aware training**: when PTQ at 4 bits and below loses too much, train through the
# quantizer.
