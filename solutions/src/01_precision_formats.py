# %% [markdown] locked="title"
# # 01 · Precision formats
#
# **The deployment problem.** A team serves a 7B chat model on one 80 GB GPU. In FP16 the weights take 14 GB, and
# every 4k-token conversation keeps another 2 GB of keys and values: about 30 users at once. Someone proposes INT4
# weights and an FP8 KV cache; someone else reports that their FP16 fine-tune of the same model learns nothing
# (the gradients are all zero) while the BF16 run trains fine; and on the team's CPU test servers, the "faster" FP16
# model is no faster than FP32. All three puzzles have the same root: **what a number format can and cannot
# represent, and what the hardware does with it.**
#
# In this chapter you take the formats apart bit by bit and build:
#
# 1. a decoder for FP16 bit patterns, by hand (normal, subnormal, inf, NaN),
# 2. round-to-nearest-even from FP32 to BF16 with integer bit operations (what the hardware does),
# 3. a memory estimator with group-scale overhead, and the KV cache that comes on top,
# 4. the SQNR metric to compare INT8 / INT4 / NF4 / FP8 on real weights,
# 5. a format chooser for a deployment budget,
#
# and you measure, on your machine, how fast matrix multiplication runs in FP32, BF16 and FP16.
#
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below it.
# `coursekit check notebooks/01_precision_formats.ipynb` grades the whole notebook (hidden tests included).

# %% locked="setup"
# Setup: run this first. Warnings are silenced so that graded cells stay clean.
import math
import warnings

warnings.filterwarnings("ignore")
import matplotlib.pyplot as plt
import numpy as np
import torch

import coursekit
from coursekit import bench, formats
from coursekit._env import fast_mode
from coursekit.formats import explore

FAST = fast_mode()  # True under COURSEKIT_FAST=1 and during grading: smaller runs, same checks
torch.manual_seed(0)
print(f"coursekit {coursekit.__version__}, torch {torch.__version__}, fast mode: {FAST}")

# %% [markdown]
# ## 1 · A number is a bit pattern
#
# Every format in this course stores a number in a fixed number of bits. Floating-point formats split them into
# three fields:
#
# $$\underbrace{s}_{\text{1 bit}}\ \underbrace{e_{E-1}\dots e_0}_{E \text{ exponent bits}}\
# \underbrace{m_{M-1}\dots m_0}_{M \text{ mantissa bits}}
# \qquad
# x = \begin{cases}
# (-1)^s \,\big(1 + \tfrac{m}{2^M}\big)\, 2^{\,e-b} & 1 \le e < 2^E-1 \quad\text{(normal)}\\
# (-1)^s \,\tfrac{m}{2^M}\, 2^{\,1-b} & e = 0 \quad\text{(subnormal)}\\
# \pm\infty \text{ if } m = 0,\ \text{NaN otherwise} & e = 2^E-1 \quad\text{(IEEE specials)}
# \end{cases}$$
#
# with bias $b = 2^{E-1}-1$. The **exponent** sets the *range* (how large and how small), the **mantissa** the
# *precision* (how many distinct values per power of two). The "1 +" is a hidden bit: normal numbers always start
# with a 1, so it is not stored. Subnormals drop it to creep below the smallest normal number, one step at a time.

# %%
explore.plot_bit_layouts()
plt.show()
for name in explore.LAYOUT_FORMATS:
    f = formats.get_format(name)
    print(f"{name:9s} E{f.exponent_bits}M{f.mantissa_bits}  bias {f.bias:3d}  specials: {f.specials}")

# %% [markdown]
# Same total width, different split: **FP16** (E5M10) and **BF16** (E8M7) are both 16 bits, but BF16 keeps FP32's
# 8-bit exponent (its range) and gives up mantissa bits: BF16 is literally the top half of an FP32. The two FP8
# formats make the same trade at 8 bits; FP4 E2M1 has just 16 codes (the OCP Microscaling formats use it with a
# shared scale per 32 values).
#
# Let us look at real bit patterns. `coursekit.formats` encodes and decodes every format bit by bit; torch gives
# the same patterns through `tensor.view`:

# %%
fp16 = formats.get_format("fp16")
for value in (1.0, -2.0, 0.1, 65504.0, 2.0 ** -24):
    code = int(fp16.encode(torch.tensor([value]))[0]) & 0xFFFF
    torch_code = int(torch.tensor([value], dtype=torch.float16).view(torch.int16)[0]) & 0xFFFF
    fields = " ".join(bits for _, bits in explore.bit_fields("fp16", code))
    print(f"{value:>14.8g} -> {fields}  0x{code:04X} (torch: 0x{torch_code:04X})  "
          f"decodes to {float(fp16.decode(torch.tensor([code]))[0]):.8g}")

# %% [markdown]
# ### Exercise 1 · Decode FP16 by hand
#
# Write `decode_fp16(code)` that takes an FP16 bit pattern as a Python `int` in `[0, 65536)` and returns the value
# it encodes as a Python `float`: normal numbers, subnormals (exponent field 0: no hidden 1, exponent $1-15$),
# $\pm\infty$ (exponent field 31, mantissa 0) and NaN (exponent field 31, mantissa not 0). Use integer bit
# operations (`>>`, `&`) and `math.ldexp` or `2.0 ** k`; do not call torch or numpy.

