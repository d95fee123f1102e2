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
# 2. LSQ: learning the quantizer's step size itself, with its gradient formula,
# 3. QAT in coursekit: `prepare_qat` -> fine-tune -> `convert`, starting from the PTQ model,
# 4. BatchNorm during QAT, first/last-layer policies, QAT from PTQ vs from scratch,
# 5. the accuracy-vs-bits curve of PTQ and QAT on your machine, and what QAT costs,
# 6. the converted model running in ONNX Runtime.
#
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below it.
# `coursekit check notebooks/03_qat.ipynb` grades the whole notebook (hidden tests included) from a terminal.

# %% locked="setup"
# Setup: run this first. Warnings are silenced so that graded cells stay clean.
import copy
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
from coursekit.quant import QATConfig, QuantConfig, convert, prepare_qat, quantize_model
from coursekit.train import evaluate, pretrained, seed_everything

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
for w_bits in (8, 4, 3, 2):
    ptq = quantize_model(model, QuantConfig(weight_bits=w_bits, act_bits=8), calibration)
    print(f"PTQ W{w_bits}A8    {evaluate(ptq, test_loader)['accuracy']:.1%}")

# %% [markdown]
# At 8 and 4 bits PTQ is essentially free; at 2 bits (four levels per channel: $-2s, -s, 0, s$) the model
# collapses. Nothing is wrong with the calibration: the weights were trained in float, and most of them now round
# to the same few values. To fix this the weights must *move*, which means training through the quantizer.
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
# `scale` is a Python float, `zero_point`, `qmin`, `qmax` are ints.

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
x = torch.tensor([63.9, 63.74, -64.3, 63.5, -64.0, 0.26], requires_grad=True)
y = STEFakeQuant.apply(x, 0.5, 0, -128, 127)
assert torch.allclose(y, torch.tensor([63.5, 63.5, -64.0, 63.5, -64.0, 0.5])), y
y.sum().backward()
assert x.grad.tolist() == [0.0, 1.0, 0.0, 1.0, 1.0, 1.0], x.grad
### BEGIN HIDDEN TESTS
from coursekit.quant import fake_quantize_ste

gen = torch.Generator().manual_seed(3)
for qmin, qmax in [(-128, 127), (0, 255), (-8, 7), (0, 15), (-2, 1)]:
    for _ in range(5):
        scale = float(torch.rand(1, generator=gen) * 0.3 + 0.005)
        zp = int(torch.randint(qmin, qmax + 1, (1,), generator=gen)) if qmin == 0 else 0
        codes = torch.tensor([qmin - 0.5, qmin - 0.49, qmax + 0.49, qmax + 0.5, 0.5, 1.5, -0.5])
        x = torch.cat([torch.randn(300, generator=gen) * scale * (qmax - qmin) / 3, (codes - zp) * scale])
        g = torch.randn(x.shape, generator=gen)
        a, b, c = (x.clone().requires_grad_() for _ in range(3))
        ya = STEFakeQuant.apply(a, scale, zp, qmin, qmax)
        yb = torch.fake_quantize_per_tensor_affine(b, scale, zp, qmin, qmax)
        yc = fake_quantize_ste(c, scale, zp, qmin, qmax)
        (ya * g).sum().backward()
        (yb * g).sum().backward()
        (yc * g).sum().backward()
        assert torch.allclose(ya, yb, atol=1e-6), "forward must equal torch's fake quantization"
        assert torch.equal(a.grad, b.grad) and torch.equal(a.grad, c.grad), "STE gradient must equal torch's"
### END HIDDEN TESTS
print("ex1 passed")

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
# $\hat x = s\,\mathrm{clamp}(\lfloor v \rceil, q_{min}, q_{max})$, the STE gives (Esser et al. 2020, eq. 3)
#
# $$\frac{\partial \hat x}{\partial s} = \begin{cases} \lfloor v \rceil - v & q_{min} \le \lfloor v \rceil \le q_{max}
# \\ q_{min} & \lfloor v \rceil < q_{min} \\ q_{max} & \lfloor v \rceil > q_{max} \end{cases}$$
#
# and the step's gradient is scaled by $g = 1/\sqrt{N\,Q_P}$ ($N$ elements share the step, $Q_P = q_{max}$) so it
# moves at the pace of the weights (eq. 4-5). The step starts at $2\,\mathrm{mean}(|x|)/\sqrt{Q_P}$, or, in this
# course, at the PTQ scale. Inside the range the gradient is a sawtooth: values just above a grid point ask for a
# *larger* step, values just below for a smaller one; clipped values always ask for a larger step.

# %%
from coursekit.quant import lsq_fake_quantize

