# %% [markdown] locked="title"
# # 02 · Linear quantization and post-training quantization (PTQ)
#
# **The deployment problem.** Your model is trained, validated and shipped in FP32, and now it must run on a CPU
# fleet that costs money per millisecond, or on a phone that has a quarter of the memory. Retraining is not on the
# table. Post-training quantization (PTQ) is the first tool everyone reaches for: store weights (and activations)
# as 8-bit integers, calibrate a few numbers on a handful of batches, export, done. Done *well*, it is 4x smaller
# and can be several times faster at the same accuracy; done carelessly, it is slower, or quietly less accurate.
#
# In this chapter you build PTQ from its parts and then use the real thing:
#
# 1. the affine map between real numbers and integers (scale, zero point, clipping), symmetric vs asymmetric,
#    and the bit-exact conventions of PyTorch and ONNX;
# 2. granularity: one scale per tensor, per channel or per group, measured on real weights;
# 3. calibration of activations: min/max vs percentile vs MSE vs entropy, and when each one wins;
# 4. batch-norm folding and the integer-only arithmetic of Jacob et al. 2018 (int8 x int8 -> int32 -> int8),
#    ending with **your own fully INT8 LeNet**, built from the functions you wrote;
# 5. a real INT8 model in ONNX Runtime, its accuracy, and its speed *on your CPU*;
# 6. dynamic vs static vs weight-only quantization: where the activation scale comes from;
# 7. how far PTQ goes (INT8 vs INT4 vs INT2), judged beyond top-1: per-class accuracy and agreement with FP32.
#
# Run the notebook cell by cell (Shift+Enter): "Run All" stops at the first exercise you have not answered yet,
# as in any nbgrader course.
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below it.
# A failing test tells you what it expected, what your code returned and, for the usual mistakes, which one you
# made. `coursekit check notebooks/02_ptq.ipynb` grades the whole notebook (hidden tests included) from a terminal.

# %% locked="setup"
# Setup: run this first. Warnings are silenced so that graded cells stay clean.
import copy
import math
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import coursekit
from coursekit import bench, quant
from coursekit._env import fast_mode
from coursekit.data import get_loaders, load_dataset
from coursekit.grading.sealed import expect_close, expect_equal
from coursekit.quant import explore
from coursekit.train import evaluate, pretrained, top1_agreement

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
# | scale arithmetic | float32 | float64, stored as float32 |
# | tiny ranges | $S \geq$ float32 eps | $S = 1$ when the range is 0 |
#
# `coursekit.quant.calc_qparams` implements both (`convention="torch"` / `"onnx"`), tested bit-exactly against
# each library:

# %%
for convention in ("torch", "onnx"):
    for symmetric in (False, True):
        s, z = quant.calc_qparams(-0.6, 1.4, -128, 127, symmetric=symmetric, convention=convention)
        print(f"{convention:5s} {'symmetric' if symmetric else 'affine   '}  S = {float(s):.8f}  Z = {int(z)}")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torch.ao.quantization import MinMaxObserver

    obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
    obs(torch.tensor([-0.6, 1.4]))
    s_ref, z_ref = obs.calculate_qparams()
s, z = quant.calc_qparams(-0.6, 1.4, -128, 127)
print("torch.ao MinMaxObserver agrees bit-exactly:", torch.equal(s.reshape(1), s_ref), int(z) == int(z_ref))

# the two roundings disagree, rarely: x * (1/S) and x / S can land on different sides of a .5 tie in float32
x = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0))
s, z = quant.calc_qparams(-2.7, 2.9, -128, 127)
q_torch = quant.quantize(x, s, z, -128, 127, rounding="torch")
q_onnx = quant.quantize(x, s, z, -128, 127, rounding="onnx")
differ = q_torch != q_onnx
print(f"torch vs onnx rounding differ on {int(differ.sum())} of {x.numel():,} values, by at most "
      f"{int((q_torch.int() - q_onnx.int()).abs().max())} code: rare, but a bit-exact test must pick a convention")
x_tie, s_tie = torch.tensor([-38.25]), 0.3
print(f"example: x = {x_tie.item()}, S = {s_tie} (float32): x / S = {(x_tie / s_tie).item():.7f} -> "
      f"{torch.round(x_tie / s_tie).item():.0f}, x * (1/S) = {(x_tie * (1 / s_tie)).item():.7f} -> "
      f"{torch.round(x_tie * (1 / s_tie)).item():.0f}")

# %% [markdown]
# ### Exercise 1 · Scale and zero point
#
# Write `my_qparams(min_val, max_val, bits)` returning `(scale, zero_point)` (a Python float and int) for PyTorch's
# **affine** convention on a **signed** `bits`-bit range $[-2^{b-1}, 2^{b-1}-1]$: widen the range to contain 0, use
# the formulas above (round half to even, as `torch.round` and Python's `round` do), floor the scale at
# `torch.finfo(torch.float32).eps` (what PyTorch does for an all-zero range) and clamp the zero point into the range.
# Compute in Python floats (float64); section 5 stores the scales as float32.

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
# Visible tests: each expected value is worked out by hand in the comment
# S = 4/255; min/S = -63.75 rounds to -64; Z = -128 + 64
expect_close(list(my_qparams(-1.0, 3.0, 8)), [4 / 255, -64], what="my_qparams(-1.0, 3.0, 8)",
             wrong={"the zero point was truncated with int(): round(-63.75) is -64, int(-63.75) is -63": [4 / 255, -65],
                    "unsigned range [0, 255]: the exercise asks for the signed [-128, 127]": [4 / 255, 64],
                    "divided by 2**bits = 256 instead of 2**bits - 1 = 255 steps": [4 / 256, -64]})
# the range is widened to [0, 2]: real 0 is code -128
expect_close(list(my_qparams(0.5, 2.0, 8)), [2 / 255, -128], what="my_qparams(0.5, 2.0, 8)",
             wrong={"the range was not widened to contain 0 (real 0 must be exactly representable)": [1.5 / 255, -128]})
# S = 255/255 = 1 and min/S = -2.5, a tie: half to even gives -2, so Z = -128 + 2
expect_close(list(my_qparams(-2.5, 252.5, 8)), [1.0, -126], what="my_qparams(-2.5, 252.5, 8)",
             wrong={"rounded half away from zero: round(-2.5) is -2 (half to even), not -3": [1.0, -125]})
expect_close(list(my_qparams(-3.5, 251.5, 8)), [1.0, -124], what="my_qparams(-3.5, 251.5, 8)",
             wrong={"floor(x + 0.5) rounds the tie -3.5 up to -3; half to even gives -4": [1.0, -125]})
expect_close(list(my_qparams(0.0, 0.0, 8)), [float(torch.finfo(torch.float32).eps), -128],
             what="my_qparams(0.0, 0.0, 8) (an all-zero range: the scale is floored at float32 eps)")
### BEGIN HIDDEN TESTS
import math  # noqa: F811 (each hidden section stands alone)

from coursekit.grading.sealed import expect_close, forbid, sealed_test

# wrong answers caught: range not widened to contain 0; zero point truncated with int(), rounded half away from
# zero, or floor(x + 0.5) instead of half to even; unsigned range [0, 2^b - 1]; 2^b steps instead of 2^b - 1;
# delegating to coursekit.quant.calc_qparams or torch.ao's MinMaxObserver (forbidden while the probe runs)


def _cases():
    import numpy as np

    rng = np.random.default_rng(2)
    cases = []
    for _ in range(120):
        bits = int(rng.choice([2, 4, 8, 12]))
        lo, hi = sorted(rng.normal(0, 3, size=2).tolist())
        cases.append((lo, hi, bits))
    # one-sided ranges (widening), exact .5 ties of min/S (rounding), an all-zero range
    return cases + [(0.5, 2.0, 8), (-3.0, -1.0, 8), (-2.5, 252.5, 8), (-3.5, 251.5, 8), (-0.5, 254.5, 8),
                    (0.0, 0.0, 8), (-1.0, 3.0, 4)]


def _formula(lo, hi, bits, widen=True, signed=True, extra_step=0, rnd=round):
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if widen:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / (qmax - qmin + extra_step), 2.0**-23)
    return [scale, min(max(qmin - int(rnd(lo / scale)), qmin), qmax)]


def _probe():
    with forbid("coursekit.quant.calc_qparams", "coursekit.quant.primitives.calc_qparams",
                "torch.ao.quantization.MinMaxObserver", "torch.ao.quantization.observer.MinMaxObserver",
                exercise="Exercise 1"):
        return [list(my_qparams(lo, hi, bits)) for lo, hi, bits in _cases()]


def _check(out):
    from coursekit.quant import calc_qparams, quant_range

    want = []
    for lo, hi, bits in _cases():
        s, z = calc_qparams(lo, hi, *quant_range(bits), convention="torch")
        want.append([float(s), int(z)])

    def variant(**kw):
        return [_formula(lo, hi, bits, **kw) for lo, hi, bits in _cases()]

    expect_close(out, want, what="my_qparams on hidden ranges (2 to 12 bits)", rtol=1e-6, wrong={
        "the range is not widened to contain 0 (real 0 must be exactly representable)": variant(widen=False),
        "the zero point is truncated with int() instead of rounded": variant(rnd=int),
        "ties are rounded half away from zero; round half to even (Python's round, torch.round)":
            variant(rnd=lambda v: math.copysign(math.floor(abs(v) + 0.5), v)),
        "floor(x + 0.5) rounds ties up; round half to even (Python's round, torch.round)":
            variant(rnd=lambda v: math.floor(v + 0.5)),
        "unsigned range [0, 2^b - 1] instead of the signed [-2^(b-1), 2^(b-1) - 1]": variant(signed=False),
        "the range is divided into 2^b steps instead of 2^b - 1": variant(extra_step=1),
    })


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 1 passed")

# %% [markdown]
# ### Exercise 2 · Quantize and dequantize
#
# Write `my_quantize(x, scale, zero_point, qmin, qmax)` returning the integer codes
# $\operatorname{clamp}(\operatorname{round}(x / S) + Z, q_\min, q_\max)$ as an `int64` tensor (use **division**, the
# ONNX convention, and `torch.round`, which rounds half to even), and `my_dequantize(q, scale, zero_point)` returning
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
expect_equal(str(q.dtype), "torch.int64", what="the dtype of my_quantize's codes")
# -1/0.5 = -2 -> 1; 0.25/0.5 = 0.5 and 0.75/0.5 = 1.5 round to even (0 and 2); 100/0.5 + 3 clips to 7
expect_equal(q.tolist(), [1, 3, 3, 5, 7], what="my_quantize([-1, 0, 0.25, 0.75, 100], S=0.5, Z=3, -8, 7)",
             wrong={"ties rounded half away from zero: torch.round rounds 0.5 to 0 and 1.5 to 2": [1, 3, 4, 5, 7],
                    "no clamp to [qmin, qmax]": [1, 3, 3, 5, 203]})