# %% solution="ex1_decode"
def decode_fp16(code):
    """The float value of the 16-bit FP16 pattern `code` (an int in [0, 65536))."""
    ### BEGIN SOLUTION
    sign = -1.0 if (code >> 15) & 1 else 1.0
    exponent = (code >> 10) & 0x1F
    mantissa = code & 0x3FF
    if exponent == 0x1F:
        return sign * math.inf if mantissa == 0 else math.nan
    if exponent == 0:
        return sign * math.ldexp(mantissa, 1 - 15 - 10)
    return sign * math.ldexp(1024 + mantissa, exponent - 15 - 10)
    ### END SOLUTION

# %% tests="ex1_decode_tests" points=3
assert decode_fp16(0x3C00) == 1.0
assert decode_fp16(0xC000) == -2.0
assert decode_fp16(0x7BFF) == 65504.0, "the largest finite FP16"
assert decode_fp16(0x0001) == 2.0 ** -24, "the smallest subnormal: no hidden 1"
assert decode_fp16(0x7C00) == math.inf and decode_fp16(0xFC00) == -math.inf
assert math.isnan(decode_fp16(0x7E00))
### BEGIN HIDDEN TESTS
rng = np.random.default_rng(1)
codes = [int(c) for c in rng.integers(0, 1 << 16, size=4000)] + list(range(1100)) + [0x8000, 0x8001, 0xFBFF]
reference = formats.get_format("fp16").decode(torch.tensor(codes, dtype=torch.int64)).tolist()
as_torch = torch.tensor(codes, dtype=torch.int32).to(torch.int16).view(torch.float16).float().tolist()
for c, ref, ref_torch in zip(codes, reference, as_torch):
    got = decode_fp16(c)
    assert isinstance(got, float), f"return a float, got {type(got).__name__} for 0x{c:04X}"
    if math.isnan(ref):
        assert math.isnan(got), f"0x{c:04X} is a NaN"
    else:
        assert got == ref == ref_torch, f"0x{c:04X}: expected {ref}, got {got}"
assert math.copysign(1.0, decode_fp16(0x8000)) == -1.0, "0x8000 is -0.0"
### END HIDDEN TESTS
print("ex1 passed")

# %% [markdown]
# ## 2 · Range versus precision
#
# `formats_table` lists what each format can hold. Read two columns above all: **max** (range) and **eps**, the gap
# between 1.0 and the next value (precision: the relative rounding error is at most eps/2).

# %%
columns = ["name", "bits", "exponent_bits", "mantissa_bits", "max", "min_normal", "min_subnormal", "eps",
           "has_inf", "overflow"]
rows = [{k: f"{v:.4g}" if isinstance(v, float) else v for k, v in row.items()}
        for row in formats.formats_table(explore.LAYOUT_FORMATS)]
print(bench.format_table(rows, columns=columns))

# %% [markdown]
# The figure puts the table on a log axis. Left: the range of positive magnitudes each format covers (hatched:
# subnormals). Right: the gap between neighbouring values. It doubles at every power of two, so the *relative*
# gap stays about eps everywhere in the normal range: floats spend their codes evenly per power of two, not evenly
# on the number line.

# %%
explore.plot_value_grid()
plt.tight_layout()
plt.show()

# %% [markdown]
# Three things to read off:
#
# * **FP16 is precise but short**: it stops at 65504 and its smallest subnormal is $2^{-24}\approx 6\times10^{-8}$.
# * **BF16 has FP32's range** (up to $3.4\times10^{38}$, down to $10^{-40}$) with 8x coarser steps than FP16.
# * **FP8** covers only a few decades: E4M3 (±448) is the more precise one, E5M2 (±57344) the wider one. Neither
#   can hold a tensor without a **scale** that maps its values into the covered decades.
#
# ## 3 · Rounding and overflow
#
# A value between two representable numbers goes to the **nearest** one; an exact tie goes to the one whose last
# mantissa bit is 0 (**round half to even**). Always rounding ties up would add a small positive bias to every sum
# of many rounded numbers; ties-to-even cancels on average. Between 2048 and 4096 FP16 values are 2 apart, so:

# %%
xs = torch.tensor([2048.0, 2049.0, 2050.0, 2051.0, 2052.0, 2053.0])
print("x            ", xs.tolist())
print("torch FP16   ", xs.half().float().tolist())
print("coursekit    ", formats.get_format("fp16").cast(xs).tolist())
print("every odd x is a tie: 2049 -> 2048, 2051 -> 2052, 2053 -> 2052 (the neighbour with an even mantissa)")

# %% [markdown]
# What happens **above the largest value** depends on the format *and* on the library:
#
# | format | max | a bit above max | far above max |
# |---|---|---|---|
# | FP16 | 65504 | 65519 -> 65504 (rounds down) | 65520 and up -> **inf** |
# | BF16 | 3.39e38 | rounds to max | **inf** |
# | FP8 E4M3FN | 448 | 464 -> 448 | torch: **saturates to 448** (even inf -> 448); ml_dtypes / OCP non-saturating mode: **NaN** |
# | FP8 E5M2 | 57344 | 61439 -> 57344 | 61440 and up -> **inf** |
#
# E4M3FN has no infinity at all ("FN": finite and NaN): it gives the all-ones exponent to numbers, which is how it
# reaches 448 instead of 240. The OCP FP8 spec leaves overflow to the implementation: saturate (clip to ±448) or
# produce NaN. A model converted with one library and run with another can change behaviour exactly here.