v = torch.linspace(-6, 6, 2001)
step = torch.tensor([1.0], requires_grad=True)
grads = []
for value in v:  # one element at a time: the per-element gradient d x_hat / d s
    step.grad = None
    lsq_fake_quantize(value.reshape(1), step, -4, 3).sum().backward()
    grads.append(step.grad.item())
fig, ax = plt.subplots(figsize=(7, 2.6))
ax.plot(v, grads)
ax.axvspan(-6, -4.5, color="#e83", alpha=0.15, label="clipped (q_min = -4)")
ax.axvspan(3.5, 6, color="#69c", alpha=0.15, label="clipped (q_max = 3)")
ax.set_xlabel("v = x / s")
ax.set_ylabel("d x_hat / d s")
ax.set_title("LSQ step-size gradient, 3-bit signed")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### Exercise 2 · The LSQ step-size gradient
#
# Write `lsq_step_grad(x, s, qmin, qmax)`: the **element-wise** derivative $\partial \hat x / \partial s$ of the
# formula above for a tensor `x`, a positive float step `s` and zero point 0 (no gradient scale). Compute
# $v$ as `x * (1 / s)` and round half to even with `torch.round`, as PyTorch does.

# %% solution="ex2_lsq"
def lsq_step_grad(x, s, qmin, qmax):
    """Element-wise d x_hat / d s of LSQ (zero point 0): round(v) - v inside, qmin / qmax where clipped."""
    ### BEGIN SOLUTION
    v = x * (1.0 / torch.tensor(s, dtype=x.dtype))
    q = torch.round(v)
    return torch.where(q < qmin, torch.full_like(x, float(qmin)),
                       torch.where(q > qmax, torch.full_like(x, float(qmax)), q - v))
    ### END SOLUTION

# %% tests="ex2_lsq_tests" points=3
g = lsq_step_grad(torch.tensor([0.7, 40.0, -40.0, 0.5]), 0.25, -128, 127)
assert torch.allclose(g, torch.tensor([0.2, 127.0, -128.0, 0.0]), atol=1e-5), g
### BEGIN HIDDEN TESTS
from coursekit.quant import lsq_fake_quantize

gen = torch.Generator().manual_seed(11)
for qmin, qmax in [(-128, 127), (-8, 7), (0, 15), (-2, 1)]:
    for _ in range(5):
        s = float(torch.rand(1, generator=gen) * 0.2 + 0.01)
        x = torch.randn(400, generator=gen) * s * (qmax - qmin) / 2.5
        weights = torch.randn(400, generator=gen)
        step = torch.tensor([s], requires_grad=True)
        y = torch._fake_quantize_learnable_per_tensor_affine(x, step, torch.zeros(1), qmin, qmax, 1.0)
        (y * weights).sum().backward()
        mine = lsq_step_grad(x, s, qmin, qmax)
        assert mine.shape == x.shape, "one gradient per element"
        assert torch.allclose((mine * weights).sum(), step.grad[0], rtol=1e-4, atol=1e-4), "vs torch's LSQ op"
        step2 = torch.tensor([s], requires_grad=True)
        for i in range(0, 400, 57):
            step2.grad = None
            lsq_fake_quantize(x[i:i + 1], step2, qmin, qmax).sum().backward()
            assert abs(mine[i].item() - step2.grad.item()) < 1e-4, ("element", i)
### END HIDDEN TESTS
print("ex2 passed")

# %% [markdown]
# `coursekit.quant.LSQQuantizer` wraps this in a module (per tensor or per channel, Esser's initialisation, the
# gradient scale), and `lsq_fake_quantize` implements the backward pass explicitly (`LSQFunction`); both gradients
# agree bit for bit with `torch._fake_quantize_learnable_per_tensor_affine` / `..._per_channel_affine`.
#
# ## 4 · QAT in coursekit: prepare, fine-tune, convert <a id="recipe"></a>
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
from coursekit.suites.qat import finetune

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
from coursekit.suites.qat import step_size_explorer

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
# ## 5 · BatchNorm during QAT <a id="batchnorm"></a>
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
#   while training; `freeze_bn_stats` switches to running statistics for the last epochs, because batch statistics
#   jitter the folded weights. Worth it for long QAT runs or QAT from scratch.
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
# ## 6 · Low bits: the first and the last layer <a id="low-bit"></a>
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
# than the default: `max(8, bits)`), and every other layer gets `(weight_bits, act_bits)`.

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
p = bit_policy(["conv1", "conv2", "fc1", "fc2"], 2, 4)
assert p == {"conv1": (8, 8), "conv2": (2, 4), "fc1": (2, 4), "fc2": (8, 8)}, p
### BEGIN HIDDEN TESTS
from coursekit.quant import qat_layers

