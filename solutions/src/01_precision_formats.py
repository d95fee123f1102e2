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
# 3. the SQNR metric to compare INT8 / INT4 / NF4 / FP8 on real weights,
# 4. a memory estimator with group scales and zero points, and the KV cache that comes on top,
# 5. a format chooser for a deployment budget,
#
# and you measure, on your machine, how fast matrix multiplication runs in FP32, BF16 and FP16, and whether
# subnormal numbers slow your CPU down. The last sections go to the edges: flush-to-zero, the 16 values of FP4
# E2M1, and binary networks that replace multiply-adds by XNOR and popcount.
#
# Run the notebook cell by cell (Shift+Enter): "Run All" stops at the first exercise you have not answered yet,
# as in any nbgrader course.
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
from coursekit.grading.sealed import expect_close, expect_equal

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
# shared scale per 32 values; section 12).
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
# Visible tests: each names the mistake behind a typical wrong value.
expect_equal(decode_fp16(0x3C00), 1.0, what="decode_fp16(0x3C00)",
             wrong={"no hidden 1: a normal number is (1 + m/1024) * 2^(e - 15)": 0.0,
                    "wrong bias: FP16's exponent bias is 2^4 - 1 = 15, not 16": 0.5,
                    "wrong bias: FP16's exponent bias is 2^4 - 1 = 15, not 14": 2.0})
expect_equal(decode_fp16(0xC000), -2.0, what="decode_fp16(0xC000)",
             wrong={"sign ignored: bit 15 set means a negative number": 2.0})
expect_equal(decode_fp16(0x7BFF), 65504.0, what="decode_fp16(0x7BFF), the largest finite FP16")
expect_equal(decode_fp16(0x0001), 2.0 ** -24, what="decode_fp16(0x0001), the smallest subnormal",
             wrong={"subnormal exponent 0 - 15: subnormals use 1 - 15, the exponent of the smallest normal": 2.0 ** -25,
                    "hidden 1 kept on a subnormal: exponent field 0 means no hidden 1": (1 + 2.0 ** -10) * 2.0 ** -14,
                    "exponent field 0 decoded as a normal number (hidden 1, exponent 0 - 15)":
                        (1 + 2.0 ** -10) * 2.0 ** -15})
expect_equal([decode_fp16(0x7C00), decode_fp16(0xFC00)], [math.inf, -math.inf], what="decode_fp16 of 0x7C00, 0xFC00",
             wrong={"exponent field 31 decoded as a normal number: it is reserved for inf and NaN": [65536.0, -65536.0]})
expect_close(decode_fp16(0x7E00), math.nan, what="decode_fp16(0x7E00)",
             wrong={"NaN decoded as inf: exponent 31 with a mantissa other than 0 is NaN": math.inf})
expect_equal(math.copysign(1.0, decode_fp16(0x8000)), -1.0, what="the sign of decode_fp16(0x8000), which is -0.0",
             wrong={"0x8000 decoded as +0.0: apply the sign to zero too": 1.0})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_close, expect_equal, forbid, sealed_test

# Wrong answers caught (each verified to fail): no hidden 1 on normals; bias 14 or 16; subnormal exponent 0 - bias
# instead of 1 - bias; hidden 1 kept on subnormals (with either exponent); sign ignored (and -0.0 returned as +0.0);
# NaN decoded as inf; exponent 31 decoded as a normal number; an int returned instead of a float; delegating to
# coursekit's FP16 decoder (forbidden while decode_fp16 runs).
EX1_SEED, EX1_COUNT = 1, 3000


def _ex1_codes():
    import random

    rng = random.Random(EX1_SEED)
    edges = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x8400, 0x3C00, 0xC000, 0x7BFF, 0xFBFF,
             0x7C00, 0xFC00, 0x7C01, 0xFE00, 0x7FFF]
    return edges + list(range(0, 1 << 16, 97)) + [rng.randrange(1 << 16) for _ in range(EX1_COUNT)]


def _probe():
    from unittest import mock

    from coursekit.formats.floats import FloatFormat

    def refuse(*args, **kwargs):
        raise AssertionError("Exercise 1 asks you to decode the bits yourself: coursekit's decoder is not allowed here")

    with forbid("coursekit.formats.get_format", exercise="Exercise 1"), \
            mock.patch.object(FloatFormat, "decode", refuse), mock.patch.object(FloatFormat, "_magnitude", refuse):
        got = [decode_fp16(c) for c in _ex1_codes()]
    return {"values": got, "all_float": all(isinstance(v, float) for v in got)}


def _check(out):
    import math

    import torch

    codes = _ex1_codes()
    want = torch.tensor(codes, dtype=torch.int32).to(torch.int16).view(torch.float16).float().tolist()
    assert out["all_float"], "decode_fp16 must return a Python float for every code (math.ldexp gives one)"
    got = out["values"]
    assert len(got) == len(codes), "decode_fp16 gave the wrong number of results"

    def decode(c, bias=15, hidden=True, sub_exponent=1, sub_hidden=False, signed=True, nan=True, specials=True):
        sign = -1.0 if signed and c >> 15 else 1.0
        e, m = (c >> 10) & 31, c & 1023
        if e == 31 and specials:
            return sign * math.inf if m == 0 or not nan else math.nan
        if e == 0:
            return sign * math.ldexp(m + (1024 if sub_hidden else 0), sub_exponent - bias - 10)
        return sign * math.ldexp(m + (1024 if hidden else 0), e - bias - 10)

    groups = {
        "normal numbers": (lambda c: 1 <= (c >> 10) & 31 <= 30, {
            "no hidden 1: a normal number is (1 + m/1024) * 2^(e - 15)": {"hidden": False},
            "wrong bias: FP16's bias is 15, not 16": {"bias": 16},
            "wrong bias: FP16's bias is 15, not 14": {"bias": 14},
            "sign ignored: bit 15 set means negative": {"signed": False}}),
        "subnormal numbers (exponent field 0)": (lambda c: (c >> 10) & 31 == 0 and c & 1023, {
            "subnormal exponent 0 - 15: subnormals use 1 - 15 = -14": {"sub_exponent": 0},
            "hidden 1 kept on subnormals: exponent field 0 has no hidden 1": {"sub_hidden": True},
            "exponent field 0 decoded as a normal number (hidden 1, exponent -15)": {"sub_hidden": True,
                                                                                    "sub_exponent": 0},
            "sign ignored: bit 15 set means negative": {"signed": False}}),
        "inf and NaN (exponent field 31)": (lambda c: (c >> 10) & 31 == 31, {
            "NaN decoded as inf: a mantissa other than 0 means NaN": {"nan": False},
            "exponent 31 decoded as a normal number: it is reserved for inf and NaN": {"specials": False},
            "sign ignored: bit 15 set means negative": {"signed": False}}),
    }
    for label, (member, mistakes) in groups.items():
        idx = [i for i, c in enumerate(codes) if member(c)]
        expect_close([got[i] for i in idx], [want[i] for i in idx], rtol=0.0, atol=0.0,
                     what=f"decode_fp16 on hidden {label}",
                     wrong={name: [decode(codes[i], **kw) for i in idx] for name, kw in mistakes.items()})
    zeros = {c: math.copysign(1.0, got[codes.index(c)]) for c in (0x0000, 0x8000)}
    expect_equal(zeros, {0x0000: 1.0, 0x8000: -1.0}, what="signs of decode_fp16(0x0000) and decode_fp16(0x8000)",
                 wrong={"0x8000 is -0.0: apply the sign to zero too": {0x0000: 1.0, 0x8000: 1.0}})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 1 passed")

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
# | FP8 E4M3FN | 448 | 464 -> 448 | torch's CPU cast: **saturates to 448** (even inf -> 448) in the torch version printed below; ml_dtypes / OCP non-saturating mode: **NaN** |
# | FP8 E5M2 | 57344 | 61439 -> 57344 | 61440 and up -> **inf** |
#
# E4M3FN has no infinity at all ("FN": finite and NaN): it gives the all-ones exponent to numbers, which is how it
# reaches 448 instead of 240. The OCP FP8 spec leaves overflow to the implementation: saturate (clip to ±448) or
# produce NaN. A model converted with one library and run with another can change behaviour exactly here, and
# the behaviour of a cast is a property of the library *version*: the torch line below is a live measurement of the
# torch you run, not a promise about the next release.