# %%
def show(name, values, **kw):
    got = formats.get_format(name).cast(torch.tensor(values), **kw).tolist()
    print(f"{name:9s} {kw.get('overflow', 'default'):9s} {values} -> {got}")


show("fp16", [65504.0, 65519.0, 65520.0, 1e6])
show("fp8_e4m3", [448.0, 464.0, 465.0, 1e6, math.inf])
show("fp8_e4m3", [448.0, 464.0, 465.0, 1e6], overflow="nan")
show("fp8_e5m2", [57344.0, 61439.0, 61440.0])
print("torch E4M3FN:", torch.tensor([464.0, 465.0, 1e6]).to(torch.float8_e4m3fn).float().tolist())
try:
    import ml_dtypes

    print("ml_dtypes E4M3FN:", np.array([464.0, 465.0, 1e6], dtype=np.float32).astype(ml_dtypes.float8_e4m3fn)
          .astype(np.float32).tolist())
except ImportError:
    print("ml_dtypes is not installed: coursekit's overflow='nan' above shows what it does")

# %% [markdown]
# ### Exercise 2 · FP32 -> BF16 with integer bit operations
#
# BF16 is the top 16 bits of an FP32. Truncating the low 16 bits would always round towards zero; hardware rounds
# to nearest even instead, with one integer addition. View the FP32 bits as an integer $u$ and let
# $\ell = (u \gg 16)\,\&\,1$ (the last bit that is kept). Then
#
# $$\text{bf16 bits} = \big(u + \texttt{0x7FFF} + \ell\big) \gg 16 .$$
#
# Above a tie the addition carries into bit 16 (round up); below it does not; at an exact tie (low half
# `0x8000`) it carries only when $\ell = 1$, which makes the kept value even. A carry out of the mantissa simply
# increments the exponent, and rounding past the largest BF16 lands on the infinity pattern, as IEEE wants.
#
# Write `to_bf16_bits(x)`: `x` is a float32 tensor (any shape, no NaN); return an **int32** tensor of the same shape
# holding each BF16 bit pattern as an unsigned number in `[0, 65536)`. Hint:
# `x.view(torch.int32).to(torch.int64) & 0xFFFFFFFF` gives the unsigned 32-bit patterns.

# %% solution="ex2_bf16"
def to_bf16_bits(x):
    """BF16 bit patterns (int32 in [0, 65536)) of float32 tensor x, rounded to nearest, ties to even."""
    ### BEGIN SOLUTION
    u = x.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    keep_lsb = (u >> 16) & 1
    return (((u + 0x7FFF + keep_lsb) >> 16) & 0xFFFF).to(torch.int32)
    ### END SOLUTION

# %% tests="ex2_bf16_tests" points=3
def torch_bf16_bits(x):
    return x.to(torch.bfloat16).view(torch.int16).to(torch.int32) & 0xFFFF


got = to_bf16_bits(torch.tensor([1.0, -2.0, 0.1]))
assert got.dtype == torch.int32, "return an int32 tensor"
assert got.tolist() == [0x3F80, 0xC000, 0x3DCD]
ties = torch.tensor([0x3F808000, 0x3F818000], dtype=torch.int32).view(torch.float32)  # 1 + 2^-8, 1 + 3 * 2^-8
assert to_bf16_bits(ties).tolist() == [0x3F80, 0x3F82], "ties go to the even pattern"
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(11)
random_bits = torch.randint(0, 1 << 31, (20000,), generator=g, dtype=torch.int64)
random_bits = random_bits[((random_bits >> 23) & 0xFF) != 0xFF]  # drop NaN/inf patterns
signs = torch.randint(0, 2, random_bits.shape, generator=g, dtype=torch.int64) << 31
x = ((random_bits | signs).to(torch.int64) - ((random_bits | signs) >= (1 << 31)).to(torch.int64) * (1 << 32))
x = x.to(torch.int32).view(torch.float32)
tie_bits = (torch.randint(0, 0xFF80, (2000,), generator=g, dtype=torch.int64) << 16) | 0x8000
tie_bits = tie_bits[(tie_bits & 0x7F800000) != 0x7F800000]  # no NaN / inf patterns
tie_bits = tie_bits - (tie_bits >= (1 << 31)).to(torch.int64) * (1 << 32)
special = torch.tensor([0.0, -0.0, math.inf, -math.inf, 3.3895314e38, 3.4028235e38, -3.4028235e38, 1e-45,
                        1.17549435e-38, 9.2e-41])
for t in (x, tie_bits.to(torch.int32).view(torch.float32), special, torch.randn(7, 5, generator=g)):
    out = to_bf16_bits(t)
    assert out.shape == t.shape and out.dtype == torch.int32
    assert torch.equal(out, torch_bf16_bits(t)), "differs from torch's .to(torch.bfloat16)"
bf16 = formats.get_format("bf16")
assert torch.equal(to_bf16_bits(x), bf16.encode(x).to(torch.int32) & 0xFFFF)
### END HIDDEN TESTS
print("ex2 passed")

# %% [markdown]
# ## 4 · Why BF16 trains without loss scaling and FP16 needs it
#
# Gradients are small and spread over many orders of magnitude: Micikevicius et al. (2018, "Mixed Precision
# Training") found that most activation gradients of an SSD detector lay below $2^{-24}$, FP16's smallest subnormal.
# Cast to FP16 they become **exactly zero**, and whatever learning they carried is gone. BF16 reaches down to
# $10^{-38}$: nothing flushes.
#
# The figure uses gradients spread evenly (log-uniformly) from $10^{-10}$ to $10^{-1}$, the shape of those
# histograms, and counts what each format keeps:

# %%
g = torch.Generator().manual_seed(0)
n = 20_000 if FAST else 200_000
grads = torch.sign(torch.randn(n, generator=g)) * 10 ** (torch.rand(n, generator=g) * 9 - 10)
for name in ("fp16", "bf16", "fp8_e5m2"):
    cast = formats.get_format(name).cast(grads)
    print(f"{name:9s}: {float((cast == 0).float().mean()):6.1%} of the gradients become exactly 0")

# %% [markdown]
# **Loss scaling** multiplies the loss by $S$ before the backward pass. Backpropagation is linear, so every
# gradient is multiplied by $S$ too and moves up into FP16's range; the optimizer divides by $S$ again in FP32.
# Too large an $S$ pushes the largest gradients past 65504 into **inf**. *Dynamic* loss scaling
# (`torch.amp.GradScaler`) starts high ($2^{16}$), halves $S$ and skips the step when an inf appears, and doubles it
# again after a run of good steps.

# %%
exponents = list(range(0, 31, 2))
flushed, overflowed = [], []
for k in exponents:
    cast = formats.get_format("fp16").cast(grads * 2.0 ** k)
    flushed.append(float((cast == 0).float().mean()))
    overflowed.append(float(torch.isinf(cast).float().mean()))
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(exponents, flushed, "o-", label="flushed to 0 (underflow)")
ax.plot(exponents, overflowed, "s-", label="inf (overflow)")
ax.set_xlabel("loss scale S = 2^k, k")
ax.set_ylabel("fraction of gradients")
ax.set_title("FP16 gradients under loss scaling: a window between underflow and overflow")
ax.legend()
plt.show()
best = exponents[int(np.argmin(np.array(flushed) + np.array(overflowed)))]
print(f"best S here: 2^{best}: {flushed[exponents.index(best)]:.1%} flushed, "
      f"{overflowed[exponents.index(best)]:.1%} overflowed")

# %% [markdown]
# Now a real backward computation. A Linear layer's weight gradient is $\partial L/\partial W = \delta^\top X$,
# where $\delta = \partial L/\partial Y$ is the gradient arriving from above. For an MSE loss averaged over a
# million outputs of a model that already fits well (residuals around $10^{-3}$), $\delta$ is about $10^{-9}$:

# %%
torch.manual_seed(0)
X = torch.randn(4096, 256)
residual = 1e-3 * torch.randn(4096, 256)
delta = 2 * residual / residual.numel()  # d(mean squared error) / d(output)
reference = delta.double().T @ X.double()


def weight_grad(dtype, scale=1.0):
    """delta^T X computed in `dtype` with the loss scaled by `scale`, unscaled in float64."""
    return ((delta * scale).to(dtype).T @ X.to(dtype)).double() / scale


print(f"typical |delta| = {float(delta.abs().median()):.1e} (FP16 smallest subnormal {2.0 ** -24:.1e})")
for label, dtype, scale in [("fp32", torch.float32, 1.0), ("fp16", torch.float16, 1.0),
                            ("fp16, S=2^16", torch.float16, 2.0 ** 16), ("bf16", torch.bfloat16, 1.0)]:
    grad = weight_grad(dtype, scale)
    rel = float((grad - reference).norm() / reference.norm())
    print(f"{label:13s} relative error {rel:8.2e}, exactly-zero entries {float((grad == 0).float().mean()):6.1%}")

# %% [markdown]
# FP16 without scaling returns a gradient of all zeros; with $S=2^{16}$ it is as good as it gets with a 16-bit
# result. BF16 needs no scale; its error is its 8-bit precision, which is why mixed-precision training keeps an
# FP32 **master copy** of the weights (tiny updates $\eta g$ added to a BF16 weight would often round away:
# $1 + 2^{-9}$ is 1 in BF16).
#
# ## 5 · FP8 for new GPUs
#
# NVIDIA's Ada (compute capability 8.9) and Hopper (9.0) tensor cores multiply FP8 at twice the BF16 rate (and
# Blackwell, 10.0, adds FP4). The recipe of Micikevicius et al. (2022, "FP8 Formats for Deep Learning"):
#
# * **E4M3 for weights and activations** in the forward pass: values of one tensor sit within a few decades once
#   scaled, and precision matters more than range.
# * **E5M2 for gradients**: they span more decades, so range matters more (E5M2 has FP16's exponent).
# * Every tensor gets a **scale** (per tensor, from the recent max |x|), and accumulation happens in FP32.
#
# Measure it: weights (Gaussian) and gradients (log-uniform, as above), each scaled so that its max |x| lands on
# the format's max:

# %%
weights = torch.randn(64 * 1024 if not FAST else 16 * 1024, generator=g) * 0.02
for label, tensor in (("weights", weights), ("gradients", grads)):
    for name in ("fp8_e4m3", "fp8_e5m2"):
        err = formats.quantization_error(tensor, name, scale_floats=True)
        zeros = float((formats.quantize_dequantize(tensor, name, scale_floats=True) == 0).float().mean())
        print(f"{label:9s} {name:9s} SQNR {err.sqnr_db:5.1f} dB, flushed to 0: {zeros:6.1%}")