assert bit_policy(["only"], 4, 4) == {"only": (8, 8)}
assert bit_policy(["a", "b"], 16, 12) == {"a": (16, 12), "b": (16, 12)}
for w, a in [(2, 8), (4, 4), (3, 6), (8, 8), (16, 2)]:
    for net in (model, pretrained("cnn1d", "mnist1d", progress=False)):
        ref = prepare_qat(net, QATConfig(weight_bits=w, act_bits=a, keep_first_last_8bit=True, init="lsq"))
        names = list(qat_layers(ref))
        assert bit_policy(names, w, a) == ref.qat_bits, (w, a)
### END HIDDEN TESTS
print("ex3 passed")

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
# gradients, back-propagate, take one optimizer step, and return the loss as a Python float.

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
q = prepare_qat(model, QATConfig(weight_bits=4, act_bits=4), calibration)
opt = torch.optim.SGD(q.parameters(), lr=0.01)
xb, yb = calibration[0]
steps_before = step_sizes(q)
loss = qat_step(q, xb, yb, opt)
assert isinstance(loss, float) and loss > 0
assert not torch.equal(step_sizes(q)["features.0"]["weight"], steps_before["features.0"]["weight"]), \
    "the step sizes are parameters too: they must move"
### BEGIN HIDDEN TESTS
for w_bits, a_bits, method in [(4, 4, "lsq"), (2, 8, "ste"), (8, 8, "lsq")]:
    seed_everything(1)
    a = prepare_qat(model, QATConfig(weight_bits=w_bits, act_bits=a_bits, method=method), calibration)
    b = copy.deepcopy(a)
    a.eval()
    opt_a = torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.9)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9)
    for xb, yb in calibration[:3]:
        got = qat_step(a, xb, yb, opt_a)
        b.train()
        ref = nn.functional.cross_entropy(b(xb), yb)
        opt_b.zero_grad()
        ref.backward()
        opt_b.step()
        assert abs(got - ref.item()) < 1e-5, "the loss before the step"
    assert a.training, "QAT trains in training mode"
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6), n
### END HIDDEN TESTS
print("ex4 passed")

# %% [markdown]
# ## 7 · Benchmark: accuracy vs bits, PTQ and QAT <a id="ptq-vs-qat"></a>
#
# The `qat` suite (also `coursekit bench --suite qat`) runs the comparison of section 4 for W8A8, W4A8, W2A8 and
# W4A4 on the digits CNN and the MNIST-1D CNN: chapter 02's PTQ, then QAT from the PTQ model (LSQ, SGD with
# momentum, cosine schedule), converted and evaluated on the test set. `recovered` is the fraction of the PTQ gap
# that QAT closes, $(acc_{QAT} - acc_{PTQ}) / (acc_{FP32} - acc_{PTQ})$ (empty when PTQ is already within half a
# point of FP32); `qat_seconds` is what the fine-tune cost on your machine.

# %%
from coursekit.suites import run_suite
from coursekit.suites.qat import format_qat_table, plot_accuracy_vs_bits, reading

result = run_suite("qat", threads=2, progress=False)
records = result["records"]
print(format_qat_table(records))
plot_accuracy_vs_bits(records)
plt.tight_layout()
plt.show()
print(reading(records))

# %% [markdown]
# ### When is QAT worth its cost?
#
# Read the printout above, not a blog post. The seed tutorials summarise QAT as *better accuracy retention and more
# stable quantized models*, bought with *more complex training and higher engineering effort*. On your numbers:
#
# * **Where PTQ is already within noise of FP32** (8 bits, often 4-bit weights with per-channel scales), QAT has
#   nothing to recover; it can even lose a little to fine-tuning noise. Ship PTQ and spend the effort on validation
#   and benchmarking.
# * **Where PTQ collapses** (2-bit weights, 4-bit activations), QAT recovers most of the gap for the price of a few
#   epochs. The seconds here are tiny because the models are; for a real network the price is a training pipeline:
#   the training data (PTQ needs only a few hundred unlabeled samples), GPUs, hyperparameters, and a longer release
#   cycle.
# * **Where even QAT does not get close** (2-bit MNIST-1D), the model is too small for the grid: keep the first and
#   last layers at 8 bits, use more bits, or change the model (distillation, chapter 05).
# * The speed side is separate: QAT changes accuracy, not kernels. A W2A8 or W4A4 model runs fast only where the
#   deployment runtime has low-bit kernels (section 8).
#
# ## 8 · Deploy: the converted model in ONNX Runtime
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
counts = op_counts(onnx_path)
print({k: v for k, v in counts.items() if k in ("QuantizeLinear", "DequantizeLinear", "Conv", "Gemm")})
check = parity(qat8_int, onnx_path, [x for x, _ in test_loader])
print(f"torch vs ONNX Runtime: max |diff| {check['max_abs_error']:.2g}, top-1 agreement {check['top1_agreement']:.2%}")
session = ort_session(onnx_path)
ort_acc = np.mean([(ort_run(session, x).argmax(1) == y.numpy()).mean() for x, y in test_loader])
print(f"accuracy: torch QDQ {evaluate(qat8_int, test_loader)['accuracy']:.1%}, ONNX Runtime {ort_acc:.1%}")