# float32: -38.25 / 0.3 = -127.4999924 -> -127, but -38.25 * (1/0.3) = -127.5 -> -128 (the tie goes to even)
expect_equal(my_quantize(torch.tensor([-38.25]), 0.3, 0, -128, 127).tolist(), [-127],
             what="my_quantize([-38.25], S=0.3, Z=0)",
             wrong={"x * (1/scale) rounds differently: the exercise asks for division, x / scale": [-128]})
expect_close(my_dequantize(q, 0.5, 3).tolist(), [-1.0, 0.0, 0.0, 1.0, 2.0], what="my_dequantize(q, 0.5, 3)",
             wrong={"S * q - Z instead of S * (q - Z)": [-2.5, -1.5, -1.5, -0.5, 0.5]})
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import expect_close, expect_equal, forbid, sealed_test  # noqa: F811 (each hidden section stands alone)

# wrong answers caught: x * (1/scale) (PyTorch's reciprocal) instead of ONNX's division, on float32 inputs where the
# two round differently (found by a deterministic search below); round half away from zero; no clamp; codes not
# int64; S * q - Z in dequantize; delegating to coursekit.quant.quantize/dequantize (forbidden in the probe)
FORBIDDEN = ("coursekit.quant.quantize", "coursekit.quant.primitives.quantize", "coursekit.quant.dequantize",
             "coursekit.quant.primitives.dequantize", "coursekit.quant.fake_quantize", "torch.quantize_per_tensor")


def _division_cases():
    """[(scale, xs)]: float32 values where round(x / s) != round(x * (1 / s)), searched deterministically."""
    import torch

    cases = []
    for s in (torch.rand(40, generator=torch.Generator().manual_seed(21)) * 0.5 + 0.01).tolist():
        s32 = torch.tensor(s, dtype=torch.float32)
        x = (torch.arange(-120, 120, dtype=torch.float32) + 0.5) * s32
        differ = torch.round(x / s32) != torch.round(x * (1 / s32))
        if differ.any():
            cases.append((float(s32), x[differ][:6]))
    assert len(cases) >= 5, "the search for differing roundings found too few cases"
    return cases[:8]


def _random_cases():
    import torch

    gen = torch.Generator().manual_seed(3)
    cases = []
    for qmin, qmax in [(-128, 127), (0, 255), (-8, 7), (0, 3)]:
        x = torch.randn(400, generator=gen) * 3
        scale = float(torch.rand((), generator=gen)) * 0.05 + 0.01
        zp = int(torch.randint(qmin, qmax + 1, (), generator=gen))
        cases.append((x, scale, zp, qmin, qmax))
    return cases


def _halves():
    import torch

    return torch.arange(-6, 6, dtype=torch.float32) * 0.5 + 0.25  # x / 0.5 = k + 0.5 exactly: every value a tie


def _probe():
    with forbid(*FORBIDDEN, exercise="Exercise 2"):
        division = [my_quantize(x, s, 0, -128, 127) for s, x in _division_cases()]
        rand = [my_quantize(x, s, z, lo, hi) for x, s, z, lo, hi in _random_cases()]
        halves = my_quantize(_halves(), 0.5, 0, -128, 127)
        deq = [my_dequantize(torch.arange(lo, hi + 1), s, z) for _, s, z, lo, hi in _random_cases()]
    return {"dtype": str(halves.dtype), "division": division, "random": rand, "halves": halves, "deq": deq}


def _check(out):
    import torch

    from coursekit.quant import dequantize, quantize

    expect_equal(out["dtype"], "torch.int64", what="the dtype of my_quantize's codes")
    h = _halves() / 0.5
    expect_equal(out["halves"], torch.round(h).tolist(), what="my_quantize on exact .5 ties",
                 wrong={"ties rounded half away from zero; torch.round rounds half to even":
                        (torch.sign(h) * torch.floor(h.abs() + 0.5)).tolist(),
                        "floor(x / S + 0.5) rounds ties up; torch.round rounds half to even":
                        torch.floor(h + 0.5).tolist()})
    want = [quantize(x, s, 0, -128, 127, rounding="onnx").tolist() for s, x in _division_cases()]
    recip = [quantize(x, s, 0, -128, 127, rounding="torch").tolist() for s, x in _division_cases()]
    expect_equal(out["division"], want, what="my_quantize on values where x / S and x * (1/S) round differently",
                 wrong={"x * (1/scale) (PyTorch's reciprocal rounding) instead of the division x / scale that ONNX "
                        "QuantizeLinear specifies": recip})
    cases = _random_cases()
    expect_equal(out["random"], [quantize(x, s, z, lo, hi, rounding="onnx").tolist() for x, s, z, lo, hi in cases],
                 what="my_quantize on hidden tensors (int8, uint8, int4, uint2 ranges)",
                 wrong={"no clamp to [qmin, qmax]": [(torch.round(x / s) + z).tolist() for x, s, z, _, _ in cases]})
    expect_close(out["deq"], [dequantize(torch.arange(lo, hi + 1), s, z).tolist() for _, s, z, lo, hi in cases],
                 what="my_dequantize on every code of each range", rtol=1e-6, atol=1e-6,
                 wrong={"S * q - Z instead of S * (q - Z)":
                        [(s * torch.arange(lo, hi + 1.0) - z).tolist() for _, s, z, lo, hi in cases]})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 2 passed")

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
# after BN folding: folding multiplies each row by $\gamma/\sigma$, which spreads the ranges). Per group (5
# consecutive weights of a row; no bar where 5 does not divide the row) adds a little more.
#
# **What the runtimes do by default** differs, and the defaults are not always the accurate choice. The cell below
# reads them from the libraries installed here (so it stays true when they change): ONNX Runtime's
# `quantize_static` quantizes weights **per tensor** unless you pass `per_channel=True` (its documentation trades
# accuracy for throughput there), with symmetric signed INT8 weights; PyTorch's default static configuration for x86
# CPUs (`get_default_qconfig("x86")`, also `"fbgemm"`) uses **per-channel symmetric** weights, while its default
# *dynamic* configuration uses one symmetric scale per tensor. Always set the granularity explicitly; coursekit's
# `QuantConfig` defaults to per channel, the accurate choice at no cost for convolutions and linear layers.

# %%
import inspect

import onnxruntime
from onnxruntime.quantization import quantize_dynamic, quantize_static

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torch.ao.quantization import default_dynamic_qconfig, get_default_qconfig

    static_x86_weight = get_default_qconfig("x86").weight()
    dynamic_weight = default_dynamic_qconfig.weight()
for fn in (quantize_static, quantize_dynamic):
    print(f"onnxruntime {onnxruntime.__version__} {fn.__name__}: per_channel="
          f"{inspect.signature(fn).parameters['per_channel'].default} by default")
print(f"torch {torch.__version__} get_default_qconfig('x86') weights: {type(static_x86_weight).__name__}, "
      f"{static_x86_weight.qscheme}")
print(f"torch {torch.__version__} default_dynamic_qconfig weights:   {type(dynamic_weight).__name__}, "
      f"{dynamic_weight.qscheme}")

# %% [markdown]
# ### Exercise 3 · Per-channel quantization of a weight matrix
#
# Write `quantize_per_channel(w, bits)` for a 2-D weight `w` of shape `(out, in)`: one **symmetric** scale per row in
# ONNX Runtime's convention, $S_i = \max_j |w_{ij}| / (2^{b-1} - 1)$, codes
# $q_{ij} = \operatorname{clamp}(\operatorname{round}(w_{ij}/S_i), -(2^{b-1}-1), 2^{b-1}-1)$ (the narrow range: $-127..127$
# for 8 bits; divide, as in exercise 2). A row of zeros gets scale `1.0` (as ORT does). Return `(q, scale)`: an int64
# tensor shaped like `w` and a float32 tensor of shape `(out,)`.

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
expect_close(s.tolist(), [1 / 127, 0.04 / 127], what="the scales of quantize_per_channel(w, 8)",
             wrong={"one scale for the whole tensor (per tensor) instead of one per row": [1 / 127, 1 / 127],
                    "PyTorch's symmetric scale max|w| / 127.5: the exercise asks for ONNX's max|w| / 127":
                    [1 / 127.5, 0.04 / 127.5]})
expect_equal(q.tolist(), [[64, -127, 32], [95, 32, -127]], what="the codes of quantize_per_channel(w, 8)",
             wrong={"one scale for the whole tensor: the small row gets only 10 of the 255 codes":
                    [[64, -127, 32], [4, 1, -5]]})
q0, s0 = quantize_per_channel(torch.zeros(1, 3), 8)
expect_close(s0.tolist(), [1.0], what="the scale of an all-zero row (ORT uses 1.0)")
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import expect_close, expect_equal, forbid, sealed_test  # noqa: F811 (each hidden section stands alone)

# wrong answers caught: one scale per tensor; one scale per column (amax over dim 0); PyTorch's max|w|/127.5 on
# [-128, 127]; scale 0 (NaN codes) for an all-zero row; x * (1/S) instead of division; delegating to coursekit.quant
# (quantize, calc_qparams, fake_quantize) or torch.quantize_per_channel (forbidden in the probe)
FORBIDDEN = ("coursekit.quant.quantize", "coursekit.quant.primitives.quantize", "coursekit.quant.calc_qparams",
             "coursekit.quant.primitives.calc_qparams", "coursekit.quant.fake_quantize", "torch.quantize_per_channel")


def _reciprocal_rows():
    """Rows whose values round differently with w / S and w * (1 / S), S = max|w| / 127: searched, deterministic."""
    gen = torch.Generator().manual_seed(44)
    rows = []
    for amax in (torch.rand(200, generator=gen) + 0.5).tolist():
        amax = torch.tensor(amax)
        x = (torch.arange(-126, 126, dtype=torch.float32) + 0.5) * (amax / 127)
        differ = x[torch.round(x / (amax / 127)) != torch.round(x * (1 / (amax / 127)))][:47]
        if len(differ):
            rows.append(torch.cat([amax.reshape(1), differ, torch.zeros(47 - len(differ))]))
        if len(rows) == 8:
            return torch.stack(rows)
    raise AssertionError("the search for differing roundings found too few rows")


def _weights():
    gen = torch.Generator().manual_seed(4)
    out = []
    for bits in (8, 4, 3):
        w = torch.randn(32, 48, generator=gen) * torch.logspace(-3, 0, 32)[:, None]
        w[5] = 0.0
        out.append((bits, w))
    return out + [(8, _reciprocal_rows())]


