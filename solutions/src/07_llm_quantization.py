# %% [markdown] locked="title"
# # 07 · LLM quantization: group-wise INT4, NF4, GPTQ, AWQ, outliers and the KV cache
#
# **The deployment problem.** A bank wants an assistant that answers customers from its own documents, and a
# start-up wants a chatbot that runs offline on a laptop. Both start from a 7-billion-parameter language model:
# 28 GB of FP32 weights, 14 GB in FP16, before a single token of context is cached. The laptop has 16 GB shared
# with everything else; the bank's GPU has room but must serve many conversations at once, each with its own
# key-value cache. Large language models are quantized differently from the CNNs of chapters 02-03: the weights
# are compressed to 4 bits or fewer, in small groups with their own scales, by methods that look at the data the
# layer sees (GPTQ, AWQ), while the activations, whose outlier channels break INT8, stay in floating point or are
# tamed first (LLM.int8(), SmoothQuant).
#
# Everything runs offline on your CPU, with two real models shipped with coursekit: a **tiny GPT** (4 layers,
# 0.8M parameters) trained on Shakespeare, scored in **bits per character** on held-out plays, and
# **all-MiniLM-L6-v2**, a pretrained 22.6M-parameter sentence transformer whose activations have the outlier
# dimensions of real transformers. You build, and measure:
#
# 1. the memory arithmetic of a 7B model: weights, scales, KV cache, with a calculator,
# 2. why LLMs quantize *weights* first: decoding is memory-bound (the roofline of chapter 00),
# 3. group-wise quantization and bit-packing,
# 4. NF4 and double quantization (QLoRA),
# 5. GPTQ: quantize one column, push its error onto the others,
# 6. outliers: why per-tensor INT8 activations fail on MiniLM, and LLM.int8()'s decomposition,
# 7. AWQ and SmoothQuant: move difficulty between activations and weights with exact rescalings,
# 8. the KV cache: its bytes and an INT8 cache,
# 9. INT8 vs 4-bit by use case, with the measured quality cost and text generated at 4, 3 and 2 bits,
# 10. the decoding speed of INT4 weights on *your* machine.
#
# Run the notebook cell by cell (Shift+Enter): "Run All" stops at the first exercise you have not answered yet,
# as in any nbgrader course.
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below it.
# `coursekit check notebooks/07_llm_quantization.ipynb` grades the whole notebook (hidden tests included) from a
# terminal.

# %% locked="setup"
# Setup: run this first. Warnings are silenced so that graded cells stay clean.
import copy
import math
import warnings

warnings.filterwarnings("ignore")
import matplotlib.pyplot as plt
import torch
from torch import nn

import coursekit
from coursekit import formats, llm
from coursekit._env import fast_mode
from coursekit.bench import roofline
from coursekit.grading.sealed import expect_close, expect_equal
from coursekit.llm import explore, minilm
from coursekit.llm.apply import capture_inputs

FAST = fast_mode()  # True under COURSEKIT_FAST=1 and during grading: smaller runs, same checks
torch.manual_seed(0)
torch.set_num_threads(1)  # the models of this chapter are too small for a second thread to pay
# The tiny GPT shipped with coursekit (trained on Shakespeare; coursekit.llm.train_gpt has the recipe), the
# held-out plays it is scored on, and calibration windows of training text for GPTQ and AWQ.
gpt, tokenizer = llm.pretrained_gpt()
train_ids, val_ids = llm.corpus_splits(tokenizer=tokenizer)
starts = torch.randint(0, len(train_ids) - 129, (8 if FAST else 32,), generator=torch.Generator().manual_seed(0))
calib_batches = [torch.stack([train_ids[s:s + 128] for s in starts.tolist()])]  # one batch of 128-character windows
gpt_inputs = capture_inputs(gpt, ["blocks.0.mlp.fc"], calib_batches)  # what that Linear sees (forward pre-hook)
EVAL_TOKENS = 4096 if FAST else 32768  # held-out characters scored for every bits-per-character number
print(f"coursekit {coursekit.__version__}, torch {torch.__version__}, fast mode: {FAST}")
print(f"tiny GPT: {sum(p.numel() for p in gpt.parameters()):,} parameters, vocabulary {tokenizer.vocab_size}; "
      f"{len(val_ids):,} held-out characters; calibration {tuple(calib_batches[0].shape)}")

# %% [markdown]
# ## 1 · A 7B model, byte by byte <a id="memory-7b"></a>
#
# A weight stored in $b$ bits takes $b/8$ bytes, so $N$ parameters take $N b / 8$ bytes: 28 GB for 7B in FP32,
# 14 GB in FP16, 7 GB in INT8, 3.5 GB in 4 bits. Low-bit formats need **scales**: one per group of $g$ weights
# (section 3), in FP16, which adds $16/g$ bits per weight (and a zero point of $b$ bits per group if the scheme is
# asymmetric). The **KV cache** stores, for every layer, the key and the value vector of every past token, so
# that a new token attends to them without recomputing them:
#
# $$\text{weights} = N\Big(b + \frac{16 + b_{zp}}{g}\Big)\frac{1}{8}, \qquad
# \text{KV} = 2 \cdot L \cdot H_{kv} \cdot d_{head} \cdot T \cdot B \cdot \frac{b_{kv}}{8} \ \text{bytes},$$
#
# with $L$ layers, $H_{kv}$ key/value heads of dimension $d_{head}$, context $T$ and batch $B$. For Llama-2-7B
# ($L = 32$, $H_{kv} = 32$, $d_{head} = 128$) one token costs $2 \cdot 32 \cdot 32 \cdot 128 \cdot 2 = 524{,}288$
# bytes of FP16 cache: half a megabyte per token, 2.1 GB for a 4096-token conversation, more than half as much as the
# 4-bit weights. `coursekit.llm.explore.llm_memory` does this arithmetic with `formats.memory_bytes` and
# `formats.kv_cache_bytes`:

# %%
configs = {"FP32": {"fmt": "fp32", "group_size": None}, "FP16": {"fmt": "fp16", "group_size": None},
           "INT8 (per channel)": {"fmt": "int8", "group_size": None},
           "INT4 g128": {"fmt": "int4", "group_size": 128},
           "INT4 g128 + zero points": {"fmt": "int4", "group_size": 128, "zero_point": True},
           "NF4 g64": {"fmt": "nf4", "group_size": 64}}
rows = {name: explore.llm_memory(**explore.LLAMA2_7B, context=4096, **cfg) for name, cfg in configs.items()}
print(f"{'Llama-2-7B shape, context 4096':30s} {'weights':>9s} {'scales':>8s} {'KV (FP16)':>10s} {'bits/weight':>12s}")
for name, r in rows.items():
    print(f"{name:30s} {r['weight_bytes'] / 1e9:7.2f} GB {r['scale_bytes'] / 1e9:6.3f} GB {r['kv_bytes'] / 1e9:8.2f} GB"
          f" {r['bits_per_weight']:12.3f}")

# %% [markdown]
# ## 2 · Why weights first: decoding is memory-bound <a id="decode"></a>
#
# Generating text is a loop: each step feeds **one** new token through the model. Every Linear layer then does a
# matrix-*vector* product: each weight is read from memory once and used for one multiply-add. Chapter 00's
# roofline says how fast that can go: a kernel doing $F$ FLOPs on $Q$ bytes reaches at most
# $\min(P, \frac{F}{Q} B)$ FLOP/s on a machine with peak $P$ and memory bandwidth $B$. For a layer of $n \times n$
# weights of $b$ bits at batch $M$:
#
# $$I = \frac{2 M n^2}{n^2 b / 8 + \dots} \approx \frac{16 M}{b}\ \text{FLOP/byte}.$$
#
# At $M = 1$ (decode) with FP16 weights that is 1 FLOP/byte, below the ridge point of almost any CPU or GPU: the
# layer waits for memory, and 4-bit weights (4x fewer bytes) can make it up to 4x faster **without changing the
# arithmetic** (it still runs in floating point after unpacking), unless the 4x higher intensity crosses the ridge,
# where arithmetic (and unpacking the codes) becomes the limit. At $M = 128$ (prefill: the whole prompt at once)
# the intensity is 128x higher, the layer is compute-bound, and fewer weight bytes buy little. Activations are
# small at decode time, so quantizing them saves little memory; that is why LLM quantization starts with the
# weights. On your machine (one core; chapter 00 explains the measurement):

# %%
bandwidth = roofline.measure_bandwidth()
peak = roofline.measure_peak_flops(torch.float32)
kernels = [roofline.linear_kernel(4096, 4096, batch=m, weight_bytes=wb, activation_bytes=2,
                                  name=f"{label}, M={m}")
           for m in (1, 128) for label, wb in (("FP16 weights", 2), ("INT4 weights", 0.5))]
roofline.roofline_figure(peak, bandwidth, kernels, title="a 4096x4096 layer of a 7B model on this machine's roof")
plt.show()
print(roofline.roofline_reading(peak, bandwidth, kernels))
gain = (roofline.attainable_flops(kernels[1].intensity, peak, bandwidth)
        / roofline.attainable_flops(kernels[0].intensity, peak, bandwidth))
print(f"the roof allows INT4 weights to be at most {gain:.1f}x faster than FP16 at M=1 on this core (4x fewer bytes)")
for name, r in rows.items():
    bound = bandwidth / r["weight_bytes"]
    print(f"{name:24s}: at most {bound:6.2f} tokens/s on one core of this machine (weights only; batch 1)")

# %% [markdown]
# These bounds come from your measured bandwidth, not from a spec sheet, and they are upper bounds: section 11
# measures a real INT4 kernel.
#
# **Explore.** The calculator starts at Llama-2-7B in INT4 with groups of 128, and its last row is the decoding
# bound at the bandwidth you just measured. Try a 70B model (80 layers, 8 KV heads: grouped-query attention,
# section 8) at 32k context and batch 8: the cache, not the weights, decides what fits.

# %%
explore.memory_calculator(bandwidth=bandwidth, device_gb=16)

# %% [markdown]
# ## 3 · Group-wise quantization <a id="group-wise"></a>
#
# Chapter 02 gave each output channel its own scale. At 4 bits that is not enough: one large weight in a row of
# 4096 stretches the row's range, and with only 16 levels most of the row lands on two or three of them.
# **Group-wise** quantization cuts every row into groups of $g$ consecutive input weights (typically 32-128) and
# gives each group its own scale and zero point (GPTQ and AWQ checkpoints; Frantar et al. 2022, Lin et al. 2023).
# With unsigned $b$-bit codes $[0, 2^b - 1]$ and the group range widened to contain 0
# ($m^- = \min(\min_k w_k, 0)$, $m^+ = \max(\max_k w_k, 0)$):
#
# $$S = \frac{m^+ - m^-}{2^b - 1}, \qquad Z = \operatorname{round}\!\Big(\frac{-m^-}{S}\Big), \qquad
# q_k = \operatorname{clamp}\big(\operatorname{round}(w_k / S) + Z,\ 0,\ 2^b - 1\big), \qquad \hat w_k = S\,(q_k - Z).$$
#
# A smaller group costs more scale bits ($16/g$ per weight) and buys a tighter range. The figure measures the
# trade-off on the weights of the tiny GPT's first MLP layer (128 -> 512):

# %% [markdown]
# ### Exercise 1 · Group-wise asymmetric quantization
#
# Write `quantize_groups(w, bits, group_size)`: for a 2-D weight `w` (out x in, `in` divisible by `group_size`),
# quantize every group of `group_size` consecutive weights of a row with the formulas above (asymmetric, unsigned
# codes in $[0, 2^b - 1]$, range widened to contain 0, `torch.round`) and return $\hat w$, the dequantized weights,
# with the shape of `w`. (Hint: `w.reshape(out, in // group_size, group_size)` puts each group on the last axis.)