# %%
def show(name, values, **kw):
    got = formats.get_format(name).cast(torch.tensor(values), **kw).tolist()
    print(f"{name:9s} {kw.get('overflow', 'default'):9s} {values} -> {got}")


show("fp16", [65504.0, 65519.0, 65520.0, 1e6])
show("fp8_e4m3", [448.0, 464.0, 465.0, 1e6, math.inf])
show("fp8_e4m3", [448.0, 464.0, 465.0, 1e6], overflow="nan")
show("fp8_e5m2", [57344.0, 61439.0, 61440.0])
print(f"torch {torch.__version__} E4M3FN cast of [464, 465, 1e6, inf]:",
      torch.tensor([464.0, 465.0, 1e6, math.inf]).to(torch.float8_e4m3fn).float().tolist())
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
# Visible tests: each names the mistake behind a typical wrong value.
got = to_bf16_bits(torch.tensor([1.0, -2.0, 0.1]))
expect_equal(str(got.dtype), "torch.int32", what="the dtype of to_bf16_bits(...)",
             wrong={"int64 returned: finish with .to(torch.int32)": "torch.int64",
                    "int16 returned: an int16 cannot hold patterns >= 32768; return int32": "torch.int16"})
expect_equal(got.tolist(), [0x3F80, 0xC000, 0x3DCD], what="to_bf16_bits([1.0, -2.0, 0.1])",
             wrong={"truncation: the low 16 bits were dropped without rounding (0.1 gives 0x3DCC)": [0x3F80, 0xC000, 0x3DCC],
                    "signed patterns: negative numbers must give unsigned patterns in [32768, 65536) (mask with "
                    "& 0xFFFF, or start from the unsigned view of the bits)": [0x3F80, 0xC000 - 0x10000, 0x3DCD]})
expect_equal(list(to_bf16_bits(torch.ones(2, 3)).shape), [2, 3], what="the shape of to_bf16_bits(torch.ones(2, 3))")
ties = torch.tensor([0x3F808000, 0x3F818000], dtype=torch.int32).view(torch.float32)  # 1 + 2^-8, 1 + 3 * 2^-8
expect_equal(to_bf16_bits(ties).tolist(), [0x3F80, 0x3F82], what="to_bf16_bits of the exact ties 1 + 2^-8, 1 + 3*2^-8",
             wrong={"round half up (u + 0x8000): an exact tie must go to the even pattern": [0x3F81, 0x3F82],
                    "ties rounded down (u + 0x7FFF without the kept bit l)": [0x3F80, 0x3F81]})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_equal, sealed_test

# Wrong answers caught (each verified to fail): truncation (u >> 16); round half up (u + 0x8000) >> 16; ties always
# down (u + 0x7FFF) >> 16; signed patterns for negative numbers (no & 0xFFFF on a signed view); int64 or int16
# dtype; wrong shape (flattened); delegating to torch's BF16 cast or coursekit's encoder (both refused while
# to_bf16_bits runs: the exercise is the integer bit trick).
EX2_SEED = 11


def _ex2_inputs():
    import math

    import torch

    g = torch.Generator().manual_seed(EX2_SEED)
    bits = torch.randint(0, 1 << 32, (4000,), generator=g, dtype=torch.int64)
    ties = (torch.randint(0, 1 << 16, (1000,), generator=g, dtype=torch.int64) << 16) | 0x8000
    near_ties = (torch.randint(0, 1 << 16, (500,), generator=g, dtype=torch.int64) << 16) | 0x7FFF
    allbits = torch.cat([bits, ties, near_ties])
    allbits = allbits[((allbits >> 23) & 0xFF) != 0xFF]  # no NaN or inf patterns among the random ones
    random_x = (allbits - (allbits >= 1 << 31).to(torch.int64) * (1 << 32)).to(torch.int32).view(torch.float32)
    special = torch.tensor([0.0, -0.0, math.inf, -math.inf, 3.3895314e38, 3.3961776e38, 3.4028235e38,
                            -3.4028235e38, 1e-45, -1e-45, 1.17549435e-38, 9.2e-41, -9.2e-41])
    return [random_x, special, torch.randn(7, 5, generator=g)]


def _probe():
    from unittest import mock

    import torch

    from coursekit.formats.floats import FloatFormat

    def refuse(*args, **kwargs):
        raise AssertionError("Exercise 2 asks for the integer bit trick: coursekit's BF16 encoder is not allowed here")

    original_to = torch.Tensor.to

    def guarded_to(self, *args, **kwargs):
        if torch.bfloat16 in args or kwargs.get("dtype") is torch.bfloat16:
            raise AssertionError("Exercise 2 asks for the integer bit trick: casting with .to(torch.bfloat16) "
                                 "is not allowed here")
        return original_to(self, *args, **kwargs)

    outs = []
    with mock.patch.object(FloatFormat, "encode", refuse), mock.patch.object(FloatFormat, "cast", refuse), \
            mock.patch.object(torch.Tensor, "to", guarded_to), mock.patch.object(torch.Tensor, "bfloat16", refuse):
        for x in _ex2_inputs():
            out = to_bf16_bits(x)
            outs.append({"dtype": str(out.dtype), "shape": list(out.shape), "bits": out.reshape(-1).tolist()})
    return outs