def _probe():
    with forbid(*FORBIDDEN, exercise="Exercise 3"):
        results = [quantize_per_channel(w, bits) for bits, w in _weights()]
    return {"q": [q for q, _ in results], "scale": [s for _, s in results], "dtype": str(results[0][0].dtype)}


def _check(out):
    from coursekit.quant import calc_qparams, quantize

    want_q, want_s, tensor_s, torch_s, tensor_q, recip_q, zero_s = [], [], [], [], [], [], []
    for bits, w in _weights():
        qmax = 2 ** (bits - 1) - 1
        amax = w.abs().amax(1)
        s, z = calc_qparams(-amax, amax, -qmax - 1, qmax, symmetric=True, convention="onnx")
        want_s.append(s.tolist())
        want_q.append(quantize(w, s, z, -qmax, qmax, axis=0, rounding="onnx").tolist())
        t = w.abs().max() / qmax
        tensor_s.append([float(t)] * w.shape[0])
        tensor_q.append(torch.clamp(torch.round(w / t), -qmax, qmax).tolist())
        torch_s.append(torch.where(amax > 0, amax / (qmax + 0.5), torch.ones_like(amax)).tolist())
        zero_s.append((amax / qmax).tolist())
        recip_q.append(torch.clamp(torch.round(w * (1 / s)[:, None]), -qmax, qmax).tolist())
    expect_equal(out["dtype"], "torch.int64", what="the dtype of the codes")
    expect_close(out["scale"], want_s, what="per-channel scales on hidden weights (8, 4 and 3 bits, row 5 all zero)",
                 rtol=1e-6, wrong={"one scale for the whole tensor instead of one per output channel (row)": tensor_s,
                                   "PyTorch's symmetric scale max|w| / (2^(b-1) - 0.5) instead of ONNX's "
                                   "max|w| / (2^(b-1) - 1)": torch_s,
                                   "a row of zeros got scale 0 (its codes are then 0/0 = NaN): ORT gives it 1.0":
                                   zero_s})
    expect_equal(out["q"], want_q, what="per-channel codes on hidden weights",
                 wrong={"one scale for the whole tensor instead of one per output channel (row)": tensor_q,
                        "w * (1/S) instead of the division w / S (exercise 2's ONNX rounding)": recip_q})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 3 passed")

# %% [markdown]
# ## 3 · Calibrating activations: min/max, percentile, MSE, entropy
#
# Weights are known in advance; activations are not. *Static* PTQ runs a few hundred representative inputs through
# the model (**calibration**), records statistics at every quantized tensor with an **observer**, and freezes one
# range per tensor (section 7 compares this with *dynamic* quantization, which measures every batch at run time).
# Four observers, all in `coursekit.quant` (`make_observer(name)`):
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
# the real criterion is the model's accuracy: the explorer in section 8 lets you compare them on the digits CNN.
#
# ### Exercise 4 · Percentile calibration
#
# Write `percentile_range(x, pct)` returning `(lo, hi)` as Python floats: the `(100 - pct)`-th and the `pct`-th
# percentiles of all values of `x` (signed values, not magnitudes: the range of an affine grid need not be
# symmetric), with linear interpolation (what `np.percentile` and `torch.quantile` do by default). For `pct = 100`
# it is the min/max range.

# %% solution="ex4_percentile"
def percentile_range(x, pct):
    """(lo, hi) clipping range that cuts (100 - pct) percent from each tail."""
    ### BEGIN SOLUTION
    values = x.detach().flatten().double().numpy()
    return float(np.percentile(values, 100 - pct)), float(np.percentile(values, pct))
    ### END SOLUTION

# %% tests="ex4_percentile_tests" points=2
# 0, 1, ..., 100: the 1st percentile is 1 and the 99th is 99
expect_close(list(percentile_range(torch.arange(101.0), 99.0)), [1.0, 99.0], what="percentile_range(0..100, 99)",
             wrong={"cut (100 - pct) / 2 from each tail; the exercise cuts (100 - pct) from each": [0.5, 99.5],
                    "pct passed as a fraction (np.percentile takes percent, 0..100)": [0.01, 0.99],
                    "percentiles of |x| made symmetric: use the signed values": [-99.0, 99.0]})
# 0, 1, ..., 9: the 15th percentile lies between 1 and 2 (linear interpolation: 1.35)
expect_close(list(percentile_range(torch.arange(10.0), 85.0)), [1.35, 7.65], what="percentile_range(0..9, 85)",
             wrong={"nearest rank instead of linear interpolation": [1.0, 8.0]})
expect_close(list(percentile_range(torch.tensor([-2.0, 5.0, 1.0]), 100)), [-2.0, 5.0],
             what="percentile_range([-2, 5, 1], 100) (the min/max range)",
             wrong={"percentiles of |x| made symmetric: use the signed values": [-5.0, 5.0]})
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811 (each hidden section stands alone)

# wrong answers caught: percentiles of |x| (symmetric range) instead of signed values; (100 - pct)/2 from each
# tail; nearest-rank (or lower/higher) instead of linear interpolation; pct used as a fraction; delegating to
# coursekit's histogram-based PercentileObserver (forbidden in the probe)
PCTS = (90.0, 99.0, 99.9, 99.99, 100.0)


def _data():
    gen = torch.Generator().manual_seed(5)
    return torch.cat([torch.randn(4, 3000, generator=gen) * 2 + 0.8, torch.rand(4, 301, generator=gen) * 9], 1)


def _probe():
    with forbid("coursekit.quant.PercentileObserver", "coursekit.quant.observers.PercentileObserver",
                exercise="Exercise 4"):
        return [list(percentile_range(_data(), p)) for p in PCTS]


def _check(out):
    import numpy as np

    v = _data().flatten().double()
    want = [torch.quantile(v, torch.tensor([1 - p / 100, p / 100], dtype=torch.float64)).tolist() for p in PCTS]
    a = v.abs().numpy()
    x = v.numpy()

    def both(fn):
        return [list(map(float, fn(p))) for p in PCTS]

    expect_close(out, want, what="percentile_range on hidden (skewed) data", rtol=1e-6, atol=1e-6, wrong={
        "percentiles of |x| made symmetric: use the signed values (the two tails differ)":
            both(lambda p: (-np.percentile(a, p), np.percentile(a, p))),
        "cut (100 - pct) / 2 from each tail; the exercise cuts (100 - pct) from each":
            both(lambda p: np.percentile(x, [(100 - p) / 2, 100 - (100 - p) / 2])),
        "nearest rank instead of linear interpolation": both(lambda p: np.percentile(x, [100 - p, p], method="nearest")),
        "lower/higher rank instead of linear interpolation":
            both(lambda p: (np.percentile(x, 100 - p, method="lower"), np.percentile(x, p, method="higher"))),
        "pct used as a fraction (np.percentile takes percent, 0..100)":
            both(lambda p: np.percentile(x, [(100 - p) / 100, p / 100])),
    })


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 4 passed")

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
y_test = torch.cat([y for _, y in test_loader])
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
conv, bn = model.features[0], model.features[1].eval()
fused = fold_bn(conv, bn)
expect_equal(isinstance(fused, nn.Conv2d) and fused is not conv, True,
             what="fold_bn returns a new nn.Conv2d (copy.deepcopy the conv)")
with torch.no_grad():
    xb = x_test[:16]
    g, b, mu, var = bn.weight, bn.bias, bn.running_mean, bn.running_var
    expect_close(fused(xb).tolist(), bn(conv(xb)).tolist(), what="fold_bn(conv, bn)(x) vs bn(conv(x))",
                 rtol=1e-4, atol=1e-5, wrong={
                     "divided by var + eps instead of sqrt(var + eps)":
                     (F.conv2d(xb, conv.weight, padding=2) - mu[:, None, None]).mul((g / (var + bn.eps))[:, None, None])
                     .add(b[:, None, None]).tolist(),
                     "sqrt(var) without eps":
                     (F.conv2d(xb, conv.weight, padding=2) - mu[:, None, None]).mul((g / var.sqrt())[:, None, None])
                     .add(b[:, None, None]).tolist(),
                     "forgot beta (bn.bias) in the folded bias":
                     (bn(conv(xb)) - b[:, None, None]).tolist()})
### BEGIN HIDDEN TESTS
import torch
from torch import nn

from coursekit.grading.sealed import expect_close, expect_equal, forbid, sealed_test  # noqa: F811 (each hidden section stands alone)

# wrong answers caught: var instead of sqrt(var + eps); sqrt(var) without eps (one case has eps = 0.1); the conv's
# own bias forgotten (a case with bias=True); beta or the mean forgotten; the conv modified in place; stride or
# padding lost; delegating to coursekit.quant.fold_batchnorm(s) or torch.nn.utils.fusion (forbidden in the probe)
CASES = [(True, 1, 1e-5), (False, 2, 1e-5), (True, 1, 0.1)]  # (conv bias, stride, bn eps)
FORBIDDEN = ("coursekit.quant.fold_batchnorm", "coursekit.quant.fold.fold_batchnorm", "coursekit.quant.fold_batchnorms",
             "coursekit.quant.fold.fold_batchnorms", "torch.nn.utils.fusion.fuse_conv_bn_eval",
             "torch.nn.utils.fusion.fuse_conv_bn_weights", "torch.nn.utils.fuse_conv_bn_eval",
             "torch.nn.utils.fuse_conv_bn_weights")


def _make(i):
    bias, stride, eps = CASES[i]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(600 + i)
        conv = nn.Conv2d(3, 8, 3, stride=stride, padding=1, bias=bias)
    bn = nn.BatchNorm2d(8, eps=eps)
    gen = torch.Generator().manual_seed(700 + i)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(8, generator=gen))
        bn.running_var.copy_(torch.rand(8, generator=gen) * (0.05 if eps > 1e-3 else 1.0) + 0.01)
        bn.weight.copy_(torch.randn(8, generator=gen))
        bn.bias.copy_(torch.randn(8, generator=gen))
    return conv.eval(), bn.eval(), torch.randn(2, 3, 9, 9, generator=gen)


def _probe():
    results = []
    for i in range(len(CASES)):
        conv, bn, x = _make(i)
        before = {k: v.clone() for k, v in conv.state_dict().items()}
        with forbid(*FORBIDDEN, exercise="Exercise 5"):
            fused = fold_bn(conv, bn)
        with torch.no_grad():
            y = fused(x)
        results.append({"y": y, "new": fused is not conv,
                        "unchanged": all(torch.equal(before[k], v) for k, v in conv.state_dict().items()),
                        "stride": list(fused.stride), "padding": list(fused.padding)})
    return results