# %%
if torch.cuda.is_available():
    major, minor = torch.cuda.get_device_capability()
    verdict = "has FP8 tensor cores" if (major, minor) >= (8, 9) else "has no FP8 tensor cores (needs 8.9+)"
    print(f"{torch.cuda.get_device_name()}: compute capability {major}.{minor}: {verdict}")
else:
    print("No CUDA GPU here: FP8 matmul (torch._scaled_mm) needs compute capability 8.9+ (RTX 40xx, L4, H100).")

# %% [markdown]
# SQNR (signal-to-quantization-noise ratio, in dB) is the error metric used from here on; exercise 4 below asks you
# to write it. E4M3 wins on the weights (one more mantissa bit: about +6 dB); on gradients that span nine decades
# E5M2 keeps far more of the small values.
#
# ## 6 · Integer grids: INT8, INT4, INT2, binary
#
# An integer format is a uniform grid. A real tensor reaches it through a **scale**:
# $q = \mathrm{clamp}(\mathrm{round}(x / s), q_\min, q_\max)$, $\hat x = s\,q$, with the symmetric absmax choice
# $s = \max|x| / (2^{b-1}-1)$ (INT8: $\max|x|/127$). Rounding error is uniform on $[-s/2, s/2]$, noise power
# $s^2/12$: each extra bit halves $s$ and buys $20\log_{10}2 \approx 6.02$ dB of SQNR. Binary keeps only the sign,
# times the mean $|x|$ (XNOR-Net's scale).
#
# ### Exercise 3 · SQNR
#
# Write `sqnr(x, xq)`: the signal-to-quantization-noise ratio in dB,
# $10\log_{10}\big(\overline{x^2} / \overline{(x-\hat x)^2}\big)$, as a Python float (means over all elements; compute
# in float64; return `math.inf` when `xq` equals `x` exactly).

# %% solution="ex3_sqnr"
def sqnr(x, xq):
    """10 log10(mean(x^2) / mean((x - xq)^2)) in dB; inf when xq == x."""
    ### BEGIN SOLUTION
    x, xq = x.double(), xq.double()
    noise = float((x - xq).pow(2).mean())
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(float(x.pow(2).mean()) / noise)
    ### END SOLUTION

# %% tests="ex3_sqnr_tests" points=2
assert abs(sqnr(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5])) - 10 * math.log10(2.5 / 0.125)) < 1e-9
assert sqnr(torch.tensor([1.0, -3.0]), torch.tensor([1.0, -3.0])) == math.inf
### BEGIN HIDDEN TESTS
gen = torch.Generator().manual_seed(5)
for name in ("int8", "int4", "int2", "binary", "nf4", "fp8_e4m3", "fp16"):
    x = torch.randn(int(torch.randint(10, 3000, (1,), generator=gen)), generator=gen) * 3
    xq = formats.quantize_dequantize(x, name)
    got = sqnr(x, xq)
    assert isinstance(got, float)
    assert abs(got - formats.sqnr_db(x, xq)) < 1e-6, name
x = torch.randn(4, 64, generator=gen)
assert abs(sqnr(x, x.half().float()) - formats.sqnr_db(x, x.half().float())) < 1e-6, "works for 2-D tensors"
### END HIDDEN TESTS
print("ex3 passed")

# %%
bits_and_names = [(8, "int8"), (4, "int4"), (2, "int2"), (1, "binary")]
print(formats.format_error_table(formats.error_table(weights, [n for _, n in bits_and_names])))
measured = [formats.sqnr_db(weights, formats.quantize_dequantize(weights, n)) for _, n in bits_and_names]
fig, ax = plt.subplots(figsize=(5.5, 3))
ax.plot([b for b, _ in bits_and_names], measured, "o-", label="measured (Gaussian weights, absmax scale)")
ax.plot([1, 8], [measured[0] - 6.02 * 7, measured[0]], "k--", lw=0.8, label="6.02 dB per bit")
ax.set_xlabel("bits")
ax.set_ylabel("SQNR (dB)")
ax.legend(fontsize=8)
plt.show()
print(f"INT8 -> INT4 costs {measured[0] - measured[1]:.1f} dB: {(measured[0] - measured[1]) / 4:.2f} dB per bit")

# %% [markdown]
# The absmax scale is set by the single largest value. A Gaussian tensor's max is about 4 standard deviations
# out, so most values crowd into the middle few of INT4's 15 levels while the outer levels are rarely used. INT2 is
# the extreme case: its symmetric grid is $\{-\max, 0, +\max\}$ and nearly every weight rounds to 0, so it
# measures *worse* than binary. Real 2-bit schemes choose the scale by minimising the error instead of by the max
# (chapter 02's observers).
#
# ## 7 · NF4: levels where the weights are
#
# Trained weights are roughly normally distributed. QLoRA's **NormalFloat4** (Dettmers et al., 2023) places its 16
# levels at **quantiles of a normal distribution**, so that each level is used about equally often, then scales
# each block of 64 weights by its absmax. The levels are rebuilt from $\Phi^{-1}$ below and match bitsandbytes'
# table bit for bit:

# %%
rebuilt = formats.nf4_levels_from_normal_quantiles()
print("NF4 levels:", [round(v, 4) for v in formats.NF4_LEVELS])
print("rebuilt from normal quantiles, identical:", torch.equal(rebuilt, torch.tensor(formats.NF4_LEVELS)))
gauss = torch.randn(64 * 1024 if not FAST else 16 * 1024, generator=g)
explore.plot_levels(gauss, ["int4", "nf4"])
plt.title("per-tensor grids over N(0, 1) samples: NF4 is dense where the weights are")
plt.show()