# %% [markdown]
# The 2-bit model exports too, but ONNX `QuantizeLinear` has no 2-bit type before opset 21, so its 2-bit weight
# quantizers export as float `Round`/`Clip` arithmetic (the 8-bit activations stay Q/DQ pairs): correct numbers, no integer speed-up. Low-bit *storage* pays off
# today through weight-only kernels (ORT's `MatMulNBits`, GPU int4 GEMMs; chapter 07); low-bit *compute* needs
# hardware and runtime support you have to check first (chapter 00's `coursekit doctor`).

# %%
path2 = export_onnx(qat2_int, x_test[:1], folder / "lenet_qat_w2a8.onnx")
check2 = parity(qat2_int, path2, [x for x, _ in test_loader])
print({k: v for k, v in op_counts(path2).items() if k in ("QuantizeLinear", "Round", "Clip")},
      f"top-1 agreement {check2['top1_agreement']:.2%}")

# %% [markdown]
# ## 9 · Common mistakes
#
# * **Training QAT from scratch, or with the original learning rate.** Start from the trained model and the PTQ
#   scales; fine-tune with a small learning rate for a few epochs (section 4).
# * **Quantizing the unfolded conv weights.** Deployment folds BatchNorm; QAT must quantize the folded weights
#   (`bn="fold"` or `"simulate"`), or it optimises against the wrong rounding error.
# * **Letting BN statistics and activation ranges drift until the end.** Freeze BN statistics and observers for
#   the last epochs (`freeze_bn_stats`, `freeze_observers`); a moving range makes the final scales jitter.
# * **A hand-written STE that disagrees with the exported model.** `x + (round(x) - x).detach()` followed by a
#   clamp is not always torch's gradient in float32 (the mask must be computed on the rounded code). Test against
#   `torch.fake_quantize_per_tensor_affine`.
# * **Evaluating the QAT model instead of the converted one.** Always measure the model you ship (`convert`, then
#   ONNX Runtime, with a parity check).
# * **Paying for QAT where PTQ already works.** Measure the PTQ gap first (section 7); the seeds' advice, "quantizing
#   during training is more complex", cuts both ways.
# * **Expecting QAT to make a model faster.** It changes accuracy at a given bit width; speed comes from the
#   runtime's kernels for that bit width.
#
# ## 10 · Interview questions
#
# Practise with the quiz below (immediate feedback and explanations), or in a terminal with
# `coursekit drill --chapter 03`.

# %%
from coursekit import quiz

quiz.show(chapter="03", n=6)

# %% [markdown]
# ### Graded interview questions
#
# Answer each question in a dictionary called `answers` that maps the question id to your answer: a letter for a
# choice question (`"B"`, or `"A,C"` when several are right), a number for a numeric one. The hidden test checks
# them against the bank installed with coursekit.

# %% locked="quiz_questions"
QUIZ_IDS = ["ch03-rounding-gradient", "ch03-lsq-grad-outside", "ch03-bn-during-qat", "ch03-low-bit-first-last"]
quiz.render(QUIZ_IDS)

# %% solution="quiz_answers"
### BEGIN SOLUTION
answers = {"ch03-rounding-gradient": "B", "ch03-lsq-grad-outside": 127, "ch03-bn-during-qat": "B",
           "ch03-low-bit-first-last": "C"}
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
# * Rounding has a zero gradient; the STE passes gradients straight through inside the integer range (mask on the
#   rounded code) and blocks them where values were clamped. It is biased, which shows up as oscillation.
# * LSQ learns the step: $\partial\hat x/\partial s = \lfloor v\rceil - v$ inside, $q_{min}$/$q_{max}$ outside,
#   scaled by $1/\sqrt{N Q_P}$.
# * QAT = PTQ model + a short fine-tune with the quantizers in the loop + `convert` back to the same QDQ model.
#   Fold BN before (or simulate it during) QAT; keep the first and last layers at 8 bits at very low widths.
# * QAT is worth its cost only where PTQ leaves a gap you care about; measure the gap first.
#
# Next: **04 · Pruning**: removing weights instead of shortening them.