def _check(out):
    from torch.nn import functional as F
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for i, got in enumerate(out):
        conv, bn, x = _make(i)
        b0 = conv.bias if conv.bias is not None else torch.zeros(8)
        g, beta, mu, var, eps = bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps

        def folded(factor, bias, conv=conv, x=x):
            return F.conv2d(x, conv.weight * factor[:, None, None, None], bias, conv.stride, conv.padding).tolist()

        with torch.no_grad():
            want = fuse_conv_bn_eval(conv, bn)(x).tolist()
            k = g / torch.sqrt(var + eps)
            wrong = {"divided by var + eps instead of sqrt(var + eps)":
                         folded(g / (var + eps), (b0 - mu) * g / (var + eps) + beta),
                     "sqrt(var) without eps (bn.eps is 0.1 in one hidden case)":
                         folded(g / var.sqrt(), (b0 - mu) * g / var.sqrt() + beta),
                     "forgot the convolution's own bias b in b' = (b - mean) * factor + beta":
                         folded(k, -mu * k + beta),
                     "forgot beta (bn.bias) in the folded bias": folded(k, (b0 - mu) * k),
                     "forgot to subtract the running mean in the folded bias": folded(k, b0 * k + beta)}
        label = f"case {i} (conv bias={CASES[i][0]}, stride={CASES[i][1]}, eps={CASES[i][2]})"
        expect_equal(got["new"], True, what=f"{label}: fold_bn must return a new module (copy.deepcopy the conv)")
        expect_equal(got["unchanged"], True, what=f"{label}: fold_bn must not modify the conv it is given")
        expect_equal([got["stride"], got["padding"]], [list(conv.stride), list(conv.padding)],
                     what=f"{label}: the folded conv's stride and padding")
        expect_close(got["y"], want, what=f"{label}: output of the folded conv vs bn(conv(x))", rtol=1e-4,
                     atol=1e-5, wrong=wrong)


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 5 passed")

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
#   (eq. 6), so requantization is an integer multiply and a rounding right shift by $31 + n$ bits. The product
#   $\text{acc} \cdot m_0$ needs up to 62 bits: it is formed in 64-bit integers.
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
#    shift: ties go up); `m0`, `shift` are integer tensors of shape `()` or `(out,)`;
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
# one output: acc = (5 - 1) * 3 + (2 - 1) * (-2) + 10 = 20; M = 0.5 = 2^30 * 2^-31 * 2^0 -> 10; + zp 2 = 12
out = my_integer_linear(torch.tensor([[5, 2]]), 1, torch.tensor([[3, -2]]), torch.tensor([10], dtype=torch.int32),
                        torch.tensor(2**30), torch.tensor(0), 2)
expect_equal(str(out.dtype), "torch.int64", what="the dtype of my_integer_linear's output")
expect_equal(out.tolist(), [[12]], what="my_integer_linear on the worked example",
             wrong={"forgot to subtract the input zero point x_zp (acc = 21)": [[13]],
                    "forgot the bias (acc = 10)": [[7]], "forgot to add the output zero point": [[10]]})
# acc = 2 and M = 0.25: 0.5 is a tie, which the rounding shift sends up (1); round-half-even in float gives 0
out = my_integer_linear(torch.tensor([[2]]), 0, torch.tensor([[1]]), torch.tensor([0], dtype=torch.int32),
                        torch.tensor(2**30), torch.tensor(1), 0)
expect_equal(out.tolist(), [[1]], what="my_integer_linear with acc * M = 0.5 (a tie)",
             wrong={"requantized in float with torch.round (half to even); the fixed-point shift rounds ties up":
                    [[0]], "the shift truncates: add 2**(total - 1) before shifting right": [[0]]})
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import expect_equal, forbid, sealed_test  # noqa: F811 (each hidden section stands alone)

# wrong answers caught: truncating shift (no + 2^(total-1)); float requantization round(acc * M) (half to even, and
# M's fixed-point error); acc * m0 formed in int32 (overflows: large accumulators below); x_zp, bias or out_zp
# forgotten; no clamp; delegating to coursekit.quant.integer_linear / requantize (forbidden in the probe)
FORBIDDEN = ("coursekit.quant.integer_linear", "coursekit.quant.integer.integer_linear", "coursekit.quant.requantize",
             "coursekit.quant.integer.requantize")


def _cases():
    from coursekit.quant import quantize_multiplier

    gen = torch.Generator().manual_seed(7)
    cases = []
    for per_channel, x_zp, out_zp, n_in in ((False, 128, 3, 64), (True, 0, -20, 64), (True, 5, 0, 512)):
        x_q = torch.randint(0, 256, (16, n_in), generator=gen)
        w_q = torch.randint(-127, 128, (24, n_in), generator=gen)
        bias_q = torch.randint(-5000, 5000, (24,), generator=gen).to(torch.int32)
        real = torch.rand(24 if per_channel else (), generator=gen, dtype=torch.float64) * 0.01 + 1e-4
        m0, shift = quantize_multiplier(real)
        cases.append((x_q, x_zp, w_q, bias_q, m0, shift, out_zp, -128, 127))
    # large accumulators (|acc| ~ 1e6, acc * m0 ~ 2^50: needs int64) and a 4-bit output range (clamping)
    x_q = torch.randint(-128, 128, (8, 256), generator=gen)
    w_q = torch.full((6, 256), 127) * torch.sign(x_q[0]).reshape(1, -1)
    m0, shift = quantize_multiplier(torch.tensor([2e-5, 3e-5, 4e-5, 1e-4, 0.3, 0.9], dtype=torch.float64))
    cases.append((x_q, 0, w_q, torch.zeros(6, dtype=torch.int32), m0, shift, 0, -128, 127))
    cases.append((x_q[:, :16], -3, w_q[:, :16], torch.zeros(6, dtype=torch.int32), m0, shift, 1, -8, 7))
    # exact ties: acc * M = k + 0.5 with M = 0.25
    x_t = torch.arange(-9, 9).reshape(-1, 1) * 2
    cases.append((x_t, 0, torch.ones(1, 1, dtype=torch.int64), torch.zeros(1, dtype=torch.int32),
                   torch.tensor(2**30), torch.tensor(1), 0, -128, 127))
    return cases


def _probe():
    with forbid(*FORBIDDEN, exercise="Exercise 6"):
        return [my_integer_linear(*case) for case in _cases()]


def _check(out):
    from coursekit.quant import integer_linear

    want, trunc, floating, int32, no_clamp, no_xzp, no_bias, no_ozp = [], [], [], [], [], [], [], []
    for x_q, x_zp, w_q, bias_q, m0, shift, out_zp, qmin, qmax in _cases():
        want.append(integer_linear(x_q, x_zp, w_q, bias_q, m0, shift, out_zp, qmin, qmax).tolist())
        acc = (x_q.to(torch.int64) - x_zp) @ w_q.to(torch.int64).T + bias_q.to(torch.int64)
        total = 31 + shift
        trunc.append(torch.clamp(torch.bitwise_right_shift(acc * m0, total) + out_zp, qmin, qmax).tolist())
        real = m0.double() * torch.pow(2.0, -total.double())
        floating.append(torch.clamp(torch.round(acc.double() * real) + out_zp, qmin, qmax).long().tolist())
        wrapped = acc.to(torch.int32) * m0.to(torch.int32)  # int32 product: wraps around
        half = torch.bitwise_left_shift(torch.ones_like(total), total - 1)
        int32.append(torch.clamp(torch.bitwise_right_shift(wrapped.to(torch.int64) + half, total) + out_zp,
                                 qmin, qmax).tolist())
        no_clamp.append((torch.bitwise_right_shift(acc * m0 + half, total) + out_zp).tolist())
        no_xzp.append(integer_linear(x_q, 0, w_q, bias_q, m0, shift, out_zp, qmin, qmax).tolist())
        no_bias.append(integer_linear(x_q, x_zp, w_q, None, m0, shift, out_zp, qmin, qmax).tolist())
        no_ozp.append(integer_linear(x_q, x_zp, w_q, bias_q, m0, shift, 0, qmin, qmax).tolist())
    expect_equal(out, want, what="my_integer_linear on hidden layers (per tensor and per channel, large "
                                 "accumulators, a 4-bit output range, exact ties)",
                 wrong={"the shift truncates: add 2**(total - 1) before shifting right (round, ties up)": trunc,
                        "requantized in float (round(acc * M)): integer hardware uses the fixed-point m0 and a "
                        "rounding shift": floating,
                        "acc * m0 formed in int32 overflows: form the product in int64": int32,
                        "no clamp to [qmin, qmax] after adding the output zero point": no_clamp,
                        "forgot to subtract the input zero point x_zp": no_xzp, "forgot the int32 bias": no_bias,
                        "forgot to add the output zero point out_zp": no_ozp})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 6 passed")

# %% [markdown]
# ### A fully integer network
#
# One integer layer is not yet an integer *model*: between layers something must connect the output codes of one
# layer to the input codes of the next. In a fully integer network (Jacob et al. 2018, sec. 2.4 and 3) **the output
# grid of layer $k$ is the input grid of layer $k+1$**: $(S_{x}^{(k+1)}, Z_{x}^{(k+1)}) = (S_y^{(k)}, Z_y^{(k)})$,
# so the codes pass straight through and nothing is dequantized in between. Only the operations that keep the grid
# may sit between two layers:
#
# * **ReLU** is $\max(q, Z)$ (code $Z$ is real 0). Better still, calibrate the layer's output range *after* the
#   ReLU: it starts at 0, so $Z = q_\min$ and the requantization clamp already *is* the ReLU (fused);
# * **max pooling**: $S(q - Z)$ increases with $q$, so the maximum of the codes is the code of the maximum;
# * **flattening** moves codes around without touching them.
#
# Only the network input is quantized from float (the pixels), and only the logits are dequantized.
# `coursekit.quant.integer_net.IntegerNet` builds such a network from a float chain: it folds BatchNorm, calibrates
# one int8 range per activation with min/max on the FP32 model, quantizes the weights per channel and connects the
# integer layers of section 5. With `convention="onnx"` (the default) every step follows ONNX Runtime's formulas:
# scales computed in float64 and stored as float32, weights on $[-127, 127]$, rounding by division.

# %%
from coursekit.quant.integer_net import IntegerNet

calibration_x = load_dataset("digits", "train", fast=True).x[:256]  # 256 training images, the same in every mode
int_net = IntegerNet.from_float(model, [calibration_x])
codes = int_net.forward_int(int_net.quantize_input(x_test[:3]))
print("output codes (int8 values in int64) of 3 test images:\n", codes)
for k, layer in enumerate(int_net.params()["layers"]):
    print(f"layer {k} {layer['kind']:6s} weight {tuple(layer['weight_q'].shape)!s:14s} in (S={layer['in_scale']:.4g}, "
          f"Z={layer['in_zp']})  out (S={layer['out_scale']:.4g}, Z={layer['out_zp']})  relu={layer['relu']}  "
          f"pool={layer['pool']}")