def _check(out):
    import torch

    for x, o in zip(_ex2_inputs(), out):
        u = x.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
        want = (x.to(torch.bfloat16).view(torch.int16).to(torch.int64) & 0xFFFF).reshape(-1).tolist()
        expect_equal(o["dtype"], "torch.int32", what="dtype of to_bf16_bits",
                     wrong={"int64 returned: finish with .to(torch.int32)": "torch.int64",
                            "int16 returned: it cannot hold patterns >= 32768; return int32": "torch.int16"})
        expect_equal(o["shape"], list(x.shape), what=f"shape of to_bf16_bits on a tensor of shape {list(x.shape)}")
        signed = [b - (1 << 16) if b >= 1 << 15 else b for b in want]
        expect_equal(o["bits"], want, what=f"to_bf16_bits on {x.numel()} hidden values (checked against torch's cast)",
                     wrong={"truncation (u >> 16): round to nearest even instead": (u >> 16).reshape(-1).tolist(),
                            "round half up (u + 0x8000): exact ties must go to the even pattern":
                                (((u + 0x8000) >> 16) & 0xFFFF).reshape(-1).tolist(),
                            "ties rounded down: add the kept bit l = (u >> 16) & 1 as well as 0x7FFF":
                                (((u + 0x7FFF) >> 16) & 0xFFFF).reshape(-1).tolist(),
                            "signed patterns: negative numbers must give unsigned patterns in [32768, 65536)": signed,
                            "round half up on a signed view": [b - (1 << 16) if b >= 1 << 15 else b for b in
                                                               (((u + 0x8000) >> 16) & 0xFFFF).reshape(-1).tolist()]})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 2 passed")

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
# SQNR (signal-to-quantization-noise ratio, in dB) is the error metric used from here on; Exercise 3 below asks you
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
# Visible tests: each names the mistake behind a typical wrong value.
_x, _xq = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5])  # signal power 2.5, noise power 0.125: ratio 20
expect_close(sqnr(_x, _xq), 10 * math.log10(20), what="sqnr([1, 2], [1, 2.5])",
             wrong={"20*log10 of a power ratio: powers take 10*log10 (20*log10 is for amplitudes)": 20 * math.log10(20),
                    "10*log10 of an amplitude (RMS) ratio: take the ratio of mean squares": 10 * math.log10(20 ** 0.5),
                    "noise over signal: SQNR is signal power / noise power": -10 * math.log10(20),
                    "not in dB: apply 10*log10 to the ratio": 20.0,
                    "natural log: dB use log10": 10 * math.log(20),
                    "mean absolute error as the noise: noise power is the mean SQUARED error": 10.0})
expect_equal(sqnr(torch.tensor([1.0, -3.0]), torch.tensor([1.0, -3.0])), math.inf, what="sqnr(x, x)")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811 (each hidden section imports what it uses)

# Wrong answers caught (each verified to fail): 20*log10 of the power ratio; 10*log10 of the RMS (amplitude) ratio;
# noise/signal inverted; the plain ratio (not dB); natural log; mean absolute error instead of mean squared error;
# no inf for an exact copy (nan or an exception); delegating to coursekit.formats.sqnr_db / quantization_error /
# error_metrics (refused while sqnr runs).
EX3_SEED = 5
EX3_FORMATS = ("int8", "int4", "int2", "binary", "nf4", "fp8_e4m3", "fp16")


def _ex3_pairs():
    import torch

    from coursekit import formats

    g = torch.Generator().manual_seed(EX3_SEED)
    pairs = []
    for i, name in enumerate(EX3_FORMATS):
        x = torch.randn(50 + 300 * i, generator=g) * 3
        pairs.append((x, formats.quantize_dequantize(x, name)))
    x = torch.randn(4, 64, generator=g)
    pairs.append((x, x.half().float()))  # a 2-D tensor
    pairs.append((x, x.clone()))  # an exact copy: inf
    return pairs


def _probe():
    pairs = _ex3_pairs()
    names = [f"coursekit.formats.{f}" for f in ("sqnr_db", "quantization_error", "error_metrics", "error_table")]
    names += [f"coursekit.formats.metrics.{f}" for f in ("sqnr_db", "quantization_error", "error_metrics")]
    with forbid(*names, exercise="Exercise 3"):
        return [sqnr(x, xq) for x, xq in pairs]


def _check(out):
    import math

    import numpy as np

    def ratios(fn):
        values = []
        for x, xq in _ex3_pairs():
            a, b = x.double().numpy(), xq.double().numpy()
            values.append(fn(np.mean(a ** 2), np.mean((a - b) ** 2), np.mean(np.abs(a - b))))
        return values

    def db(scale, log=math.log10, power=1.0, invert=False):
        def fn(signal, noise, _):
            if noise == 0:
                return math.inf
            r = (noise / signal if invert else signal / noise) ** power
            return scale * log(r)
        return fn

    want = ratios(db(10))
    assert all(isinstance(v, (int, float)) for v in out), "sqnr must return a Python float (use float(...))"
    assert out[-1] == math.inf, f"sqnr of an exact copy must be math.inf (no noise at all), got {out[-1]}"
    expect_close(out, want, rtol=1e-6, atol=1e-6, what="sqnr on hidden pairs (INT8 ... FP16, a 2-D tensor, an exact copy)",
                 wrong={"20*log10 of a power ratio: powers take 10*log10": ratios(db(20)),
                        "10*log10 of the RMS (amplitude) ratio: take the ratio of mean squares":
                            ratios(db(10, power=0.5)),
                        "noise over signal: SQNR is signal power / noise power": ratios(db(10, invert=True)),
                        "not in dB: apply 10*log10 to the ratio": ratios(lambda s, n, _: math.inf if n == 0 else s / n),
                        "natural log: dB use log10": ratios(db(10, log=math.log)),
                        "mean absolute error instead of mean squared error as the noise power":
                            ratios(lambda s, n, a: math.inf if n == 0 else 10 * math.log10(s / a))})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 3 passed")

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
# out, so most values crowd into the middle few of INT4's 15 levels while the outer levels are rarely used.
#
# **Two conventions for INT2.** Two bits give four codes, $\{-2, -1, 0, 1\}$ in two's complement, and a symmetric
# quantizer has to decide what to do with the lonely $-2$:
#
# * **restricted (narrow) symmetric**: drop it and use $\{-1, 0, 1\}\cdot s$ with $s = \max|x|$: three levels,
#   $\{-\max, 0, +\max\}$. This is what `coursekit.formats` does in this chapter (`quantize_dequantize(x, "int2")`,
#   $s = \max|x|/q_\max$, the same rule as INT8's $\max|x|/127$) and what ONNX Runtime's symmetric mode does at
#   every width ($[-127, 127]$ for INT8). With $s = \max$, nearly every Gaussian weight rounds to 0, which is why
#   INT2 measures *worse* than binary above.
# * **full two's-complement range**: keep all four codes $\{-2, -1, 0, 1\}\cdot s$ with torch's symmetric rule
#   $s = \max|x| / ((q_\max - q_\min)/2) = \max|x|/1.5$. The grid is lopsided (it reaches $-1.33\max$ but only
#   $+0.67\max$). This is `coursekit.quant`'s default (torch's convention), so chapters 02 and 03 see **four levels**
#   $-2s, -s, 0, s$ per channel.
# * **affine** (asymmetric): four levels $(q - z)\,s$, $q \in \{0, 1, 2, 3\}$, spread from $\min x$ to $\max x$
#   with a zero point $z$.
#
# All three are "INT2"; a paper or a runtime that says "2-bit" means one of them, so check which. Measured on the
# same Gaussian weights (one scale for the whole tensor):