# %% [markdown]
# A fair comparison gives both formats the same block-wise absmax scaling (64 values per block, what QLoRA and
# group-wise INT4 use), on Gaussian weights and on a **real trained tensor**: the first Linear layer of the LeNet
# trained on the digits data set.

# %%
from coursekit.train import pretrained

lenet = pretrained("lenet", "digits", progress=False).eval()
real = {name: p.detach() for name, p in lenet.named_parameters() if p.dim() == 2}
tensors = {"gaussian N(0, 1)": gauss, **{f"lenet {k}": v for k, v in real.items()}}
rows = []
for label, t in tensors.items():
    s_int4 = formats.sqnr_db(t, explore.blockwise(t, "int4", 64))
    s_nf4 = formats.sqnr_db(t, explore.blockwise(t, "nf4", 64))
    rows.append((label, t.numel(), s_int4, s_nf4))
    print(f"{label:26s} {t.numel():7,d} values: INT4 {s_int4:5.2f} dB, NF4 {s_nf4:5.2f} dB "
          f"-> NF4 {'better' if s_nf4 > s_int4 else 'worse'} by {s_nf4 - s_int4:+.2f} dB")
codes_nf4 = formats.nf4_quantize(gauss, 64)[0]
usage = torch.bincount(codes_nf4.long(), minlength=16).float() / codes_nf4.numel()
entropy = float(-(usage[usage > 0] * usage[usage > 0].log2()).sum())
print(f"NF4 code usage on Gaussian weights: entropy {entropy:.2f} of 4 bits (uniform use = 4.00)")

# %% [markdown]
# On Gaussian data NF4 gains about 1–2 dB over INT4 at the same memory, a large margin at 4 bits. On the small
# LeNet's layers the gain is smaller or can vanish: its weights are not exactly normal. Measure on your own model
# before you pick the format. Chapter 07 comes back to 4-bit weights of LLMs.
#
# ## 8 · Explore: bits, neighbours and errors
#
# Pick a format and type a value (or press **pick a weight** to take one from the chosen tensor). The explorer shows
# the stored bits (sign red, exponent blue, mantissa green), the representable values just below and above, and
# the error histogram of the whole tensor in that format. Try: 0.1 in every float format; 65519 and 65520 in FP16;
# 500 in E4M3; a LeNet weight in FP4 with and without *scale floats*; the gradients tensor in FP16 and BF16.
# Integer and NF4 values are stored with the tensor's scale (shown next to the code).

# %%
grads_sample = grads[:4096]
explorer = explore.format_explorer({**tensors, "gradients (log-uniform)": grads_sample})
explorer

# %% [markdown]
# ## 9 · Memory: the arithmetic that decides what fits
#
# Weights take $N \cdot b / 8$ bytes, plus the per-group metadata of low-bit formats: a 16-bit scale per group of
# $g$ weights adds $16/g$ bits per weight (4.125 bits at $g=128$), a zero point adds $b/g$ more. On top of the
# weights, a decoder keeps the **KV cache**: keys and values of every layer for every token in the context,
#
# $$\text{KV bytes} = 2 \times \text{layers} \times \text{kv heads} \times \text{head dim} \times \text{tokens}
# \times \text{batch} \times \tfrac{\text{bits}}{8}.$$
#
# ### Exercise 4 · Weight memory with group scales
#
# Write `weights_gb(num_params, bits, group_size=None, scale_bits=16)`: gigabytes (1e9 bytes) for `num_params`
# weights of `bits` bits, plus one `scale_bits` scale per group of `group_size` weights when `group_size` is given
# (assume it divides `num_params`).

# %% solution="ex4_memory"
def weights_gb(num_params, bits, group_size=None, scale_bits=16):
    """GB (1e9 bytes) of num_params weights at `bits` bits, plus one scale per group."""
    ### BEGIN SOLUTION
    total_bits = num_params * bits
    if group_size is not None:
        total_bits += num_params // group_size * scale_bits
    return total_bits / 8 / 1e9
    ### END SOLUTION

# %% tests="ex4_memory_tests" points=2
assert abs(weights_gb(7e9, 16) - 14.0) < 1e-9
assert abs(weights_gb(7_000_000_000, 4, group_size=128) - 3.609375) < 1e-9, "3.5 GB + 0.109 GB of FP16 scales"
### BEGIN HIDDEN TESTS
gen = torch.Generator().manual_seed(3)
for _ in range(20):
    group = [32, 64, 128, 256][int(torch.randint(4, (1,), generator=gen))]
    n = group * int(torch.randint(1, 10**8, (1,), generator=gen))
    for fmt_name, b in (("int4", 4), ("int8", 8), ("int2", 2), ("nf4", 4)):
        for scale_name, sb in (("fp16", 16), ("fp32", 32)):
            expected = formats.memory_bytes(n, fmt_name, group_size=group, scale_format=scale_name) / 1e9
            assert abs(weights_gb(n, b, group, sb) - expected) < 2e-9, (n, fmt_name, group, scale_name)
    assert abs(weights_gb(n, 16) - formats.memory_bytes(n, "bf16") / 1e9) < 2e-9
### END HIDDEN TESTS
print("ex4 passed")