print(f"test accuracy: FP32 {evaluate(model, test_loader)['accuracy']:.2%}, fully INT8 "
      f"{evaluate(int_net, test_loader)['accuracy']:.2%}; same top-1 as FP32 on "
      f"{top1_agreement(int_net, model, test_loader):.1%} of the test images")

# %% [markdown]
# ### Exercise 7 · Your own fully INT8 LeNet
#
# Compose your functions from exercises 1-6 into the integer network above, for the digits LeNet
# (`features`: conv 1->6 (5x5, padding 2), BN, ReLU, 2x2 max-pool, conv 6->16, BN, ReLU, 2x2 max-pool;
# `classifier`: flatten, linear 64->120, ReLU, linear 120->84, ReLU, linear 84->10).
#
# **(a)** `my_integer_conv2d(x_q, x_zp, w_q, bias_q, m0, shift, out_zp, padding=0, qmin=-128, qmax=127)`: the integer
# convolution (stride 1) with the arithmetic of exercise 6. Hint: `F.unfold` (im2col) of the *centred* codes
# `x_q - x_zp` as float (exact for integers below $2^{24}$; padding the centred codes with 0 pads with the zero
# point, i.e. real 0) gives `(N, C*kh*kw, L)` columns; round them back to integers and call your
# `my_integer_linear` with `x_zp=0` and `w_q.reshape(out, -1)`; then reshape `(N, L, out)` to `(N, out, H', W')`.
#
# **(b)** `build_int8_lenet(model, calibration)` returns a dict `{"input_scale", "input_zp", "layers": [5 dicts]}`,
# one dict per conv/linear layer with keys `kind` (`"conv"`/`"linear"`), `weight_q`, `w_scale`, `bias_q`, `m0`,
# `shift`, `in_scale`, `in_zp`, `out_scale`, `out_zp`, `relu` (bool), `pool` (2 after a conv, else `None`) and
# `padding` (2 for the convs, 0 else):
#
# 1. fold each BatchNorm into its conv with `fold_bn`;
# 2. run the folded FP32 model over the calibration batches and record the min and max over all batches of the
#    input and of each layer's output after its ReLU (the last layer has no ReLU: its logits);
# 3. `my_qparams(min, max, 8)` gives each activation's grid; store every scale as float32,
#    `float(torch.tensor(s, dtype=torch.float32))` (what runtimes store); layer $k$ reads the grid layer $k-1$
#    writes (the input grid for the first conv);
# 4. weights: `quantize_per_channel(w.reshape(out, -1), 8)`, codes reshaped back to the weight's shape;
# 5. `bias_q = round(b / (S_in S_w))` and $M = S_\text{in} S_w / S_\text{out}$ in float64 (with `S_w` as float64),
#    `m0, shift = quant.quantize_multiplier(M)`.
#
# **(c)** `int8_lenet(params, x)` returns the output codes (int64, `(N, 10)`): quantize `x` with `my_quantize` on the
# input grid, then for each layer: `my_integer_conv2d` (or `my_integer_linear` on the flattened codes), the ReLU as
# `max(q, out_zp)`, and the 2x2 max pooling **on the codes** (`F.max_pool2d` on `q.float()`, back to int64).
#
# The test gives your `int8_lenet` coursekit's parameters and expects exactly the codes of coursekit's integer path
# (`IntegerNet`), compares your parameters with coursekit's, and asks your INT8 LeNet to stay within 1 point of the
# FP32 test accuracy. The library's integer functions are switched off while it runs: use your own.

# %% solution="ex7_int8_lenet"
def my_integer_conv2d(x_q, x_zp, w_q, bias_q, m0, shift, out_zp, padding=0, qmin=-128, qmax=127):
    """Integer-only Conv2d (stride 1): im2col of the centred codes, then my_integer_linear."""
    ### BEGIN SOLUTION
    n, _, h, w = x_q.shape
    out_ch, _, kh, kw = w_q.shape
    cols = F.unfold((x_q.to(torch.int64) - x_zp).to(torch.float64), (kh, kw), padding=padding)
    cols = cols.round().to(torch.int64).transpose(1, 2)  # (N, L, C*kh*kw), exact integers
    y = my_integer_linear(cols, 0, w_q.reshape(out_ch, -1), bias_q, m0, shift, out_zp, qmin, qmax)
    return y.transpose(1, 2).reshape(n, out_ch, h + 2 * padding - kh + 1, w + 2 * padding - kw + 1)
    ### END SOLUTION


def build_int8_lenet(model, calibration):
    """Integer parameters of the digits LeNet: fold, calibrate, quantize weights, biases and multipliers."""
    ### BEGIN SOLUTION
    feat, head = model.features, model.classifier
    layers_f = [fold_bn(feat[0], feat[1]).eval(), fold_bn(feat[4], feat[5]).eval(), head[1], head[3], head[5]]

    def activations(x):  # the input and each layer's output after its ReLU, in FP32
        outs = [x]
        for k, layer in enumerate(layers_f):
            x = layer(x.flatten(1) if k == 2 else x)
            x = torch.relu(x) if k < 4 else x
            outs.append(x)
            x = F.max_pool2d(x, 2) if k < 2 else x
        return outs

    lo, hi = [math.inf] * 6, [-math.inf] * 6
    with torch.no_grad():
        for batch in calibration:
            for k, a in enumerate(activations(batch)):
                lo[k], hi[k] = min(lo[k], a.min().item()), max(hi[k], a.max().item())
    grids = []
    for k in range(6):
        s, z = my_qparams(lo[k], hi[k], 8)
        grids.append((float(torch.tensor(s, dtype=torch.float32)), z))
    layers = []
    for k, layer in enumerate(layers_f):
        w = layer.weight.detach()
        q, w_scale = quantize_per_channel(w.reshape(w.shape[0], -1), 8)
        (s_in, z_in), (s_out, z_out) = grids[k], grids[k + 1]
        bias_scale = s_in * w_scale.double()
        m0, shift = quant.quantize_multiplier(bias_scale / s_out)
        layers.append({"kind": "conv" if k < 2 else "linear", "weight_q": q.reshape(w.shape), "w_scale": w_scale,
                       "bias_q": torch.round(layer.bias.detach().double() / bias_scale).to(torch.int32),
                       "m0": m0, "shift": shift, "in_scale": s_in, "in_zp": z_in, "out_scale": s_out,
                       "out_zp": z_out, "relu": k < 4, "pool": 2 if k < 2 else None, "padding": 2 if k < 2 else 0})
    return {"input_scale": grids[0][0], "input_zp": grids[0][1], "layers": layers}
    ### END SOLUTION


def int8_lenet(params, x):
    """Output codes (int64, (N, 10)) of the integer LeNet described by params."""
    ### BEGIN SOLUTION
    q = my_quantize(x, params["input_scale"], params["input_zp"], -128, 127)
    for layer in params["layers"]:
        args = (layer["in_zp"], layer["weight_q"], layer["bias_q"], layer["m0"], layer["shift"], layer["out_zp"])
        if layer["kind"] == "conv":
            q = my_integer_conv2d(q, *args, padding=layer["padding"])
        else:
            q = my_integer_linear(q.flatten(1), *args)
        if layer["relu"]:
            q = torch.clamp(q, min=layer["out_zp"])
        if layer["pool"]:
            q = F.max_pool2d(q.float(), layer["pool"]).to(torch.int64)
    return q
    ### END SOLUTION

# %% [markdown]
# Once the test below passes, your own INT8 LeNet runs like any model. Its accuracy and its agreement with FP32:

# %%
my_params = build_int8_lenet(model, [calibration_x])
my_pred = torch.cat([int8_lenet(my_params, x).argmax(1) for x, _ in test_loader])
with torch.no_grad():
    fp32_pred = model(x_test).argmax(1)
print(f"your INT8 LeNet: test accuracy {(my_pred == y_test).float().mean():.2%} "
      f"(FP32 {(fp32_pred == y_test).float().mean():.2%}), same top-1 as FP32 on {(my_pred == fp32_pred).float().mean():.1%}")

# %% tests="ex7_int8_lenet_tests" points=6
# Visible tests: each line says "ok" or what is wrong (this exercise gives partial credit per part, so a failed line
# does not stop the others)
def visible(what, test):
    try:
        test()
        print(f"ok     {what}")
    except AssertionError as exc:
        print(f"WRONG  {exc}")
    except Exception as exc:  # noqa: BLE001 - report it and go on to the next part
        print(f"ERROR  {what}: {type(exc).__name__}: {exc}")


# (a) a 1-channel 3x3 input with zero point 10, a 2x2 kernel of ones, padding 1, M = 0.5: the centred input is
# [[1, 2, 0], [0, 4, 0], [3, 0, 0]]; the window sums of the zero-padded centred input, times 0.5, ties up
x_small = torch.tensor([[[[11, 12, 10], [10, 14, 10], [13, 10, 10]]]])
visible("(a) my_integer_conv2d on a worked example", lambda: expect_equal(
    my_integer_conv2d(x_small, 10, torch.ones(1, 1, 2, 2, dtype=torch.int64), torch.zeros(1, dtype=torch.int32),
                      torch.tensor([2**30]), torch.tensor([0]), 0, padding=1).tolist(),
    [[[[1, 2, 1, 0], [1, 4, 3, 0], [2, 4, 2, 0], [2, 2, 0, 0]]]], what="my_integer_conv2d on the worked example",
    wrong={"padded with code 0 instead of the zero point (pad the centred codes, x_q - x_zp, with 0)":
           [[[[-14, -8, -9, -15], [-9, 4, 3, -10], [-8, 4, 2, -10], [-13, -8, -10, -15]]]]}))
# (c) your forward pass on coursekit's integer parameters: exactly coursekit's output codes
ref_params = int_net.params()
visible("(c) int8_lenet on coursekit's parameters", lambda: expect_equal(
    int8_lenet(ref_params, x_test[:32]).tolist(), int_net.forward_int(int_net.quantize_input(x_test[:32])).tolist(),
    what="int8_lenet(coursekit's parameters, 32 test images) vs the codes of coursekit's IntegerNet"))