# %% solution="ex1_groups"
def quantize_groups(w, bits, group_size):
    """Group-wise asymmetric round-to-nearest: the dequantized weights w_hat, shaped like w."""
    ### BEGIN SOLUTION
    out, inp = w.shape
    groups = w.reshape(out, inp // group_size, group_size)
    lo = groups.amin(dim=-1, keepdim=True).clamp(max=0)
    hi = groups.amax(dim=-1, keepdim=True).clamp(min=0)
    qmax = 2**bits - 1
    scale = ((hi - lo) / qmax).clamp(min=1e-12)
    zero = torch.round(-lo / scale)
    q = torch.clamp(torch.round(groups / scale) + zero, 0, qmax)
    return (scale * (q - zero)).reshape(out, inp)
    ### END SOLUTION

# %% tests="ex1_groups_tests" points=3
# Visible tests: one row of 4 weights at 2 bits (S = 3 / 3 = 1, Z = 1), then a random layer
w_demo = torch.tensor([[-1.0, 0.7, 2.0, 1.2]])
expect_close(quantize_groups(w_demo, 2, 4).tolist(), [[-1.0, 1.0, 2.0, 1.0]], what="quantize_groups(one row, 2 bits)",
             wrong={"floor instead of round: 0.7 -> 0": [[-1.0, 0.0, 2.0, 1.0]],
                    "qmax = 2^b = 4 instead of 2^b - 1 = 3": [[-0.75, 0.75, 2.25, 1.5]]})
torch.manual_seed(1)
w_rand = torch.randn(8, 64)
w_rand[0, 3] = 6.0  # one outlier: only its own group should suffer
got = quantize_groups(w_rand, 4, 16)
want = llm.fake_quantize_groupwise(w_rand, 4, 16)
expect_close(got.tolist(), want.tolist(), what="quantize_groups(8x64 weights, 4 bits, g=16)", atol=1e-5, rtol=1e-5,
             wrong={"one scale for the whole tensor: the outlier stretches every group's range":
                    llm.fake_quantize_groupwise(w_rand.reshape(1, -1), 4, None).reshape(8, 64).tolist(),
                    "symmetric (absmax / 7) instead of asymmetric":
                    llm.fake_quantize_groupwise(w_rand, 4, 16, symmetric=True).tolist()})
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import forbid, partial, sealed_test

# Wrong answers caught: one scale per tensor (or per row) instead of per group; symmetric absmax / (2^(b-1) - 1)
# instead of asymmetric; qmax = 2^b (off by one); floor (or ceil) instead of round; range not widened to contain 0
# (an all-positive group); groups taken along the output dimension (columns); codes returned instead of w_hat;
# delegating to coursekit.llm.groupwise (quantize_groupwise, fake_quantize_groupwise) or quant.fake_quantize
# (forbidden). Agreement is counted per weight (>= 99.5% within 1e-5 of the reference): a legitimate float32
# formula can flip a code at an exact rounding tie, a wrong formula changes most of them.
EX1_CASES = [(16, 64, 4, 16, 101), (12, 96, 3, 32, 102), (8, 128, 2, 64, 103), (6, 32, 8, 8, 104)]


def _ex1_weight(out, inp, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g) * 0.05
    w[1, 5] = 0.6  # an outlier
    w[2, :] = w[2, :].abs() + 0.01  # an all-positive row: the range must still contain 0
    return w


def _probe():
    with forbid("coursekit.llm.groupwise.quantize_groupwise", "coursekit.llm.groupwise.fake_quantize_groupwise",
                "coursekit.llm.quantize_groupwise", "coursekit.llm.fake_quantize_groupwise",
                "coursekit.quant.primitives.fake_quantize", "coursekit.quant.fake_quantize", exercise="Exercise 1"):
        return [quantize_groups(_ex1_weight(o, i, s), b, g) for o, i, b, g, s in EX1_CASES]


def _ex1_ref(w, bits, g, symmetric=False, qmax_off=0, rnd=torch.round, widen=True, axis_rows=True):
    w = w.double()
    if not axis_rows:
        return _ex1_ref(w.T.contiguous(), bits, g, symmetric, qmax_off, rnd, widen).T
    out, inp = w.shape
    x = w.reshape(out, inp // g, g)
    if symmetric:
        s = (x.abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1)).clamp(min=1e-12)
        return (s * torch.clamp(rnd(x / s), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)).reshape(out, inp)
    lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
    if widen:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    qmax = 2**bits - 1 + qmax_off
    s = ((hi - lo) / qmax).clamp(min=1e-12)
    z = rnd(-lo / s)
    return (s * (torch.clamp(rnd(x / s) + z, 0, qmax) - z)).reshape(out, inp)


def _ex1_agree(got, want):
    if got.shape != want.shape:
        return 0.0
    return ((got - want).abs() <= 1e-5 + 1e-5 * want.abs()).double().mean().item()


def _check(out):
    results = []
    for (o, i, b, g, s), got in zip(EX1_CASES, out):
        w = _ex1_weight(o, i, s)
        got = torch.tensor(got, dtype=torch.float64)
        what = f"quantize_groups on a hidden {o}x{i} weight, {b} bits, group {g}"
        if _ex1_agree(got, _ex1_ref(w, b, g)) >= 0.995:
            results.append((True, what))
            continue
        wrongs = {"one scale per row (group = whole row)": _ex1_ref(w, b, i),
                  "one scale for the whole tensor": _ex1_ref(w.reshape(1, -1), b, o * i).reshape(o, i),
                  "symmetric (absmax / (2^(b-1) - 1)) instead of asymmetric": _ex1_ref(w, b, g, symmetric=True),
                  "qmax = 2^b instead of 2^b - 1 (off by one)": _ex1_ref(w, b, g, qmax_off=1),
                  "floor instead of round": _ex1_ref(w, b, g, rnd=torch.floor),
                  "range not widened to contain 0 (an all-positive group)": _ex1_ref(w, b, g, widen=False),
                  "groups along the output dimension (columns) instead of along each row":
                  _ex1_ref(w, b, g, axis_rows=False) if o % g == 0 else None}
        named = [m for m, v in wrongs.items() if v is not None and _ex1_agree(got, v) >= 0.995]
        results.append((False, f"{what}: {named[0] if named else 'wrong values'}"))
    return partial(results)


sealed_test(_probe, _check, points=3)  # last expression: nbgrader reads a returned number as partial credit
### END HIDDEN TESTS

# %% [markdown]
# `llm.quantize_groupwise(w, bits, group_size)` is coursekit's version: it returns the codes, scales and zero
# points (a `GroupQuant`), computed by the quantization primitives of chapter 02, and `llm.dequantize_groupwise`
# turns them back into $\hat w$. The trade-off on the tiny GPT's first MLP layer (128 -> 512): the relative weight
# error against the bits per weight *including* the FP16 scales and the zero points, for group sizes from 16 to a
# whole row (128):

# %%
w_fc = gpt.blocks[0].mlp.fc.weight.detach()
fig, ax = plt.subplots(figsize=(7, 3.5))
for bits in (4, 3, 2):
    points = []
    for g in (16, 32, 64, 128):
        gq = llm.quantize_groupwise(w_fc, bits, g)
        err = (llm.dequantize_groupwise(gq) - w_fc).norm() / w_fc.norm()
        points.append((gq.bits_per_weight(), err.item(), g))
    ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=f"INT{bits}")
    for x, y, g in points:
        ax.annotate(f"g{g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
ax.set_xlabel("bits per weight (codes + FP16 scales + zero points)")
ax.set_ylabel("||W - W_hat|| / ||W||")
ax.set_yscale("log")
ax.set_title("blocks.0.mlp.fc: group size trades scale bits for accuracy")
ax.legend()
plt.show()

# %% [markdown]
# Read it along a vertical line: at equal storage, is it better to spend the bits on the codes (more bits, large
# groups) or on the scales (fewer bits, small groups)? The lower-left envelope is the set of choices worth making.
# Section 9 asks the same question of the whole model's bits per character, which is what matters.
#
# ### Packing: two 4-bit codes per byte <a id="packing"></a>
#
# PyTorch has no 4-bit dtype, so 4-bit weights live in `uint8` bytes, two codes each. The layout is a convention
# that the writer and the kernel must share. coursekit (like bitsandbytes' NF4) puts the **first code in the high
# nibble**:
#
# $$\text{byte} = (c_0 \ll 4) \,|\, c_1, \qquad c_0 = (\text{byte} \gg 4)\ \&\ \texttt{0xF}, \qquad
# c_1 = \text{byte}\ \&\ \texttt{0xF}.$$
#
# ONNX Runtime's `MatMulNBits` uses the opposite order (first code in the *low* nibble): a file written in one
# order and read in the other scrambles every pair of weights without any error message. The group-wise codes
# above are unsigned (0..15, with a zero point), which packs directly. *Signed* INT4 (symmetric schemes, -8..7)
# stores each code as its 4-bit two's complement, `c & 0xF` (-1 -> `0xF`, -8 -> `0x8`), and unpacking must
# sign-extend: a nibble $n \ge 8$ means $n - 16$.
#
# ### Exercise 2 · Pack and unpack signed INT4
#
# Write `pack_int4(q)`: `q` is a 1-D integer tensor of even length with values in [-8, 7]; return a `uint8` tensor
# of half the length, first code of each pair in the high nibble, each code as its two's complement nibble. And
# `unpack_int4(packed)`: the inverse, returning an `int8` tensor of twice the length with values in [-8, 7].

# %% solution="ex2_pack"
def pack_int4(q):
    """Signed INT4 codes (even length) -> uint8 bytes, first code in the high nibble."""
    ### BEGIN SOLUTION
    nibbles = q.to(torch.int64) & 0xF
    return ((nibbles[0::2] << 4) | nibbles[1::2]).to(torch.uint8)
    ### END SOLUTION


def unpack_int4(packed):
    """uint8 bytes -> signed INT4 codes as int8, twice as many, high nibble first."""
    ### BEGIN SOLUTION
    b = packed.to(torch.int64)
    nibbles = torch.stack([(b >> 4) & 0xF, b & 0xF], dim=1).reshape(-1)
    return torch.where(nibbles >= 8, nibbles - 16, nibbles).to(torch.int8)
    ### END SOLUTION

# %% tests="ex2_pack_tests" points=2
q_demo = torch.tensor([3, -6, 7, -8, 0, -1], dtype=torch.int8)
expect_equal(pack_int4(q_demo).tolist(), [0x3A, 0x78, 0x0F], what="pack_int4([3, -6, 7, -8, 0, -1])",
             wrong={"first code in the low nibble (that is ONNX Runtime's order, not this layout)": [0xA3, 0x87, 0xF0],
                    "offset binary (q + 8) instead of two's complement": [0xB2, 0xF0, 0x87]})
expect_equal(unpack_int4(torch.tensor([0x3A, 0x78, 0x0F], dtype=torch.uint8)).tolist(), q_demo.tolist(),
             what="unpack_int4([0x3A, 0x78, 0x0F])",
             wrong={"no sign extension: nibbles 8..15 are -8..-1": [3, 10, 7, 8, 0, 15]})
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import expect_equal, forbid, partial, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: first code in the low nibble (ORT's order); offset binary q + 8 instead of two's
# complement; negative codes not masked before shifting (the sign bits spill into the high nibble); no sign
# extension on unpack (8..15 returned); unpack that returns the pairs in the wrong order; wrong length; delegating
# to coursekit.formats.packing (pack_bits / unpack_bits / pack_nibbles / unpack_nibbles) or
# coursekit.llm.groupwise.pack_codes / unpack_codes (forbidden). Pack and unpack earn separate credit.
EX2_N = 2 * 257


def _ex2_codes():
    g = torch.Generator().manual_seed(202)
    q = torch.randint(-8, 8, (EX2_N,), generator=g, dtype=torch.int64)
    q[:16] = torch.arange(-8, 8)  # every code once
    return q.to(torch.int8)


def _ex2_bytes():
    g = torch.Generator().manual_seed(203)
    b = torch.randint(0, 256, (300,), generator=g, dtype=torch.int64)
    b[:4] = torch.tensor([0x00, 0xFF, 0x80, 0x7F])
    return b.to(torch.uint8)


def _probe():
    with forbid("coursekit.formats.packing.pack_bits", "coursekit.formats.packing.unpack_bits",
                "coursekit.formats.packing.pack_nibbles", "coursekit.formats.packing.unpack_nibbles",
                "coursekit.formats.pack_nibbles", "coursekit.formats.unpack_nibbles",
                "coursekit.llm.groupwise.pack_codes", "coursekit.llm.groupwise.unpack_codes", exercise="Exercise 2"):
        out = {}
        try:
            out["packed"] = pack_int4(_ex2_codes())
        except Exception as err:  # noqa: BLE001 (each half earns its own credit)
            out["packed"] = f"error: {type(err).__name__}: {err}"
        try:
            out["unpacked"] = unpack_int4(_ex2_bytes())
        except Exception as err:  # noqa: BLE001
            out["unpacked"] = f"error: {type(err).__name__}: {err}"
        return out


def _check(out):
    q = [int(v) for v in _ex2_codes()]
    b = [int(v) for v in _ex2_bytes()]
    pairs = list(zip(q[0::2], q[1::2]))
    want_packed = [((a & 0xF) << 4) | (c & 0xF) for a, c in pairs]
    want_unpacked = [v - 16 if v >= 8 else v for x in b for v in ((x >> 4) & 0xF, x & 0xF)]
    ok = []
    try:
        expect_equal(out["packed"], want_packed, what="pack_int4 on hidden codes", wrong={
            "first code in the low nibble": [((c & 0xF) << 4) | (a & 0xF) for a, c in pairs],
            "offset binary (q + 8) instead of two's complement": [((a + 8) << 4) | (c + 8) for a, c in pairs],
            "negative codes not masked with & 0xF before combining": [((a << 4) | c) & 0xFF for a, c in pairs]})
        ok.append((True, "pack_int4"))
    except AssertionError as err:
        ok.append((False, f"pack_int4 ({err})"))
    try:
        expect_equal(out["unpacked"], want_unpacked, what="unpack_int4 on hidden bytes", wrong={
            "no sign extension (nibbles 8..15 must become -8..-1)": [v for x in b for v in ((x >> 4) & 0xF, x & 0xF)],
            "low nibble first": [v - 16 if v >= 8 else v for x in b for v in (x & 0xF, (x >> 4) & 0xF)],
            "offset binary (nibble - 8) instead of two's complement":
            [v - 8 for x in b for v in ((x >> 4) & 0xF, x & 0xF)]})
        ok.append((True, "unpack_int4"))
    except AssertionError as err:
        ok.append((False, f"unpack_int4 ({err})"))
    return partial(ok)


sealed_test(_probe, _check, points=2)  # last expression: nbgrader reads a returned number as partial credit
### END HIDDEN TESTS

# %% [markdown]
# coursekit's `llm.pack_groupwise(gq)` packs a whole `GroupQuant`: codes as one bit stream (INT3 codes cross byte
# boundaries: eight codes in three bytes), FP16 scales, packed zero points. Its byte count is exactly what
# `formats.memory_bytes` predicts, the formula of section 1:

# %%
for bits in (4, 3, 2):
    gq = llm.quantize_groupwise(w_fc, bits, 64)
    packed = llm.pack_groupwise(gq)
    assert torch.equal(llm.unpack_groupwise(packed).codes, gq.codes)  # exact round trip
    print(f"INT{bits} g64: {packed.nbytes:6,} bytes packed = {llm.groupwise_bytes(gq):6,} from memory_bytes "
          f"(FP32: {w_fc.numel() * 4:,}); {gq.bits_per_weight():.3f} bits per weight")

# %% [markdown]
# ## 4 · NF4: levels where the weights are <a id="nf4"></a>
#
# Chapter 01 met NF4 (Dettmers et al. 2023, QLoRA): 16 fixed levels in [-1, 1] placed at quantiles of a standard
# normal distribution, so that normally distributed weights use every level about equally often. A block of 64
# weights stores one **absmax** scale; quantizing a weight means normalising by its block's absmax and taking the
# index of the **nearest** level:
#
# $$c_k = \arg\min_{j} \Big|\frac{w_k}{\max_{i \in \text{block}} |w_i|} - \ell_j\Big|, \qquad \hat w_k = \ell_{c_k} \cdot \max_{i \in \text{block}} |w_i|.$$
#
# ### Exercise 3 · NF4 lookup
#
# Write `nf4_encode(w, levels, block_size)`: flatten `w`, cut it into blocks of `block_size` values (its length is
# a multiple of `block_size`), and return `(codes, absmax)`: `codes` a 1-D integer tensor with the index of the
# nearest level for every value, `absmax` one float per block. `levels` is the sorted 16-entry NF4 table
# (`formats.nf4.NF4_LEVELS`).

# %% solution="ex3_nf4"
NF4_TABLE = torch.tensor(formats.nf4.NF4_LEVELS)


def nf4_encode(w, levels, block_size):
    """(codes, absmax): nearest NF4 level of every value after dividing by its block's absmax."""
    ### BEGIN SOLUTION
    blocks = w.reshape(-1, block_size)
    absmax = blocks.abs().amax(dim=1)
    x = blocks / absmax.clamp(min=1e-12)[:, None]
    codes = (x[..., None] - levels).abs().argmin(dim=-1)
    return codes.reshape(-1), absmax
    ### END SOLUTION

# %% tests="ex3_nf4_tests" points=2
w_demo = torch.tensor([2.0, 0.9, -0.1, 0.0])
codes_demo, absmax_demo = nf4_encode(w_demo, NF4_TABLE, 4)
expect_equal(codes_demo.tolist(), [15, 12, 6, 7], what="nf4_encode([2.0, 0.9, -0.1, 0.0]) codes (block of 4)",
             wrong={"not normalised by the block absmax (0.9 taken as is -> level 1.0, not 0.45 -> 0.441)":
                    [15, 15, 6, 7],
                    "argmin of the signed difference (x - level): always the largest level": [15, 15, 15, 15]})
expect_close(absmax_demo.tolist(), [2.0], what="absmax of the block")
print(f"dequantized: {(NF4_TABLE[codes_demo] * absmax_demo.repeat_interleave(4)).tolist()}")
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: no normalisation (raw weights against the [-1, 1] table); normalised by the max (not the
# absolute max: negative-heavy blocks go out of range); normalised by the tensor's absmax instead of each block's;
# argmin of the signed difference; argmax of the distance; codes as the level values instead of their indices;
# absmax per tensor; delegating to coursekit.formats.nf4 (nf4_quantize, NF4.encode) (forbidden). Codes must agree
# on >= 99.9% of the values (an exact tie between two levels may go either way), absmax to float precision.
EX3_CASES = [(64, 8, 301), (128, 4, 302)]


def _ex3_weight(block, n_blocks, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_blocks, block, generator=g) * torch.logspace(-2, 0, n_blocks)[:, None]
    w[0] = -w[0].abs()  # a negative-heavy block
    return w.reshape(-1)


def _probe():
    from coursekit.formats import nf4 as nf4_module

    table = torch.tensor(nf4_module.NF4_LEVELS)
    out = []
    encode_code = nf4_module.LevelFormat.encode.__code__  # the library's nearest-level lookup: refused too

    def refuse(*args, **kwargs):
        raise AssertionError("Exercise 3 asks you to write the lookup yourself: calling NF4.encode is not allowed")

    nf4_module.LevelFormat.encode.__code__ = refuse.__code__
    try:
        with forbid("coursekit.formats.nf4.nf4_quantize", "coursekit.formats.nf4_quantize",
                    "coursekit.formats.nf4.nf4_cast", "coursekit.formats.nf4_cast", exercise="Exercise 3"):
            for block, n_blocks, seed in EX3_CASES:
                codes, absmax = nf4_encode(_ex3_weight(block, n_blocks, seed), table.clone(), block)
                out.append({"codes": codes, "absmax": absmax})
    finally:
        nf4_module.LevelFormat.encode.__code__ = encode_code
    return out


def _ex3_codes(x, levels):
    return (x[..., None] - levels).abs().argmin(-1).reshape(-1)


def _check(out):
    from coursekit.formats.nf4 import NF4_LEVELS

    levels = torch.tensor(NF4_LEVELS, dtype=torch.float64)
    for (block, n_blocks, seed), got in zip(EX3_CASES, out):
        w = _ex3_weight(block, n_blocks, seed).double().reshape(n_blocks, block)
        absmax = w.abs().amax(1)
        what = f"nf4_encode on {n_blocks} hidden blocks of {block}"
        expect_close(got["absmax"], absmax.tolist(), rtol=1e-6, atol=1e-9, what=f"absmax of {what}",
                     wrong={"absmax of the whole tensor in every block": [absmax.max().item()],
                            "max instead of absmax": w.amax(1).tolist()})
        codes = torch.tensor(got["codes"]).reshape(-1)
        want = _ex3_codes(w / absmax[:, None], levels)
        if codes.shape == want.shape and (codes == want).double().mean() >= 0.999:
            continue
        wrongs = {"not normalised by the block absmax": _ex3_codes(w, levels),
                  "normalised by the tensor's absmax, not each block's": _ex3_codes(w / absmax.max(), levels),
                  "normalised by the max, not the absolute max": _ex3_codes(w / w.amax(1, keepdim=True), levels),
                  "argmin of the signed difference: take the absolute distance":
                  (w[..., None] / absmax[:, None, None] - levels).argmin(-1).reshape(-1),
                  "argmax instead of argmin": (w[..., None] / absmax[:, None, None] - levels).abs().argmax(-1)
                  .reshape(-1)}
        for mistake, value in wrongs.items():
            if codes.shape == value.shape and (codes == value).double().mean() >= 0.999:
                raise AssertionError(f"codes of {what}: {mistake}")
        raise AssertionError(f"codes of {what}: {(codes == want).double().mean().item() if codes.shape == want.shape else 0:.1%}"
                             " agree with the nearest level")


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 3 passed")

# %% [markdown]
# Why not a uniform INT4 grid? Because the weights are not uniform. The histogram of the tiny GPT's `fc` weights,
# normalised per block of 64, with the 16 levels of each grid (chapter 01's `plot_levels`), and the error of each
# on the same weights:

# %%
from coursekit.formats import explore as formats_explore

formats_explore.plot_levels(w_fc.flatten(), names=("int4", "nf4"))
plt.show()
for label, w_hat in (("INT4 absmax, blocks of 64", formats_explore.blockwise(w_fc.flatten(), "int4", 64)),
                     ("NF4, blocks of 64", formats.nf4_cast(w_fc).flatten())):
    print(f"{label:26s} relative error {(w_hat - w_fc.flatten()).norm() / w_fc.norm():.4f}")

# %% [markdown]
# ### Double quantization: quantizing the scales <a id="double-quant"></a>
#
# One FP32 absmax per block of 64 costs $32/64 = 0.5$ bits per weight: an eighth of the 4-bit budget. QLoRA's
# **double quantization** quantizes the absmax values themselves: 8-bit codes with one FP32 scale per block of 256
# absmax values, so the overhead becomes
#
# $$\frac{8}{64} + \frac{32}{64 \cdot 256} = 0.127\ \text{bits per weight},$$
#
# saving about 0.37 bits per weight (3 GB on a 65B model). QLoRA trains LoRA adapters (chapter 06) on top of such a
# frozen NF4 base, which is how a 65B model fine-tunes on one 48 GB GPU.

# %%
from coursekit.llm.nf4dq import nf4_double_quant_bytes, nf4_double_quantize

block_weights = [m.weight.detach() for n, m in gpt.named_modules() if isinstance(m, nn.Linear) and n.startswith("blocks")]
n_weights = sum(w.numel() for w in block_weights)
plain_bytes = sum(formats.memory_bytes(w.numel(), "nf4") + 4 * -(-w.numel() // 64) for w in block_weights)
double_bytes = sum(nf4_double_quant_bytes(w.numel()) for w in block_weights)
sq_err = {"NF4": 0.0, "NF4 + double quantization": 0.0}
for w in block_weights:
    sq_err["NF4"] += (formats.nf4_cast(w) - w).pow(2).sum().item()
    sq_err["NF4 + double quantization"] += (nf4_double_quantize(w).dequantize() - w).pow(2).sum().item()
norm2 = sum(w.pow(2).sum().item() for w in block_weights)
for label, nbytes in (("NF4", plain_bytes), ("NF4 + double quantization", double_bytes)):
    print(f"{label:26s} {nbytes:8,} bytes = {8 * nbytes / n_weights:.3f} bits/weight, relative error "
          f"{(sq_err[label] / norm2) ** 0.5:.4f}  ({n_weights:,} weights of the tiny GPT's blocks)")
print(f"on a 7B model the difference is {7e9 * (8 * (plain_bytes - double_bytes) / n_weights) / 8 / 1e9:.2f} GB")

# %% [markdown]
# ## 5 · GPTQ: quantize one column, push its error onto the rest <a id="gptq"></a>
#
# Round-to-nearest (RTN) minimises the error of each *weight*. What matters is the error of the layer's *output*
# on the inputs it actually sees: for calibration inputs $X$ ($n$ tokens x `in`),
#
# $$\min_{\hat W} \big\lVert X W^\top - X \hat W^\top \big\rVert_F^2 = \sum_{\text{rows } r} (w_r - \hat w_r)\, H\, (w_r - \hat w_r)^\top,
# \qquad H = \frac{2}{n} X^\top X .$$
#
# Every row has the same Hessian $H$ (in x in). Optimal Brain Surgeon (Hassibi & Stork 1993) and OBQ (Frantar &
# Alistarh 2022) answer: when weight $j$ is forced to its quantized value $q_j$, the best change of the
# *remaining* weights is
#
# $$\delta = -\frac{w_j - q_j}{[H^{-1}]_{jj}}\, (H^{-1})_{:,j},$$
#
# after which $H^{-1}$ is updated to exclude $j$. **GPTQ** (Frantar et al. 2022) makes this fast: quantize the
# columns in a fixed order $0, 1, \dots$ for all rows at once, and note that the rows of the **upper Cholesky factor**
# $U$ of $H^{-1}$ ($H^{-1} = U^\top U$) already hold every updated inverse it needs. Step $j$ is:
#
# $$q_{:,j} = \operatorname{quant}(W_{:,j}), \qquad e = \frac{W_{:,j} - q_{:,j}}{U_{jj}}, \qquad
# W_{:,k} \leftarrow W_{:,k} - e\, U_{jk} \ \ (k > j), \qquad W_{:,j} \leftarrow q_{:,j}.$$
#
# The columns already quantized never change again; the error of column $j$ is absorbed by the columns after it, in
# the directions the data says are correlated with it. A damping term $\lambda I$ ($\lambda$ = 1% of the mean
# diagonal) keeps $H$ invertible; lazy batches of 128 columns make it fast on a GPU; **act-order** quantizes the
# columns with the largest $H_{jj}$ (the largest inputs) first, while many columns remain to absorb their error.
#
# ### Exercise 4 · One GPTQ column update
#
# Write `gptq_step(W, U, j, quantize)`: `W` is the current weight (out x in, float64), `U` the upper Cholesky
# factor of $H^{-1}$, `j` the column to quantize and `quantize` a function that maps a column to its quantized
# values. Apply the step above and return the updated weight (a new tensor; do not modify `W` in place).

# %% solution="ex4_gptq"
def gptq_step(W, U, j, quantize):
    """One GPTQ column step: quantize column j and push its error onto columns j+1.. via row j of U."""
    ### BEGIN SOLUTION
    W = W.clone()
    q = quantize(W[:, j])
    err = (W[:, j] - q) / U[j, j]
    W[:, j + 1:] -= err[:, None] * U[j, j + 1:][None, :]
    W[:, j] = q
    return W
    ### END SOLUTION

# %% tests="ex4_gptq_tests" points=3
# Visible test: 2 rows, 3 columns, a quantizer that rounds to multiples of 0.5
U_demo = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.25], [0.0, 0.0, 0.5]], dtype=torch.float64)
W_demo = torch.tensor([[0.2, 1.0, -0.4], [0.9, 0.1, 0.3]], dtype=torch.float64)
def half(col):
    return torch.round(col * 2) / 2


got = gptq_step(W_demo, U_demo, 0, half)
# column 0: 0.2 -> 0.0 and 0.9 -> 1.0; e = (0.2, -0.1) / 2 = (0.1, -0.05); later columns -= e * (0.5, -1.0)
expect_close(got.tolist(), [[0.0, 0.95, -0.3], [1.0, 0.125, 0.25]], what="gptq_step(W_demo, U_demo, j=0, half)",
             wrong={"divided by U[j, j]^2 (that is [H^-1]_jj, the full-inverse form)": [[0.0, 0.975, -0.35],
                                                                                       [1.0, 0.1125, 0.275]],
                    "later columns not updated: that is round-to-nearest": [[0.0, 1.0, -0.4], [1.0, 0.1, 0.3]]})
expect_equal(W_demo[0, 0].item(), 0.2, what="W_demo[0, 0] after the call (the input must not change)")
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: dividing by U[j, j]^2; later columns not updated (RTN); the column of U instead of its row
# (earlier, already quantized columns change); sign flipped (W += e U); column j left unquantized; the quantizer
# applied to the error-corrected column after the update of later columns in the wrong order is the same step,
# so it is accepted; modifying W in place is caught by checking the input afterwards; delegating to
# coursekit.llm.gptq (obq_update, gptq_quantize) (forbidden, where it exists).
EX4_CASES = [(5, 12, 4, 402), (6, 10, 0, 401), (7, 9, 8, 403)]


def _ex4_case(rows, cols, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, cols, generator=g, dtype=torch.float64) @ torch.randn(cols, cols, generator=g,
                                                                              dtype=torch.float64)
    h = 2 * x.T @ x / 64 + 0.01 * torch.eye(cols, dtype=torch.float64)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    w = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    return w, u


def _ex4_quant(col):
    return torch.round(col * 4) / 4


def _probe():
    out = []
    with forbid("coursekit.llm.gptq.obq_update", "coursekit.llm.obq_update",
                "coursekit.llm.gptq.gptq_quantize", "coursekit.llm.gptq_quantize", exercise="Exercise 4"):
        for rows, cols, j, seed in EX4_CASES:
            w, u = _ex4_case(rows, cols, seed)
            before = w.clone()
            new = gptq_step(w, u, j, _ex4_quant)
            out.append({"w": new, "input_unchanged": bool(torch.equal(w, before))})
    return out


def _check(out):
    for (rows, cols, j, seed), got in zip(EX4_CASES, out):
        w, u = _ex4_case(rows, cols, seed)
        q = _ex4_quant(w[:, j])
        e = (w[:, j] - q) / u[j, j]

        def after(delta_cols, factor, sign=1.0, set_q=True, w=w, q=q, j=j):
            new = w.clone()
            new -= sign * factor[:, None] * delta_cols[None, :]
            if set_q:
                new[:, j] = q
            return new.tolist()

        later = torch.cat([torch.zeros(j + 1, dtype=torch.float64), u[j, j + 1:]])
        what = f"gptq_step on a hidden {rows}x{cols} weight, column {j}"
        expect_close(got["w"], after(later, e), rtol=1e-9, atol=1e-9, what=what, wrong={
            "divided by U[j, j]^2 instead of U[j, j]": after(later, e / u[j, j]),
            "later columns not updated (that is round-to-nearest)": after(later, 0 * e),
            "column j of U instead of row j: earlier columns changed, later ones not":
            after(torch.cat([u[:j, j], torch.zeros(cols - j, dtype=torch.float64)]), e),
            "sign flipped: subtract e * U[j, k]": after(later, e, sign=-1.0),
            "column j not set to its quantized value": after(later, e, set_q=False)})
        if not got["input_unchanged"]:
            raise AssertionError(f"{what}: your function modified W in place; return a new tensor (W.clone())")


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 4 passed")

# %% [markdown]
# Now run your step over every column of a real layer: the tiny GPT's `blocks.0.mlp.fc` (128 -> 512), with the
# inputs it sees on training text as calibration data, at 3 bits with one scale per row (no groups, so that the
# effect is not hidden by small groups). The figure follows the layer's output error as the columns are processed
# from left to right, for RTN and for your GPTQ loop:

# %%
calib_x = gpt_inputs["blocks.0.mlp.fc"]  # (tokens, 128): what the layer saw on calibration text
W0 = w_fc.double()
X = calib_x.double()
H = 2 * X.T @ X / len(X)
H += 0.01 * H.diagonal().mean() * torch.eye(len(H), dtype=torch.float64)  # damping
U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
scale, zero = llm.groupwise.group_qparams(w_fc, 3)  # per-row INT3 parameters from the original weights


def int3_row(col):
    return llm.groupwise.quantize_column(col.float(), scale, zero, 3)[1].double()


X_eval = calib_x[:256]  # the curve is measured on 256 of the calibration tokens (float32: quick)
Y_norm = (X_eval @ w_fc.T).norm()


def output_error(W_now):
    return ((X_eval @ (W_now.float() - w_fc).T).norm() / Y_norm).item()


W_gptq, W_rtn, steps, curve_gptq, curve_rtn = W0.clone(), W0.clone(), [], [], []
for j in range(W0.shape[1]):
    W_gptq = gptq_step(W_gptq, U, j, int3_row)
    W_rtn[:, j] = int3_row(W0[:, j])
    if j % 4 == 3:
        steps.append(j + 1)
        curve_gptq.append(output_error(W_gptq))
        curve_rtn.append(output_error(W_rtn))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].plot(steps, curve_rtn, label="RTN")
axes[0].plot(steps, curve_gptq, label="GPTQ (your step, every column)")
axes[0].set_xlabel("columns quantized")
axes[0].set_ylabel("relative output error")
axes[0].set_title("||X (W_now - W)^T|| / ||X W^T|| as the columns are quantized", fontsize=9)
axes[0].legend()
labels = ["RTN", "GPTQ"]
weight_err = [((W - W0).norm() / W0.norm()).item() for W in (W_rtn, W_gptq)]
axes[1].bar([0, 1], weight_err, width=0.35, label="weight error")
axes[1].bar([0.35, 1.35], [curve_rtn[-1], curve_gptq[-1]], width=0.35, label="output error")
axes[1].set_xticks([0.175, 1.175], labels)
axes[1].legend()
axes[1].set_title("larger weight error, smaller output error", fontsize=9)
plt.tight_layout()
plt.show()
W_lib, _ = llm.gptq_quantize(w_fc, H.float(), bits=3, group_size=None, damp=0.0)
print(f"output error INT3 per row: RTN {curve_rtn[-1]:.4f}, GPTQ {curve_gptq[-1]:.4f}; "
      f"llm.gptq_quantize (blocked, same H) differs from your loop by {(W_lib.double() - W_gptq).abs().max():.2e}")

# %% [markdown]
# The weight error *grows* (every column after the first is moved away from its original value) while the output
# error on the calibration inputs falls: GPTQ solves the problem that matters. `llm.gptq_quantize` does the same
# in blocks of 128 columns (the "lazy batch" trick: the updates inside a block are applied to the rest of the
# matrix at once, one matrix multiply instead of 128 rank-1 updates) with group-wise scales and act-order. Whether
# the smaller layer error becomes a better *model* is measured in section 9.

# %% [markdown]
# ## 6 · Outliers: why per-tensor INT8 activations fail <a id="outliers"></a>
#
# Weights are the easy half: roughly normal, fixed, quantizable per row or group. Activations of trained
# transformers are not: a handful of hidden dimensions carry values tens of times larger than all the others, on
# almost every token (Dettmers et al. 2022, "LLM.int8()"; Bondarenko et al. 2021 for BERT-sized models). A
# per-tensor (or per-token) INT8 scale must cover them, so its step is too coarse for everything else. The tiny
# GPT is too small and too briefly trained to show this (the last line below measures it); **MiniLM**, a real
# pretrained sentence transformer, does. The largest |activation| of every input channel of the Linear layers that
# read its hidden state, measured on the chapter's sentences:

# %%
mini, mini_tok = minilm.load_minilm()
batch = minilm.tokenize(mini_tok, minilm.SENTENCES)  # one padded batch of the chapter's sentences
real = batch["attention_mask"].reshape(-1).bool()  # rows of real tokens (padding left out of the statistics)
readers = [n for n, m in mini.named_modules() if isinstance(m, nn.Linear) and m.in_features == 384
           and n.startswith("encoder.")]  # the Linears that read the hidden state of every token
minilm_inputs = {n: x[real] for n, x in capture_inputs(mini, readers, [batch]).items()}  # (tokens, 384) each
absmax = {n: x.abs().amax(dim=0) for n, x in minilm_inputs.items()}  # max |x| per input channel
names = [n for n in absmax if n.endswith(("attention.self.query", "intermediate.dense"))][:4]
fig, axes = plt.subplots(1, len(names), figsize=(13, 3), sharey=False)
for ax, name in zip(axes, names):
    a = absmax[name]
    ax.bar(range(len(a)), a, width=1.0)
    top = a.topk(3).indices.tolist()
    ax.set_title(f"{name.replace('encoder.layer.', 'L')}\ntop dims {top}", fontsize=8)
    ax.set_xlabel("input channel")
axes[0].set_ylabel("max |x| over tokens")
plt.tight_layout()
plt.show()
for name in names:
    a = absmax[name]
    print(f"{name:45s} max {a.max():6.2f}, median {a.median():5.2f}: ratio {a.max() / a.median():5.1f}")
dims = minilm.outlier_dimensions(absmax)
print("hidden dimensions above 6.0 anywhere in the model: " + ", ".join(
    f"{d['dim']} (|x| up to {d['max_abs']:.1f}, in {d['layers']} layers)" for d in dims[:6]))
gpt_linears = [n for n, m in gpt.named_modules() if isinstance(m, nn.Linear)]
ratios = [(x.abs().amax(0).max() / x.abs().amax(0).median()).item()
          for x in capture_inputs(gpt, gpt_linears, calib_batches).values()]
print(f"for comparison, the tiny GPT: the largest max/median ratio over its {len(ratios)} Linear inputs is "
      f"{max(ratios):.1f}")

# %% [markdown]
# A large ratio between the largest channel and the typical one means that a per-tensor INT8 step
# ($\max|x| / 127$) is that many times too coarse for the typical channel, which then lives on a handful of the
# 255 levels. The same layer computed in INT8 (`llm.int8_matmul`: absmax scales, weights per output channel) with
# activation scales per tensor and per token (one scale per row of $X$):

# %%
LAYER = dims[0]["where"]  # the Linear that reads the largest outlier
x_q = minilm_inputs[LAYER]  # (tokens, 384): the inputs of that Linear on the sentences (padding removed)
w_q = dict(mini.named_modules())[LAYER].weight.detach()
y_ref = x_q @ w_q.T


def rel_err(y):
    return ((y - y_ref).norm() / y_ref.norm()).item()


for act in ("per_tensor", "per_token"):
    print(f"W8A8, activations {act:10s}: relative output error {rel_err(llm.int8_matmul(x_q, w_q, act=act)):.4f}")

# %% [markdown]
# ### LLM.int8(): take the outliers out of the matmul
#
# LLM.int8() splits the matrix product by input dimension. The outlier dimensions $O$ (columns of $X$ holding a
# value with $|x| > \tau$, $\tau = 6$ by default) are multiplied in floating point; everything else in INT8, with
# one scale per row of $X$ (per token) and one per row of $W$ (per output channel), "vector-wise":
#
# $$X W^\top \approx X_{:,O}\, W_{:,O}^\top \;+\; \operatorname{diag}(s_X)\, \big(Q_X Q_W^\top\big)\, \operatorname{diag}(s_W),
# \qquad s_{X,i} = \frac{\max_{j \notin O} |x_{ij}|}{127},\ \ s_{W,o} = \frac{\max_{j \notin O} |w_{oj}|}{127},$$
#
# with $Q_X = \operatorname{round}(X_{:,\bar O} / s_X)$ and $Q_W = \operatorname{round}(W_{:,\bar O} / s_W)$ (row
# scales broadcast along each row). In a 6.7B model about 0.1% of the dimensions are outliers: almost all of the
# arithmetic stays in INT8.
#
# ### Exercise 5 · Outlier decomposition of a matmul
#
# Write `int8_outlier_matmul(x, w, threshold)`: `x` is (tokens x in), `w` (out x in); return the (tokens x out)
# product computed as above: outlier columns (any $|x| >$ `threshold` in that column of `x`) in full precision,
# the other columns in vector-wise symmetric INT8 (`torch.round`, codes in [-127, 127]), the two parts added.

# %% solution="ex5_outliers"
def int8_outlier_matmul(x, w, threshold):
    """LLM.int8(): outlier input columns in float, the rest vector-wise INT8."""
    ### BEGIN SOLUTION
    outlier = (x.abs() > threshold).any(dim=0)
    rest_x, rest_w = x[:, ~outlier], w[:, ~outlier]
    s_x = rest_x.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
    s_w = rest_w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
    q_x = torch.clamp(torch.round(rest_x / s_x), -127, 127)
    q_w = torch.clamp(torch.round(rest_w / s_w), -127, 127)
    return x[:, outlier] @ w[:, outlier].T + (q_x @ q_w.T) * s_x * s_w.T
    ### END SOLUTION

# %% tests="ex5_outliers_tests" points=3
x_demo = torch.tensor([[1.0, 8.0, -0.5], [0.25, -7.0, 1.0]])
w_demo = torch.tensor([[0.5, 1.0, -1.0], [2.0, 0.0, 0.5]])
# column 1 is the outlier (|8| > 6): exact; columns 0 and 2 go through INT8 (an error of about 1/127 of a row's max)
expect_close(int8_outlier_matmul(x_demo, w_demo, 6.0).tolist(), (x_demo @ w_demo.T).tolist(), atol=1e-2,
             what="int8_outlier_matmul(2x3 example, threshold 6)",
             wrong={"outlier part dropped": [[1.0, 1.75], [-0.875, 1.0]]})
print(f"MiniLM {LAYER}: relative output error {rel_err(int8_outlier_matmul(x_q, w_q, 6.0)):.4f} with "
      f"{int(llm.outlier_channels(x_q, 6.0).sum())} of {x_q.shape[1]} dimensions kept in float")
### BEGIN HIDDEN TESTS
import math  # noqa: F811 (hidden section: its own imports)

import torch

from coursekit.grading.sealed import forbid, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: outliers chosen by |w| > threshold (no column of these weights qualifies, so nothing is
# decomposed); outlier part dropped; per-tensor INT8 scales for the rest (one for X, one for W); scales over all
# columns (the outliers set the INT8 step); delegating to coursekit.llm.outliers.int8_decomposed_matmul
# (forbidden). Compared per row of the output (relative error <= 1e-3), so that tokens of every size count and a
# code that flips at an exact rounding tie (float32 vs float64) does not.
EX5_CASES = [(24, 48, 16, 601), (40, 64, 32, 602)]


def _ex5_case(tokens, inp, out, seed):
    g = torch.Generator().manual_seed(seed)
    rows = torch.logspace(-1.5, 0.3, tokens, dtype=torch.float64)[:, None]  # tokens of very different sizes
    x = torch.randn(tokens, inp, generator=g, dtype=torch.float64) * rows
    x[:, 3] = 8.0 + torch.rand(tokens, generator=g, dtype=torch.float64) * 4  # a systematic outlier dimension
    x[5, 17] = 9.0  # one large value: its whole column becomes an outlier column
    w = torch.randn(out, inp, generator=g, dtype=torch.float64) * 0.1
    return x.float(), w.float()


def _ex5_close(got, want):
    """Largest per-row relative error (rows of very different size: every token must be right)."""
    got = torch.as_tensor(got, dtype=torch.float64)
    if got.shape != want.shape:
        return math.inf
    return ((got - want).norm(dim=1) / want.norm(dim=1)).max().item()


def _probe():
    with forbid("coursekit.llm.outliers.int8_decomposed_matmul", "coursekit.llm.int8_decomposed_matmul",
                "coursekit.llm.int8matmul.int8_matmul", "coursekit.llm.int8_matmul", exercise="Exercise 5"):
        return [int8_outlier_matmul(*_ex5_case(*case), 6.0) for case in EX5_CASES]


def _ex5_ref(x, w, cols, per_row=True, keep_outliers=True, scale_cols=None):
    x, w = x.double(), w.double()
    rest_x, rest_w = x[:, ~cols], w[:, ~cols]
    sx_src = rest_x if scale_cols is None else x
    if per_row:
        s_x = sx_src.abs().amax(1, keepdim=True) / 127
        s_w = (rest_w if scale_cols is None else w).abs().amax(1, keepdim=True) / 127
    else:
        s_x = sx_src.abs().amax() / 127 * torch.ones(len(x), 1, dtype=torch.float64)
        s_w = rest_w.abs().amax() / 127 * torch.ones(len(w), 1, dtype=torch.float64)
    q = torch.round(rest_x / s_x).clamp(-127, 127) @ torch.round(rest_w / s_w).clamp(-127, 127).T * s_x * s_w.T
    return (q + x[:, cols] @ w[:, cols].T) if keep_outliers else q


def _check(out):
    for case, got in zip(EX5_CASES, out):
        x, w = _ex5_case(*case)
        cols = (x.abs() > 6.0).any(0)
        what = f"int8_outlier_matmul on hidden x {tuple(x.shape)}, w {tuple(w.shape)}"
        if isinstance(got, dict):
            raise TypeError(f"{what} returned a {got.get('__type__')}, not a tensor")
        if _ex5_close(got, _ex5_ref(x, w, cols)) <= 1e-3:
            continue
        wrongs = {"outliers chosen by |w| > threshold: outlier columns come from the activations x":
                  _ex5_ref(x, w, (w.abs() > 6.0).any(0)),
                  "outlier part dropped: add X[:, O] W[:, O]^T": _ex5_ref(x, w, cols, keep_outliers=False),
                  "per-tensor INT8 scales for the rest: LLM.int8() is vector-wise (per row of X and of W)":
                  _ex5_ref(x, w, cols, per_row=False),
                  "scales taken over all columns, outliers included": _ex5_ref(x, w, cols, scale_cols=True)}
        for mistake, value in wrongs.items():
            if _ex5_close(got, value) <= 1e-3:
                raise AssertionError(f"{what}: {mistake}")
        raise AssertionError(f"{what}: a row of your result differs from the reference by "
                             f"{_ex5_close(got, _ex5_ref(x, w, cols)):.2%} (relative)")


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 5 passed")

# %% [markdown]
# `llm.int8_decomposed_matmul(x, w, threshold)` is coursekit's version. The decomposition keeps the accuracy, but a
# second, floating-point matmul and the gather of the outlier columns cost time: in bitsandbytes, LLM.int8() saves
# memory (INT8 weights) more than it saves time.
#
# ## 7 · Moving the difficulty: AWQ and SmoothQuant <a id="awq"></a>
#
# Both methods rest on one exact identity: for any positive vector $s$ over the input channels,
#
# $$X W^\top = \big(X \operatorname{diag}(s)^{-1}\big)\,\big(W \operatorname{diag}(s)\big)^\top,$$
#
# and $\operatorname{diag}(s)^{-1}$ can be folded into whatever produced $X$ (a LayerNorm's weight, the previous
# Linear), so the rescaled model computes exactly the same function *before* quantization. What changes is which
# tensor carries the large values when it is rounded.
#
# **AWQ** (Lin et al. 2023, weight-only) observes that a weight's error matters in proportion to the activation it
# multiplies: the output error of channel $j$ is about $|x_j| \cdot |\Delta w_j|$. Scaling a salient channel's
# weights *up* by $s_j > 1$ before rounding shrinks their relative rounding error (the group's scale hardly moves
# when one channel grows a little), and the activation is divided by $s_j$ for free. The scales come from the mean
# activation magnitude of each input channel, $\bar a_j = \operatorname{mean}_t |x_{tj}|$, raised to a power
# $\alpha \in [0, 1]$ found by a grid search on calibration data, and normalised so that they are centred on 1
# (AWQ's reference code):
#
# $$s_j = \frac{\bar a_j^{\,\alpha}}{\sqrt{\max_k \bar a_k^{\,\alpha} \cdot \min_k \bar a_k^{\,\alpha}}}, \qquad
# W' = W \operatorname{diag}(s) \ \text{(quantized)}, \qquad X' = X \operatorname{diag}(s)^{-1}.$$
#
# ### Exercise 6 · The AWQ scales of one group of channels
#
# Write `activation_aware_scales(x, w, alpha)`: `x` holds calibration inputs (tokens x in) of the Linear layers
# that share them (q, k and v share theirs), `w` one of their weights (out x in). Return `(s, w_scaled)`: the
# normalised scales above (length `in`) and $W \operatorname{diag}(s)$.

# %% solution="ex6_awq"
def activation_aware_scales(x, w, alpha):
    """AWQ per-input-channel scales (mean |x| ** alpha, normalised) and the scaled weight W diag(s)."""
    ### BEGIN SOLUTION
    s = x.abs().mean(dim=0).pow(alpha)
    s = s / (s.max() * s.min()).sqrt()
    return s, w * s[None, :]
    ### END SOLUTION

# %% tests="ex6_awq_tests" points=2
x_demo = torch.tensor([[1.0, -4.0, 0.5], [-3.0, 12.0, 0.5]])  # mean |x| = 2, 8, 0.5
w_demo = torch.tensor([[1.0, 1.0, 1.0], [0.5, -2.0, 4.0]])
s_demo, w_s_demo = activation_aware_scales(x_demo, w_demo, 0.5)
# mean |x| ** 0.5 = sqrt(2), sqrt(8), sqrt(0.5); normaliser sqrt(sqrt(8) * sqrt(0.5)) = sqrt(2)
expect_close(s_demo.tolist(), [1.0, 2.0, 0.5], what="activation_aware_scales(x_demo, w_demo, 0.5)[0]", rtol=1e-5,
             wrong={"not normalised by sqrt(max * min)": [2**0.5, 8**0.5, 0.5**0.5],
                    "max |x| instead of mean |x|": [3**0.5 / 6**0.25, 12**0.5 / 6**0.25, 0.5**0.5 / 6**0.25]})
expect_close(w_s_demo.tolist(), [[1.0, 2.0, 0.5], [0.5, -4.0, 2.0]], what="W diag(s)", rtol=1e-5,
             wrong={"divided by s: the weights are scaled UP where the activations are large":
                    [[1.0, 0.5, 2.0], [0.5, -1.0, 8.0]]})
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: alpha applied to the weights' mean |w| per input channel instead of the activations';
# not normalised; normalised by the max (or the mean) instead of sqrt(max * min); max |x| instead of mean |x|;
# exponent 1 - alpha; W divided by s; s applied along the output dimension (rows); delegating to
# coursekit.llm.awq (forbidden, where it exists).
EX6_CASES = [(50, 24, 12, 0.5, 501), (30, 16, 20, 0.3, 502), (40, 32, 8, 0.8, 503)]


def _ex6_case(tokens, inp, out, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, inp, generator=g, dtype=torch.float64) * torch.logspace(-1, 1, inp, dtype=torch.float64)
    w = torch.randn(out, inp, generator=g, dtype=torch.float64) * torch.rand(inp, generator=g, dtype=torch.float64)
    return x, w


def _probe():
    with forbid("coursekit.llm.awq.awq_channel_scales", "coursekit.llm.awq_channel_scales",
                "coursekit.llm.awq.activation_scale", "coursekit.llm.awq.awq_search", "coursekit.llm.awq_search",
                "coursekit.llm.scaling.scale_weight_columns", exercise="Exercise 6"):
        out = []
        for tokens, inp, o, alpha, seed in EX6_CASES:
            s, w_s = activation_aware_scales(*_ex6_case(tokens, inp, o, seed), alpha)
            out.append({"s": s, "w": w_s})
        return out


def _ex6_s(stat, alpha, norm="sqrt"):
    s = stat.pow(alpha)
    if norm == "sqrt":
        return s / (s.max() * s.min()).sqrt()
    return {"none": s, "max": s / s.max(), "mean": s / s.mean()}[norm]


def _check(out):
    for (tokens, inp, o, alpha, seed), got in zip(EX6_CASES, out):
        x, w = _ex6_case(tokens, inp, o, seed)
        mean_x = x.abs().mean(0)
        s = _ex6_s(mean_x, alpha)
        what = f"activation_aware_scales on hidden inputs ({tokens}x{inp}), alpha={alpha}"
        expect_close(got["s"], s.tolist(), rtol=1e-6, atol=1e-9, what=f"scales of {what}", wrong={
            "alpha applied to the weights' statistics: AWQ's scales come from the activations":
            _ex6_s(w.abs().mean(0), alpha).tolist(),
            "not normalised by sqrt(max * min)": _ex6_s(mean_x, alpha, "none").tolist(),
            "normalised by the max instead of sqrt(max * min)": _ex6_s(mean_x, alpha, "max").tolist(),
            "normalised by the mean instead of sqrt(max * min)": _ex6_s(mean_x, alpha, "mean").tolist(),
            "max |x| instead of mean |x|": _ex6_s(x.abs().amax(0), alpha).tolist(),
            "exponent 1 - alpha instead of alpha": _ex6_s(mean_x, 1 - alpha).tolist()})
        expect_close(got["w"], (w * s[None, :]).tolist(), rtol=1e-6, atol=1e-9, what=f"W diag(s) of {what}", wrong={
            "W divided by s: scale the weights up, the activations down": (w / s[None, :]).tolist()})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 6 passed")

# %% [markdown]
# Does it help? A grid over $\alpha$ on the MiniLM layer of section 6 (INT3 weights, groups of 128): the output
# error of $X' (Q(W'))^\top$ for each $\alpha$, with your scales. $\alpha = 0$ is plain RTN ($s = 1$):

# %%
alphas = [i / 10 for i in range(11)]
errors = []
for alpha in alphas:
    s, w_scaled = activation_aware_scales(x_q, w_q, alpha)
    w_hat = llm.fake_quantize_groupwise(w_scaled, 3, 128)
    errors.append(((x_q / s) @ w_hat.T - y_ref).norm().item() / y_ref.norm().item())
best = min(range(len(alphas)), key=errors.__getitem__)
plt.figure(figsize=(5, 3))
plt.plot(alphas, errors, "o-")
plt.xlabel("alpha")
plt.ylabel("relative output error")
plt.title(f"AWQ grid on {LAYER.replace('encoder.layer.', 'L')} (INT3 g128)", fontsize=9)
plt.show()
print(f"RTN (alpha = 0): {errors[0]:.4f}; best alpha {alphas[best]}: {errors[best]:.4f}")

# %% [markdown]
# `llm.awq_search(w, x, bits, group_size)` runs this search (20 values of $\alpha$) on calibration inputs, and
# `llm.quantize_linears(..., method="awq")` stores $Q(W \operatorname{diag}(s)) \operatorname{diag}(s)^{-1}$, which is
# numerically what folding $1/s$ into the previous op gives (`llm.fold_input_scales` does that fold: the FP32
# function is unchanged). Unlike GPTQ, AWQ does not fit the weights to the calibration set, which makes it less
# sensitive to what that set contains; whether it helps a given model is a measurement (section 11 has AWQ on both
# models).
#
# ### SmoothQuant: W8A8 without outliers <a id="smoothquant"></a>
#
# SmoothQuant (Xiao et al. 2023) uses the same identity for the opposite goal: quantize **activations and weights**
# to INT8 (W8A8, so the matmul itself runs on INT8 units). It divides the activation channels by
#
# $$s_j = \frac{\max_t |x_{tj}|^{\alpha}}{\max_o |w_{oj}|^{1-\alpha}}, \qquad \alpha \approx 0.5,$$
#
# which migrates part of each outlier channel's range into the weights, where per-channel quantization absorbs
# it. With $\alpha = 0.5$ a channel with $\max|x| = 64$ and $\max|w| = 0.25$ gets $s = 8 / 0.5 = 16$: both maxima
# become 4. The paper tunes $\alpha$ per model on calibration data (0.5 for OPT and BLOOM, up to 0.75-0.85 for
# others); `llm.smoothquant_alpha(model, calibration)` runs that search over a grid on a whole model, and the
# benchmark of section 11 compares $\alpha = 0.5$ with the chosen $\alpha$ on MiniLM. On the MiniLM layer,
# per-tensor INT8 activations with per-channel INT8 weights, before and after smoothing ($\alpha = 0.5$):

# %%
s_sq = llm.smooth_scales(x_q.abs().amax(0), w_q, alpha=0.5)
for label, xs, ws in (("W8A8 per-tensor, no smoothing", x_q, w_q), ("W8A8 after SmoothQuant", x_q / s_sq, w_q * s_sq)):
    ratio = xs.abs().amax(0).max() / xs.abs().amax(0).median()
    print(f"{label:32s}: relative output error {rel_err(llm.int8_matmul(xs, ws, act='per_tensor')):.4f} "
          f"(activation channel max / median {ratio:5.1f})")

# %% [markdown]
# ## 8 · The KV cache <a id="kv-cache"></a>
#
# Section 1 gave the formula. Two details decide the number in practice. **Grouped-query attention** (GQA,
# Ainslie et al. 2023): many models share each key/value head among several query heads, so the cache holds
# $H_{kv}$ heads, not $H$ (Llama-2-70B: 64 query heads, 8 KV heads, an 8x smaller cache); the head dimension is
# still $d_{model} / H$. And the cache is **per sequence**: a server with 32 conversations holds 32 caches, read in
# full at every decoding step, which is why quantizing it (INT8, or 4 bits as in KIVI) raises how many users fit.
#
# ### Exercise 7 · KV-cache bytes
#
# Write `kv_bytes(n_layers, n_heads, n_kv_heads, d_model, seq_len, batch, bits)`: the bytes of the key and value
# cache of a decoder with `n_heads` query heads and `n_kv_heads` key/value heads, model width `d_model`, for
# `batch` sequences of `seq_len` tokens stored with `bits` bits per value (scales ignored). Return an `int`.

# %% solution="ex7_kv"
def kv_bytes(n_layers, n_heads, n_kv_heads, d_model, seq_len, batch, bits):
    """Bytes of the K and V cache: 2 * layers * kv_heads * head_dim * seq_len * batch * bits / 8."""
    ### BEGIN SOLUTION
    head_dim = d_model // n_heads
    return 2 * n_layers * n_kv_heads * head_dim * seq_len * batch * bits // 8
    ### END SOLUTION

# %% tests="ex7_kv_tests" points=2
expect_equal(kv_bytes(32, 32, 32, 4096, 4096, 1, 16), 2 * 1024**3, what="kv_bytes(Llama-2-7B, 4096 tokens, FP16)",
             wrong={"factor 2 forgotten: keys AND values are cached": 1024**3,
                    "bits, not bytes: divide by 8": 16 * 1024**3})
expect_equal(kv_bytes(80, 64, 8, 8192, 4096, 1, 16), 1_342_177_280, what="kv_bytes(Llama-2-70B, GQA with 8 KV heads)",
             wrong={"query heads instead of KV heads: under GQA only n_kv_heads are cached": 10_737_418_240,
                    "head_dim = d_model / n_kv_heads: the head dimension is d_model / n_heads": 10_737_418_240})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_equal, forbid, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: no factor 2; n_heads instead of n_kv_heads; head_dim = d_model / n_kv_heads; bits instead of
# bytes; batch or layers left out; a float returned (int expected); delegating to
# coursekit.formats.memory.kv_cache_bytes or coursekit.llm.explore.llm_memory (forbidden).
EX7_CASES = [(32, 32, 32, 4096, 2048, 1, 16), (80, 64, 8, 8192, 32768, 4, 8), (28, 28, 4, 3584, 1000, 3, 4),
             (4, 4, 4, 128, 128, 1, 32), (40, 40, 40, 5120, 777, 2, 8), (26, 8, 4, 2304, 8192, 16, 16)]


def _probe():
    with forbid("coursekit.formats.memory.kv_cache_bytes", "coursekit.formats.kv_cache_bytes",
                "coursekit.llm.explore.llm_memory", exercise="Exercise 7"):
        return [kv_bytes(*case) for case in EX7_CASES]


def _check(out):
    from coursekit.formats import kv_cache_bytes

    fmt = {4: "int4", 8: "int8", 16: "fp16", 32: "fp32"}
    want = [kv_cache_bytes(L, kv, d // h, t, batch=b, fmt=fmt[bits]) for L, h, kv, d, t, b, bits in EX7_CASES]
    expect_equal([int(v) if isinstance(v, (int, float)) and float(v).is_integer() else v for v in out], want,
                 what=f"kv_bytes on {EX7_CASES}", wrong={
                     "factor 2 forgotten (keys and values)": [w // 2 for w in want],
                     "n_heads instead of n_kv_heads": [w * h // kv for w, (_, h, kv, *_) in zip(want, EX7_CASES)],
                     "head_dim = d_model / n_kv_heads instead of d_model / n_heads":
                     [2 * L * kv * (d // kv) * t * b * bits // 8 for L, h, kv, d, t, b, bits in EX7_CASES],
                     "bits instead of bytes": [w * 8 for w in want],
                     "batch left out": [w // c[5] for w, c in zip(want, EX7_CASES)]})
    expect_equal([type(v).__name__ for v in out], ["int"] * len(out), what="types returned (a whole number of bytes)")


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 7 passed")

# %% [markdown]
# coursekit's caches store the cache in FP32 (`llm.KVCache`) or as INT8 codes with FP16 scales per token or per
# head (`llm.Int8KVCache`); `llm.cache_bytes` counts what they really hold. The tiny GPT decoding held-out text one
# character at a time with each cache (every prediction reads the cache of all earlier characters of its window):

# %%
cfg = gpt.config
caches = {"FP32": lambda: llm.KVCache(cfg.n_layers),
          "INT8, scale per token": lambda: llm.Int8KVCache(cfg.n_layers, "per_token"),
          "INT8, scale per head": lambda: llm.Int8KVCache(cfg.n_layers, "per_head")}
kv_bpc = {}
for label, make in caches.items():
    kv_bpc[label] = llm.bits_per_char(gpt, val_ids, max_tokens=EVAL_TOKENS, make_cache=make)
    cache = make()
    with torch.no_grad():
        gpt(val_ids[:cfg.context][None], cache=cache)  # one full 128-character context
    print(f"{label:22s} bpc {kv_bpc[label]:.4f} ({kv_bpc[label] - kv_bpc['FP32']:+.4f}); a full context holds "
          f"{llm.cache_bytes(cache):7,} bytes")
shape = (cfg.n_layers, cfg.n_heads, cfg.n_heads, cfg.d_model, cfg.context, 1)  # no GQA in the tiny GPT
print(f"your kv_bytes() for this model: FP32 {kv_bytes(*shape, 32):,} bytes, INT8 {kv_bytes(*shape, 8):,} bytes "
      "(+ the scales)")

# %% [markdown]
# The INT8 cache is 4x smaller than FP32 (2x smaller than the FP16 a GPU would use) plus its FP16 scales, for a bpc
# cost that you can read above: for a model this small, noise. Per-head scales cost more bytes than per-token ones
# and follow each head's range. Long-context models go further (KIVI: keys per channel, values per token, 2 bits),
# and check the cost on long-context tasks, where errors accumulate over thousands of attended positions.

# %% [markdown]
# ## 9 · Measuring the damage: bits per character <a id="perplexity"></a>
#
# A language model is scored by how surprised it is by held-out text: the mean negative log-likelihood of each
# next token. In nats per token its exponential is the **perplexity** (NLL 2.0 nats -> $e^2 = 7.39$: as uncertain
# as a uniform choice among 7.4 tokens); for a character model the same quantity in **bits per character** is
# $\text{bpc} = \text{NLL} / \ln 2$ (a uniform guess over the tiny GPT's vocabulary would cost
# $\log_2 |V|$ bits). `llm.bits_per_char` scores held-out plays the model never saw. Differences of a few
# hundredths of a bit are visible in the text; tenths are glaring.
#
# Every method of this chapter on the whole tiny GPT (every Linear of the transformer blocks; the embeddings and
# the output head stay in FP32, as is common), with the bits per weight that each really stores:

# %%
fp32_bpc = llm.bits_per_char(gpt, val_ids, max_tokens=EVAL_TOKENS)


def quantized_gpt(method="rtn", bits=4, group_size=64, act_order=False):
    """A quantized copy of the tiny GPT and the report of llm.quantize_linears (bits per weight included)."""
    m = copy.deepcopy(gpt)
    calibration = calib_batches if method in ("gptq", "awq") else None  # RTN and NF4 need no data
    report = llm.quantize_linears(m, method=method, bits=bits, group_size=group_size, act_order=act_order,
                                  calibration=calibration, progress=False)
    return m, report


CONFIGS = [("INT8 RTN g128", "rtn", 8, 128), ("INT4 RTN g128", "rtn", 4, 128), ("NF4 (blocks of 64)", "nf4", 4, 64),
           ("INT4 RTN g64", "rtn", 4, 64), ("INT3 RTN g64", "rtn", 3, 64), ("INT3 GPTQ g64", "gptq", 3, 64),
           ("INT2 RTN g32", "rtn", 2, 32), ("INT2 GPTQ g32", "gptq", 2, 32)]
if FAST:  # the benchmark of section 11 measures the rest (and more seeds)
    CONFIGS = [c for c in CONFIGS if c[0] not in ("INT4 RTN g128", "NF4 (blocks of 64)")]
quality = {"FP32": (32.0, fp32_bpc)}
models = {"FP32": gpt}
for label, method, bits, g in CONFIGS:
    m, report = quantized_gpt(method, bits, g)
    models[label] = m
    quality[label] = (report.bits_per_weight, llm.bits_per_char(m, val_ids, max_tokens=EVAL_TOKENS))
print(f"{'':20s} {'bits/weight':>11s} {'bpc':>7s} {'cost':>8s}   ({EVAL_TOKENS:,} held-out characters)")
for label, (bpw, bpc) in quality.items():
    print(f"{label:20s} {bpw:11.3f} {bpc:7.4f} {bpc - fp32_bpc:+8.4f}")
for bits in (3, 2):
    rtn = next(v for k, v in quality.items() if k.startswith(f"INT{bits} RTN"))[1] - fp32_bpc
    gptq = next(v for k, v in quality.items() if k.startswith(f"INT{bits} GPTQ"))[1] - fp32_bpc
    print(f"INT{bits}: GPTQ recovers {1 - gptq / rtn:.0%} of RTN's bpc cost" if rtn > 0 else f"INT{bits}: no RTN cost")
within = [k for k, (_, bpc) in quality.items() if k != "FP32" and bpc <= fp32_bpc + 0.05]
print(f"within +0.05 bpc of FP32: {', '.join(within) or 'none'}; smallest of them: "
      f"{min(within, key=lambda k: quality[k][0]) if within else '-'}")

# %% [markdown]
# What the numbers mean in text. The same prompt, the same random seed, each model continuing it (sampling at
# temperature 0.8): where the FP32 model writes plausible verse, watch the 3-bit and 2-bit models lose words, then
# spelling, then the format of a play. The bpc numbers above are averages; the samples show *which* errors they
# average over.

# %%
PROMPT = "ROMEO:\nBut soft, what light"
for label in ("FP32", "INT4 RTN g64", "INT3 RTN g64", "INT3 GPTQ g64", "INT2 RTN g32", "INT2 GPTQ g32"):
    text = llm.generate(models[label], tokenizer, PROMPT, n_new=100 if FAST else 240, seed=0)
    print(f"--- {label} (bpc {quality[label][1]:.3f}) ---\n{text}\n")

# %% [markdown]
# ## 10 · INT8 or 4-bit? Two deployments <a id="int8-vs-4bit"></a>
#
# **The bank assistant** runs in a data centre, answers questions about accounts and regulations, and a wrong
# figure costs money and trust. Memory is available (an 80 GB GPU holds a 7B model in FP16 with room for many
# caches), so the question is only how much throughput INT8 buys at *no measurable* quality loss: INT8 weights (and,
# after SmoothQuant, INT8 activations) are the conservative choice, validated on the bank's own questions, not on
# perplexity alone. **The laptop chatbot** must fit in a few GB next to a browser and answer at reading speed on a
# CPU: 4-bit weights with groups of 32-128 (GPTQ, AWQ or NF4) are the usual way a 7B model fits, and decoding is
# memory-bound, so 4x fewer bytes is most of the speed. Its users tolerate an occasional odd phrase; they would not
# tolerate the 3-bit and 2-bit samples above, which is why "4 bits with small groups" is the usual floor for
# weights, and why methods like GPTQ matter most below it.
#
# Read your table with these two users in mind: what does INT8 cost, what do 4 bits cost, and how fast does the
# cost grow with every bit below that? Then read the samples again: the bank's users would see every one of the
# 2-bit model's errors; the laptop's users might forgive the 4-bit model's.
#
# ### Exercise 8 · The smallest model within +0.05 bpc
#
# Choose a configuration of `llm.quantize_linears` for the tiny GPT that stores **as few bits per weight as
# possible** while costing **at most 0.05 bpc** more than FP32 on held-out text. Set `my_config` to a dict with the
# keys `method` (`"rtn"`, `"nf4"`, `"gptq"` or `"awq"`), `bits` (8, 4, 3 or 2), `group_size` (32, 64 or 128) and
# `act_order` (True/False, GPTQ only). The grader rebuilds your configuration with coursekit and measures both
# numbers itself, exactly as this notebook does in fast mode (the same 8 calibration windows, the first 4,096
# held-out characters; bits per weight with scales and zero points). One point for staying within +0.05 bpc, one
# for at most `TARGET_BPW` bits per weight, one for at most `STRETCH_BPW`. Explore in the cell below; `quantized_gpt` and
# `quality` above are there to use.

# %%
TARGET_BPW, STRETCH_BPW = 3.5, 3.2
print(f"FP32 bpc {fp32_bpc:.4f}: your model must score at most {fp32_bpc + 0.05:.4f}; bits/weight targets "
      f"{TARGET_BPW} and {STRETCH_BPW}")

# %% solution="ex8_target"
### BEGIN SOLUTION
my_config = {"method": "gptq", "bits": 3, "group_size": 128, "act_order": True}
### END SOLUTION

# %% tests="ex8_target_tests" points=3
print(f"your configuration: {my_config}; the hidden test quantizes the shipped model with it and measures")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import partial, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught (measured on the shipped model, grader's settings): INT3 g64 RTN (3.297 bits, +0.079 bpc: over
# the budget, 0 points); INT2 g32 GPTQ act-order (2.562 bits, +0.11 bpc: 0); INT4 g128 RTN (4.156 bits, +0.017: 1
# point); INT3 g64 GPTQ (3.297 bits, +0.029: 2 points); INT3 g128 GPTQ, with or without act-order (3.148 bits,
# +0.021 / +0.035: 3 points, the smallest within budget); NF4 with bits != 4, a missing key or a value outside the
# allowed sets (an error naming it); bits per weight counted without scales and zero points (the grader counts them). The grader rebuilds the model with
# coursekit (the learner's functions are not used) and evaluates it on held-out text with its own calibration.
EX8_KEYS = ("method", "bits", "group_size", "act_order")


def _probe():
    return {k: my_config.get(k) if isinstance(my_config, dict) else None for k in EX8_KEYS}


def _check(out):
    import copy

    import torch

    from coursekit import llm

    allowed = {"method": ("rtn", "nf4", "gptq", "awq"), "bits": (8, 4, 3, 2), "group_size": (32, 64, 128)}
    for key, values in allowed.items():
        if out.get(key) not in values:
            raise AssertionError(f"my_config[{key!r}] = {out.get(key)!r}: choose one of {values}")
    if out["method"] == "nf4" and out["bits"] != 4:
        raise AssertionError(f"NF4 is a 4-bit format: my_config['bits'] = {out['bits']} with method 'nf4'")
    gpt, tokenizer = llm.pretrained_gpt()  # the notebook's model, calibration and held-out text in fast mode
    train_ids, val_ids = llm.corpus_splits(fast=True, tokenizer=tokenizer)
    starts = torch.randint(0, len(train_ids) - 129, (8,), generator=torch.Generator().manual_seed(0))
    calibration = [torch.stack([train_ids[s:s + 128] for s in starts.tolist()])]
    m = copy.deepcopy(gpt)
    report = llm.quantize_linears(m, method=out["method"], bits=out["bits"], group_size=out["group_size"],
                                  act_order=bool(out.get("act_order")), progress=False,
                                  calibration=calibration if out["method"] in ("gptq", "awq") else None)
    fp32 = llm.bits_per_char(gpt, val_ids, max_tokens=4096)
    got = llm.bits_per_char(m, val_ids, max_tokens=4096)
    bpw = report.bits_per_weight
    within = got <= fp32 + 0.05
    return partial([(within, f"bpc {got:.4f} <= FP32 {fp32:.4f} + 0.05"),
                    (within and bpw <= 3.5, f"{bpw:.3f} bits/weight <= 3.5 (within the bpc budget)"),
                    (within and bpw <= 3.2, f"{bpw:.3f} bits/weight <= 3.2 (within the bpc budget)")])


sealed_test(_probe, _check, points=3)  # last expression: nbgrader reads a returned number as partial credit
### END HIDDEN TESTS

# %% [markdown]
# ## 11 · Benchmark: your hardware (the `llm` suite) <a id="benchmark"></a>
#
# The cell below runs `coursekit bench --suite llm`: the tiny GPT's bpc for FP32, INT8, INT4 (groups of 64 and
# 128) with RTN and NF4, INT3 and INT2 with RTN, GPTQ and GPTQ act-order, and AWQ, with the bits per weight
# including scales and the spread over calibration seeds; MiniLM's embedding quality (cosine to FP32, Spearman of
# pair similarities) for INT8, INT4, INT3, AWQ, LLM.int8() and SmoothQuant W8A8; the INT8 KV cache's bpc cost; and
# the speed of a 4-bit weight-only matmul in ONNX Runtime (`MatMulNBits`) against FP32 at decode (M = 1) and
# prefill (M = 128) on your machine. The reading is generated from your numbers.

#
# In fast mode (and under the grader) the cell runs only the speed half, the `llm_decode` suite: the quality half
# repeats what sections 6-9 measured. In full mode it runs the whole suite, which is the long cell of this chapter
# (about 3.5 minutes measured on a quiet 2-core machine, the rest of the chapter about 30 seconds: the suite
# quantizes the tiny GPT about twenty times, GPTQ with three calibration seeds, scores each on the whole held-out
# split, and runs MiniLM under eight schemes, SmoothQuant at $\alpha = 0.5$ and at the $\alpha$ it picks on the
# calibration speeches); `coursekit bench --suite llm` runs it from a terminal.

# %%
from coursekit.suites import llm as llm_suite
from coursekit.suites import run_suite

records = run_suite("llm_decode" if FAST else "llm", fast=FAST, progress=False)["records"]
print(llm_suite.reading(records))

# %% [markdown]
# How to read it: the quality rows are the same experiment as section 9 with more seeds; the speed rows are the
# roofline of section 2 made concrete. At M = 1 the 4-bit kernel reads a quarter of FP16's bytes (an eighth of
# FP32's), and on a memory-bound machine it should be several times faster than FP32; at M = 128 the matmul is
# compute-bound and the gain shrinks or vanishes (the weights must still be unpacked). If your measured decode gain
# is small, look at the reading: the matrix may fit in your CPU's cache (then it is not memory-bound at all), or
# another program disturbed the medians. Weight-only quantization does not make *prefill* or large-batch serving
# faster, and it does nothing for the KV cache, which section 8 treats separately.
#
# ## 12 · Common mistakes <a id="mistakes"></a>
#
# * **Counting 4 bits per weight.** Group scales and zero points add $16/g + b/g$ bits: INT4 g32 with FP16 scales
#   and 4-bit zero points is 4.625 bits, not 4. Compare methods at equal *storage*, as section 3's figure does.
# * **Forgetting the KV cache.** At long contexts and large batches it exceeds the 4-bit weights; a model that
#   "fits" at 512 tokens does not at 32k.
# * **Per-tensor INT8 activations on a transformer.** Outlier channels make the step many times too coarse for
#   everything else (section 6 measured the ratio on MiniLM); use per-token scales plus outlier handling
#   (LLM.int8()), SmoothQuant, or keep activations in floating point (weight-only).
# * **Mixing packing layouts.** First code in the high nibble (bitsandbytes, coursekit) vs the low nibble (ONNX
#   Runtime's MatMulNBits): converting between them silently scrambles every pair of weights. Round-trip test it.
# * **Evaluating GPTQ on its calibration text.** GPTQ fits the weights to the calibration inputs; score held-out
#   text, as this chapter does.
# * **Judging by perplexity alone.** An average hides failures on the tasks that matter (numbers, reasoning, long
#   context); read generations and run the task's own evaluation.
# * **Expecting speed from weight-only quantization everywhere.** It speeds up memory-bound decoding; prefill and
#   large batches are compute-bound, and a CPU without a 4-bit kernel may run slower than FP32 after unpacking.
#
# ## 13 · Interview questions <a id="interview"></a>
#
# Practise with the quiz below (immediate feedback and explanations), or in a terminal with
# `coursekit drill --chapter 07`. The graded questions further down are left out of the practice quiz.

# %% locked="quiz_ids"
from coursekit import quiz

QUIZ_IDS = ["ch07-why-groups", "ch07-pack-nibbles", "ch07-nf4-dequant", "ch07-double-quant-bits", "ch07-gptq-act-order",
            "ch07-smoothquant-factor", "ch07-kv-quant-why", "ch07-decode-weight-only"]
quiz.show(chapter="07", n=6, exclude=QUIZ_IDS)

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
    "ch07-why-groups": "B",
    "ch07-pack-nibbles": 58,
    "ch07-nf4-dequant": 0.8814196,
    "ch07-double-quant-bits": 0.127,
    "ch07-gptq-act-order": "C",
    "ch07-smoothquant-factor": 16,
    "ch07-kv-quant-why": "D",
    "ch07-decode-weight-only": "C",
}
### END SOLUTION

# %% tests="quiz_answers_tests" points=8
# One point per question. Visible: which questions you have not answered yet.
unanswered = [qid for qid in QUIZ_IDS if not isinstance(answers, dict) or qid not in answers]
print("not answered yet: " + ", ".join(unanswered) if unanswered else "all questions answered")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import sealed_quiz

# one point per question; the returned number is nbgrader's partial credit
sealed_quiz(["ch07-why-groups", "ch07-pack-nibbles", "ch07-nf4-dequant", "ch07-double-quant-bits",
             "ch07-gptq-act-order", "ch07-smoothquant-factor", "ch07-kv-quant-why", "ch07-decode-weight-only"])
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# * A 7B model is 28 GB in FP32 and about 3.6 GB in 4-bit with group scales; the KV cache
#   ($2 L H_{kv} d_{head} T B$ values) can rival it at long contexts and large batches.
# * Decoding reads every weight once per token: it is memory-bound, so fewer weight bytes are faster (up to the
#   bandwidth bound you measured), while prefill is compute-bound and gains little.
# * Group-wise scales (32-128 weights) make 4 bits work; they cost $16/g$ bits per weight, plus zero points.
# * NF4 puts its 16 levels at normal quantiles; double quantization shrinks the scales from 0.5 to 0.127 bits.
# * GPTQ quantizes one column at a time and pushes the error onto the rest through the inverse Hessian's Cholesky
#   factor: larger weight error, smaller output error, and most of RTN's damage at 3 and 2 bits recovered.
# * Real transformers have outlier activation channels: per-tensor INT8 activations fail; LLM.int8() keeps them in
#   float, SmoothQuant migrates them into the weights, AWQ uses them to decide which weights to protect.
# * INT8 for accuracy-critical services, 4-bit weights to fit and to decode fast on small machines, never below
#   without measuring what the text looks like.
#
# Next: **08 · Deployment**.