# %%
from coursekit.quant import calc_qparams, fake_quantize

amax, wmin, wmax = float(weights.abs().max()), float(weights.min()), float(weights.max())
int2_schemes = {  # label: (scale, zero point, qmin, qmax)
    "restricted symmetric (coursekit.formats)": (amax / formats.get_format("int2").qmax, 0, -1, 1),
    "full two's complement (coursekit.quant)": (*calc_qparams(-amax, amax, -2, 1, symmetric=True), -2, 1),
    "affine with a zero point": (*calc_qparams(wmin, wmax, 0, 3), 0, 3),
}
for label, (scale, zp, qmin, qmax) in int2_schemes.items():
    wq = fake_quantize(weights, scale, zp, qmin, qmax)
    grid = [round((q - int(zp)) * float(scale) / amax, 3) for q in range(qmin, qmax + 1)]
    print(f"{label:42s} grid / max|x| = {grid}  SQNR {formats.sqnr_db(weights, wq):5.2f} dB")
print("coursekit.formats' INT2 equals the restricted grid:",
      torch.equal(formats.quantize_dequantize(weights, "int2"), fake_quantize(weights, amax, 0, -1, 1)))

# %% [markdown]
# Whatever the convention, a max-based scale wastes a 2-bit grid on Gaussian weights: real 2-bit schemes choose
# the scale by minimising the error instead (chapter 02's MSE observer), and chapter 03 trains the weights to fit
# the grid.
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
# Weights take $N \cdot b / 8$ bytes, plus the per-group metadata of low-bit formats. With one scale of $b_s$
# bits per group of $g$ weights, and (for asymmetric schemes) one zero point of $b_z$ bits per group:
#
# $$\text{bits per weight} = b + \frac{b_s + b_z}{g}.$$
#
# This chapter (and `coursekit.formats.memory_bytes`) stores the zero point in the weight format itself, as GPTQ
# and AWQ pack 4-bit zero points: $b_z = b$. Some tools keep FP16 zero points ($b_z = 16$) instead; the cell
# below computes both, so the numbers in this chapter are never typed by hand. On top of the weights, a decoder
# keeps the **KV cache**: keys and values of every layer for every token in the context,
#
# $$\text{KV bytes} = 2 \times \text{layers} \times \text{kv heads} \times \text{head dim} \times \text{tokens}
# \times \text{batch} \times \tfrac{\text{bits}}{8}.$$

# %%
bpw = {
    "INT4, g128, FP16 scale": formats.bits_per_param("int4", 128),
    "INT4, g128, FP16 scale + 4-bit zero point (this chapter)": formats.bits_per_param("int4", 128, zero_point=True),
    "INT4, g128, FP16 scale + FP16 zero point": 4 + (16 + 16) / 128,
    "INT4, g64, FP16 scale + FP16 zero point": 4 + (16 + 16) / 64,
}
for label, bits in bpw.items():
    print(f"{label:58s} {bits:.5g} bits per weight")

# %% [markdown]
# ### Exercise 4 · Weight memory with group scales
#
# Write `weights_gb(num_params, bits, group_size=None, scale_bits=16, zero_point=False)`: gigabytes (1 GB = 1e9
# bytes) for `num_params` weights of `bits` bits; when `group_size` is given, add one `scale_bits` scale per group
# of `group_size` weights and, with `zero_point=True`, one `bits`-bit zero point per group (the chapter's
# convention above). Assume `group_size` divides `num_params`. Write the arithmetic yourself: the hidden test does
# not let you call `memory_bytes` or `bits_per_param`.

# %% solution="ex4_memory"
def weights_gb(num_params, bits, group_size=None, scale_bits=16, zero_point=False):
    """GB (1e9 bytes) of num_params weights at `bits` bits, plus one scale (and zero point) per group."""
    ### BEGIN SOLUTION
    total_bits = num_params * bits
    if group_size is not None:
        total_bits += num_params // group_size * (scale_bits + (bits if zero_point else 0))
    return total_bits / 8 / 1e9
    ### END SOLUTION

# %% tests="ex4_memory_tests" points=2
# Visible tests: each names the mistake behind a typical wrong value.
expect_close(weights_gb(7_000_000_000, 16), 14.0, what="weights_gb(7e9, 16)",
             wrong={"GiB instead of GB: 1 GB = 1e9 bytes, you divided by 2**30": 14e9 / 2 ** 30,
                    "bits instead of bytes: divide the bits by 8": 112.0})
expect_close(weights_gb(7_000_000_000, 4, group_size=128), 3.609375, what="weights_gb(7e9, 4, group_size=128)",
             wrong={"scales forgotten: one 16-bit scale per group of 128 adds 0.109 GB": 3.5,
                    "one scale per weight instead of per group": 17.5})
expect_close(weights_gb(7_000_000_000, 4, group_size=128, zero_point=True), 3.63671875,
             what="weights_gb(7e9, 4, group_size=128, zero_point=True)",
             wrong={"zero points ignored: zero_point=True adds one 4-bit zero point per group": 3.609375,
                    "16-bit zero points: this chapter stores the zero point in `bits` bits": 3.71875})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811 (each hidden section imports what it uses)

# Wrong answers caught (each verified to fail): GiB (2**30) instead of GB; bits not divided by 8; scales ignored;
# zero points ignored; FP16 (16-bit) zero points instead of `bits`-bit ones; scale_bits ignored (always 16); one
# scale per weight; delegating to coursekit.formats.memory_bytes / bits_per_param (refused while weights_gb runs).
# (num_params, bits, group_size, scale_bits, zero_point); num_params * bits and the metadata are whole bytes.
EX4_CASES = [(7_000_000_000, 16, None, 16, False), (1_300_000_000, 8, None, 16, False),
             (70_000_000_000, 4, 128, 16, False), (70_000_000_000, 4, 128, 16, True),
             (13_000_000_000, 4, 64, 32, True), (8_000_000_000, 2, 32, 16, True), (6_710_886_400, 8, 256, 32, False),
             (3_221_225_472, 4, 32, 16, True), (1_000_000_000, 3, 128, 16, True)]


def _probe():
    names = ("coursekit.formats.memory_bytes", "coursekit.formats.bits_per_param",
             "coursekit.formats.memory.memory_bytes", "coursekit.formats.memory.bits_per_param")
    with forbid(*names, exercise="Exercise 4"):
        return [weights_gb(n, b, group_size=g, scale_bits=sb, zero_point=zp) for n, b, g, sb, zp in EX4_CASES]