# (b) your parameters vs coursekit's, layer by layer
def compare_params(mine, ref):
    expect_close([mine["input_scale"], mine["input_zp"]], [ref["input_scale"], ref["input_zp"]],
                 what="the input grid (S, Z)", rtol=1e-6)
    for k, (a, b) in enumerate(zip(mine["layers"], ref["layers"])):
        expect_close([a["out_scale"], a["out_zp"]], [b["out_scale"], b["out_zp"]], rtol=1e-5,
                     what=f"layer {k} output grid (S, Z): min/max over the calibration batches after the ReLU "
                          "(after a ReLU the range starts at 0 and Z = -128)")
        expect_close(torch.as_tensor(a["w_scale"]).tolist(), b["w_scale"].tolist(), rtol=1e-5,
                     what=f"layer {k} weight scales (per output channel, max|w| / 127)",
                     wrong={"one scale for the whole tensor": [float(b["w_scale"].max())] * len(b["w_scale"])})
        expect_close(torch.as_tensor(a["bias_q"]).tolist(), b["bias_q"].tolist(), rtol=0, atol=1,
                     what=f"layer {k} int32 bias round(b / (S_in S_w)) (BN folded into it)",
                     wrong={"no bias (the folded BatchNorm's bias belongs in bias_q)": [0] * len(b["bias_q"])})


visible("(b) build_int8_lenet's parameters vs coursekit's", lambda: compare_params(
    build_int8_lenet(model, [calibration_x]), ref_params))


def accuracy_test():
    params = build_int8_lenet(model, [calibration_x])
    acc = evaluate(lambda x: int8_lenet(params, x).float(), test_loader)["accuracy"]
    fp32 = evaluate(model, test_loader)["accuracy"]
    expect_equal(acc >= fp32 - 0.01, True, what=f"your INT8 LeNet's test accuracy {acc:.2%} vs FP32 {fp32:.2%} "
                                                "(at most 1 point lower)")


visible("your INT8 LeNet's test accuracy within 1 point of FP32", accuracy_test)
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import forbid, partial, sealed_test  # noqa: F811 (each hidden section stands alone)

# wrong answers caught (each verified with a scratch copy): (a) the conv padded with code 0 instead of the zero
# point; truncating or float requantization (through my_integer_linear); (b) ranges calibrated before the ReLU; one
# weight scale per tensor; no bias (the BN bias not folded into bias_q); fewer weight bits (then also the accuracy
# part: more than 1 point below FP32); (c) any forward pass that differs from the integer path on coursekit's own
# parameters; delegating to coursekit's integer path (IntegerNet or the notebook's int_net under any name,
# to_integer, integer_linear, requantize, quantize, calc_qparams, fold_batchnorm(s): refused in the probe).
# Not observable here, so not a wrong answer for this test: rounding the input with x * (1/S) (the digits pixels
# k/16 never hit a value where it differs; exercise 2 catches it) and skipping the explicit ReLU clamp (the
# requantization clamp at Z = -128 already is the ReLU).
FORBIDDEN = ("coursekit.quant.to_integer", "coursekit.quant.integer.to_integer",
             "coursekit.quant.integer_linear", "coursekit.quant.integer.integer_linear", "coursekit.quant.requantize",
             "coursekit.quant.integer.requantize", "coursekit.quant.IntegerConv2d", "coursekit.quant.IntegerLinear",
             "coursekit.quant.quantize", "coursekit.quant.primitives.quantize", "coursekit.quant.calc_qparams",
             "coursekit.quant.primitives.calc_qparams", "coursekit.quant.fold_batchnorm",
             "coursekit.quant.fold.fold_batchnorm", "coursekit.quant.fold_batchnorms",
             "coursekit.quant.fold.fold_batchnorms", "coursekit.quant.quantize_model")


def _data():
    from coursekit.data import load_dataset

    test = load_dataset("digits", "test", fast=True)
    return load_dataset("digits", "train", fast=True).x[:256], test.x, test.y


def _model():
    from coursekit.train import pretrained

    return pretrained("lenet", "digits", fast=True, progress=False).eval()


def _conv_cases():
    from coursekit.quant import quantize_multiplier

    gen = torch.Generator().manual_seed(17)
    cases = []
    for c_in, c_out, k, pad, size, x_zp, out_zp in ((3, 5, 3, 1, 7, 13, -4), (2, 4, 5, 2, 6, -128, -128),
                                                    (4, 3, 2, 0, 5, 0, 7)):
        x_q = torch.randint(-128, 128, (2, c_in, size, size), generator=gen)
        w_q = torch.randint(-127, 128, (c_out, c_in, k, k), generator=gen)
        bias_q = torch.randint(-3000, 3000, (c_out,), generator=gen).to(torch.int32)
        m0, shift = quantize_multiplier(torch.rand(c_out, generator=gen, dtype=torch.float64) * 0.004 + 1e-4)
        cases.append(((x_q, x_zp, w_q, bias_q, m0, shift, out_zp), pad))
    return cases


def _summary(params):
    """Plain numbers of a parameter dict: grids, per-channel weight-code sums, biases and multipliers."""
    layers = []
    for layer in params["layers"]:
        bias = torch.as_tensor(layer["bias_q"]).reshape(-1).to(torch.int64)
        w = torch.as_tensor(layer["weight_q"]).reshape(len(bias), -1).to(torch.int64)
        layers.append({"w_sum": w.sum(1), "w_abs": w.abs().sum(1), "w_scale": torch.as_tensor(layer["w_scale"]).reshape(-1),
                       "bias_q": bias, "m0": torch.as_tensor(layer["m0"]).reshape(-1),
                       "shift": torch.as_tensor(layer["shift"]).reshape(-1),
                       "grid": [float(layer["in_scale"]), int(layer["in_zp"]), float(layer["out_scale"]),
                                int(layer["out_zp"])]})
    return {"input": [float(params["input_scale"]), int(params["input_zp"])], "layers": layers}


def _attempt(fn):
    try:
        return fn()
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - one part failing must not cost the other parts
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


class _refuse_methods:
    """Also refuse the integer classes' methods: a learner may hold the library's objects under other names (the
    notebook's own IntegerNet and int_net), which forbid's module attributes do not reach."""

    def __enter__(self):
        from coursekit.quant import integer, integer_net

        self.saved = [(cls, name, cls.__dict__[name]) for cls, names in
                      ((integer_net.IntegerNet, ("from_float", "forward_int", "forward", "params", "quantize_input")),
                       (integer._IntegerLayer, ("forward_int", "forward", "quantize_input"))) for name in names]

        def refuse(*args, **kwargs):
            raise AssertionError("Exercise 7 asks you to compose your own functions: coursekit's integer path "
                                 "(IntegerNet, integer layers) is not allowed here")

        for cls, name, _ in self.saved:
            setattr(cls, name, refuse)

    def __exit__(self, *exc):
        for cls, name, original in self.saved:
            setattr(cls, name, original)


def _probe():
    model = _model()
    x_cal, x_test, _ = _data()
    ref_params = _reference_params(model, x_cal)
    out = {}
    with forbid(*FORBIDDEN, exercise="Exercise 7"), _refuse_methods():
        out["conv"] = _attempt(lambda: [my_integer_conv2d(*args, padding=pad) for args, pad in _conv_cases()])
        out["given"] = _attempt(lambda: int8_lenet(ref_params, x_test))
        params = _attempt(lambda: build_int8_lenet(model, [x_cal]))
        out["params"] = params if "error" in params else _attempt(lambda: _summary(params))
        out["own"] = params if "error" in params else _attempt(lambda: int8_lenet(params, x_test).argmax(1))
    return out


def _reference_params(model, x_cal):  # coursekit's parameters, built before the library is switched off
    from coursekit.quant.integer_net import IntegerNet

    return IntegerNet.from_float(model, [x_cal]).params()


def _compare_params(got, want) -> str | None:
    """None when the learner's parameters match coursekit's (up to float rounding of the BN fold), else why not."""
    def close(a, b, rtol=1e-5, atol=0.0):
        a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
        return a.shape == b.shape and bool(((a - b).abs() <= atol + rtol * b.abs()).all())

    if not close(got["input"], want["input"], 1e-6):
        return f"the input grid (S, Z) is {got['input']}, expected {want['input']}"
    if len(got["layers"]) != len(want["layers"]):
        return f"{len(got['layers'])} layers instead of {len(want['layers'])}"
    for k, (a, b) in enumerate(zip(got["layers"], want["layers"])):
        if not close(a["grid"], b["grid"]):
            hint = (" (calibrate each range after the ReLU: its zero point is then -128)"
                    if b["grid"][3] == -128 and a["grid"][3] != -128 else "")
            return f"layer {k}: grid (S_in, Z_in, S_out, Z_out) {a['grid']}, expected {b['grid']}{hint}"
        if not close(a["w_scale"], b["w_scale"]):
            per_tensor = len(set(torch.as_tensor(a["w_scale"]).tolist())) == 1
            return f"layer {k}: weight scales differ" + (" (one scale per tensor; use one per output channel)"
                                                         if per_tensor else " (symmetric, max|w| / 127 per row)")
        if not (close(a["w_sum"], b["w_sum"], 0, 2) and close(a["w_abs"], b["w_abs"], 0, 2)):
            return f"layer {k}: the weight codes differ from round(w / S_w) of the folded weights"
        if not close(a["bias_q"], b["bias_q"], 0, 1):
            return f"layer {k}: bias_q differs from round(b / (S_in S_w)) of the folded bias (BatchNorm folded in?)"
        if not (close(a["m0"], b["m0"]) and close(a["shift"], b["shift"], 0)):
            return f"layer {k}: (m0, shift) differ from quantize_multiplier(S_in S_w / S_out)"
    return None


def _check(out):
    from torch.nn import functional as F

    from coursekit.quant import requantize
    from coursekit.quant.integer_net import IntegerNet

    model = _model()
    x_cal, x_test, y_test = _data()
    net = IntegerNet.from_float(model, [x_cal])
    ref_codes = net.forward_int(net.quantize_input(x_test))
    with torch.no_grad():
        fp32 = (model(x_test).argmax(1) == y_test).double().mean().item()

    results = []
    conv_ok, conv_why = False, out["conv"].get("error") if isinstance(out["conv"], dict) else None
    if conv_why is None:
        want, zero_pad = [], []
        for (x_q, x_zp, w_q, bias_q, m0, shift, out_zp), pad in _conv_cases():
            right = F.conv2d((x_q - x_zp).double(), w_q.double(), padding=pad)
            padded_with_code_0 = F.conv2d(F.pad(x_q.double(), [pad] * 4) - x_zp, w_q.double())
            for acc, into in ((right, want), (padded_with_code_0, zero_pad)):
                acc = acc.round().to(torch.int64) + bias_q.reshape(1, -1, 1, 1)
                into.append(requantize(acc, m0.reshape(1, -1, 1, 1), shift.reshape(1, -1, 1, 1), out_zp,
                                       -128, 127).tolist())
        conv_ok = out["conv"] == want
        conv_why = None if conv_ok else ("padded with code 0 instead of the zero point" if out["conv"] == zero_pad
                                         else "output codes differ from the integer convolution")
    results.append((conv_ok, f"my_integer_conv2d on hidden cases: {conv_why}"))

    given = out["given"]
    if isinstance(given, dict):
        results.append((False, f"int8_lenet on coursekit's parameters failed: {given['error']}"))
    else:
        differ = sum(a != b for a, b in zip(given, ref_codes.tolist())) if len(given) == len(ref_codes) else None
        results.append((differ == 0, (f"int8_lenet on coursekit's parameters: the codes differ from coursekit's "
                                      f"integer path on {differ} of {len(ref_codes)} test images")))

    params = out["params"]
    if "error" in params:
        results.append((False, f"build_int8_lenet failed: {params['error']}"))
    else:
        why = _compare_params(params, _summary(net.params()))
        results.append((why is None, f"build_int8_lenet vs coursekit's parameters: {why}"))

    own = out["own"]
    if isinstance(own, dict):
        results.append((False, f"your INT8 LeNet failed on the test set: {own['error']}"))
    else:
        acc = (torch.as_tensor(own) == y_test).double().mean().item() if len(own) == len(y_test) else 0.0
        results.append((acc >= fp32 - 0.01, (f"your INT8 LeNet's test accuracy {acc:.2%} is more than 1 point "
                                            f"below FP32 ({fp32:.2%})")))
    return partial(results)