# %% [markdown]
# The same numbers from `coursekit.formats`, for the seed tutorials' 7B example and the KV cache of a
# Llama-2-7B-shaped decoder (32 layers, 32 KV heads of dimension 128) at a 4k context:

# %%
N7B = 7_000_000_000
seven_b = {
    "FP32": formats.memory_bytes(N7B, "fp32"),
    "FP16 / BF16": formats.memory_bytes(N7B, "fp16"),
    "INT8": formats.memory_bytes(N7B, "int8"),
    "INT4 (no scales)": formats.memory_bytes(N7B, "int4"),
    "INT4, g128 FP16 scales": formats.memory_bytes(N7B, "int4", group_size=128),
    "INT4, g128 scales + zero points": formats.memory_bytes(N7B, "int4", group_size=128, zero_point=True),
    "NF4, g64 FP32 absmax": formats.memory_bytes(N7B, "nf4", group_size=64, scale_format="fp32"),
}
for name, b in seven_b.items():
    print(f"{name:32s} {b / 1e9:7.3f} GB  ({8 * b / N7B:.3f} bits per weight)")
kv = {fmt: formats.kv_cache_bytes(num_layers=32, num_kv_heads=32, head_dim=128, seq_len=4096, fmt=fmt)
      for fmt in ("fp16", "fp8_e4m3")}
print(f"\nKV cache, Llama-2-7B shape, 4096 tokens, 1 sequence: FP16 {kv['fp16'] / 1e9:.2f} GB, "
      f"FP8 {kv['fp8_e4m3'] / 1e9:.2f} GB")
gqa = formats.kv_cache_bytes(num_layers=80, num_kv_heads=8, head_dim=128, seq_len=4096, fmt="fp16")
print(f"Llama-2-70B (80 layers, grouped-query attention: 8 KV heads): {gqa / 1e9:.2f} GB per 4k sequence")

# %% [markdown]
# So how many 4k-token conversations fit on one 80 GB GPU next to a 7B model? (Ignoring activations and the
# runtime's own few GB, which you would subtract in practice.)

# %%
budget = 80e9
print(f"{'weights':24s} {'KV cache':9s} {'weights GB':>10s} {'sequences':>10s}")
for wname in ("FP16 / BF16", "INT8", "INT4, g128 FP16 scales"):
    for kname in ("fp16", "fp8_e4m3"):
        left = budget - seven_b[wname]
        print(f"{wname:24s} {kname:9s} {seven_b[wname] / 1e9:10.2f} {int(left // kv[kname]):10d}")
print()
print(formats.model_memory_report(lenet, group_size=64))

# %% [markdown]
# At long contexts and many users the **KV cache, not the weights, is what fills the GPU**: going from FP16 to
# INT4 weights buys about 5 more sequences, an FP8 cache doubles the count.
#
# ### Exercise 5 · Choose a format for a deployment
#
# Write `choose_weight_format(num_params, budget_gb, kv_cache_gb=0.0)`: return the **most precise** of `"fp16"`,
# `"int8"`, `"int4"` whose weights plus `kv_cache_gb` fit in `budget_gb` (at most equal), or `None` if none fits.
# INT4 stores one FP16 scale per group of 128 weights (`num_params` is a multiple of 128); FP16 and INT8 have no
# scales. Use `coursekit.formats.memory_bytes` or your `weights_gb`; GB means 1e9 bytes.

# %% solution="ex5_choose"
def choose_weight_format(num_params, budget_gb, kv_cache_gb=0.0):
    """The most precise of fp16 > int8 > int4 (g128 FP16 scales) that fits, or None."""
    ### BEGIN SOLUTION
    for name, group in (("fp16", None), ("int8", None), ("int4", 128)):
        if formats.memory_bytes(num_params, name, group_size=group) / 1e9 + kv_cache_gb <= budget_gb:
            return name
    return None
    ### END SOLUTION

# %% tests="ex5_choose_tests" points=2
assert choose_weight_format(7_000_000_000, 24) == "fp16", "14 GB fits on a 24 GB GPU"
assert choose_weight_format(7_000_000_000, 8) == "int8", "7 GB fits in 8 GB, 14 GB does not"
assert choose_weight_format(7_000_000_000, 24, kv_cache_gb=17.2) == "int4", "8 x 4k FP16 KV cache next to it"
assert choose_weight_format(70_000_000_000, 24) is None, "a 70B model does not fit on one 24 GB GPU"
### BEGIN HIDDEN TESTS
assert choose_weight_format(7_000_000_000, 3.6) is None, "INT4 with scales is 3.61 GB"
assert choose_weight_format(7_000_000_000, 3.609375) == "int4", "exactly equal fits"
assert choose_weight_format(70_000_000_000, 48) == "int4"
gen = torch.Generator().manual_seed(9)


def expected(n, budget, kv):
    for name, group in (("fp16", None), ("int8", None), ("int4", 128)):
        if formats.memory_bytes(n, name, group_size=group) / 1e9 + kv <= budget:
            return name
    return None


for _ in range(200):
    n = 128 * int(torch.randint(1, 600_000_000, (1,), generator=gen))
    budget = float(torch.rand(1, generator=gen)) * 200
    kv = float(torch.rand(1, generator=gen)) * 20
    assert choose_weight_format(n, budget, kv) == expected(n, budget, kv), (n, budget, kv)
### END HIDDEN TESTS
print("ex5 passed")