def _check(out):
    from coursekit.formats import memory_bytes

    int_format = {2: "int2", 3: "int3", 4: "int4", 8: "int8", 16: "fp16"}
    scale_format = {16: "fp16", 32: "fp32"}

    def reference(n, b, g, sb, zp):
        if b == 3:  # coursekit has no 3-bit format: the same arithmetic by hand
            return (n * b + (n // g) * (sb + (b if zp else 0))) / 8 / 1e9
        return memory_bytes(n, int_format[b], group_size=g, scale_format=scale_format[sb], zero_point=zp) / 1e9

    def variant(scale=1.0, per_byte=8, scales=True, zps=True, zp_bits=None, fixed_scale=None, per_weight=False):
        values = []
        for n, b, g, sb, zp in EX4_CASES:
            bits = n * b
            if g is not None:
                meta = (fixed_scale or sb) * scales + ((zp_bits or b) if zp and zps else 0)
                bits += (n if per_weight else n // g) * meta
            values.append(bits / per_byte / 1e9 * scale)
        return values

    want = [reference(*case) for case in EX4_CASES]
    expect_close(want, variant(), rtol=1e-12, what="(the exercise's own formula agrees with memory_bytes)")
    expect_close(out, want, rtol=1e-9, atol=0.0, what="weights_gb on hidden cases",
                 wrong={"GiB instead of GB: 1 GB = 1e9 bytes, you divided by 2**30": variant(scale=1e9 / 2 ** 30),
                        "bits instead of bytes: divide the bits by 8": variant(per_byte=1),
                        "scales ignored: add scale_bits per group": variant(scales=False),
                        "zero points ignored: zero_point=True adds one `bits`-bit zero point per group": variant(zps=False),
                        "16-bit zero points: this chapter stores the zero point in `bits` bits": variant(zp_bits=16),
                        "scale_bits ignored: a scale has scale_bits bits (16 or 32)": variant(fixed_scale=16),
                        "one scale per weight instead of one per group": variant(per_weight=True)})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 4 passed")

# %% [markdown]
# The same numbers from `coursekit.formats`, for a 7B-parameter model and the KV cache of a
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
fits = {}
print(f"{'weights':24s} {'KV cache':9s} {'weights GB':>10s} {'sequences':>10s}")
for wname in ("FP16 / BF16", "INT8", "INT4, g128 FP16 scales"):
    for kname in ("fp16", "fp8_e4m3"):
        fits[wname, kname] = int((budget - seven_b[wname]) // kv[kname])
        print(f"{wname:24s} {kname:9s} {seven_b[wname] / 1e9:10.2f} {fits[wname, kname]:10d}")
base = fits["FP16 / BF16", "fp16"]
print(f"\nFP16 -> INT4 weights: {fits['INT4, g128 FP16 scales', 'fp16'] - base:+d} sequences; "
      f"FP16 -> FP8 KV cache: {fits['FP16 / BF16', 'fp8_e4m3'] / base:.2f}x the sequences")
print()
print(formats.model_memory_report(lenet, group_size=64))

# %% [markdown]
# At long contexts and many users the **KV cache, not the weights, is what fills the GPU**: compare the two lines
# above. Shrinking the weights 4x frees a few sequences; halving the cache nearly doubles them.
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
# Visible tests: each names the mistake behind a typical wrong value.
expect_equal(choose_weight_format(7_000_000_000, 24), "fp16", what="choose_weight_format(7e9, 24): 14 GB fits",
             wrong={"least precise first: return the MOST precise format that fits": "int4"})
expect_equal(choose_weight_format(7_000_000_000, 8), "int8", what="choose_weight_format(7e9, 8): 7 GB fits, 14 GB does not")
expect_equal(choose_weight_format(7_000_000_000, 24, kv_cache_gb=17.2), "int4",
             what="choose_weight_format(7e9, 24, kv_cache_gb=17.2)",
             wrong={"KV cache ignored: the weights AND kv_cache_gb must fit in the budget": "fp16",
                    "GiB instead of GB? 7 GB of INT8 weights plus 17.2 GB is 24.2 GB (1 GB = 1e9 bytes): over budget":
                        "int8"})
expect_equal(choose_weight_format(7_000_000_000, 16, kv_cache_gb=2.0), "fp16",
             what="choose_weight_format(7e9, 16, kv_cache_gb=2.0): exactly 16 GB",
             wrong={"strict '<': a model that fills the budget exactly still fits (at most equal)": "int8"})
expect_equal(choose_weight_format(70_000_000_000, 24), None, what="choose_weight_format(70e9, 24)",
             wrong={"returned the string 'None': return the value None": "None"})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_equal, sealed_test

# Wrong answers caught (each verified to fail): least precise first; KV cache ignored; strict < instead of <=;
# INT4 scales forgotten (3.5 GB instead of 3.609 GB for 7B); GiB (2**30) instead of GB; the string "None".
EX5_SEED = 9
EX5_FIXED = [(7_000_000_000, 3.6, 0.0), (7_000_000_000, 3.609375, 0.0), (7_000_000_000, 3.55, 0.0),
             (70_000_000_000, 48, 0.0), (7_000_000_000, 13.5, 0.0), (7_000_000_000, 16.0, 2.0),
             (7_000_000_000, 24, 17.2), (7_000_000_000, 7.2, 0.5), (70_000_000_000, 10, 0.0)]


def _ex5_cases():
    import random

    rng = random.Random(EX5_SEED)
    cases = list(EX5_FIXED)
    for _ in range(300):
        cases.append((128 * rng.randrange(1, 600_000_000), round(rng.uniform(0, 200), 3), round(rng.uniform(0, 20), 3)))
    return cases


def _probe():
    return [choose_weight_format(n, budget, kv_cache_gb=kv) for n, budget, kv in _ex5_cases()]


def _check(out):
    from coursekit.formats import memory_bytes

    def choose(order=("fp16", "int8", "int4"), kv_on=True, strict=False, int4_scales=True, unit=1e9, none=None):
        picks = []
        for n, budget, kv in _ex5_cases():
            pick = none
            for name in order:
                group = 128 if name == "int4" and int4_scales else None
                need = memory_bytes(n, name, group_size=group) / unit + (kv if kv_on else 0.0)
                if need < budget if strict else need <= budget:
                    pick = name
                    break
            picks.append(pick)
        return picks

    expect_equal(out, choose(), what="choose_weight_format on hidden deployments",
                 wrong={"least precise first: return the MOST precise format that fits": choose(order=("int4", "int8", "fp16")),
                        "KV cache ignored: the weights AND kv_cache_gb must fit": choose(kv_on=False),
                        "strict '<': a model that fills the budget exactly still fits": choose(strict=True),
                        "INT4 scales forgotten: one FP16 scale per group of 128 weights": choose(int4_scales=False),
                        "GiB instead of GB: 1 GB = 1e9 bytes": choose(unit=2 ** 30),
                        "returned the string 'None': return the value None": choose(none="None")})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 5 passed")

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
#   are not always used by torch's kernels). At best a kernel widens blocks of values to FP32, multiplies and
#   rounds back, about as fast as FP32; where torch has no vectorised FP16 kernel for the CPU at all, a generic
#   loop converts element by element and FP16 runs tens to hundreds of times slower. The reading above says which
#   of the two your machine did. On GPUs it is the other way round: FP16 and BF16 tensor cores are many times
#   faster than FP32.
# * **Small matrices** (n=256) are dominated by overheads and caches; the large ones show the arithmetic.
# * **Memory** always halves with 16-bit formats, whatever the speed: on memory-bound work (batch-1 LLM decoding)
#   that alone can be a speedup, which a square matmul, compute-bound, does not show.
#
# So a lower precision does **not** help on hardware without instructions for it: check `coursekit doctor`
# before you promise a speedup, and measure.

# %% [markdown]
# ## 11 · Subnormals and flush-to-zero <a id="subnormals"></a><a id="flush-to-zero"></a>
#
# Section 1 defined the subnormals: with exponent field 0 the hidden 1 is dropped and the exponent stays at
# $1-b$, so the values $m \cdot 2^{1-b-M}$ fill the gap between 0 and the smallest normal number in equal steps
# (**gradual underflow**). They pay for it in precision: a subnormal has fewer significant bits the smaller it is.
# The table is computed from each format's definition:

# %%
print(f"{'format':9s} {'smallest subnormal':>19s} {'smallest normal':>16s} {'subnormal values':>17s} "
      f"{'decades gained':>15s}")
for name in ("fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1"):
    f = formats.get_format(name)
    print(f"{name:9s} {f.min_subnormal:19.4g} {f.min_normal:16.4g} {2 ** f.mantissa_bits - 1:17d} "
          f"{math.log10(f.min_normal / f.min_subnormal):15.2f}")

# %% [markdown]
# Hardware does not always keep them. Two switches, both in the x86 `MXCSR` control register (and `FPCR.FZ` on
# Arm), change how FP32/FP64 arithmetic treats them:
#
# * **FTZ** (flush-to-zero): a *result* that would be subnormal is replaced by (signed) zero;
# * **DAZ** (denormals-are-zero): a subnormal *input* is read as zero.
#
# They exist because some processors handle subnormal operands in a slow path (a microcode assist that can cost
# tens to hundreds of cycles), and because a flush is simpler in hardware. GPU kernels compiled with `nvcc
# --use_fast_math` (which implies `-ftz=true`) flush FP32 subnormals too. The price is accuracy: with FTZ the
# underflow threshold rises from the smallest subnormal to the smallest normal number. For FP16 that is
# $2^{-24} \to 2^{-14}$, ten binades more of small gradients lost, and loss scaling (section 4) matters even more.
#
# torch exposes both switches as one: `torch.set_flush_denormal(True)` sets FTZ and DAZ on x86 CPUs with SSE3 and
# FZ on AArch64, and returns whether it could. It acts on the calling thread's FP32/FP64 arithmetic; FP16 and BF16
# *storage* has no such switch, but any conversion that passes through an FP32 register can be flushed.

# %%
probe_values = torch.tensor([1e-39, 2.0 ** -140, 2.0 ** -126], dtype=torch.float64)  # two FP32 subnormals, one normal


def flush_demo():
    x32 = probe_values.float()  # the conversion itself runs through FP32 arithmetic
    return {"fp32 values": x32.tolist(), "fp32 x * 0.5": (x32 * 0.5).tolist(),
            "bf16 cast of 1e-39": float(torch.tensor([1e-39]).bfloat16().float()),
            "fp16 2^-24 (FP16 subnormal) * 1": float((torch.tensor([2.0 ** -24]).half() * 1).float())}


before = flush_demo()
supported = torch.set_flush_denormal(True)
try:
    during = flush_demo()
finally:
    torch.set_flush_denormal(False)  # always switch it back: the mode outlives this cell
print(f"torch {torch.__version__}: torch.set_flush_denormal(True) returned {supported} on this CPU")
for key in before:
    print(f"  {key:34s} off: {before[key]}\n  {'':34s} on:  {during[key]}")
flushed = [k for k in before if before[k] != during[k]]
print("-> changed by flushing here:", ", ".join(flushed) if flushed else "nothing (flushing is not supported)")

# %% [markdown]
# Does this CPU actually slow down on subnormals? Measure it: multiply a tensor of FP32 subnormals by 0.5 (the
# results are subnormal too) and compare with the same operation on normal numbers, with flushing off and on.

# %%
n_ftz = 1 << (18 if FAST else 20)
normal_x = torch.full((n_ftz,), 1e-30)
subnormal_x = torch.full((n_ftz,), 1e-39)


def ftz_calls():
    return {"normal": lambda: normal_x * 0.5, "subnormal": lambda: subnormal_x * 0.5}


ftz_repeats = 15 if FAST else 30
ftz_stats = {"off": bench.measure_latency(ftz_calls(), repeats=ftz_repeats, warmup=3, threads=1)}
torch.set_flush_denormal(True)
try:
    ftz_stats["on"] = bench.measure_latency(ftz_calls(), repeats=ftz_repeats, warmup=3, threads=1)
finally:
    torch.set_flush_denormal(False)
ftz_ratio = {mode: s["subnormal"].median_ms / s["normal"].median_ms for mode, s in ftz_stats.items()}
for mode, s in ftz_stats.items():
    print(f"flush {mode:3s}: normal {s['normal'].median_ms * 1e3:8.1f} us, subnormal {s['subnormal'].median_ms * 1e3:8.1f} us"
          f" ({ftz_ratio[mode]:.2f}x) for {n_ftz:,} multiplies")
if ftz_ratio["off"] > 1.5:
    ftz_reading = (f"subnormal arithmetic was {ftz_ratio['off']:.1f}x slower than normal arithmetic on this CPU "
                   f"(a slow path for subnormals); with flushing it was {ftz_ratio['on']:.1f}x.")
else:
    ftz_reading = (f"subnormal arithmetic ran at {ftz_ratio['off']:.2f}x the time of normal arithmetic on this CPU: "
                   "no slow path measured here, so flushing would only cost accuracy.")
print("->", ftz_reading)

# %% [markdown]
# The reading above is generated from your measurement; another CPU can answer differently (older x86 cores are
# known for slow subnormal paths, and a vectorised loop may or may not hit them). Either way, know whether a library
# turned flushing on for you: a math library or a framework that sets FTZ/DAZ on a thread changes the numerics of
# everything that thread computes afterwards.
#
# ## 12 · FP4 E2M1 and microscaling <a id="fp4"></a>
#
# The smallest float in use: **E2M1**, 1 sign bit, 2 exponent bits (bias 1), 1 mantissa bit, no infinities and no
# NaN (OCP Microscaling spec v1.0). Sixteen codes; here they are computed from the definition in section 1, and
# checked against `coursekit.formats`:

# %%
def e2m1_value(code):
    """The value of a 4-bit E2M1 code: sign | 2 exponent bits (bias 1) | 1 mantissa bit, every code a number."""
    sign = -1.0 if code & 0b1000 else 1.0
    e, m = (code >> 1) & 0b11, code & 1
    if e == 0:
        return sign * (m / 2) * 2.0 ** (1 - 1)  # subnormal: no hidden 1, exponent 1 - bias
    return sign * (1 + m / 2) * 2.0 ** (e - 1)


fp4 = formats.get_format("fp4_e2m1")
fp4_codes = torch.arange(16, dtype=torch.uint8)
by_definition = [e2m1_value(c) for c in range(16)]
by_coursekit = fp4.decode(fp4_codes).tolist()
for c in range(16):
    print(f"code {c:2d} = {c >> 3:b} {(c >> 1) & 3:02b} {c & 1:b}  ->  {by_definition[c]:5.1f}")
print("coursekit.formats agrees on all 16 codes:",
      all(math.copysign(1, a) == math.copysign(1, b) and a == b for a, b in zip(by_definition, by_coursekit)))
print("non-negative values:", sorted({v for v in by_definition if v >= 0}))

# %%
print(f"torch {torch.__version__}: has torch.float4_e2m1fn_x2: {hasattr(torch, 'float4_e2m1fn_x2')}")
if hasattr(torch, "float4_e2m1fn_x2"):
    packed = torch.tensor([0x12], dtype=torch.uint8).view(torch.float4_e2m1fn_x2)  # two codes in one byte
    try:
        print("  cast to float32:", packed.to(torch.float32).tolist())
    except (NotImplementedError, RuntimeError) as exc:
        print(f"  a storage dtype only here: casting it to float32 fails ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:80]})")

# %% [markdown]
# Two codes per byte: where the cast above fails, the dtype only *stores* packed pairs for the kernels that
# understand them (FP4 tensor cores arrive with NVIDIA's Blackwell GPUs, compute capability 10.0). The values are
# non-uniform, dense near 0 and coarse at the top (4 then 6), and the maximum is 6, so FP4 is useless without a
# fine-grained scale. Two block formats provide it:
#
# * **MXFP4** (OCP MX v1.0): 32 values share one **E8M0** scale, an 8-bit power of two, $2^{\lfloor\log_2
#   \max|x|\rfloor - 2}$ (2 is E2M1's largest exponent), so the block max lands in $[4, 8)$ and values beyond 6
#   saturate;
# * **NVFP4**: 16 values share an FP8 E4M3 scale (any value, not only powers of two), plus one FP32 scale per tensor.
#
# What that costs and what it buys, on the Gaussian weights and on the trained LeNet layers of section 7:

# %%
n_mx = 1 << 20
mx_bits = {
    "MXFP4 (g32, 8-bit E8M0 scale)": 8 * formats.memory_bytes(n_mx, "fp4_e2m1", group_size=32, scale_format="uint8")
    / n_mx,
    "NVFP4 (g16, FP8 E4M3 scale)": 8 * formats.memory_bytes(n_mx, "fp4_e2m1", group_size=16, scale_format="fp8_e4m3")
    / n_mx,
    "INT4 (g32, FP16 scale)": formats.bits_per_param("int4", 32),
}
for label, bits in mx_bits.items():
    print(f"{label:32s} {bits:.3f} bits per weight")


def mxfp4(x, block=32):
    """FP4 E2M1 with one power-of-two scale per block of 32 (OCP MX): block max mapped into [4, 8), 6 saturates."""
    flat = x.detach().float().reshape(-1, block)
    amax = flat.abs().amax(dim=1, keepdim=True).clamp_min(2.0 ** -126)
    scale = 2.0 ** (torch.floor(torch.log2(amax)) - 2)
    return (fp4.cast(flat / scale) * scale).reshape(x.shape)


for label, t in tensors.items():
    t = t[: t.numel() // 32 * 32] if t.dim() == 1 else t
    if t.numel() % 32:
        continue
    results = {"MXFP4": mxfp4(t), "FP4, float scale g32": explore.blockwise(t, "fp4_e2m1", 32),
               "INT4 g32": explore.blockwise(t, "int4", 32)}
    print(f"{label:26s} " + ", ".join(f"{k} {formats.sqnr_db(t, v):5.2f} dB" for k, v in results.items()))

# %% [markdown]
# A power-of-two scale is cheap (a shift, 8 bits) but wastes part of the grid when the block max falls just above
# a power of two; a free scale (NVFP4's E4M3, or the float scale here) recovers that, at the price of a
# multiplication. Compare the lines above before trusting a claim that one 4-bit format beats another: they
# depend on the data and on the block.
#
# ## 13 · Binary networks: XNOR and popcount <a id="xnor"></a><a id="binary"></a>
#
# At one bit, weights and activations are $\pm 1$ (times a scale). Store $+1$ as bit 1 and $-1$ as bit 0. The
# product of two entries is $+1$ when their bits agree and $-1$ when they differ, and $a \oplus w$ (XOR) marks
# exactly the entries that differ. With $d = \mathrm{popcount}(a \oplus w)$ of $n$ entries:
#
# $$a \cdot w = (n - d)\cdot(+1) + d\cdot(-1) = n - 2\,\mathrm{popcount}(a \oplus w)
# = 2\,\mathrm{popcount}(\overline{a \oplus w}) - n .$$
#
# The complement of XOR is XNOR, hence the name: one XNOR (or XOR) and one POPCNT instruction compute 64
# multiply-adds of a 64-bit word. By hand, on ten entries:

# %%
from coursekit.formats.bitops import pack_signs, popcount, xnor_dot

a_small = torch.tensor([1.0, -1, -1, 1, 1, 1, -1, 1, -1, -1])
w_small = torch.tensor([1.0, 1, -1, -1, 1, -1, -1, 1, 1, -1])
bits = {name: "".join("1" if v > 0 else "0" for v in t.tolist()) for name, t in (("a", a_small), ("w", w_small))}
xor_bits = "".join("1" if p != q else "0" for p, q in zip(bits["a"], bits["w"]))
d = xor_bits.count("1")
print(f"a      {bits['a']}\nw      {bits['w']}\na XOR w {xor_bits}  popcount d = {d}")
print(f"n - 2d = {a_small.numel()} - 2*{d} = {a_small.numel() - 2 * d};  float dot product a . w = {float(a_small @ w_small):g}")
print(f"the same from packed bytes: popcount of {pack_signs(a_small).tolist()} XOR {pack_signs(w_small).tolist()} "
      f"= {int(popcount(pack_signs(a_small) ^ pack_signs(w_small)).sum())}")

# %% [markdown]
# `coursekit.formats.bitops.xnor_dot` does this for whole matrices, eight entries per byte. It agrees exactly with
# the float product of the signs. XNOR-Net (Rastegari et al. 2016) puts the magnitudes back with two scales,
# $x \cdot w \approx \beta\,\alpha\,(\mathrm{sign}\,x \cdot \mathrm{sign}\,w)$, $\alpha = \overline{|w|}$ per output
# channel, $\beta = \overline{|x|}$ per input:

# %%
bw_name, bw = next(iter(real.items()))  # the first Linear weight of the trained LeNet: (out, in)
bx = torch.randn(64, bw.shape[1], generator=g)  # 64 inputs
exact_signs = formats.BINARY.cast(bx) @ formats.BINARY.cast(bw).T
packed_dot = xnor_dot(bx, bw)
print(f"lenet {bw_name} {tuple(bw.shape)}: xnor_dot equals the float product of the signs:",
      torch.equal(packed_dot.float(), exact_signs))
alpha = bw.abs().mean(dim=1)  # one scale per output channel
beta = bx.abs().mean(dim=1, keepdim=True)  # one scale per input row
approx = beta * packed_dot.float() * alpha
print(f"XNOR-Net approximation of the real product x @ w.T: SQNR {formats.sqnr_db(bx @ bw.T, approx):.2f} dB")
print(f"storage: {bw.numel() * 32:,} bits of FP32 weights -> {pack_signs(bw).numel() * 8:,} bits of signs "
      f"+ {alpha.numel() * 32:,} bits of scales")

# %% [markdown]
# A few dB of SQNR: one bit throws most of the information away. That is why binary networks are trained with the
# binarisation in the loop (straight-through estimators, chapter 03), keep the first and last layers in higher
# precision, and still lose accuracy on hard tasks. `xnor_dot` here is a readable reference, not a fast kernel:
# torch has no popcount operation, so it looks every byte up in a table. Binary kernels pay off only where the
# code uses the processor's own `POPCNT` (x86) or `CNT` (Arm NEON) instructions on packed words.
#
# ## 14 · Common mistakes
#
# * Casting a model to FP16 and training without loss scaling: gradients flush to zero, the loss stops moving (or
#   the forward pass overflows to inf beyond 65504 and the loss turns NaN).
# * Casting to FP8 without a per-tensor scale: most weights are far below E4M3's comfortable range and collapse to a
#   few values or zero.
# * Assuming FP8 E4M3 overflow behaves the same everywhere: torch's CPU cast saturated to 448 in the version section
#   3 printed, while ml_dtypes and the OCP non-saturating mode give NaN. Re-check after a library upgrade.
# * Forgetting the metadata: a scale of $b_s$ bits and a zero point of $b_z$ bits per group of $g$ add
#   $(b_s + b_z)/g$ bits per weight (section 9 prints them: INT4 at $g = 128$ is 4.125 bits with an FP16 scale,
#   4.156 with a 4-bit zero point too, 4.25 with an FP16 zero point), and the KV cache of long contexts can be
#   larger than the weights.
# * Calling two different grids "INT2" (or "INT4"): restricted symmetric, full two's-complement range and affine
#   grids differ (section 6); say which one you mean.
# * Comparing INT4, NF4 and FP4 with different block sizes or scales: compare formats at equal bits *and* equal
#   scaling.
# * Expecting FP16 or BF16 to be faster on a CPU without the instructions for them (section 10), or expecting FTZ
#   to speed up a CPU that has no slow path for subnormals (section 11): measure first.
# * Leaving `torch.set_flush_denormal(True)` on: it changes every later FP32 computation of that thread.
# * Adding tiny updates directly to BF16/FP16 weights: they round away. Keep an FP32 master copy.
#
# ## 15 · Interview questions
#
# Practise with the quiz below, or in a terminal with `coursekit drill --chapter 01`. The practice widget leaves out
# the graded questions that follow it.

# %%
from coursekit import quiz

QUIZ_IDS = ["ch01-bf16-vs-fp16", "ch01-e4m3-max", "ch01-loss-scaling", "ch01-nf4-why-normal", "ch01-fp4-values",
            "ch01-binary-weights", "ch01-effective-bits"]
quiz.show(chapter="01", n=5, exclude=QUIZ_IDS)

# %% [markdown]
# ### Graded interview questions
#
# Answer each question in a dictionary called `answers` that maps the question id to your answer: a letter for a
# choice question (`"B"`, or `"A,C"` when several are right), a number for a numeric one. Each question is worth one
# point; the hidden test checks them against the bank installed with coursekit.

# %% locked="quiz_questions"
QUIZ_IDS = ["ch01-bf16-vs-fp16", "ch01-e4m3-max", "ch01-loss-scaling", "ch01-nf4-why-normal", "ch01-fp4-values",
            "ch01-binary-weights", "ch01-effective-bits"]
quiz.render(QUIZ_IDS)

# %% solution="quiz_answers"
### BEGIN SOLUTION
answers = {"ch01-bf16-vs-fp16": "C", "ch01-e4m3-max": 448, "ch01-loss-scaling": "B", "ch01-nf4-why-normal": "D",
           "ch01-fp4-values": "C", "ch01-binary-weights": "B", "ch01-effective-bits": 4.5}
### END SOLUTION

# %% tests="quiz_answers_tests" points=7
# Visible test: the answers are readable (whether they are right is decided by the hidden test, one point each).
expect_equal(isinstance(answers, dict), True, what="answers is a dict mapping question ids to answers")
unanswered = [q for q in QUIZ_IDS if answers.get(q) in (None, "")]
print(f"Not answered yet (0 points each): {unanswered}" if unanswered else "All questions answered; each is scored.")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import sealed_quiz

# One point per question: a wrong, missing or unreadable answer loses that question's point only. The check marks
# the answers with the bank of the grader's process. The returned number is nbgrader's partial credit.
sealed_quiz(["ch01-bf16-vs-fp16", "ch01-e4m3-max", "ch01-loss-scaling", "ch01-nf4-why-normal", "ch01-fp4-values",
             "ch01-binary-weights", "ch01-effective-bits"])
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# * A float is sign | exponent (range) | mantissa (precision). FP16: precise, ±65504, underflows below $6\times
#   10^{-8}$. BF16: FP32's range, 8 bits of precision. FP8: E4M3 (±448) for weights and activations, E5M2 (±57344)
#   for gradients, always with a scale. FP4 E2M1 has 16 codes up to ±6 and lives on block scales (MXFP4, NVFP4).
# * Rounding is to nearest, ties to even; overflow goes to inf (FP16, BF16, E5M2) or saturates / NaNs (E4M3,
#   depending on the library and its version).
# * FP16 training needs loss scaling because small gradients flush to zero; BF16 does not. Subnormals soften
#   underflow; FTZ/DAZ give them up.
# * Integer grids gain about 6 dB per bit; NF4's normal-quantile levels beat INT4 on normally distributed weights.
#   "INT2" can mean three levels or four: name the convention.
# * A ±1 dot product is $n - 2\,\mathrm{popcount}(a \oplus w)$: binary networks trade almost all precision for
#   bit operations.
# * Memory = weights (with group scales and zero points) + KV cache; at long contexts the cache dominates.
# * Fewer bits are faster only with hardware support. What your machine measured in sections 10 and 11:

# %%
def speed_line(variant):
    """One sentence on `variant` vs FP32 at the largest measured size, from this notebook's measurement."""
    rows = {(r["variant"], r["batch"]): r for r in records
            if r["model"] == "matmul" and r["device"] == "cpu" and r.get("gflops")}
    sizes = sorted(n for v, n in rows if v == variant and ("fp32", n) in rows)
    if not sizes:
        return f"{variant.upper()}: not measured on this CPU"
    n = sizes[-1]
    ratio = rows[variant, n]["gflops"] / rows["fp32", n]["gflops"]
    verdict = "faster than" if ratio > 1.1 else "slower than" if ratio < 0.9 else "about as fast as"
    return f"{variant.upper()} matmul ran {ratio:.2f}x the FP32 speed at n={n}: {verdict} FP32 on this CPU"


for line in (speed_line("bf16"), speed_line("fp16"), "subnormals: " + ftz_reading):
    print("  *", line)

# %% [markdown]
# Next: **02 · Post-training quantization**: choosing scales and zero points for a whole network from calibration
# data.