sealed_test(_probe, _check, points=6)
### END HIDDEN TESTS

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
# * **Linear-heavy at batch 1** is memory-bound: every weight is read once per call, so 4x fewer bytes plus INT8
#   dot-product instructions give INT8 the most to gain there. This is the case of LLM decoding.
# * **Static INT8 needs enough work per call.** The digits LeNet runs in microseconds: quantizing the input,
#   layout changes and dequantizing the output can cost as much as the arithmetic saved, and INT8 can then be
#   *slower*. The wider CNN, with the same structure, shows whether the gain appears once the convolutions dominate.
# * **Dynamic quantization is meant for Linear/LSTM-heavy models.** On CNNs it pays for quantizing every activation at
#   run time, and ORT's dynamic convolution path is not its fast path (section 7 explains where the cost comes from).
# * **File sizes** follow the bits (about 4x) only when the weights dominate the file; a tiny model carries
#   fixed overhead.
# * **Hardware decides.** Without INT8 dot-product instructions (VNNI on x86, `dotprod`/`i8mm` on Arm) INT8 can lose
#   to FP32 everywhere. Run `coursekit doctor` before promising a speedup.
#
# ## 7 · Dynamic, static and weight-only quantization
#
# All three modes quantize the weights once, ahead of time ($W \approx S_w\, q_w$, per output channel). They differ
# in one question: **where does the activation's scale $S_x$ come from?**
#
# * **Weight-only**: nowhere. Activations stay in floating point, the weights are dequantized (in the kernel, or
#   before it) and the arithmetic is float: $y = x\,(S_w \odot q_w)^\top + b$. It saves memory and memory traffic,
#   not arithmetic; no calibration data is needed.
# * **Dynamic**: computed from each batch *at run time*, $S_x^{(t)} = \dfrac{\max x^{(t)} - \min x^{(t)}}{q_\max -
#   q_\min}$ (and $Z_x^{(t)}$) for batch $t$, then an integer matrix product whose int32 result goes straight back
#   to float: $y = S_x^{(t)} S_w \sum_j (q_{x,j} - Z_x^{(t)})\, q_{w,j} + b$. It never clips and needs no calibration,
#   but every call pays an extra pass over $x$ (min/max) plus the quantization, and the output is float, so the next
#   layer starts again.
# * **Static**: fixed *offline* by calibration, $S_x = \dfrac{\max_\text{cal} - \min_\text{cal}}{q_\max - q_\min}$ (or
#   a percentile/MSE/entropy range, section 3), and the same for the output $S_y$, so a layer reads int8 and writes
#   int8 (section 5): no run-time statistics, activations stay 8-bit between fused operators. The price: values beyond
#   the calibrated range are clipped, so the calibration data must look like production.
#
# | mode | activation scale | integer arithmetic | calibration data | typical use |
# |---|---|---|---|---|
# | weight-only | none (float activations) | none | no | memory-bound decoding of LLMs, 4-bit weights (chapter 07) |
# | dynamic | per batch, at run time | matrix products | no | Linear/LSTM-heavy models, inputs whose range varies |
# | static | fixed, from calibration | products *and* the activations between layers | yes | CNNs, integer-only hardware |
#
# The figure measures it on the digits LeNet at the input of its first linear layer: the scale dynamic
# quantization would compute for each batch of 16 test images, against the one scale static quantization fixed from
# the 256 calibration images (weight-only has none), and how many values the static range clips in each batch.

# %%
acts = []
hook = model.classifier[1].register_forward_hook(lambda m, inputs, output: acts.append(inputs[0].detach()))
with torch.no_grad():
    model(calibration_x)              # static: one range from the calibration images, fixed offline
    for xb in x_test.split(16):       # dynamic: one range per batch, at run time
        model(xb)
hook.remove()
s_static, z_static = (float(v) for v in quant.calc_qparams(acts[0].min(), acts[0].max(), -128, 127))
s_dynamic = [float(quant.calc_qparams(a.min(), a.max(), -128, 127)[0]) for a in acts[1:]]
static_max = s_static * (127 - z_static)
clipped = [100 * float((a > static_max).float().mean()) for a in acts[1:]]

mode_acc = {}
for mode in ("weight_only", "dynamic", "static"):
    for wb, ab in ((8, 8), (4, 4)):
        cfg = quant.QuantConfig(mode=mode, weight_bits=wb, act_bits=ab)
        mode_acc[mode, wb] = evaluate(quant.quantize_model(model, cfg, calibration), test_loader)["accuracy"]
fp32_acc = evaluate(model, test_loader)["accuracy"]

fig, axes = plt.subplots(1, 2, figsize=(13, 3.4))
axes[0].plot(s_dynamic, "o-", ms=3, label="dynamic: one scale per batch of 16 (run time)")
axes[0].axhline(s_static, color="k", ls="--", label="static: one scale from calibration (offline)")
axes[0].set_xlabel("test batch")
axes[0].set_ylabel("activation scale $S_x$")
ax2 = axes[0].twinx()
ax2.bar(range(len(clipped)), clipped, color="tab:red", alpha=0.3)
ax2.set_ylabel("% of values clipped (static)", color="tab:red")
axes[0].legend(fontsize=8, loc="upper left")
labels = {"weight_only": "weight-only\n(W, float act.)", "dynamic": "dynamic", "static": "static"}
for i, wb in enumerate((8, 4)):
    axes[1].bar(np.arange(3) + (i - 0.5) * 0.38, [100 * mode_acc[m, wb] for m in labels], 0.38,
                label=f"W{wb}A{wb} (weight-only: W{wb})")
axes[1].axhline(100 * fp32_acc, color="k", ls="--", lw=0.8, label="FP32")
axes[1].set_xticks(range(3), list(labels.values()))
axes[1].set_ylabel("test accuracy (%)")
axes[1].set_ylim(max(0, 100 * min(mode_acc.values()) - 10), 100)
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()


def _speed(model_name, variant, batch):
    return next(r["speedup_vs_ort_fp32"] for r in records
                if (r["model"], r["variant"], r["batch"]) == (model_name, variant, batch))


print(f"dynamic scales ranged from {min(s_dynamic):.4g} to {max(s_dynamic):.4g} across batches (static: "
      f"{s_static:.4g}); the static range clipped values in {sum(c > 0 for c in clipped)} of {len(clipped)} batches "
      f"(at most {max(clipped):.2f}% of a batch)")
for wb in (8, 4):
    print(f"W{wb}A{wb} accuracy: weight-only {mode_acc['weight_only', wb]:.2%}, dynamic {mode_acc['dynamic', wb]:.2%},"
          f" static {mode_acc['static', wb]:.2%} (FP32 {fp32_acc:.2%})")
for name in dict.fromkeys(r["model"] for r in records):
    for b in (1, 64):
        st, dy = _speed(name, "ort_int8_static", b), _speed(name, "ort_int8_dynamic", b)
        best = "static" if st > dy else "dynamic"
        print(f"{name:12s} batch {b:2d}: ORT static {st:.2f}x, dynamic {dy:.2f}x the speed of ORT FP32 -> {best} is "
              f"{max(st, dy) / min(st, dy):.2f}x faster than the other here")

# %% [markdown]
# How to read it (every sentence is a question to ask of your own numbers above):
#
# * **Dynamic adapts, static clips.** The dynamic scale moves from batch to batch: it is exactly as wide as each
#   batch needs. The static scale is the calibration set's; any batch with a larger activation is clipped (the red
#   bars). With representative calibration data those clips are rare and small, which is why static INT8 keeps the
#   accuracy.
# * **Accuracy.** At 8 bits the three modes should be within noise of FP32 (one test image is 0.28 points). At 4
#   bits compare weight-only with the two modes that also quantize activations: whatever gap you see there is the
#   cost of 4-bit *activations*, the harder half (chapter 07 shows why for LLMs).
# * **Speed.** Static has the advantage wherever activations can stay int8 between operators and there is enough work
#   per call. Dynamic can only keep up where the matrix products dominate and the activations are small next to the
#   weights (Linear-heavy models); on convolutions, whose activation maps are large compared with their weights, the
#   run-time min/max and quantization passes cost the most. Check which of these cases your lines above show, and
#   remember that batch-1 latencies of a few microseconds are dominated by fixed per-call costs.
# * **Weight-only** is not timed here: its payoff is memory traffic at low bits with a fused dequantizing kernel
#   (chapter 07, LLM decoding). On CPU kernels that dequantize into FP32 first it is slower than FP32.

# %% [markdown]
# ## 8 · How far does PTQ go? INT8 vs INT4 vs INT2
#
# Same model, same calibration, fewer bits (`W` weight bits, `A` activation bits; per-channel symmetric weights,
# min/max or MSE affine activations):

# %%
configs = {"W8A8": (8, 8), "W4A8": (4, 8), "W8A4": (8, 4), "W4A4": (4, 4), "W2A8": (2, 8)}
mse_kwargs = {"num_bins": 256, "num_candidates": 25} if FAST else {}  # a coarser MSE search in fast mode
print(f"{'config':6s} {'min/max':>9s} {'mse':>9s}   (FP32 {fp32_acc:.2%})")
accs, qmodels = {}, {}
for label, (wb, ab) in configs.items():
    for obs in ("minmax", "mse"):
        cfg = quant.QuantConfig(weight_bits=wb, act_bits=ab, observer=obs,
                                observer_kwargs=mse_kwargs if obs == "mse" else {})
        qmodels[label, obs] = quant.quantize_model(model, cfg, calibration)
    accs[label] = [evaluate(qmodels[label, obs], test_loader)["accuracy"] for obs in ("minmax", "mse")]
    print(f"{label:6s} {accs[label][0]:9.2%} {accs[label][1]:9.2%}")