# %% [markdown]
# ## 10 · Benchmark your machine: matmul in FP32, BF16 and FP16
#
# Fewer bits are only faster where the hardware has instructions that work on them. The `formats` suite (also
# `coursekit bench --suite formats`) multiplies two square $n \times n$ matrices ($2n^3$ floating-point operations)
# in each dtype, interleaved, at 1 thread, and reports GFLOP/s (plus FP8 through `torch._scaled_mm` on GPUs of
# compute capability 8.9+, and the size of a Linear-heavy model in each format).

# %%
from coursekit.suites import run_suite
from coursekit.suites.formats import plot_gflops, reading

result = run_suite("formats", progress=False)
records = result["records"]
print(bench.format_table([r for r in records if r.get("gflops")],
                         columns=["variant", "device", "size", "threads", "latency_ms_min", "latency_ms_median",
                                  "latency_ms_p90", "gflops"]))
plot_gflops(records)
plt.show()
print(reading(records))

# %% [markdown]
# ### Reading the numbers honestly
#
# The lines above are generated from *your* measurements; the explanations behind them:
#
# * **FP32** runs on the vector FMA units (AVX2 / AVX-512 on x86, NEON on Arm). It is the baseline, and on most
#   laptops still the fastest matmul the CPU has.
# * **BF16** is fast only where the CPU can multiply BF16 natively: AVX512-BF16 (dot products of BF16 pairs) or
#   Intel's AMX tiles (Sapphire Rapids and later, `amx_bf16` in `coursekit doctor`), which do a whole tile of
#   multiply-adds per instruction. There, BF16 is several times faster than FP32 on large matrices. Without those
#   instructions, torch converts BF16 to FP32 and back, and BF16 is *slower* than FP32.
# * **FP16** has no native matmul path on most CPUs (AVX512-FP16 and AMX-FP16 exist only on the newest Xeons and
#   are not always used by torch's kernels): values are widened to FP32, multiplied, and rounded back. Expect FP16
#   about as fast as FP32 at best, and often slower. On GPUs it is the other way round: FP16 and BF16 tensor cores
#   are many times faster than FP32.
# * **Small matrices** (n=256) are dominated by overheads and caches; the large ones show the arithmetic.
# * **Memory** always halves with 16-bit formats, whatever the speed: on memory-bound work (batch-1 LLM decoding)
#   that alone can be a speedup, which a square matmul, compute-bound, does not show.
#
# So a lower precision does **not** help on hardware without instructions for it: check `coursekit doctor`
# before you promise a speedup, and measure.
#
# ## 11 · Common mistakes
#
# * Casting a model to FP16 and training without loss scaling: gradients flush to zero, the loss stops moving (or
#   the forward pass overflows to inf beyond 65504 and the loss turns NaN).
# * Casting to FP8 without a per-tensor scale: most weights are far below E4M3's comfortable range and collapse to a
#   few values or zero.
# * Assuming FP8 E4M3 overflow behaves the same everywhere: torch saturates to 448, ml_dtypes and the OCP
#   non-saturating mode give NaN.
# * Forgetting the metadata: INT4 at group size 128 is 4.125 bits per weight (4.25 with zero points), and the KV
#   cache of long contexts can be larger than the weights.
# * Comparing INT4 and NF4 with different block sizes or scales: compare formats at equal bits *and* equal scaling.
# * Expecting FP16 or BF16 to be faster on a CPU without the instructions for them (section 10).
# * Adding tiny updates directly to BF16/FP16 weights: they round away. Keep an FP32 master copy.
#
# ## 12 · Interview questions
#
# Practise with the quiz below, or in a terminal with `coursekit drill --chapter 01`.

# %%
from coursekit import quiz

quiz.show(chapter="01", n=5)

# %% [markdown]
# ### Graded interview questions
#
# Answer each question in a dictionary called `answers` that maps the question id to your answer: a letter for a
# choice question (`"B"`, or `"A,C"` when several are right), a number for a numeric one. The hidden test checks
# them against the bank installed with coursekit.

# %% locked="quiz_questions"
QUIZ_IDS = ["ch01-bf16-vs-fp16", "ch01-e4m3-max", "ch01-loss-scaling", "ch01-nf4-why-normal"]
quiz.render(QUIZ_IDS)

# %% solution="quiz_answers"
### BEGIN SOLUTION
answers = {"ch01-bf16-vs-fp16": "C", "ch01-e4m3-max": 448, "ch01-loss-scaling": "B", "ch01-nf4-why-normal": "D"}
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
# * A float is sign | exponent (range) | mantissa (precision). FP16: precise, ±65504, underflows below $6\times
#   10^{-8}$. BF16: FP32's range, 8 bits of precision. FP8: E4M3 (±448) for weights and activations, E5M2 (±57344)
#   for gradients, always with a scale.
# * Rounding is to nearest, ties to even; overflow goes to inf (FP16, BF16, E5M2) or saturates / NaNs (E4M3,
#   depending on the library).
# * FP16 training needs loss scaling because small gradients flush to zero; BF16 does not.
# * Integer grids gain about 6 dB per bit; NF4's normal-quantile levels beat INT4 on normally distributed weights.
# * Memory = weights (with group scales) + KV cache; at long contexts the cache dominates.
# * Fewer bits are faster only with hardware support: on this kind of CPU BF16 (AMX) flies and FP16 does not.
#
# Next: **02 · Post-training quantization**: choosing scales and zero points for a whole network from calibration
# data.
