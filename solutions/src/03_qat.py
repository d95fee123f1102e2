# %% [markdown] locked="title"
# # 03 · Quantization-aware training
#
# **The deployment problem.** Chapter 02 quantized a trained model after the fact (PTQ): a few calibration batches,
# no training, and at 8 bits almost no accuracy lost. Then the product team asks for 4-bit or 2-bit weights to fit
# a smaller chip, or 4-bit activations to halve the memory traffic again, and PTQ falls apart: the model was never
# trained to live on such a coarse grid. **Quantization-aware training (QAT)** fine-tunes the model *with the
# quantizer in the loop*, so the weights learn to sit where the grid can represent them.
#
# In this chapter you build, and measure:
#
# 1. why rounding has no useful gradient, and the straight-through estimator (STE) that trains through it anyway,
# 2. LSQ: learning the quantizer's step size itself, with its gradient formula (PyTorch's and the paper's),
# 3. PACT: learning the clipping level of activations, and how it relates to LSQ,
# 4. QAT in coursekit: `prepare_qat` -> fine-tune -> `convert`, starting from the PTQ model, judged beyond top-1
#    (per-class accuracy, agreement with FP32),
# 5. BatchNorm during QAT, freezing observers and BN statistics, first/last-layer policies,
# 6. a per-layer sensitivity scan and a mixed-precision choice under a size budget,
# 7. AdaRound: learning whether each weight rounds up or down, without training the weights,
# 8. the accuracy-vs-bits curve of PTQ and QAT on your machine, and what QAT costs,
# 9. the converted model running in ONNX Runtime.
#
# Run the notebook cell by cell (Shift+Enter): "Run All" stops at the first exercise you have not answered yet,
# as in any nbgrader course.
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below it.
# `coursekit check notebooks/03_qat.ipynb` grades the whole notebook (hidden tests included) from a terminal.

# %% locked="setup"
# Setup: run this first. Warnings are silenced so that graded cells stay clean.
import copy
import math
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import coursekit
from coursekit._env import fast_mode
from coursekit.data import get_loaders
from coursekit.grading.sealed import expect_close, expect_equal
from coursekit.quant import QATConfig, QuantConfig, convert, prepare_qat, quantize_model
from coursekit.train import evaluate, pretrained, seed_everything, top1_agreement

FAST = fast_mode()  # True under COURSEKIT_FAST=1 and during grading: smaller runs, same checks
seed_everything(0)
torch.set_num_threads(2)
print(f"coursekit {coursekit.__version__}, torch {torch.__version__}, fast mode: {FAST}")

# %% [markdown]
# ## 1 · Where PTQ breaks
#
# The digits CNN from chapter 00 (LeNet, 21k parameters), quantized with chapter 02's `quantize_model` (static,
# symmetric per-channel weights, min/max-calibrated activations) at shrinking weight widths:

# %%
model = pretrained("lenet", "digits", progress=False)
train_loader, val_loader, test_loader = get_loaders("digits", batch_size=64)
calibration = [batch for _, batch in zip(range(8), train_loader)]
fp32_acc = evaluate(model, test_loader)["accuracy"]
print(f"FP32        {fp32_acc:.1%}")
ptq_accs = {}
for w_bits in (8, 4, 3, 2):
    ptq = quantize_model(model, QuantConfig(weight_bits=w_bits, act_bits=8), calibration)
    ptq_accs[w_bits] = evaluate(ptq, test_loader)["accuracy"]
    print(f"PTQ W{w_bits}A8    {ptq_accs[w_bits]:.1%}")
worst = min(ptq_accs, key=ptq_accs.get)
print(f"largest loss: W{worst}A8, {100 * (fp32_acc - ptq_accs[worst]):.1f} points below FP32")

# %% [markdown]
# Read the printout: the loss grows as the grid shrinks, and the last line names the worst width on your run.
# **Which INT2?** This chapter uses torch's (and `coursekit.quant`'s) *full two's-complement*
# symmetric grid: the codes $\{-2, -1, 0, 1\}$, so **four levels** $-2s, -s, 0, s$ per output channel with
# $s = \max|w| / 1.5$. Chapter 01 (section 6, "Two conventions for INT2") explains this grid and the *restricted*
# one, $\{-\max, 0, +\max\}$ (three levels, what `coursekit.formats` and ONNX Runtime's symmetric mode use); always
# say which one a "2-bit" number means. Nothing is wrong with the calibration: the weights were trained in float,
# and most of them now round to the same few values. To fix this the weights must *move*, which means training
# through the quantizer.
#
# ## 2 · Rounding has no gradient <a id="ste"></a>
#
# Fake quantization (chapter 02) is $\hat x = s\,(\mathrm{clamp}(\lfloor x/s \rceil + z, q_{min}, q_{max}) - z)$.
# Its derivative with respect to $x$ is the derivative of a staircase:
#
# $$\frac{\partial \lfloor x \rceil}{\partial x} = 0 \text{ almost everywhere (undefined at the jumps)}.$$
#
# Back-propagation through `torch.round` therefore returns zeros, and gradient descent never moves a weight:

# %%
x = torch.linspace(-2.5, 2.5, 1001, requires_grad=True)
torch.round(x).sum().backward()
print("gradient of round(x): all zero?", bool((x.grad == 0).all()))
fig, ax = plt.subplots(1, 2, figsize=(9, 2.8))
ax[0].plot(x.detach(), torch.round(x).detach(), label="round(x)")
ax[0].plot(x.detach(), x.detach(), "k--", lw=0.7, label="identity")
ax[0].set_title("forward: a staircase")
ax[0].legend()
ax[1].plot(x.detach(), x.grad, label="true derivative (autograd)")
ax[1].plot(x.detach(), np.ones(len(x)), "g--", label="straight-through estimate")
ax[1].set_ylim(-0.2, 1.3)
ax[1].set_title("backward: zero, or 1 with the STE")
ax[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# **The straight-through estimator** (Bengio et al. 2013; Jacob et al. 2018; Krishnamoorthi 2018, sec. 3.2) keeps
# the staircase in the forward pass but pretends, in the backward pass, that rounding is the identity. Only the
# clamp keeps its true derivative: values pushed outside the integer range get no gradient, because moving them a
# little would not change the output.
#
# $$\frac{\partial \hat x}{\partial x} \approx \begin{cases} 1 & q_{min} \le \lfloor x/s \rceil + z \le q_{max} \\
# 0 & \text{otherwise.}\end{cases}$$
#
# A detail that matters for exact agreement with PyTorch: the test uses the **rounded** code. With $s = 0.5$ and
# int8, $x = 63.74$ gives $x/s = 127.48 \to 127$: inside, gradient 1, although $127.48 > 127$.
#
# ### Exercise 1 · The STE as an autograd function
#
# Complete `STEFakeQuant`, a `torch.autograd.Function` for **per-tensor** fake quantization with torch's rounding
# (`torch.round(x * (1 / scale))`, half to even):
#
# * `forward(ctx, x, scale, zero_point, qmin, qmax)` returns `scale * (clamp(round(x * (1/scale)) + zero_point,
#   qmin, qmax) - zero_point)` and saves what backward needs (`ctx.save_for_backward(...)`);
# * `backward(ctx, grad_output)` returns the STE gradient for `x` and `None` for each of the other five inputs.
#
# `scale` is a Python float, `zero_point`, `qmin`, `qmax` are ints. Write it yourself with torch operations:
# coursekit's `fake_quantize_ste` / `fake_quantize` are not allowed inside it.

# %% solution="ex1_ste"
class STEFakeQuant(torch.autograd.Function):
    """Per-tensor fake quantization with the straight-through gradient (mask on the rounded code)."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):
        ### BEGIN SOLUTION
        code = torch.round(x * (1.0 / torch.tensor(scale, dtype=x.dtype))) + zero_point
        inside = (code >= qmin) & (code <= qmax)
        ctx.save_for_backward(inside)
        return (torch.clamp(code, qmin, qmax) - zero_point) * scale
        ### END SOLUTION

    @staticmethod
    def backward(ctx, grad_output):
        ### BEGIN SOLUTION
        (inside,) = ctx.saved_tensors
        return grad_output * inside, None, None, None, None
        ### END SOLUTION

# %% tests="ex1_ste_tests" points=3
# Visible tests: scale 0.5, signed int8. x/s = 127.8, 127.48, -128.6, 127.0, -128.0, 0.52
x = torch.tensor([63.9, 63.74, -64.3, 63.5, -64.0, 0.26], requires_grad=True)
y = STEFakeQuant.apply(x, 0.5, 0, -128, 127)
expect_close(y.tolist(), [63.5, 63.5, -64.0, 63.5, -64.0, 0.5], what="forward of STEFakeQuant (s=0.5, int8)",
             wrong={"you returned the integer codes: multiply by the scale (after subtracting the zero point)":
                    [127, 127, -128, 127, -128, 1]})
y.sum().backward()
expect_equal(x.grad.tolist(), [0.0, 1.0, 0.0, 1.0, 1.0, 1.0], what="STE gradient", wrong={
    "gradient 1 everywhere: the clamp must block the gradient where the code was clipped": [1.0] * 6,
    "mask computed on the unrounded x/s (127.48 > 127): use the rounded code, as torch does": [0, 0, 0, 1, 1, 1],
    "strict inequalities: codes equal to qmin or qmax are inside (use <= and >=)": [0, 1, 0, 1, 0, 1]})
### BEGIN HIDDEN TESTS
from unittest import mock

import torch

from coursekit.grading.sealed import expect_close, expect_equal, forbid, sealed_test

# Wrong answers caught (each verified to fail): no clip mask (gradient 1 everywhere); mask on the unrounded x/s
# (Esser's form, not torch's); strict inequalities (codes at qmin/qmax blocked); division x / scale instead of torch's
# reciprocal (differs at near-ties); round half away from zero (floor(x/s + 0.5)); zero point ignored; integer codes
# returned (no dequantization); delegating to coursekit.quant.fake_quantize_ste / fake_quantize (forbidden).
EX1_CASES = [(0.1, 0, -128, 127), (0.3, 0, -8, 7), (0.07, 9, 0, 15), (0.013, 131, 0, 255), (0.45, 0, -2, 1)]


def _ex1_inputs(scale, zp, qmin, qmax, seed):
    s = torch.tensor(scale, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    ties = (torch.arange(qmin - 3, qmax + 3, dtype=torch.float32) + 0.5 - zp) * s  # round-half cases
    ties = ties[torch.linspace(0, len(ties) - 1, min(len(ties), 50)).long()]
    near = torch.cat([ties, torch.nextafter(ties, ties + 1), torch.nextafter(ties, ties - 1)])
    edges = (torch.tensor([qmin - 0.5, qmin - 0.49, qmin, qmax, qmax + 0.49, qmax + 0.5]) - zp) * s
    rand = torch.randn(120, generator=gen) * s * (qmax - qmin) / 3
    x = torch.cat([near, edges, rand])
    return x, torch.randn(x.shape, generator=gen)


def _ex1_cases():
    return [(float(torch.tensor(sc, dtype=torch.float32)), zp, lo, hi) for sc, zp, lo, hi in EX1_CASES]


def _probe():
    import coursekit.quant as cq
    from coursekit.quant import primitives

    out = []
    blocked = {k: v for k, v in globals().items() if v is cq.fake_quantize_ste or v is cq.fake_quantize}

    def refuse(*args, **kwargs):
        raise AssertionError("Exercise 1 asks you to write the STE yourself: coursekit's fake quantization is not "
                             "allowed inside STEFakeQuant")

    with forbid("coursekit.quant.fake_quantize_ste", "coursekit.quant.lsq.fake_quantize_ste",
                "coursekit.quant.fake_quantize", "coursekit.quant.primitives.fake_quantize",
                "coursekit.quant.primitives.fake_quantize_parts", exercise="Exercise 1"), \
            mock.patch.object(primitives.FakeQuantSTE, "apply", refuse):
        globals().update(dict.fromkeys(blocked, refuse))
        try:
            for i, (scale, zp, qmin, qmax) in enumerate(_ex1_cases()):
                x, g = _ex1_inputs(scale, zp, qmin, qmax, 100 + i)
                x = x.clone().requires_grad_()
                y = STEFakeQuant.apply(x, scale, zp, qmin, qmax)
                (y * g).sum().backward()
                out.append({"y": y.detach(), "grad": x.grad})
        finally:
            globals().update(blocked)
    return out


def _check(out):
    expect_equal(len(out), len(EX1_CASES), what="number of hidden cases")
    for i, ((scale, zp, qmin, qmax), got) in enumerate(zip(_ex1_cases(), out)):
        x, g = _ex1_inputs(scale, zp, qmin, qmax, 100 + i)
        xr = x.clone().requires_grad_()
        y = torch.fake_quantize_per_tensor_affine(xr, scale, zp, qmin, qmax)
        (y * g).sum().backward()
        s = torch.tensor(scale)
        code = torch.round(x * (1.0 / s)) + zp
        what = f"STEFakeQuant on hidden case {i + 1} (scale={scale:.4g}, zero point {zp}, range [{qmin}, {qmax}])"
        expect_close(got["y"], y.detach().tolist(), what=f"forward of {what}", rtol=0, atol=1e-6, wrong={
            "you divided x / scale: torch multiplies by the reciprocal, x * (1 / scale), and the two round "
            "differently near ties": ((torch.clamp(torch.round(x / s) + zp, qmin, qmax) - zp) * s).tolist(),
            "round half away from zero (floor(v + 0.5)): torch.round rounds half to even":
                ((torch.clamp(torch.floor(x * (1.0 / s) + 0.5) + zp, qmin, qmax) - zp) * s).tolist(),
            "zero point ignored: add it before the clamp and subtract it after":
                (torch.clamp(torch.round(x * (1.0 / s)), qmin, qmax) * s).tolist(),
            "you returned the integer codes: dequantize with (q - zero_point) * scale":
                torch.clamp(code, qmin, qmax).tolist()})
        vpos = x * (1.0 / s) + zp
        expect_close(got["grad"], xr.grad.tolist(), what=f"gradient of {what}", rtol=0, atol=1e-6, wrong={
            "gradient 1 everywhere: the clamp must block the gradient where the code was clipped": g.tolist(),
            "mask on the unrounded x/s + z: torch masks on the rounded code round(x/s) + z":
                (g * ((vpos >= qmin) & (vpos <= qmax))).tolist(),
            "strict inequalities: codes equal to qmin or qmax are inside": (g * ((code > qmin) & (code < qmax))).tolist()})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 1 passed")

# %% [markdown]
# coursekit's version is `coursekit.quant.fake_quantize_ste` (per tensor or per channel), whose forward pass *is*
# chapter 02's `fake_quantize` and whose gradient is tested bit for bit against `torch.fake_quantize_per_tensor_affine`
# and `torch.fake_quantize_per_channel_affine`.
#
# ### The STE's bias
#
# The STE gradient is the gradient of a *different* function (the identity), so it is biased: it keeps pushing a
# weight even where the quantized loss is flat. Take one weight $w$ quantized with step $s = 0.25$ and the loss
# $L(w) = (\hat w - 0.3)^2$. The true loss (left) is a staircase with a flat bottom; the STE "sees" the smooth
# parabola's slope at $\hat w$ (right), non-zero on flat steps, and it flips sign at every rounding boundary
# near the target, which is why low-bit weights oscillate between two grid points late in QAT (Nagel et al. 2022,
# "Overcoming oscillations in quantization-aware training").

# %%
from coursekit.quant import fake_quantize_ste

w = torch.linspace(-0.2, 0.8, 801, requires_grad=True)
w_hat = fake_quantize_ste(w, 0.25, 0, -2, 1)
loss = (w_hat - 0.3) ** 2
loss.sum().backward()
fig, ax = plt.subplots(1, 2, figsize=(9, 2.6))
ax[0].plot(w.detach(), loss.detach())
ax[0].set_title("true loss of the quantized weight")
ax[0].set_xlabel("w")
ax[1].plot(w.detach(), w.grad, c="#e83")
ax[1].axhline(0, c="k", lw=0.5)
ax[1].set_title("STE gradient: non-zero on flat steps")
ax[1].set_xlabel("w")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3 · LSQ: learn the step size too <a id="lsq"></a>
#
# PTQ picks the step $s$ from statistics (min/max, MSE, entropy) and then keeps it. **Learned Step Size
# Quantization** (Esser et al. 2020) makes $s$ a trainable parameter (zero point 0) and lets the task loss choose
# the trade-off between rounding error (small $s$ wanted) and clipping error (large $s$ wanted). With $v = x/s$ and
# $\hat x = s\,\mathrm{clamp}(\lfloor v \rceil, q_{min}, q_{max})$, the STE gives two versions of the same idea.
#
# **Esser et al. 2020, eq. 3** put the cases on the *unrounded* $v$ (with $Q_N = -q_{min}$, $Q_P = q_{max}$):
#
# $$\frac{\partial \hat x}{\partial s} = \begin{cases} \lfloor v \rceil - v & q_{min} < v < q_{max} \\
# q_{min} & v \le q_{min} \\ q_{max} & v \ge q_{max} \end{cases}$$
#
# **PyTorch** (`torch._fake_quantize_learnable_per_tensor_affine`, and so `coursekit.quant.lsq_fake_quantize`,
# which is tested bit for bit against it) puts them on the *rounded* code, the same mask as its STE:
#
# $$\frac{\partial \hat x}{\partial s} = \begin{cases} \lfloor v \rceil - v & q_{min} \le \lfloor v \rceil \le q_{max}
# \\ q_{min} & \lfloor v \rceil < q_{min} \\ q_{max} & \lfloor v \rceil > q_{max} \end{cases}$$
#
# They agree everywhere except on the half-step bands at the two ends of the range, $q_{max} \le v < q_{max} + \tfrac12$
# and $q_{min} - \tfrac12 < v \le q_{min}$ (where exactly $v = q_{min} - \tfrac12$ falls follows round-half-to-even):
# there PyTorch sees an *inside* value with a small gradient $\lfloor v \rceil - v \in (-\tfrac12, \tfrac12)$, Esser a
# *clipped* one with gradient $q_{max}$ or $q_{min}$. The same bands decide whether $x$ itself gets a gradient. In
# both, the step's gradient is scaled by $g = 1/\sqrt{N\,Q_P}$ ($N$ elements share the step) so it moves at the
# pace of the weights (eq. 4-5). The step starts at $2\,\mathrm{mean}(|x|)/\sqrt{Q_P}$, or, in this course, at the
# PTQ scale. Inside the range the gradient is a sawtooth: values just above a grid point ask for a *larger* step,
# values just below for a smaller one; clipped values always ask for a larger step.

# %%
from coursekit.quant import lsq_fake_quantize


def esser_step_grad(v, qmin, qmax):
    """Esser et al. 2020, eq. 3, per element: cases on the unrounded v = x / s."""
    return torch.where(v <= qmin, torch.full_like(v, float(qmin)),
                       torch.where(v >= qmax, torch.full_like(v, float(qmax)), torch.round(v) - v))


def torch_step_grad(v, qmin, qmax):
    """PyTorch's variant, through coursekit's LSQ autograd function (step 1, so x = v), one element at a time."""
    grads = []
    step = torch.tensor([1.0], requires_grad=True)
    for value in v:
        step.grad = None
        lsq_fake_quantize(value.reshape(1), step, qmin, qmax).sum().backward()
        grads.append(step.grad.item())
    return torch.tensor(grads)


QMIN3, QMAX3 = -4, 3  # 3-bit signed
v = torch.linspace(-6, 6, 2001)
g_torch, g_esser = torch_step_grad(v, QMIN3, QMAX3), esser_step_grad(v, QMIN3, QMAX3)
fig, ax = plt.subplots(figsize=(7.5, 2.8))
ax.plot(v, g_torch, label="PyTorch (cases on round(v))")
ax.plot(v, g_esser, "--", label="Esser et al. eq. 3 (cases on v)")
ax.axvspan(QMIN3 - 0.5, QMIN3, color="#e83", alpha=0.2, label="where they differ")
ax.axvspan(QMAX3, QMAX3 + 0.5, color="#e83", alpha=0.2)
ax.set_xlabel("v = x / s")
ax.set_ylabel("d x_hat / d s")
ax.set_title("LSQ step-size gradient, 3-bit signed [-4, 3]")
ax.legend(fontsize=8)
plt.show()
near = torch.tensor([2.7, 3.0, 3.2, 3.49, 3.5, 3.8, -3.7, -4.0, -4.3, -4.5, -4.6])
print(f"{'v':>6} {'PyTorch':>9} {'Esser':>7}")
for value, a, b in zip(near.tolist(), torch_step_grad(near, QMIN3, QMAX3).tolist(),
                       esser_step_grad(near, QMIN3, QMAX3).tolist()):
    print(f"{value:6.2f} {a:9.2f} {b:7.2f}" + ("   <- differ" if abs(a - b) > 1e-6 else ""))
differ = (g_torch - g_esser).abs() > 1e-6
print(f"on the grid above they differ on {differ.float().mean():.1%} of the points, all within "
      f"[{v[differ].abs().min():.2f}, {v[differ].abs().max():.2f}] in |v|")

# %% [markdown]
# On a real tensor few values sit in those bands, so the two trainings behave alike; the difference matters for
# bit-exact tests and for explaining a gradient you computed by hand. This course follows PyTorch.
#
# ### Exercise 2 · The LSQ step-size gradient
#
# Write two functions, with zero point 0, a tensor `x`, a positive float step `s`, and PyTorch's convention (compute
# $v$ as `x * (1 / s)`, round half to even with `torch.round`, cases on the rounded code):
#
# * `lsq_step_grad(x, s, qmin, qmax)`: the **element-wise** derivative $\partial \hat x / \partial s$ (no gradient
#   scale), a tensor shaped like `x`;
# * `lsq_step_total(x, s, qmin, qmax, grad_output)`: the gradient the step actually receives, as a Python float:
#   $g \sum_i \texttt{grad\_output}_i \, \partial \hat x_i / \partial s$ with Esser's scale
#   $g = 1/\sqrt{N\,Q_P}$, $N$ = `x.numel()`, $Q_P$ = `qmax`.
#
# coursekit's `lsq_fake_quantize` and torch's learnable fake-quant ops are not allowed inside them.

# %% solution="ex2_lsq"
def lsq_step_grad(x, s, qmin, qmax):
    """Element-wise d x_hat / d s of LSQ (zero point 0): round(v) - v inside, qmin / qmax where clipped."""
    ### BEGIN SOLUTION
    v = x * (1.0 / torch.tensor(s, dtype=x.dtype))
    q = torch.round(v)
    return torch.where(q < qmin, torch.full_like(x, float(qmin)),
                       torch.where(q > qmax, torch.full_like(x, float(qmax)), q - v))
    ### END SOLUTION


def lsq_step_total(x, s, qmin, qmax, grad_output):
    """dL/ds as LSQ applies it: g * sum(grad_output * d x_hat / d s), g = 1 / sqrt(N * qmax)."""
    ### BEGIN SOLUTION
    g = 1.0 / math.sqrt(x.numel() * qmax)
    return float(g * (grad_output * lsq_step_grad(x, s, qmin, qmax)).sum())
    ### END SOLUTION

# %% tests="ex2_lsq_tests" points=3
# Visible tests: s = 0.25, signed int8. v = x / s = 2.8, 160, -160, 2, 127.2, -128.2
xv = torch.tensor([0.7, 40.0, -40.0, 0.5, 31.8, -32.05])
expect_close(lsq_step_grad(xv, 0.25, -128, 127).tolist(), [0.2, 127.0, -128.0, 0.0, -0.2, 0.2],
             what="lsq_step_grad(x, 0.25, -128, 127)", atol=1e-4, wrong={
                 "cases on the unrounded v (Esser's eq. 3): 127.2 rounds to 127, which PyTorch treats as inside":
                     [0.2, 127.0, -128.0, 0.0, 127.0, -128.0],
                 "sign flipped inside: the gradient is round(v) - v, not v - round(v)": [-0.2, 127, -128, 0, 0.2, -0.2],
                 "clipped values get 0: LSQ gives them qmin or qmax (the clipping code)": [0.2, 0, 0, 0, -0.2, 0.2],
                 "qmin and qmax swapped for the clipped values": [0.2, -128.0, 127.0, 0.0, -0.2, 0.2]})
go = torch.tensor([1.0, 0.5, -1.0, 2.0, 1.0, 1.0])
g_scale = 1 / math.sqrt(6 * 127)
total = (0.2 + 0.5 * 127 + 128 + 0 - 0.2 + 0.2)
expect_close(lsq_step_total(xv, 0.25, -128, 127, go), g_scale * total, what="lsq_step_total(x, 0.25, -128, 127, go)",
             rtol=1e-4, wrong={"the gradient scale g = 1/sqrt(N * Qp) is missing": total,
                               "g = 1/sqrt(N): Qp is missing under the root": total / math.sqrt(6),
                               "g = 1/(N * Qp): the scale is one over the SQUARE ROOT of N * Qp": total / (6 * 127),
                               "g = sqrt(N * Qp): the scale divides, it does not multiply": total * math.sqrt(6 * 127),
                               "wrong sign": -g_scale * total})
### BEGIN HIDDEN TESTS
import math

import torch

from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811 (each hidden section stands alone)

# Wrong answers caught (each verified to fail): cases on the unrounded v (Esser's eq. 3) instead of the rounded code;
# sign flipped inside; 0 for clipped values; qmin/qmax swapped; division x / s (differs from torch near ties);
# gradient scale missing, 1/sqrt(N), 1/(N Qp), sqrt(N Qp), or the wrong sign; mean instead of sum; delegating to
# coursekit's lsq_fake_quantize / LSQFunction or torch's learnable fake-quant op (forbidden).
EX2_CASES = [(0.1, -128, 127), (0.3, -8, 7), (0.07, 0, 15), (0.013, -2, 1), (0.45, 0, 255)]
EX2_N = 300


def _ex2_inputs(i, s, qmin, qmax):
    gen = torch.Generator().manual_seed(200 + i)
    st = torch.tensor(s, dtype=torch.float32)
    band = torch.tensor([qmax + 0.1, qmax + 0.3, qmax + 0.45, qmin - 0.2, qmin - 0.45, qmax, qmin]) * st
    ties = (torch.arange(qmin - 2, qmax + 2, dtype=torch.float32) + 0.5) * st
    x = torch.cat([band, torch.nextafter(ties, ties + 1)[:60], torch.nextafter(ties, ties - 1)[:60],
                   torch.randn(EX2_N, generator=gen) * st * (qmax - qmin) / 2.5])
    return x, torch.randn(x.shape, generator=gen)


def _ex2_cases():
    return [(float(torch.tensor(s, dtype=torch.float32)), lo, hi) for s, lo, hi in EX2_CASES]


def _probe():
    names = ["coursekit.quant.lsq_fake_quantize", "coursekit.quant.lsq.lsq_fake_quantize",
             "torch._fake_quantize_learnable_per_tensor_affine", "torch._fake_quantize_learnable_per_channel_affine"]
    import coursekit.quant as cq

    def refuse(*args, **kwargs):
        raise AssertionError("Exercise 2 asks you to write the LSQ gradient yourself: coursekit's LSQ is not allowed")

    blocked = {k: v for k, v in globals().items() if v is cq.lsq_fake_quantize or v is cq.LSQFunction}
    out = []
    with forbid(*names, exercise="Exercise 2"):
        globals().update(dict.fromkeys(blocked, refuse))
        try:
            for i, (s, qmin, qmax) in enumerate(_ex2_cases()):
                x, go = _ex2_inputs(i, s, qmin, qmax)
                out.append({"elem": lsq_step_grad(x, s, qmin, qmax), "total": lsq_step_total(x, s, qmin, qmax, go)})
        finally:
            globals().update(blocked)
    return out


def _check(out):
    for i, ((s, qmin, qmax), got) in enumerate(zip(_ex2_cases(), out)):
        x, go = _ex2_inputs(i, s, qmin, qmax)
        n = x.numel()
        steps = torch.full((n,), s, requires_grad=True)  # one "channel" per element: the element-wise gradient
        torch._fake_quantize_learnable_per_channel_affine(x.reshape(n, 1), steps, torch.zeros(n), 0, qmin, qmax,
                                                          1.0).sum().backward()
        elem = steps.grad.tolist()
        st = torch.tensor(s)
        v = x * (1.0 / st)
        r = torch.round(v)
        inside = (r >= qmin) & (r <= qmax)
        clipped = torch.where(r < qmin, float(qmin), float(qmax))
        vd = x / st
        rd = torch.round(vd)
        division = torch.where((rd >= qmin) & (rd <= qmax), rd - vd, torch.where(rd < qmin, float(qmin), float(qmax)))
        esser = torch.where(v <= qmin, float(qmin), torch.where(v >= qmax, float(qmax), r - v))
        what = f"lsq_step_grad on hidden case {i + 1} (s={s:.4g}, range [{qmin}, {qmax}])"
        expect_close(got["elem"], elem, what=what, rtol=1e-4, atol=1e-4, wrong={
            "cases on the unrounded v (Esser's eq. 3): PyTorch's cases use the rounded code round(v)": esser.tolist(),
            "sign flipped inside: round(v) - v, not v - round(v)": torch.where(inside, v - r, clipped).tolist(),
            "clipped values get 0: LSQ gives them qmin or qmax": torch.where(inside, r - v, 0.0).tolist(),
            "qmin and qmax swapped for the clipped values":
                torch.where(inside, r - v, torch.where(r < qmin, float(qmax), float(qmin))).tolist(),
            "v computed as x / s: PyTorch multiplies by the reciprocal (the rounding differs near ties)":
                division.tolist()})
        grad = torch.tensor(elem)
        g = 1.0 / math.sqrt(x.numel() * qmax)
        step = torch.tensor([s], requires_grad=True)
        y = torch._fake_quantize_learnable_per_tensor_affine(x, step, torch.zeros(1), qmin, qmax, g)
        (y * go).sum().backward()
        plain = float((go * grad).sum())
        expect_close(got["total"], step.grad.item(), what=f"lsq_step_total on hidden case {i + 1}", rtol=1e-3,
                     atol=1e-5, wrong={"the gradient scale g = 1/sqrt(N * Qp) is missing": plain,
                                       "g = 1/sqrt(N): Qp is missing under the root": plain / math.sqrt(x.numel()),
                                       "g = 1/(N * Qp): the scale is 1/SQRT(N * Qp)": plain / (x.numel() * qmax),
                                       "g = sqrt(N * Qp): the scale divides": plain * math.sqrt(x.numel() * qmax),
                                       "wrong sign": -plain * g,
                                       "mean instead of sum over the elements": plain * g / x.numel()})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 2 passed")

# %% [markdown]
# `coursekit.quant.LSQQuantizer` wraps this in a module (per tensor or per channel, Esser's initialisation, the
# gradient scale), and `lsq_fake_quantize` implements the backward pass explicitly (`LSQFunction`); both gradients
# agree bit for bit with `torch._fake_quantize_learnable_per_tensor_affine` / `..._per_channel_affine`.

# %% [markdown]
# ## 4 · PACT: learn where activations clip <a id="pact"></a>
#
# Weights have a known range; activations do not, and after a ReLU their distribution has a long tail. A fixed
# clipping level is a compromise between clipping error (too low) and rounding error (too high). **PACT**
# (Choi et al. 2018, "Parameterized Clipping Activation") replaces the ReLU by a clipped ReLU whose upper level
# $\alpha$ is a parameter of the network, and quantizes on $k$ unsigned bits ($Q_P = 2^k - 1$):
#
# $$y = \mathrm{clamp}(x, 0, \alpha), \qquad y_q = \Big\lfloor y\,\frac{Q_P}{\alpha} \Big\rceil \frac{\alpha}{Q_P}
# \qquad\text{(eq. 1-2)}$$
#
# With the STE for the rounding, the gradients are (eq. 3)
#
# $$\frac{\partial y_q}{\partial x} = \begin{cases} 1 & 0 \le x < \alpha \\ 0 & \text{otherwise} \end{cases}
# \qquad \frac{\partial y_q}{\partial \alpha} = \begin{cases} 1 & x \ge \alpha \\ 0 & x < \alpha. \end{cases}$$
#
# Only **clipped** values push $\alpha$, and always upwards (a larger $\alpha$ would clip them less); the rounding error
# of everything inside the range gives it no gradient. Something must pull $\alpha$ down: the task loss, and an L2
# penalty $\lambda\alpha^2$ that the paper adds to the loss.
#
# **Relation to LSQ.** On an unsigned range the LSQ step is $s = \alpha / Q_P$, so LSQ's gradient with respect to
# $\alpha$ is $\frac{1}{Q_P}\,\partial\hat x/\partial s$: exactly $1$ for clipped values (PACT's), and
# $(\lfloor v\rceil - v)/Q_P$ inside the range, where PACT has $0$. LSQ is PACT plus the rounding term (and the gradient
# scale). The demo fits $\alpha$ to LeNet's real activations (the input of the second conv, 2-bit) with a
# *reconstruction* loss $\overline{(y_q - x)^2}$, the setting where the missing term shows: PACT without the penalty
# only ever raises $\alpha$; with it, $\alpha$ lands wherever $\lambda$ puts it; LSQ finds the error-minimising level
# by itself. (`coursekit.quant.pact` holds `pact_quantize` and a `PACTQuantizer` module.)

# %%
from coursekit.quant.pact import pact_quantize
from coursekit.surgery import get_layer

acts = []
hook = get_layer(model, "features.4").register_forward_pre_hook(lambda module, args: acts.append(args[0].detach()))
with torch.no_grad():
    model(calibration[0][0])
hook.remove()
a_x = torch.cat(acts).flatten()
PACT_BITS, PACT_STEPS = 2, (60 if FAST else 150)
a_qmax = 2**PACT_BITS - 1
grid = torch.linspace(0.05, float(a_x.max()), 120)
grid_mse = torch.stack([(pact_quantize(a_x, a.reshape(1), PACT_BITS) - a_x).pow(2).mean() for a in grid])
best_alpha = float(grid[grid_mse.argmin()])


def fit_alpha(kind, lam=0.0, steps=PACT_STEPS):
    alpha = torch.tensor([0.5 * float(a_x.max())], requires_grad=True)  # start at half the largest activation
    opt = torch.optim.Adam([alpha], lr=0.05)
    path = []
    for _ in range(steps):
        if kind == "pact":
            y = pact_quantize(a_x, alpha, PACT_BITS)
        else:  # LSQ on the unsigned range with step alpha / Qp
            y = lsq_fake_quantize(a_x, alpha / a_qmax, 0, a_qmax)
        loss = (y - a_x).pow(2).mean() + lam * alpha.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        path.append(alpha.item())
    return path


paths = {"PACT, no penalty": fit_alpha("pact"), "PACT, lambda = 0.01": fit_alpha("pact", 0.01),
         "PACT, lambda = 0.1": fit_alpha("pact", 0.1), "LSQ (alpha = s Qp)": fit_alpha("lsq")}
fig, ax = plt.subplots(figsize=(7.5, 2.8))
for label, path in paths.items():
    ax.plot(path, label=label)
ax.axhline(best_alpha, color="k", ls="--", lw=0.8, label="error-minimising alpha (grid search)")
ax.axhline(float(a_x.max()), color="grey", ls=":", lw=0.8, label="max activation")
ax.set_xlabel("Adam step")
ax.set_ylabel("alpha")
ax.legend(fontsize=7)
plt.show()
for label, path in paths.items():
    a = path[-1]
    err = float((pact_quantize(a_x, torch.tensor([a]), PACT_BITS) - a_x).pow(2).mean())
    print(f"{label:22s} alpha {a:5.2f}  reconstruction MSE {err:.4f}  (best {grid_mse.min():.4f} at {best_alpha:.2f})")

# %% [markdown]
# In a network the task loss supplies the downward pull (a clipped activation that mattered raises the loss less
# than the rounding noise of a huge range), so PACT works as published; but the printout shows why LSQ, which adds
# the rounding term, needs no hand-tuned $\lambda$ to find a sensible range.
#
# ## 5 · QAT in coursekit: prepare, fine-tune, convert <a id="recipe"></a>
#
# The recipe (Jacob et al. 2018; Krishnamoorthi 2018, sec. 3.2; Esser et al. 2020):
#
# 1. **Start from the trained FP32 model and the PTQ scales.** `prepare_qat(model, QATConfig(...), calibration)`
#    copies the model, folds BatchNorm, and swaps every Linear/Conv for a `QATLayer` with an LSQ weight quantizer
#    (per channel) and an LSQ input quantizer. With `init="ptq"` the steps start at exactly chapter 02's scales:
#    before training, the QAT model *is* the PTQ model (a tested property).
# 2. **Fine-tune briefly** with a small learning rate (a few epochs, not a full training run).
# 3. **`convert`** freezes the learned steps into chapter 02's fake-quant (QDQ) model type, so deployment is
#    unchanged: same export, same ONNX Runtime path.

# %%
from coursekit.quant import step_sizes
from coursekit.train import finetune

W_BITS, A_BITS = 2, 8
EPOCHS = 3 if FAST else 10
ptq2 = quantize_model(model, QuantConfig(weight_bits=W_BITS, act_bits=A_BITS), calibration)
seed_everything(0)
qat2 = prepare_qat(model, QATConfig(weight_bits=W_BITS, act_bits=A_BITS), calibration)
x_test = next(iter(test_loader))[0]
with torch.no_grad():
    same = torch.equal(qat2.eval()(x_test), ptq2(x_test))
print(qat2.features[0])
print("QAT model before training == PTQ model:", same)
history = finetune(qat2, train_loader, EPOCHS, lr=0.01, val_loader=val_loader)
qat2_int = convert(qat2)
ptq2_acc, qat2_acc = evaluate(ptq2, test_loader)["accuracy"], evaluate(qat2_int, test_loader)["accuracy"]
print(f"W{W_BITS}A{A_BITS}: FP32 {fp32_acc:.1%}  PTQ {ptq2_acc:.1%}  QAT {qat2_acc:.1%} "
      f"after {EPOCHS} epochs ({history['train_seconds']:.1f} s); validation per epoch: "
      + ", ".join(f"{a:.1%}" for a in history["val_accuracy"]))

# %% [markdown]
# ### Beyond top-1: which classes pay, and how many answers change
#
# A mean accuracy can hide a class that collapsed: the rare-class risk chapter 02 warned about. Two more numbers
# per model: the **per-class accuracy** (recall of each digit, `evaluate(...)["per_class"]`) and the **top-1
# agreement** with the FP32 model (`top1_agreement`: the share of test inputs on which both predict the same class;
# one minus it counts the "flips", answers that change even where accuracy does not).

# %%
compared = {"FP32": model, f"PTQ W{W_BITS}A{A_BITS}": ptq2, f"QAT W{W_BITS}A{A_BITS}": qat2_int}
reports = {name: evaluate(m, test_loader) for name, m in compared.items()}
agreement = {name: top1_agreement(m, model, test_loader) for name, m in compared.items()}
print(f"{'model':10s} {'top-1':>6} {'worst class':>12} {'agrees with FP32':>17}")
for name, r in reports.items():
    worst_class = int(np.nanargmin(r["per_class"]))
    print(f"{name:10s} {r['accuracy']:6.1%} {r['per_class'][worst_class]:8.1%} ({worst_class}) {agreement[name]:17.1%}")
fig, ax = plt.subplots(figsize=(8, 2.8))
width = 0.27
for k, (name, r) in enumerate(reports.items()):
    ax.bar(np.arange(10) + (k - 1) * width, [100 * a for a in r["per_class"]], width, label=name)
ax.set_xticks(range(10))
ax.set_xlabel("digit")
ax.set_ylabel("accuracy (%)")
ax.set_ylim(0, 105)
ax.legend(fontsize=8, loc="lower right")
plt.show()
ptq_r, qat_r = reports[f"PTQ W{W_BITS}A{A_BITS}"], reports[f"QAT W{W_BITS}A{A_BITS}"]
drop = [f - p for f, p in zip(reports["FP32"]["per_class"], ptq_r["per_class"])]
hit = int(np.nanargmax(drop))
print(f"PTQ hurts digit {hit} most ({reports['FP32']['per_class'][hit]:.0%} -> {ptq_r['per_class'][hit]:.0%}); after QAT "
      f"it is at {qat_r['per_class'][hit]:.0%}. PTQ changes {1 - agreement[f'PTQ W{W_BITS}A{A_BITS}']:.0%} of the "
      f"FP32 answers, QAT {1 - agreement[f'QAT W{W_BITS}A{A_BITS}']:.0%}.")

# %% [markdown]
# With about 36 test images per digit, one image moves a class by almost 3 points: read per-class numbers as
# coarse. Agreement needs no labels, so it is the number to watch on production traffic.
#
# ### Explore: how the step sizes move
#
# `finetune` records every quantizer's step after each epoch. Pick a layer and an epoch: the left panel shows each
# output channel's weight step relative to its PTQ start, the middle one the steps at that epoch against the PTQ
# start, the right one the activation steps of all layers. Things to look for: how far the steps move at all (the
# gradient scale $g$ keeps them slow, so the weights do most of the repair), which layers move most, and any
# activation step that runs away from its start, a known LSQ instability at very low bit widths and the reason
# some recipes give step sizes a lower learning rate or freeze activation ranges late in training. Change `W_BITS`
# above and rerun to compare with 4 or 8 bits.

# %%
from coursekit.quant.explore import step_size_explorer

first, last = history["step_sizes"][0], history["step_sizes"][-1]
for name in first:
    w_change = (last[name]["weight"] / first[name]["weight"] - 1).abs().max().item()
    a_change = (last[name]["input"] / first[name]["input"]).item()
    print(f"{name:14s} largest weight-step change {w_change:6.1%}   activation step x{a_change:.2f}")
step_size_explorer(history)

# %% [markdown]
# ### QAT from the PTQ model vs from scratch
#
# Why start from the trained model? Train the *same* architecture with the *same* QAT budget from random weights
# (steps initialised with Esser's rule, `init="lsq"`):

# %%
from coursekit.models import build_model

seed_everything(0)
scratch = prepare_qat(build_model("lenet", "digits"), QATConfig(weight_bits=W_BITS, act_bits=A_BITS, init="lsq"))
scratch_history = finetune(scratch, train_loader, EPOCHS, lr=0.01)
scratch_acc = evaluate(convert(scratch), test_loader)["accuracy"]
print(f"same {EPOCHS} epochs of W{W_BITS}A{A_BITS} QAT: from the PTQ model {qat2_acc:.1%}, "
      f"from scratch {scratch_acc:.1%}")

# %% [markdown]
# A few epochs repair quantization damage; they do not train a network. That is why QAT is a *fine-tune* of the
# pretrained model (typically a few percent of the original schedule, at 1-10 % of its learning rate), and why good
# initial scales matter, especially for learned step sizes.
#
# ## 6 · BatchNorm during QAT <a id="batchnorm"></a>
#
# At deployment BatchNorm is folded into the preceding conv ($W' = W\gamma/\sqrt{\sigma^2+\epsilon}$, chapter 02),
# so QAT must quantize the **folded** weights, or it trains against a rounding error the deployed model never has.
# Two ways (`QATConfig(bn=...)`):
#
# * `"fold"` (the default here): fold with the running statistics *before* QAT and train the folded conv. The
#   trained weights are exactly the deployed ones and the statistics are frozen from the start: stable and cheap,
#   the right choice for a short fine-tune of a pretrained model.
# * `"simulate"`: keep BN training (Krishnamoorthi 2018, sec. 3.2, fig. 9; torch's `ConvBn2d`): quantize
#   $W\gamma/\sigma_{running}$, rescale the conv output and apply BN with batch statistics, so BN still normalises
#   while training; `freeze_bn_stats` switches to running statistics for the last epochs (section 7). Worth it for
#   long QAT runs or QAT from scratch.
#
# Both convert to the same folded QDQ model:

# %%
from coursekit.quant import freeze_bn_stats

results = {}
for bn in ("fold", "simulate"):
    seed_everything(0)
    q = prepare_qat(model, QATConfig(weight_bits=4, act_bits=4, bn=bn), calibration)
    finetune(q, train_loader, max(EPOCHS - 1, 1), lr=0.01)
    freeze_bn_stats(q)
    finetune(q, train_loader, 1, lr=0.001)
    converted = convert(q)
    with torch.no_grad():
        gap = (q.eval()(x_test) - converted(x_test)).abs().max().item()
    results[bn] = evaluate(converted, test_loader)["accuracy"]
    print(f"bn={bn!r:11s} W4A4 QAT {results[bn]:.1%}   max |QAT model - converted model| = {gap:.2g}")

# %% [markdown]
# `"fold"` converts bit-exactly (the same tensors, the same operations); `"simulate"` applies BN after the conv
# instead of folding it into the bias, so the two agree up to float rounding.
#
# ## 7 · Freezing observers and BN statistics <a id="freezing"></a>
#
# Two things in a QAT model keep changing *besides* the weights: observer-set ranges (with `method="ste"`, each
# activation quantizer tracks an exponential moving average of the batch min/max, Jacob et al. 2018, sec. 3.1) and
# BatchNorm statistics (with `bn="simulate"`). Both move the grid: a new activation range changes the scale, new BN
# statistics change the folded weight $W\gamma/\sigma$ and so its rounding. Early in QAT that is what you want (the
# ranges adapt to the quantized network's own activations); late in QAT it makes the weights chase a moving target,
# and the model you convert uses whatever grid the last batch left. Hence the standard schedule (Krishnamoorthi
# 2018, sec. 3.2; torch's QAT recipe): train with everything live, then **freeze the observers**
# (`freeze_observers`) and **BN statistics** (`freeze_bn_stats`) for the last part of training, so the final
# epochs fine-tune the weights for exactly the grid that will be exported. LSQ steps are parameters, not observers:
# they keep learning (a lower learning rate late in training plays the same role).
#
# The demo runs the same STE-QAT fine-tune (W4A4, `bn="simulate"`) twice, once with everything live to the end and
# once frozen for the last third, and records the second conv's activation scale after every optimizer step
# through a training callback (`coursekit.train.Callback.after_step`):

# %%
from coursekit.quant import freeze_observers
from coursekit.train import Callback


class ScaleRecorder(Callback):
    """Records one layer's activation scale after each step; freezes observers and BN at step `freeze_at`."""

    def __init__(self, layer, freeze_at=None):
        self.layer, self.freeze_at, self.scales = layer, freeze_at, []

    def after_step(self, qmodel, step):
        self.scales.append(get_layer(qmodel, self.layer).input_quantizer.scale.item())
        if self.freeze_at is not None and len(self.scales) == self.freeze_at:
            freeze_observers(qmodel)
            freeze_bn_stats(qmodel)


FREEZE_EPOCHS = 3 if FAST else 6
total_steps = FREEZE_EPOCHS * len(train_loader)
freeze_runs = {}
for label, freeze_at in (("live to the end", None), ("frozen for the last third", 2 * total_steps // 3)):
    seed_everything(0)
    q = prepare_qat(model, QATConfig(weight_bits=4, act_bits=4, method="ste", bn="simulate"), calibration)
    recorder = ScaleRecorder("features.4", freeze_at)
    finetune(q, train_loader, FREEZE_EPOCHS, lr=0.01, callbacks=[recorder])
    freeze_runs[label] = (recorder.scales, evaluate(convert(q), test_loader)["accuracy"])
fig, ax = plt.subplots(figsize=(7.5, 2.6))
for label, (scales, _) in freeze_runs.items():
    ax.plot(scales, label=label)
ax.axvline(2 * total_steps // 3, color="k", ls="--", lw=0.8)
ax.set_xlabel("optimizer step")
ax.set_ylabel("activation scale (features.4)")
ax.legend(fontsize=8)
plt.show()
for label, (scales, acc) in freeze_runs.items():
    tail = scales[2 * total_steps // 3:]
    print(f"{label:26s} scale moved {abs(tail[-1] - tail[0]) / tail[0]:.2%} over the last third; "
          f"converted W4A4 accuracy {acc:.1%}")
(live_acc, frozen_acc) = (freeze_runs[k][1] for k in freeze_runs)
n_test = evaluate(model, test_loader)["n"]
verdict = ("within the half-point noise of this test set" if abs(live_acc - frozen_acc) < 0.005 else
           f"{'better' if frozen_acc > live_acc else 'worse'} by {100 * abs(frozen_acc - live_acc):.1f} points")
print(f"freezing for the last third: {verdict} on this run ({n_test} test images: one image = "
      f"{100 / n_test:.2f} points)")

# %% [markdown]
# Read the printout: once frozen, the scale is a flat line, and the final epochs train against exactly the grid
# that `convert` exports. On a model this small and a run this short the moving average moves slowly (averaging
# constant 0.01), so the accuracy difference is a few test images either way: here freezing is about stability
# and reproducibility (the exported grid is the one the last epochs trained against), not a guaranteed gain. The
# drift, and the value of freezing, grow with longer runs, larger learning rates and activations whose range shifts
# as the weights change. A common rule of thumb is to freeze observers and BN statistics for roughly the last
# 10-30 % of QAT, and to check the result on validation data like any other hyperparameter.

# %% [markdown]
# ## 8 · Low bits: the first and the last layer <a id="low-bit"></a>
#
# The first layer sees raw inputs with few channels (LeNet's first conv has 25 weights per output channel) and the
# last layer writes the logits directly; errors there are not averaged away by later layers. Both hold a tiny share
# of the weights, so a standard policy keeps them at 8 bits while the rest goes lower (Esser et al. 2020 keep them
# at 8 bits; so do most low-bit papers).
#
# ### Exercise 3 · A first/last-layer bit policy
#
# Write `bit_policy(layer_names, weight_bits, act_bits)` returning a dict `{name: (weight_bits, act_bits)}` for the
# quantized layers in forward order, where the first and the last layer get at least 8 bits for both (never fewer
# than the default: `max(8, bits)`), and every other layer gets `(weight_bits, act_bits)`. (coursekit's
# `QATConfig.bits_for` is not allowed inside it.)

# %% solution="ex3_policy"
def bit_policy(layer_names, weight_bits, act_bits):
    """Per-layer (weight_bits, act_bits): the first and last layer at >= 8 bits, the rest at the defaults."""
    ### BEGIN SOLUTION
    names = list(layer_names)
    policy = {}
    for i, name in enumerate(names):
        if i in (0, len(names) - 1):
            policy[name] = (max(8, weight_bits), max(8, act_bits))
        else:
            policy[name] = (weight_bits, act_bits)
    return policy
    ### END SOLUTION

# %% tests="ex3_policy_tests" points=2
# Visible tests
names4 = ["conv1", "conv2", "fc1", "fc2"]
expect_equal(bit_policy(names4, 2, 4), {"conv1": (8, 8), "conv2": (2, 4), "fc1": (2, 4), "fc2": (8, 8)},
             what="bit_policy(['conv1', 'conv2', 'fc1', 'fc2'], 2, 4)", wrong={
                 "only the first layer kept at 8 bits: the last one is names[-1] (index len - 1)":
                     {"conv1": (8, 8), "conv2": (2, 4), "fc1": (2, 4), "fc2": (2, 4)},
                 "the second and the second-to-last layer were kept (off by one)":
                     {"conv1": (2, 4), "conv2": (8, 8), "fc1": (8, 8), "fc2": (2, 4)},
                 "only the weights kept at 8 bits: the activations of the first and last layer too":
                     {"conv1": (8, 4), "conv2": (2, 4), "fc1": (2, 4), "fc2": (8, 4)},
                 "no layer kept at 8 bits (min(8, bits) instead of max?)":
                     {"conv1": (2, 4), "conv2": (2, 4), "fc1": (2, 4), "fc2": (2, 4)}})
expect_equal(bit_policy(["a", "b"], 16, 12), {"a": (16, 12), "b": (16, 12)}, what="bit_policy(['a', 'b'], 16, 12)",
             wrong={"8 bits is a floor, not a cap: use max(8, bits)": {"a": (8, 8), "b": (8, 8)}})
### BEGIN HIDDEN TESTS
from unittest import mock  # noqa: F811 (each hidden section stands alone)

from coursekit.grading.sealed import expect_equal, sealed_test

# Wrong answers caught (each verified to fail): only the first layer kept; off by one (second and second-to-last);
# only the weights kept at 8 (activations left low); min(8, bits) or a fixed 8 instead of max(8, bits); a single
# layer not kept; delegating to coursekit's QATConfig.bits_for (forbidden).
EX3_NAMES = [["features.0", "features.4", "classifier.1", "classifier.3", "classifier.5"], ["only"],
             ["a", "b"], ["c1", "c2", "c3"], [f"block{i}.conv" for i in range(7)]]
EX3_BITS = [(2, 8), (4, 4), (3, 6), (8, 8), (16, 2), (12, 16)]


def _probe():
    from coursekit.quant.qat import QATConfig as _Config

    def refuse(*args, **kwargs):
        raise AssertionError("Exercise 3 asks you to write the policy yourself: QATConfig.bits_for is not allowed")

    with mock.patch.object(_Config, "bits_for", refuse):
        return [[sorted(bit_policy(names, w, a).items()) for w, a in EX3_BITS] for names in EX3_NAMES]


def _ex3_variant(names, keep, rule):
    """Sorted [[name, [w, a]]] for the policy keeping indices `keep` with rule(i) -> (w, a) for kept layers."""
    return sorted([n, list(rule(i)) if i in keep else list(rule(None))] for i, n in enumerate(names))


def _check(out):
    from coursekit.quant.qat import QATConfig as _Config

    for names, got_row in zip(EX3_NAMES, out):
        last = len(names) - 1
        for (w, a), got in zip(EX3_BITS, got_row):
            config = _Config(weight_bits=w, act_bits=a, keep_first_last_8bit=True, init="lsq")
            want = sorted([n, list(config.bits_for(n, i, len(names)))] for i, n in enumerate(names))

            def up(i, w=w, a=a):
                return (w, a) if i is None else (max(8, w), max(8, a))

            wrong = {
                "only the first layer kept at 8 bits: the last one is names[-1]": _ex3_variant(names, {0}, up),
                "off by one: the second and the second-to-last layers were kept":
                    _ex3_variant(names, {1, last - 1}, up),
                "only the weights kept at 8 bits: the activations of the first and last layer too":
                    _ex3_variant(names, {0, last}, lambda i, w=w, a=a: (w, a) if i is None else (max(8, w), a)),
                "8 bits is a floor, not a cap: use max(8, bits)":
                    _ex3_variant(names, {0, last}, lambda i, w=w, a=a: (w, a) if i is None else (min(8, w), min(8, a))),
                "a fixed (8, 8): never fewer bits than the default, use max(8, bits)":
                    _ex3_variant(names, {0, last}, lambda i, w=w, a=a: (w, a) if i is None else (8, 8)),
                "no layer kept at 8 bits": _ex3_variant(names, set(), up)}
            expect_equal([[n, list(p)] for n, p in got], want, what=f"bit_policy({names}, {w}, {a})",
                         wrong={k: v for k, v in wrong.items() if v != want})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 3 passed")

# %% [markdown]
# coursekit's policy is `QATConfig(keep_first_last_8bit=True)`, and `QATConfig(layer_bits={"name": (w, a)})`
# overrides any layer. Measure what it buys on the MNIST-1D CNN at 2-bit weights, where the first conv has only
# five weights per channel:

# %%
cnn1d = pretrained("cnn1d", "mnist1d", progress=False)
train1d, val1d, test1d = get_loaders("mnist1d", batch_size=64)
calib1d = [batch for _, batch in zip(range(8), train1d)]
print(f"cnn1d FP32 {evaluate(cnn1d, test1d)['accuracy']:.1%}")
for keep in (False, True):
    seed_everything(0)
    q = prepare_qat(cnn1d, QATConfig(weight_bits=2, act_bits=8, keep_first_last_8bit=keep), calib1d)
    before = evaluate(q, test1d)["accuracy"]
    h = finetune(q, train1d, EPOCHS, lr=0.01)
    print(f"W2A8, keep_first_last_8bit={keep!s:5s}: at init (= PTQ) {before:.1%}, after QAT "
          f"{evaluate(convert(q), test1d)['accuracy']:.1%} ({h['train_seconds']:.1f} s)")

# %% [markdown]
# ### Exercise 4 · One QAT training step
#
# A QAT step is an ordinary training step: the quantizers are modules inside the model, so the forward pass
# quantizes, and `loss.backward()` sends the STE/LSQ gradients to the weights *and* the step sizes. Write
# `qat_step(qat_model, x, y, optimizer)`: put the model in training mode, compute the cross-entropy loss, zero the
# gradients, back-propagate, take one optimizer step, and return the loss (computed before the step) as a Python
# float.

# %% solution="ex4_step"
def qat_step(qat_model, x, y, optimizer):
    """One optimisation step of a prepared QAT model; returns the loss (before the step) as a float."""
    ### BEGIN SOLUTION
    qat_model.train()
    loss = nn.functional.cross_entropy(qat_model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
    ### END SOLUTION

# %% tests="ex4_step_tests" points=2
# Visible tests: one step on a W4A4 LSQ model; the step sizes are parameters, so they must move too
q = prepare_qat(model, QATConfig(weight_bits=4, act_bits=4), calibration)
opt = torch.optim.SGD(q.parameters(), lr=0.01)
xb, yb = calibration[0]
steps_before = step_sizes(q)
with torch.no_grad():
    loss_before = nn.functional.cross_entropy(q.train()(xb), yb).item()
loss = qat_step(q, xb, yb, opt)
expect_equal(type(loss).__name__, "float", what="type of qat_step's result",
             wrong={"you returned the loss tensor: return loss.item()": "Tensor"})
expect_close(loss, loss_before, what="loss returned by qat_step", rtol=1e-5)
moved = not torch.equal(step_sizes(q)["features.0"]["weight"], steps_before["features.0"]["weight"])
expect_equal(moved, True, what="did the weight step sizes of features.0 change after one step?",
             wrong={"nothing moved: zero the gradients BEFORE the backward pass, then take the optimizer step": False})
### BEGIN HIDDEN TESTS
import torch
from torch import nn

from coursekit.grading.sealed import expect_close, expect_equal, sealed_test

# Wrong answers caught (each verified to fail): gradients never zeroed (they accumulate over steps); zero_grad
# between backward and step (nothing moves); the loss recomputed after the step; eval mode (the model is handed over
# in eval mode and must be in training mode afterwards; BN batch statistics and the observers' moving averages
# matter with bn="simulate" and method="ste"); a tensor returned; a loss other than cross-entropy (nll on logits).
EX4_CONFIGS = [{"weight_bits": 4, "act_bits": 4}, {"weight_bits": 2, "act_bits": 8, "method": "ste", "bn": "simulate"},
               {"weight_bits": 8, "act_bits": 8, "bn": "simulate"}]
EX4_STEPS = 3


def _ex4_setup(i):
    from coursekit.data import get_loaders
    from coursekit.quant import QATConfig, prepare_qat
    from coursekit.train import pretrained, seed_everything

    net = pretrained("lenet", "digits", progress=False, fast=True)
    train = get_loaders("digits", batch_size=32, fast=True, seed=0)[0]
    batches = [b for _, b in zip(range(EX4_STEPS + 2), train)]
    seed_everything(7 + i)
    qm = prepare_qat(net, QATConfig(**EX4_CONFIGS[i]), batches[:2])
    return qm, batches[2:]


def _fingerprint(qm):
    gen = torch.Generator().manual_seed(5)
    out = {}
    for name, p in qm.named_parameters():
        proj = torch.randn(p.numel(), generator=gen, dtype=torch.float64)
        out[name] = [float(p.detach().double().sum()), float((p.detach().double().flatten() * proj).sum())]
    for name, b in qm.named_buffers():
        if b.is_floating_point():
            out["buffer:" + name] = [float(b.double().sum())]
    return out


def _probe():
    runs = []
    for i in range(len(EX4_CONFIGS)):
        qm, batches = _ex4_setup(i)
        qm.eval()  # the learner's step must switch to training mode itself
        opt = torch.optim.SGD(qm.parameters(), lr=0.05, momentum=0.9)
        losses = [qat_step(qm, xb, yb, opt) for xb, yb in batches]
        runs.append({"losses": losses, "types": [type(v).__name__ for v in losses], "training": qm.training,
                     "state": _fingerprint(qm)})
    return runs


def _ex4_losses(i, variant=None):
    """Reference losses (variant None) or those of a plausible wrong step, to name the mistake."""
    qm, batches = _ex4_setup(i)
    opt = torch.optim.SGD(qm.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for xb, yb in batches:
        qm.train()
        loss = nn.functional.cross_entropy(qm(xb), yb)
        if variant != "no_zero_grad" and variant != "zero_grad_late":
            opt.zero_grad()
        loss.backward()
        if variant == "zero_grad_late":
            opt.zero_grad()
        opt.step()
        if variant == "after":
            with torch.no_grad():
                loss = nn.functional.cross_entropy(qm(xb), yb)
        losses.append(loss.item())
    return qm, losses


def _ex4_named(i):
    """Losses of the plausible wrong steps (computed only when the learner's losses are wrong)."""
    return {"gradients never zeroed: call optimizer.zero_grad() before the backward pass":
                _ex4_losses(i, "no_zero_grad")[1],
            "zero_grad() between backward() and step() wipes the gradients: zero them BEFORE backward()":
                _ex4_losses(i, "zero_grad_late")[1],
            "you returned the loss after the step: return the loss computed before it": _ex4_losses(i, "after")[1]}


def _check(runs):
    for i, run in enumerate(runs):
        qm, want = _ex4_losses(i)
        what = f"qat_step on hidden case {i + 1} ({EX4_CONFIGS[i]})"
        expect_equal(run["types"], ["float"] * EX4_STEPS, what=f"types returned by {what}",
                     wrong={"you returned the loss tensor: return loss.item()": ["Tensor"] * EX4_STEPS})
        expect_equal(run["training"], True, what=f"mode after {what}",
                     wrong={"the model was left in eval mode: call qat_model.train() first": False})
        try:
            expect_close(run["losses"], want, what=f"losses returned by {what}", rtol=1e-4, atol=1e-5)
        except AssertionError:
            expect_close(run["losses"], want, what=f"losses returned by {what}", rtol=1e-4, atol=1e-5,
                         wrong=_ex4_named(i))
        state = _fingerprint(qm)
        expect_equal(sorted(run["state"]), sorted(state), what=f"parameter names after {what}")
        for name, values in state.items():
            expect_close(run["state"][name], values, what=f"{name} after {EX4_STEPS} steps of {what} (did you zero "
                         "the gradients before backward and step once per call?)", rtol=1e-4, atol=1e-5)


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 4 passed")

# %% [markdown]
# ## 9 · Mixed precision: which layers keep 8 bits? <a id="mixed-precision"></a>
#
# Keeping the first and last layers at 8 bits is a rule of thumb. The measured version asks each layer how much
# low-bit quantization hurts it, then spends a **size budget** where it buys the most accuracy (Wu et al. 2020,
# "partial quantization"; HAWQ, Dong et al. 2019, ranks layers by a Hessian-based sensitivity instead of a measured drop):
#
# 1. **Sensitivity scan:** quantize *one* layer at a time to the low width, every other layer in float, and
#    measure the accuracy drop $d_\ell$ on held-out data (the validation set: the test set is for the final report).
# 2. **Choice under a budget:** each layer $\ell$ with $n_\ell$ weights either drops to $b$ bits or stays at 8,
#    costing $n_\ell (8-b)/8$ extra bytes. Keep at 8 bits the set $K$ that maximises $\sum_{\ell \in K} d_\ell$
#    subject to $\sum_\ell n_\ell\, \mathrm{bits}_\ell / 8 \le$ budget: a 0/1 knapsack. The greedy solution sorts
#    layers by drop per extra byte, $d_\ell / (n_\ell (8 - b)/8)$, and keeps each one that still fits, passing over
#    those that do not.
#
# Here quantization is **weight-only** (per-channel symmetric min/max), because the budget is about the size of the
# weights: `coursekit.quant.mixed.quantize_layers(model, {name: bits})` quantizes exactly the named layers, each
# with its own width, and leaves the others in float. Sizes count weight bits only ($n \cdot \mathrm{bits}/8$ bytes;
# per-channel scales and biases are left out).
#
# ### Exercise 5 · A per-layer sensitivity scan
#
# Write `sensitivity_scan(model, layer_names, loader, low_bits)` returning `{name: drop}` for each name in
# `layer_names` (in that order), where `drop = evaluate(model, loader)["accuracy"] - evaluate(quantize_layers(model,
# {name: low_bits}), loader)["accuracy"]`: only that one layer quantized, every other layer in float, the drop as a
# fraction (0.05 = 5 points). coursekit's reference, `coursekit.quant.mixed.layer_sensitivity`, is not allowed
# inside it.

# %%
from coursekit.quant.mixed import layer_weight_counts, quantize_layers, weight_bytes

counts = layer_weight_counts(model)
print({name: n for name, n in counts.items()}, f"= {sum(counts.values())} weights")

# %% solution="ex5_scan"
def sensitivity_scan(model, layer_names, loader, low_bits):
    """{name: accuracy drop when only that layer's weights are quantized to low_bits}."""
    ### BEGIN SOLUTION
    base = evaluate(model, loader)["accuracy"]
    return {name: base - evaluate(quantize_layers(model, {name: low_bits}), loader)["accuracy"]
            for name in layer_names}
    ### END SOLUTION

# %% tests="ex5_scan_tests" points=2
# Visible tests: the chapter's LeNet on the validation set, 2-bit weights, two layers
from coursekit.quant.mixed import layer_sensitivity

picked = ["classifier.5", "features.0"]
got = sensitivity_scan(model, picked, val_loader, 2)
want = layer_sensitivity(model, val_loader, 2, picked)
base = evaluate(model, val_loader)["accuracy"]
expect_equal(list(got) if isinstance(got, dict) else got, picked, what="keys of sensitivity_scan(model, picked, ...)")
expect_close([got[n] for n in picked], [want[n] for n in picked], what="drops of sensitivity_scan (2-bit)", atol=1e-9,
             wrong={"you returned the accuracy of the quantized model, not the drop from FP32":
                        [base - want[n] for n in picked],
                    "sign flipped: drop = FP32 accuracy minus quantized accuracy": [-want[n] for n in picked],
                    "percentage points instead of a fraction": [100 * want[n] for n in picked]})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_close, expect_equal, forbid, sealed_test  # noqa: F811 (each hidden section stands alone)

# Wrong answers caught (each verified to fail): the quantized accuracy instead of the drop; sign flipped;
# percentage points; every OTHER layer quantized instead of this one; cumulative (earlier layers stay quantized);
# low_bits ignored (8 bits); layer_names ignored (all layers scanned); delegating to
# coursekit.quant.mixed.layer_sensitivity (forbidden).
EX5_CASES = [(["features.0", "features.4", "classifier.1", "classifier.3", "classifier.5"], 2),
             (["classifier.5", "features.4"], 3)]


def _ex5_data():
    from coursekit.data import get_loaders
    from coursekit.train import pretrained

    return pretrained("lenet", "digits", progress=False, fast=True), get_loaders("digits", batch_size=64, fast=True)[1]


def _probe():
    from coursekit.quant import mixed

    net, val = _ex5_data()
    blocked = {k: v for k, v in globals().items() if v is mixed.layer_sensitivity}

    def refuse(*args, **kwargs):
        raise AssertionError("Exercise 5 asks you to write the scan yourself: layer_sensitivity is not allowed")

    with forbid("coursekit.quant.mixed.layer_sensitivity", exercise="Exercise 5"):
        globals().update(dict.fromkeys(blocked, refuse))
        try:
            return [sensitivity_scan(net, names, val, bits) for names, bits in EX5_CASES]
        finally:
            globals().update(blocked)


def _check(out):
    from coursekit.metrics import evaluate as _evaluate
    from coursekit.quant.mixed import layer_sensitivity as _reference
    from coursekit.quant.mixed import quantize_layers as _quantize_layers

    net, val = _ex5_data()
    base = _evaluate(net, val)["accuracy"]
    for (names, bits), got in zip(EX5_CASES, out):
        expect_equal(list(got) if isinstance(got, dict) else got, names,
                     what=f"keys of sensitivity_scan(model, {names}, ...)",
                     wrong={"you scanned every layer: scan only layer_names": list(_reference(net, val, bits))})
        want = _reference(net, val, bits, names)
        what = f"drops of sensitivity_scan(model, {names}, val, {bits})"
        try:
            expect_close([got[n] for n in names], [want[n] for n in names], atol=0.003, what=what)
            continue
        except AssertionError:
            pass  # name the mistake: the plausible wrong scans, computed only now
        acc = {n: _evaluate(_quantize_layers(net, m), val)["accuracy"] for n, m in
               [(n, {o: bits for o in names if o != n}) for n in names]}
        cumulative = [base - _evaluate(_quantize_layers(net, dict.fromkeys(names[:i + 1], bits)), val)["accuracy"]
                      for i in range(len(names))]
        eight = _reference(net, val, 8, names)
        expect_close([got[n] for n in names], [want[n] for n in names], atol=0.003, what=what, wrong={
                         "you returned the quantized accuracy, not the drop from FP32": [base - want[n] for n in names],
                         "sign flipped: drop = FP32 accuracy minus quantized accuracy": [-want[n] for n in names],
                         "percentage points instead of a fraction": [100 * want[n] for n in names],
                         "you quantized every OTHER layer: quantize only this one ({name: low_bits})":
                             [base - acc[n] for n in names],
                         "cumulative scan: earlier layers stayed quantized; quantize each layer alone": cumulative,
                         "low_bits ignored (8-bit drops)": [eight[n] for n in names]})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 5 passed")

# %%
from coursekit.quant.mixed import greedy_keep_8bit, layer_sensitivity

LOW_BITS = 2
drops = layer_sensitivity(model, val_loader, LOW_BITS)  # coursekit's version of your Exercise 5
fig, ax = plt.subplots(1, 2, figsize=(10, 2.8))
ax[0].bar(list(drops), [100 * d for d in drops.values()], color="#e83")
ax[0].set_ylabel(f"accuracy drop at {LOW_BITS} bits (points)")
ax[0].set_title("sensitivity: one layer at a time (validation)")
ax[1].bar(list(counts), [n * (8 - LOW_BITS) / 8 for n in counts.values()], color="#69c")
ax[1].set_ylabel("extra bytes to keep it at 8 bits")
ax[1].set_title("cost")
for a in ax:
    a.tick_params(axis="x", labelsize=7)
plt.tight_layout()
plt.show()
most = max(drops, key=drops.get)
print(f"most sensitive: {most} ({100 * drops[most]:.1f} points, {counts[most]} weights = "
      f"{counts[most] / sum(counts.values()):.1%} of the model)")

# %% [markdown]
# ### Exercise 6 · Which layers keep 8 bits under a size budget
#
# Write `choose_8bit_layers(drops, num_weights, low_bits, budget_bytes)`: given the drops of a scan, the number of
# weights per layer and the low width, return the list of layer names to keep at 8 bits (every other layer goes to
# `low_bits`) such that the weights fit: $\sum_\ell n_\ell\,\mathrm{bits}_\ell / 8 \le$ `budget_bytes` (an exact fit
# is allowed), choosing to lose as little accuracy as you can. The greedy rule above is enough; an exact knapsack
# is welcome. The check measures the **accuracy of your configuration** against a greedy reference, and your choice
# must meet the budget. (`coursekit.quant.mixed.greedy_keep_8bit` is not allowed inside it.)

# %% solution="ex6_choose"
def choose_8bit_layers(drops, num_weights, low_bits, budget_bytes):
    """Names of the layers kept at 8 bits (the rest at low_bits) so the weights fit budget_bytes."""
    ### BEGIN SOLUTION
    used = sum(num_weights[n] * low_bits / 8 for n in drops)
    extra = {n: num_weights[n] * (8 - low_bits) / 8 for n in drops}
    keep = []
    for name in sorted((n for n in drops if drops[n] > 0), key=lambda n: -drops[n] / extra[n]):
        if used + extra[name] <= budget_bytes:
            keep.append(name)
            used += extra[name]
    return keep
    ### END SOLUTION

# %% tests="ex6_choose_tests" points=3
# Visible tests (hand-checked), 2-bit low width. Case 1: all at 2 bits = 400 bytes; keeping a, b, c at 8 bits
# costs 300, 750 and 150 extra bytes
n1, d1 = {"a": 400, "b": 1000, "c": 200}, {"a": 0.30, "b": 0.25, "c": 0.04}
for budget, mistake in ((851, "you stopped at the first layer that did not fit (b): pass over it and try the next"),
                        (850, "an exact fit is allowed: total <= budget_bytes, not <")):
    got = choose_8bit_layers(d1, n1, 2, budget)
    expect_equal(sorted(got), ["a", "c"], what=f"choose_8bit_layers(case 1, budget {budget} bytes)",
                 wrong={mistake: ["a"], "nothing kept: are your sizes in bits? bytes = weights * bits / 8": []})
# Case 2: all at 2 bits = 305 bytes; a costs 750 extra bytes, b 75, c 90
n2, d2 = {"a": 1000, "b": 100, "c": 120}, {"a": 0.20, "b": 0.12, "c": 0.10}
got = choose_8bit_layers(d2, n2, 2, 1055)
expect_equal(sorted(got), ["b", "c"], what="choose_8bit_layers(case 2, budget 1055 bytes)", wrong={
    "sorted by drop alone: sort by drop per extra byte (a costs 10x more than b)": ["a"],
    "over budget: the 2-bit base (305 bytes) counts too, not only the extra bytes": ["a", "b", "c"]})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811 (each hidden section stands alone)

# Wrong answers caught (each verified to fail): budget ignored (every sensitive layer kept); the low-bit base left
# out of the size (only the extra bytes compared with the budget); sizes in bits instead of bytes; strict < budget;
# sorted by drop alone instead of drop per extra byte; stopping at the first layer that does not fit; delegating
# to coursekit.quant.mixed.greedy_keep_8bit (forbidden). Graded: every choice meets its budget, its summed drop is
# at least the greedy reference's, and on the real model (2-bit LeNet) its test accuracy is within 1 point of the
# greedy reference's configuration, all recomputed here.
EX6_SYNTH = [  # (num_weights, drops, low_bits, budget_bytes)
    ({"a": 1000, "b": 100, "c": 120}, {"a": 0.20, "b": 0.12, "c": 0.10}, 2, 1055),
    ({"a": 400, "b": 1000, "c": 200}, {"a": 0.30, "b": 0.25, "c": 0.04}, 2, 850),
    ({"a": 64, "b": 2048, "c": 512, "d": 256}, {"a": 0.5, "b": 0.02, "c": 0.08, "d": -0.01}, 4, 1828),
    ({"a": 100, "b": 300}, {"a": 0.1, "b": 0.05}, 3, 400),
    ({"x": 50, "y": 60, "z": 70}, {"x": 0.01, "y": 0.2, "z": 0.0}, 2, 45),
]
EX6_REAL_BUDGETS = [7000, 9000]


def _ex6_real():
    from coursekit.data import get_loaders
    from coursekit.quant.mixed import layer_sensitivity, layer_weight_counts
    from coursekit.train import pretrained

    net = pretrained("lenet", "digits", progress=False, fast=True)
    _, val, test = get_loaders("digits", batch_size=64, fast=True)
    return net, test, layer_sensitivity(net, val, 2), layer_weight_counts(net)


def _probe():
    from coursekit.quant import mixed

    _, _, drops, counts = _ex6_real()
    blocked = {k: v for k, v in globals().items() if v is mixed.greedy_keep_8bit}

    def refuse(*args, **kwargs):
        raise AssertionError("Exercise 6 asks you to write the choice yourself: greedy_keep_8bit is not allowed")

    with forbid("coursekit.quant.mixed.greedy_keep_8bit", exercise="Exercise 6"):
        globals().update(dict.fromkeys(blocked, refuse))
        try:
            synth = [choose_8bit_layers(dict(d), dict(n), b, budget) for n, d, b, budget in EX6_SYNTH]
            real = [choose_8bit_layers(dict(drops), dict(counts), 2, budget) for budget in EX6_REAL_BUDGETS]
        finally:
            globals().update(blocked)
    return {"synth": [list(k) for k in synth], "real": [list(k) for k in real]}


def _ex6_variant(num_weights, drops, low_bits, budget, by_ratio=True, stop=False, strict=False):
    """The greedy choice, or one of its plausible wrong versions (to name the mistake)."""
    used = sum(num_weights[n] * low_bits / 8 for n in drops)
    extra = {n: num_weights[n] * (8 - low_bits) / 8 for n in drops}
    keep = []
    for n in sorted((n for n in drops if drops[n] > 0), key=lambda n: -drops[n] / (extra[n] if by_ratio else 1)):
        fits = used + extra[n] < budget if strict else used + extra[n] <= budget + 1e-9
        if fits:
            keep.append(n)
            used += extra[n]
        elif stop:
            break
    return sorted(keep)


def _ex6_verdict(keep, num_weights, drops, low_bits, budget, what):
    from coursekit.quant.mixed import greedy_keep_8bit, weight_bytes

    unknown = sorted(set(keep) - set(drops))
    assert not unknown, f"{what}: unknown layer names {unknown}"
    assert len(set(keep)) == len(keep), f"{what}: a layer is listed twice"
    size = weight_bytes(num_weights, {n: 8 if n in keep else low_bits for n in num_weights})
    hints = []
    if sorted(keep) == sorted(n for n in drops if drops[n] > 0):
        hints.append("every sensitive layer was kept: is the budget ignored?")
    if sum(num_weights[n] * (8 - low_bits) / 8 for n in keep) <= budget:
        hints.append("only the extra bytes fit the budget: the low-bit weights of the other layers count too")
    hint = f" ({'; '.join(hints)})" if hints else ""
    assert size <= budget + 1e-9, f"{what}: your choice {sorted(keep)} needs {size:g} bytes, over the budget{hint}"
    ref = greedy_keep_8bit(drops, num_weights, low_bits, budget)
    gain, ref_gain = sum(max(drops[n], 0.0) for n in keep), sum(drops[n] for n in ref)
    if gain < ref_gain - 1e-9:
        mistakes = {"sorted by drop alone: sort by drop per extra byte": {"by_ratio": False},
                    "you stopped at the first layer that did not fit: pass over it and try the next ones":
                        {"stop": True},
                    "an exact fit is allowed: total <= budget_bytes, not <": {"strict": True}}
        named = [m for m, kw in mistakes.items() if sorted(keep) == _ex6_variant(num_weights, drops, low_bits, budget,
                                                                                   **kw)]
        if not keep:
            named.append("nothing kept: are your sizes in bits? bytes = weights * bits / 8")
        raise AssertionError(f"{what}: your choice {sorted(keep)} keeps layers worth {gain:.3f} of summed drop, the "
                             f"greedy choice {sorted(ref)} {ref_gain:.3f}" + (f": {', or '.join(named)}" if named else ""))
    return ref


def _check(out):
    from coursekit.metrics import evaluate as _evaluate
    from coursekit.quant.mixed import quantize_layers as _quantize_layers

    for i, ((num_weights, drops, low_bits, budget), keep) in enumerate(zip(EX6_SYNTH, out["synth"])):
        _ex6_verdict(keep, num_weights, drops, low_bits, budget, f"hidden case {i + 1} (budget {budget} bytes)")
    net, test, drops, counts = _ex6_real()
    for budget, keep in zip(EX6_REAL_BUDGETS, out["real"]):
        what = f"2-bit LeNet with a budget of {budget} bytes"
        ref = _ex6_verdict(keep, counts, drops, 2, budget, what)
        acc = _evaluate(_quantize_layers(net, {n: 8 if n in keep else 2 for n in counts}), test)["accuracy"]
        ref_acc = _evaluate(_quantize_layers(net, {n: 8 if n in ref else 2 for n in counts}), test)["accuracy"]
        assert acc >= ref_acc - 0.01, (f"{what}: your configuration {sorted(keep)} reaches {acc:.1%} test accuracy, "
                                       f"the greedy reference {ref_acc:.1%}")


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 6 passed")

# %% [markdown]
# Now spend a budget on the real model: all weights at 8 bits take `weight_bytes(counts, all 8)` bytes; the budget
# below allows about 40 % of that. Choose on the validation drops, then report on the test set:

# %%
all8 = weight_bytes(counts, dict.fromkeys(counts, 8))
BUDGET = round(0.4 * all8)
keep8 = greedy_keep_8bit(drops, counts, LOW_BITS, BUDGET)  # coursekit's version of your Exercise 6
configs = {f"all {LOW_BITS}-bit": {}, "first/last at 8": dict.fromkeys((next(iter(counts)), list(counts)[-1]), 8),
           f"greedy ({BUDGET} B budget)": dict.fromkeys(keep8, 8), "all 8-bit": dict.fromkeys(counts, 8)}
print(f"{'configuration':28s} {'bytes':>7} {'test acc':>9} {'agrees w/ FP32':>15}")
for label, high in configs.items():
    bits = {n: high.get(n, LOW_BITS) for n in counts}
    mixed_model = quantize_layers(model, bits)
    print(f"{label:28s} {weight_bytes(counts, bits):7.0f} {evaluate(mixed_model, test_loader)['accuracy']:9.1%} "
          f"{top1_agreement(mixed_model, model, test_loader):15.1%}")
print(f"kept at 8 bits: {keep8}; FP32 {fp32_acc:.1%}, {weight_bytes(counts, dict.fromkeys(counts, 32)):.0f} B")

# %% [markdown]
# The same choice feeds QAT: `QATConfig(layer_bits={name: (8, 8) for name in keep8})` trains that mixed model.
# Two caveats the scan hides: drops measured one layer at a time do not simply add up (two quantized layers can
# hurt more, or less, than the sum), and a drop of one validation image is noise; on a real model, re-measure the
# chosen configuration as a whole, as the table does.

# %% [markdown]
# ## 10 · AdaRound: learn the rounding, not the weights <a id="adaround"></a>
#
# Between PTQ and QAT sits a cheap middle ground. Round-to-nearest minimises each weight's *own* error, but what
# matters is the layer's *output*, $Wx$, and there the rounding errors of neighbouring weights can cancel or add up.
# **AdaRound** (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization") keeps chapter
# 02's scale $s$ and grid and only decides, per weight, whether to round **down or up**, by optimising a continuous
# variable $V$ on a few hundred unlabelled calibration inputs:
#
# $$\widetilde W = s\cdot\mathrm{clamp}\big(\lfloor W/s \rfloor + h(V),\ q_{min},\ q_{max}\big), \qquad
# h(V) = \mathrm{clamp}\big(\sigma(V)(\zeta - \gamma) + \gamma,\ 0,\ 1\big)\quad(\zeta = 1.1,\ \gamma = -0.1)$$
#
# $$\min_V\ \big\lVert Wx - \widetilde W x \big\rVert_F^2 + \lambda \sum_{i} \Big(1 - \lvert 2h(V_i) - 1\rvert^{\beta}\Big)
# \qquad\text{(eq. 22-25)}$$
#
# The **rectified sigmoid** $h$ is stretched beyond $[0, 1]$ and clipped, so it reaches exactly 0 (round down) and 1
# (round up) with a non-zero gradient just inside; the **regulariser** is 0 only when every $h$ is 0 or 1, and its
# exponent $\beta$ is annealed from 20 (flat: the rounding may still move) to 2 (steep: every weight must commit).
# $V$ starts where $h(V)$ equals the fractional part of $W/s$, so optimisation starts at the float weights. Nothing
# else changes: the result is an ordinary weight tensor on the same grid, deployed like any PTQ weight.
#
# The demo AdaRounds one layer of LeNet (the second conv, 2-bit weights), layer-wise against its own float output,
# with `coursekit.quant.adaround.adaround_layer`, and measures the output error and the whole model's accuracy with
# that one layer quantized:

# %%
from coursekit.quant import fold_batchnorms
from coursekit.quant.adaround import adaround_layer, rectified_sigmoid

folded = fold_batchnorms(model).eval()  # deployment folds BN first: round the folded weights
ADA_LAYER, ADA_BITS, ADA_STEPS = "features.4", 2, (200 if FAST else 500)
layer_inputs = []
hook = get_layer(folded, ADA_LAYER).register_forward_pre_hook(lambda m, args: layer_inputs.append(args[0].detach()))
with torch.no_grad():
    for xb, _ in calibration[:4]:
        folded(xb)
hook.remove()
ada = adaround_layer(get_layer(folded, ADA_LAYER), layer_inputs, bits=ADA_BITS, steps=ADA_STEPS)
rounded = {}
for label, weight in (("round-to-nearest", ada["rtn_weight"]), ("AdaRound", ada["weight"])):
    variant = copy.deepcopy(folded)
    get_layer(variant, ADA_LAYER).weight.data = weight
    rounded[label] = evaluate(variant, test_loader)["accuracy"]
print(f"{ADA_LAYER} at {ADA_BITS} bits, {ADA_STEPS} Adam steps on {sum(len(b) for b in layer_inputs)} calibration "
      f"images: AdaRound rounds {ada['flipped']:.1%} of the weights the other way than nearest")
print(f"layer output MSE: nearest {ada['mse_rtn']:.4f}, AdaRound {ada['mse_adaround']:.4f} "
      f"({ada['mse_rtn'] / ada['mse_adaround']:.1f}x lower)")
print(f"test accuracy with this layer quantized: FP32 {fp32_acc:.1%}, nearest {rounded['round-to-nearest']:.1%}, "
      f"AdaRound {rounded['AdaRound']:.1%}")
fig, ax = plt.subplots(1, 2, figsize=(9, 2.6))
vv = torch.linspace(-8, 8, 401)
ax[0].plot(vv, rectified_sigmoid(vv), label="h(V), rectified sigmoid")
ax[0].plot(vv, torch.sigmoid(vv), "--", lw=0.8, label="sigmoid(V)")
ax[0].set_xlabel("V")
ax[0].legend(fontsize=8)
ax[1].plot(ada["loss"])
ax[1].set_yscale("log")
ax[1].set_xlabel("Adam step")
ax[1].set_title("reconstruction + rounding loss")
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the numbers: the same grid, the same scale, a minority of weights rounded the other way, and the layer's
# output error drops severalfold. AdaRound costs minutes per network on a GPU and no labels, which is why PTQ
# toolkits offer it before anyone reaches for QAT; it cannot move the weights themselves, so at the lowest widths
# QAT still goes further. (The paper optimises layer after layer against the *quantized* model's inputs and
# includes the activation function in the loss; this demo keeps the simplest layer-wise form.)

# %% [markdown]
# ## 11 · Benchmark: accuracy vs bits, PTQ and QAT <a id="ptq-vs-qat"></a>
#
# The `qat` suite (also `coursekit bench --suite qat`) runs the comparison of section 5 for W8A8, W4A8, W2A8 and
# W4A4 on the digits CNN and the MNIST-1D CNN: chapter 02's PTQ, then QAT from the PTQ model (LSQ, SGD with
# momentum, cosine schedule), converted and evaluated on the test set. `recovered` is the fraction of the PTQ gap
# that QAT closes, $(acc_{QAT} - acc_{PTQ}) / (acc_{FP32} - acc_{PTQ})$ (empty when PTQ is already within half a
# point of FP32); `qat_seconds` is what the fine-tune cost on your machine. The second table adds the worst class
# and the agreement with FP32 for every row.

# %%
from coursekit.bench import format_table
from coursekit.suites import run_suite
from coursekit.suites.qat import format_qat_table, plot_accuracy_vs_bits, reading

result = run_suite("qat", threads=2, progress=False)
records = result["records"]
print(format_qat_table(records))
print()
print(format_table(records, ["model", "variant", "fp32_worst_class", "ptq_worst_class", "qat_worst_class",
                             "ptq_agreement", "qat_agreement"]))
plot_accuracy_vs_bits(records)
plt.tight_layout()
plt.show()
print(reading(records))

# %% [markdown]
# ### When is QAT worth its cost?
#
# Read the printout above, not a summary from elsewhere. QAT is usually described as buying better accuracy at low
# bit widths with a more complex training pipeline. On your numbers:
#
# * **Where PTQ is already within noise of FP32** (8 bits, often 4-bit weights with per-channel scales), QAT has
#   nothing to recover; it can even lose a little to fine-tuning noise. Ship PTQ and spend the effort on validation
#   and benchmarking.
# * **Where PTQ collapses** (2-bit weights, 4-bit activations), look at how much of the gap QAT recovered and for how
#   many seconds. The seconds here are tiny because the models are; for a real network the price is a training
#   pipeline: the training data (PTQ needs only a few hundred unlabeled samples), GPUs, hyperparameters, and a
#   longer release cycle. Try the cheaper fixes first: mixed precision (section 9) and AdaRound (section 10).
# * **Where even QAT does not get close**, the model is too small for the grid: keep the first and last layers at
#   8 bits, use more bits, or change the model (distillation, chapter 05).
# * The worst-class and agreement columns can disagree with the mean: a configuration that keeps the top-1
#   accuracy but flips many answers, or sinks one class, needs a closer look before it ships.
# * The speed side is separate: QAT changes accuracy, not kernels. A W2A8 or W4A4 model runs fast only where the
#   deployment runtime has low-bit kernels (section 12).
#
# ## 12 · Deploy: the converted model in ONNX Runtime <a id="deploy"></a>
#
# `convert` produced chapter 02's QDQ model, so chapter 02's deployment path applies unchanged:
# `coursekit.export.export_onnx` writes `QuantizeLinear`/`DequantizeLinear` pairs for 8-bit ranges and ONNX Runtime
# fuses them into integer kernels. Convert a W8A8 QAT model, export it and check parity:

# %%
from coursekit.export import export_onnx, op_counts, ort_run, ort_session, parity

seed_everything(0)
qat8 = prepare_qat(model, QATConfig(weight_bits=8, act_bits=8), calibration)
finetune(qat8, train_loader, 1, lr=0.001)
qat8_int = convert(qat8)
folder = Path(tempfile.mkdtemp())
onnx_path = export_onnx(qat8_int, x_test[:1], folder / "lenet_qat_w8a8.onnx")
counts_onnx = op_counts(onnx_path)
print({k: v for k, v in counts_onnx.items() if k in ("QuantizeLinear", "DequantizeLinear", "Conv", "Gemm")})
check = parity(qat8_int, onnx_path, [x for x, _ in test_loader])
print(f"torch vs ONNX Runtime: max |diff| {check['max_abs_error']:.2g}, top-1 agreement {check['top1_agreement']:.2%}")
session = ort_session(onnx_path)
ort_acc = np.mean([(ort_run(session, x).argmax(1) == y.numpy()).mean() for x, y in test_loader])
print(f"accuracy: torch QDQ {evaluate(qat8_int, test_loader)['accuracy']:.1%}, ONNX Runtime {ort_acc:.1%}")

# %% [markdown]
# Which integer types can a `QuantizeLinear` node produce? That depends on the ONNX **opset**, and the installed
# `onnx` package's operator schemas say so directly:

# %%
import onnx
from onnx import defs


def first_opset(op, onnx_type):
    """The first opset whose schema of `op` (default ONNX domain) allows `onnx_type` in its type constraints."""
    versions = sorted((s for s in defs.get_all_schemas_with_history() if s.name == op and s.domain == ""),
                      key=lambda s: s.since_version)
    for schema in versions:
        if any(onnx_type in c.allowed_type_strs for c in schema.type_constraints):
            return schema.since_version
    return None


exported_opset = max(o.version for o in onnx.load(str(onnx_path)).opset_import if o.domain in ("", "ai.onnx"))
print(f"onnx {onnx.__version__}: QuantizeLinear output types by the first opset that allows them")
for onnx_type in ("tensor(int8)", "tensor(int16)", "tensor(int4)", "tensor(float4e2m1)", "tensor(int2)"):
    print(f"  {onnx_type:20s} opset {first_opset('QuantizeLinear', onnx_type)}")
print(f"the exported model above uses opset {exported_opset}")

# %% [markdown]
# So INT4/UINT4 arrive with opset 21 and INT2/UINT2 only with opset 25 (read from the schemas above). The
# exporter here writes an older opset, so the 2-bit model exports, but its 2-bit weight quantizers become float
# `Round`/`Clip` arithmetic (the 8-bit activations stay Q/DQ pairs): correct numbers, no integer speed-up. And an
# opset that *declares* a type is not a runtime that *implements* it: check your runtime's kernels for that type.
# Low-bit *storage* pays off today through weight-only kernels (ORT's `MatMulNBits`, GPU int4 GEMMs; chapter 07);
# low-bit *compute* needs hardware and runtime support you have to check first (chapter 00's `coursekit doctor`).

# %%
path2 = export_onnx(qat2_int, x_test[:1], folder / "lenet_qat_w2a8.onnx")
check2 = parity(qat2_int, path2, [x for x, _ in test_loader])
print({k: v for k, v in op_counts(path2).items() if k in ("QuantizeLinear", "Round", "Clip")},
      f"top-1 agreement {check2['top1_agreement']:.2%}")

# %% [markdown]
# ## 13 · Common mistakes <a id="mistakes"></a>
#
# * **Training QAT from scratch, or with the original learning rate.** Start from the trained model and the PTQ
#   scales; fine-tune with a small learning rate for a few epochs (section 5).
# * **Quantizing the unfolded conv weights.** Deployment folds BatchNorm; QAT must quantize the folded weights
#   (`bn="fold"` or `"simulate"`), or it optimises against the wrong rounding error.
# * **Letting BN statistics and activation ranges drift until the end.** Freeze BN statistics and observers for
#   the last epochs (`freeze_bn_stats`, `freeze_observers`, section 7); a moving range makes the final scales jitter.
# * **A hand-written STE that disagrees with the exported model.** `x + (round(x) - x).detach()` followed by a
#   clamp is not always torch's gradient in float32 (the mask must be computed on the rounded code). Test against
#   `torch.fake_quantize_per_tensor_affine`.
# * **Mixing up the two LSQ gradients.** Esser's eq. 3 and PyTorch's kernel differ on the half-step bands at the ends
#   of the range (section 3); say which one a hand-computed number follows.
# * **Trusting PACT's alpha without its regulariser.** Only clipped values push alpha, upwards (section 4).
# * **Choosing mixed precision on the test set.** Scan sensitivity on validation data and report the chosen
#   configuration on the test set, measured as a whole (section 9).
# * **Evaluating the QAT model instead of the converted one.** Always measure the model you ship (`convert`, then
#   ONNX Runtime, with a parity check), and look beyond top-1: per-class accuracy and agreement with FP32.
# * **Paying for QAT where PTQ already works.** Measure the PTQ gap first (section 11); where it is small, the
#   complexity of a training pipeline buys nothing.
# * **Expecting QAT to make a model faster.** It changes accuracy at a given bit width; speed comes from the
#   runtime's kernels for that bit width.
#
# ## 14 · Interview questions <a id="interview"></a>
#
# Practise with the quiz below (immediate feedback and explanations), or in a terminal with
# `coursekit drill --chapter 03`. The graded questions further down are left out of the practice quiz.

# %% locked="quiz_ids"
from coursekit import quiz

QUIZ_IDS = ["ch03-rounding-gradient", "ch03-lsq-grad-outside", "ch03-lsq-grad-scale", "ch03-pact",
            "ch03-bn-during-qat", "ch03-freeze-observers", "ch03-low-bit-first-last"]
quiz.show(chapter="03", n=6, exclude=QUIZ_IDS)

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
    "ch03-rounding-gradient": "B",
    "ch03-lsq-grad-outside": 127,
    "ch03-lsq-grad-scale": 0.0013865,
    "ch03-pact": "C",
    "ch03-bn-during-qat": "B",
    "ch03-freeze-observers": "A",
    "ch03-low-bit-first-last": "C",
}
### END SOLUTION

# %% tests="quiz_answers_tests" points=7
# One point per question. Visible: which questions you have not answered yet.
unanswered = [qid for qid in QUIZ_IDS if not isinstance(answers, dict) or qid not in answers]
print("not answered yet: " + ", ".join(unanswered) if unanswered else "all questions answered")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import sealed_quiz

# one point per question; the returned number is nbgrader's partial credit
sealed_quiz(["ch03-rounding-gradient", "ch03-lsq-grad-outside", "ch03-lsq-grad-scale", "ch03-pact",
            "ch03-bn-during-qat", "ch03-freeze-observers", "ch03-low-bit-first-last"])
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# * Rounding has a zero gradient; the STE passes gradients straight through inside the integer range (mask on the
#   rounded code) and blocks them where values were clamped. It is biased, which shows up as oscillation.
# * LSQ learns the step: $\partial\hat x/\partial s = \lfloor v\rceil - v$ inside, $q_{min}$/$q_{max}$ outside,
#   scaled by $1/\sqrt{N Q_P}$; PyTorch decides "inside" on the rounded code, Esser et al. on $v$ itself.
# * PACT learns the activation clipping level from clipped values only; LSQ adds the rounding term.
# * QAT = PTQ model + a short fine-tune with the quantizers in the loop + `convert` back to the same QDQ model.
#   Fold BN before (or simulate it during) QAT, freeze observers and BN statistics late, keep the first and last
#   layers at 8 bits at very low widths, or let a sensitivity scan and a size budget choose.
# * AdaRound learns only up/down rounding decisions on calibration data: a PTQ upgrade without training.
# * Judge a quantized model beyond top-1 (worst class, agreement with FP32), and pay for QAT only where PTQ leaves a
#   gap you care about; measure the gap first.
#
# Next: **04 · Pruning**: removing weights instead of shortening them.