fig, ax = plt.subplots(figsize=(7, 2.8))
ax.bar(np.arange(len(accs)) - 0.2, [100 * a[0] for a in accs.values()], 0.4, label="min/max activations")
ax.bar(np.arange(len(accs)) + 0.2, [100 * a[1] for a in accs.values()], 0.4, label="MSE activations")
ax.axhline(100 * fp32_acc, color="k", ls="--", lw=0.8, label="FP32")
ax.set_xticks(range(len(accs)), list(accs))
ax.set_ylabel("test accuracy (%)")
ax.legend(fontsize=8)
plt.show()
n_test = len(test_loader.dataset)
for label, (a_minmax, a_mse) in accs.items():
    best = max(a_minmax, a_mse)
    delta = 100 * (best - fp32_acc)
    verdict = ("within noise of FP32" if abs(delta) <= 100 * 3 / n_test else
               "a real loss" if delta < -100 * 3 / n_test else "above FP32 by more than 3 images (chance)")
    print(f"{label}: best {best:.2%} ({delta:+.2f} points = {round(abs(delta) * n_test / 100)} of {n_test} test "
          f"images): {verdict}")

# %% [markdown]
# Read the table with the test set's resolution in mind: one digit image is 1/360 = 0.28 points, so the lines above
# call a difference of up to 3 images noise (quantization can even "gain" accuracy by chance). Where the generated
# lines report a real loss (typically the 4-bit-activation and 2-bit-weight rows), PTQ has reached its limit for
# this model: that is where quantization-aware training (chapter 03) earns its cost. On larger models 4-bit
# activations hurt much more than 4-bit weights (one range per tensor, and outlier channels; chapter 07).
#
# ### Beyond top-1: per-class accuracy and agreement with FP32
#
# Top-1 accuracy averages over classes. A quantized model can keep the average and still fail one class: the
# errors PTQ adds are not spread evenly, and a class with few examples barely moves the average. Two numbers catch
# it: the **per-class accuracy** (recall of each class) and the **top-1 agreement** with the FP32 model (the share
# of inputs on which both pick the same class; it needs no labels, so it can be measured on production traffic).

# %%
compare = {"FP32": model, "INT8 integer": int_net, "W8A8": qmodels["W8A8", "minmax"],
           "W4A4": qmodels["W4A4", "minmax"], "W4A4 MSE": qmodels["W4A4", "mse"], "W2A8": qmodels["W2A8", "minmax"]}
evals = {name: evaluate(m, test_loader) for name, m in compare.items()}
per_class = {name: e["per_class"] for name, e in evals.items()}
agreement = {name: top1_agreement(m, model, test_loader) for name, m in compare.items()}
counts = torch.bincount(y_test, minlength=10).tolist()
print(f"{'class':>5s} {'n':>4s} " + " ".join(f"{name:>12s}" for name in compare))
for c in range(10):
    print(f"{c:5d} {counts[c]:4d} " + " ".join(f"{100 * per_class[name][c]:11.1f}%" for name in compare))
print(f"{'all':>5s} {n_test:4d} " + " ".join(f"{100 * e['accuracy']:11.1f}%" for e in evals.values()))
print(f"{'agree':>5s} {'':4s} " + " ".join(f"{100 * agreement[name]:11.1f}%" for name in compare)
      + "   <- top-1 agreement with FP32")

quantized = [name for name in compare if name != "FP32"]
fig, axes = plt.subplots(1, 2, figsize=(14, 2.9), gridspec_kw={"width_ratios": [2, 1]})
for i, name in enumerate(quantized[:-1]):
    drop = [100 * (per_class[name][c] - per_class["FP32"][c]) for c in range(10)]
    axes[0].bar(np.arange(10) + (i - 1.5) * 0.2, drop, 0.2, label=name)
axes[0].axhline(0, color="k", lw=0.8)
axes[0].set_ylabel("per-class accuracy\nchange vs FP32 (points)")
axes[0].legend(fontsize=8, ncol=4)
for name, offset in (("FP32", -0.2), (quantized[-1], 0.2)):
    axes[1].bar(np.arange(10) + offset, [100 * a for a in per_class[name]], 0.4, label=name)
axes[1].set_ylabel("per-class accuracy (%)")
axes[1].legend(fontsize=8, loc="lower left")
for ax in axes:
    ax.set_xticks(range(10))
    ax.set_xlabel("class (digit)")
plt.tight_layout()
plt.show()
for name in quantized:
    deltas = [100 * (per_class[name][c] - per_class["FP32"][c]) for c in range(10)]
    worst = int(np.argmin(deltas))
    overall = 100 * (evals[name]["accuracy"] - evals["FP32"]["accuracy"])
    flips = round((1 - agreement[name]) * n_test)
    moved = (f"worst class {worst}: {deltas[worst]:+.1f} points ({round(-deltas[worst] * counts[worst] / 100)} of its "
             f"{counts[worst]} images), best class {int(np.argmax(deltas))}: {max(deltas):+.1f} points"
             if any(abs(d) > 1e-9 for d in deltas) else "no class changes its accuracy")
    print(f"{name}: overall {overall:+.2f} points; {moved}; {flips} of {n_test} predictions differ from FP32")

# %% [markdown]
# What the generated lines show, and why it matters beyond this data set:
#
# * **The worst class moves more than the average.** Each digit has only about 36 test images, so one image is
#   about 2.8 points of its class but 0.28 points of the total: compare the "worst class" change with the overall
#   one for each variant. Where PTQ breaks (2-bit weights), it does not break evenly: some classes survive and
#   others collapse.
# * **Agreement is stricter than accuracy.** Predictions that change in both directions (a wrong FP32 answer turned
#   right, a right one turned wrong) cancel in the accuracy but not in the agreement: the number of changed
#   predictions is the honest count of what quantization did.
# * **The rare-class risk.** Here the classes are balanced. In production data they rarely are: a class that makes
#   up 1% of the traffic can lose a third of its accuracy while the overall top-1 moves by 0.3 points, inside
#   anybody's noise. Before shipping a quantized model, check per-class accuracy (above all on the classes that
#   matter most and on the rarest ones) and the agreement with the FP32 model on real traffic.
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
# ## 9 · Common mistakes
#
# * **Skipping accuracy validation.** A quantized model that loads and runs is not a correct model. Evaluate on the
#   real test set, compare with FP32 in the same runtime, and check parity after export.
# * **Looking only at top-1.** Check per-class accuracy and the agreement with FP32 (section 8): a small average
#   loss can hide a large loss on one class.
# * **Deploying INT8 on hardware without INT8 acceleration.** Without VNNI/AMX (x86) or dot-product instructions
#   (Arm) INT8 can be slower than FP32. Check `coursekit doctor`.
# * **Skipping the benchmark.** Quantization promises speed; only a measurement on the target delivers it.
# * **Calibrating on too few or unrepresentative batches.** A range learned from ten images of one class, or from
#   inputs preprocessed differently from production, clips real inputs. Use a few hundred samples drawn like
#   production traffic; watch for ranges that change when you add more.
# * **Trusting a runtime's default granularity.** ONNX Runtime's `quantize_static` is per tensor unless told
#   otherwise (section 2); set it explicitly.
# * **Quantizing the first and last layers aggressively.** The input layer sees raw data with few channels and the
#   last layer produces the logits: both are sensitive and cheap. Keep them at 8 bits (or in float) when lower
#   bit widths are used elsewhere (`QuantConfig(skip=...)`).
# * **Comparing INT8 against torch eager instead of ORT FP32.** That conflates the runtime's speedup with
#   quantization's.
# * **Expecting fake-quant to be faster.** It is a float simulation (slower than FP32); only integer kernels in a
#   runtime are fast.
# * **Folding BatchNorm after quantizing**, or forgetting the model was in train mode during calibration.
# * **In integer kernels:** padding a convolution with code 0 instead of the zero point, forming `acc * m0` in
#   int32 (it overflows), or rounding the requantization differently from the runtime you compare with.
# * **Dynamic quantization on a CNN**: it pays for run-time ranges on large activation maps (section 7).
#
# ## 10 · Interview questions
#
# Practise with the quiz below (immediate feedback and explanations), or in a terminal with
# `coursekit drill --chapter 02`. The graded questions further down are left out of the practice quiz.

# %% locked="quiz_ids"
from coursekit import quiz

QUIZ_IDS = ["ch02-dequant-formula", "ch02-bn-fold-bias", "ch02-requant-shift", "ch02-common-mistakes"]
quiz.show(chapter="02", n=5, exclude=QUIZ_IDS)

# %% [markdown]
# ### Graded interview questions
#
# Answer each question in a dictionary called `answers` that maps the question id to your answer: a letter for a
# choice question (`"B"`, or `"A,C"` when several are right), a number for a numeric one. Each question is worth
# one point; the hidden test checks them against the bank installed with coursekit.

# %% locked="quiz_questions"
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
# One point per question. Visible: which questions you have not answered yet.
unanswered = [qid for qid in QUIZ_IDS if not isinstance(answers, dict) or qid not in answers]
print("not answered yet: " + ", ".join(unanswered) if unanswered else "all questions answered")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import sealed_quiz

# one point per question; the returned number is nbgrader's partial credit
sealed_quiz(["ch02-dequant-formula", "ch02-bn-fold-bias", "ch02-requant-shift", "ch02-common-mistakes"])
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# * Quantization is the affine map $r = S(q - Z)$: the range decides the trade-off between clipping and rounding;
#   real 0 is always exact. PyTorch and ONNX Runtime differ in symmetric range, rounding and scale arithmetic: name
#   the convention.
# * Weights: symmetric, per output channel (per group at 4 bits); set the granularity explicitly, runtime defaults
#   differ. Activations: affine, one range per tensor, calibrated; clipping (percentile/MSE/entropy) helps heavy
#   tails and low bit widths, hurts when outliers matter.
# * Fold BatchNorm before quantizing. Integer inference is int8 x int8 -> int32 + int32 bias, then a fixed-point
#   multiplier and a shift; in a fully integer network each layer's output grid is the next layer's input grid.
# * Weight-only, dynamic and static differ in where the activation scale comes from: nowhere, each batch at run
#   time, or calibration offline.
# * Speed comes from a runtime with integer kernels, measured against the same runtime in FP32, on hardware with
#   INT8 instructions, with enough work per call. Always validate accuracy, per class and against FP32, not only
#   the average.
#
# Next: **03 · Quantization-aware training**: when PTQ at 4 bits and below loses too much, train through the
# quantizer.
