# %% [markdown] locked="title"
# # 06 · Low-rank factorization and weight sharing
#
# **The deployment problem.** Your classifier has to ship inside a mobile app whose download budget leaves it a
# few kilobytes, and its dense layers dominate both the file and the time per request. Quantization (chapters
# 01-03) shortens every weight; pruning (chapter 04) removes some. This chapter attacks the *structure* of a weight
# matrix in two other ways: **low-rank factorization** writes one big matrix as the product of two thin ones, and
# **weight sharing** lets thousands of weights point at a handful of shared values, which **Huffman coding** then
# stores in fewer bits still. Together with pruning they form **Deep Compression** (Han, Mao & Dally, ICLR 2016).
#
# In this chapter you build, and measure:
#
# 1. the SVD of a trained layer, its singular-value spectrum and the Eckart-Young error of truncating it,
# 2. rank selection by energy and by a sensitivity scan,
# 3. parameters and FLOPs against *measured* latency, and the break-even rank below which factorizing pays,
# 4. conv factorization: channel SVD and Tucker-2,
# 5. LoRA: the same algebra applied to fine-tuning *updates*,
# 6. k-means weight sharing, its centroid fine-tuning, and linear INT4 / NF4 at the same bit width,
# 7. Huffman coding with exact bit counts, and the whole Deep Compression pipeline with every byte counted.
#
# Run the notebook cell by cell (Shift+Enter): "Run All" stops at the first exercise you have not answered yet,
# as in any nbgrader course.
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below it.
# `coursekit check notebooks/06_lowrank.ipynb` grades the whole notebook (hidden tests included) from a terminal.

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
from coursekit import lowrank, share
from coursekit._env import fast_mode
from coursekit.bench import measure_latency
from coursekit.data import get_loaders
from coursekit.grading.sealed import expect_close, expect_equal
from coursekit.train import evaluate, fit, pretrained, seed_everything

FAST = fast_mode()  # True under COURSEKIT_FAST=1 and during grading: smaller runs, same checks
seed_everything(0)
torch.set_num_threads(2)
# The reference model of this chapter: LeNet-300-100's shape (Deep Compression's MNIST anchor) on 8x8 digits,
# always the quickly trained checkpoint (fast=True) so the graded budget exercise has one fixed reference.
model = pretrained("mlp", "digits", hidden=(300, 100), fast=True, progress=False)
loaders = get_loaders("digits", fast=True)
fp32_acc = evaluate(model, loaders.test)["accuracy"]
print(f"coursekit {coursekit.__version__}, torch {torch.__version__}, fast mode: {FAST}")
print(f"reference MLP 64-300-100-10: {sum(p.numel() for p in model.parameters()):,} parameters, "
      f"test accuracy {fp32_acc:.1%} on {len(loaders.test.dataset)} images")

# %% [markdown]
# ## 1 · A layer as a sum of rank-1 maps <a id="svd"></a>
#
# Any weight matrix $W \in \mathbb{R}^{m \times n}$ (out x in) has a singular value decomposition
#
# $$W = U \Sigma V^\top = \sum_{i=1}^{\min(m,n)} \sigma_i\, u_i v_i^\top, \qquad \sigma_1 \ge \sigma_2 \ge \dots \ge 0,$$
#
# with orthonormal columns $u_i$, $v_i$. Each term is a rank-1 map: project the input on $v_i$, scale by
# $\sigma_i$, write along $u_i$. Keeping the $r$ largest terms gives two thin matrices, and the layer
# $y = Wx + b$ becomes two layers: $y = B(Ax) + b$ with $A = \Sigma_r^{1/2} V_r^\top$ ($r \times n$) and
# $B = U_r \Sigma_r^{1/2}$ ($m \times r$).
#
# ### Eckart-Young: the error is what you throw away <a id="eckart-young"></a>
#
# The truncated SVD is the *best* rank-$r$ approximation (Eckart & Young 1936), and its error is exactly the
# discarded spectrum:
#
# $$\lVert W - W_r \rVert_F = \sqrt{\textstyle\sum_{i>r} \sigma_i^2}, \qquad \lVert W - W_r \rVert_2 = \sigma_{r+1}.$$
#
# So the spectrum tells, before touching the model, how much a rank costs. Compare a trained layer's spectrum with
# that of a random matrix of the same shape and scale: where the trained one falls faster, training has put
# low-rank structure into the weights. How much depends on the layer (read the printout under the figure: a
# first layer that reads raw pixels can be close to random), and the energy is only a proxy: section 2 asks the
# model itself.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for ax, name in zip(axes, ("net.1", "net.3")):
    w = dict(model.named_modules())[name].weight.detach()
    trained = lowrank.singular_values(w)
    random_ = lowrank.singular_values(torch.randn_like(w) * w.std())
    ax.semilogy(trained, label="trained")
    ax.semilogy(random_, "--", label="random, same shape and std")
    ax.axvline(lowrank.rank_for_energy(w, 0.9), color="k", lw=0.7, ls=":", label="90% energy (trained)")
    ax.set_title(f"{name}: {tuple(w.shape)}")
    ax.set_xlabel("index i")
    ax.set_ylabel("singular value")
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
for name in ("net.1", "net.3"):
    w = dict(model.named_modules())[name].weight.detach()
    print(f"{name}: 90% of the energy in rank {lowrank.rank_for_energy(w, 0.9)} (trained) vs "
          f"{lowrank.rank_for_energy(torch.randn_like(w) * w.std(), 0.9)} (random) of {min(w.shape)}")

# %% [markdown]
# ### Exercise 1 · Factorize a Linear layer with the SVD
#
# Write `svd_linear(linear, rank)` returning `nn.Sequential(first, second)`: `first = nn.Linear(in, rank,
# bias=False)` with weight $\Sigma_r^{1/2} V_r^\top$ and `second = nn.Linear(rank, out)` with weight
# $U_r \Sigma_r^{1/2}$ and the original bias (or no bias if the layer has none). Use `torch.linalg.svd(W,
# full_matrices=False)` (it returns `U, S, Vh` with `S` sorted in descending order). The output of your two layers
# must equal $W_r x + b$.

# %% solution="ex1_svd"
def svd_linear(linear, rank):
    """Two Linear layers holding the rank-`rank` truncated SVD of `linear` (bias on the second)."""
    ### BEGIN SOLUTION
    w = linear.weight.detach()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:rank].sqrt()
    first = nn.Linear(w.shape[1], rank, bias=False)
    second = nn.Linear(rank, w.shape[0], bias=linear.bias is not None)
    with torch.no_grad():
        first.weight.copy_(root[:, None] * vh[:rank])
        second.weight.copy_(u[:, :rank] * root[None, :])
        if linear.bias is not None:
            second.bias.copy_(linear.bias)
    return nn.Sequential(first, second)
    ### END SOLUTION

# %% tests="ex1_svd_tests" points=3
# Visible tests: the model's first hidden layer at rank 8
layer = model.net[1]
two = svd_linear(layer, 8)
expect_equal([tuple(m.weight.shape) for m in two], [(8, 64), (300, 8)], what="weight shapes of the two layers")
w8 = two[1].weight.detach() @ two[0].weight.detach()
s_all = torch.linalg.svd(layer.weight.detach()).S
expect_close(torch.linalg.norm(layer.weight.detach() - w8).item(), s_all[8:].pow(2).sum().sqrt().item(),
             what="||W - W_8||_F (Eckart-Young: the discarded singular values)", rtol=1e-3,
             wrong={"you kept the 8 *smallest* singular values: S is sorted descending, take the first r":
                    s_all[:-8].pow(2).sum().sqrt().item()})
x = torch.randn(5, 64)
expect_close(two(x).detach().tolist(), (x @ w8.T + layer.bias.detach()).tolist(), what="the two layers compute W_8 x + b",
             atol=1e-5)
### BEGIN HIDDEN TESTS
import torch
from torch import nn  # noqa: F811 (hidden section: its own imports)

from coursekit.grading.sealed import expect_close, expect_equal, forbid, sealed_test

# Wrong answers caught: the r smallest singular values (tail of S); S dropped (U_r V_r^T); S applied twice (U S on
# the second and S V^T on the first); bias dropped; bias on the first layer; V_r used without transposing (shape
# error); delegating to coursekit.lowrank.svd_factorize / svd_factors (forbidden).
EX1_CASES = [(48, 32, 5, True, 11), (20, 40, 7, False, 12), (64, 64, 1, True, 13), (30, 16, 16, True, 14)]


def _ex1_layer(n_in, n_out, bias, seed):
    torch.manual_seed(seed)
    layer = nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(n_out, 4) @ torch.randn(4, n_in) + 0.1 * torch.randn(n_out, n_in))
    return layer, torch.randn(6, n_in)


def _probe():
    out = []
    with forbid("coursekit.lowrank.svd_factorize", "coursekit.lowrank.svd.svd_factorize",
                "coursekit.lowrank.svd_factors", "coursekit.lowrank.svd.svd_factors", exercise="Exercise 1"):
        for n_in, n_out, rank, bias, seed in EX1_CASES:
            layer, x = _ex1_layer(n_in, n_out, bias, seed)
            two = svd_linear(layer, rank)
            out.append({"y": two(x).detach(), "shapes": [list(m.weight.shape) for m in two],
                        "bias": [m.bias is not None for m in two]})
    return out


def _check(out):
    expect_equal(len(out), len(EX1_CASES), what="number of hidden cases")
    for (n_in, n_out, rank, bias, seed), got in zip(EX1_CASES, out):
        layer, x = _ex1_layer(n_in, n_out, bias, seed)
        w = layer.weight.detach().double()
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        b = layer.bias.detach().double() if bias else torch.zeros(n_out, dtype=torch.float64)
        xd = x.double()

        def y_of(weight, bias_=b, xd=xd):
            return (xd @ weight.T + bias_).tolist()

        what = f"svd_linear on a hidden {n_out}x{n_in} layer at rank {rank}"
        expect_equal(got["shapes"], [[rank, n_in], [n_out, rank]], what=f"weight shapes of {what}")
        expect_equal(got["bias"], [False, bias], what=f"which layer has a bias ({what})",
                     wrong={"bias on the first layer: it must be added after the second": [True, False]})
        expect_close(got["y"], y_of(u[:, :rank] @ torch.diag(s[:rank]) @ vh[:rank]), rtol=1e-4, atol=1e-4,
                     what=f"output of {what}", wrong={
                         "the r smallest singular values: take S[:r], the largest": y_of(
                             u[:, -rank:] @ torch.diag(s[-rank:]) @ vh[-rank:]),
                         "singular values dropped (U_r V_r^T): split S between the factors": y_of(
                             u[:, :rank] @ vh[:rank]),
                         "S applied twice: use sqrt(S) on each factor": y_of(
                             u[:, :rank] @ torch.diag(s[:rank] ** 2) @ vh[:rank]),
                         "bias dropped": y_of(u[:, :rank] @ torch.diag(s[:rank]) @ vh[:rank], 0 * b)})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 1 passed")

# %% [markdown]
# `lowrank.svd_factorize(linear, rank)` is coursekit's version (it also keeps dtype and device and checks the
# rank), and `lowrank.factorize_model(model, ranks={"net.1": 8})` swaps layers in place through
# `coursekit.surgery`.
#
# ## 2 · Choosing the rank <a id="rank-selection"></a>
#
# **By energy.** Keep the smallest $r$ whose terms hold a fraction $E$ of $\lVert W\rVert_F^2 = \sum_i \sigma_i^2$:
#
# $$r(E) = \min\Big\{ r : \textstyle\sum_{i \le r} \sigma_i^2 \big/ \sum_i \sigma_i^2 \ge E \Big\}.$$
#
# It needs no data, but it measures the *weights*, not the *accuracy*. **By sensitivity.** Factorize one layer
# at a time at several ranks, and measure the validation accuracy: slower, but it asks the question you care about.
#
# ### Exercise 2 · Rank for an energy target
#
# Write `energy_rank(s, energy)`: given the singular values `s` (a 1-D tensor, descending) and a target in
# $(0, 1]$, return the smallest rank $r$ (a Python `int`, counting from 1) that keeps at least that fraction of the
# energy.

# %% solution="ex2_energy"
def energy_rank(s, energy):
    """Smallest r with sum(s[:r]**2) / sum(s**2) >= energy."""
    ### BEGIN SOLUTION
    kept = torch.cumsum(s.double() ** 2, 0) / (s.double() ** 2).sum()
    return int((kept < energy).sum().item()) + 1
    ### END SOLUTION

# %% tests="ex2_energy_tests" points=2
# Visible tests: the spectrum [10, 6, 3, 1, 0.5] of the quiz (energies 100, 36, 9, 1, 0.25 of 146.25)
s_demo = torch.tensor([10.0, 6.0, 3.0, 1.0, 0.5], dtype=torch.float64)
expect_equal(energy_rank(s_demo, 0.9), 2, what="energy_rank([10, 6, 3, 1, 0.5], 0.9)",
             wrong={"energy of sigma instead of sigma^2: (10 + 6 + 3) / 20.5 = 92.7%": 3,
                    "off by one: a rank counts terms from 1, not an index from 0": 1})
expect_equal(energy_rank(s_demo, 0.5), 1, what="energy_rank(..., 0.5)")
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import expect_equal, forbid, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: sigma instead of sigma^2; index from 0 (r - 1); strict '>' instead of '>=' (exact
# boundaries below, exact in binary: energies of [2, 1, 1, 1, 1] are 4/8, 5/8, 6/8, 7/8, 8/8); energy 1.0 must
# give the full rank (or the last nonzero one); delegating to coursekit.lowrank.rank_for_energy (forbidden).
EX2_CASES = [([2.0, 1.0, 1.0, 1.0, 1.0], 0.75), ([2.0, 1.0, 1.0, 1.0, 1.0], 0.5), ([2.0, 1.0, 1.0, 1.0, 1.0], 1.0),
             ([2.0, 1.0, 1.0, 1.0, 1.0], 0.76), ([10.0, 6.0, 3.0, 1.0, 0.5], 0.99), (None, 0.9), (None, 0.3)]


def _ex2_s(values, i):
    if values is not None:
        return torch.tensor(values, dtype=torch.float64)
    g = torch.Generator().manual_seed(20 + i)
    return torch.sort(torch.rand(40, generator=g, dtype=torch.float64) ** 3 * 5, descending=True).values


def _probe():
    with forbid("coursekit.lowrank.rank_for_energy", "coursekit.lowrank.svd.rank_for_energy", exercise="Exercise 2"):
        return [int(energy_rank(_ex2_s(v, i), e)) for i, (v, e) in enumerate(EX2_CASES)]


def _check(out):
    want, plain, strict = [], [], []
    for i, (v, e) in enumerate(EX2_CASES):
        s = _ex2_s(v, i)
        kept = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
        want.append(int((kept < e).sum()) + 1)
        plain.append(int((torch.cumsum(s, 0) / s.sum() < e).sum()) + 1)
        strict.append(min(int((kept <= e).sum()) + 1, len(s)))
    expect_equal(out, want, what=f"energy_rank on hidden cases {[(v and v[:2], e) for v, e in EX2_CASES]}", wrong={
        "energy of sigma instead of sigma^2": plain, "off by one (an index from 0, not a rank)": [w - 1 for w in want],
        "strict '>': a rank that keeps exactly the target already meets it": strict})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 2 passed")

# %% [markdown]
# Now both rules on the model: for each hidden layer, the accuracy (validation set) of factorizing that layer
# alone, at every rank of a grid, without any fine-tuning. Where the sensitivity curve reaches the dense accuracy
# is the rank the *model* needs; the dotted line is the rank the 90%-energy rule asks for.

# %%
val_dense = evaluate(model, loaders.val)["accuracy"]
grid = [1, 2, 4, 8, 16, 24, 32, 48]
scan = {}
for name in ("net.1", "net.3"):
    scan[name] = {}
    for r in grid:
        m = copy.deepcopy(model)
        lowrank.factorize_model(m, ranks={name: r}, skip_unprofitable=False)
        scan[name][r] = evaluate(m, loaders.val)["accuracy"]
fig, ax = plt.subplots(figsize=(6, 3))
for name, curve in scan.items():
    ax.plot(list(curve), list(curve.values()), "o-", label=name)
    r90 = lowrank.rank_for_energy(dict(model.named_modules())[name].weight, 0.9)
    ax.axvline(r90, ls=":", color=ax.lines[-1].get_color())
ax.axhline(val_dense, color="k", lw=0.7, label="dense")
ax.set_xlabel("rank")
ax.set_ylabel("validation accuracy")
ax.legend()
plt.show()
for name, curve in scan.items():
    ok = [r for r, a in curve.items() if a >= val_dense - 0.005]
    r90 = lowrank.rank_for_energy(dict(model.named_modules())[name].weight, 0.9)
    print(f"{name}: smallest grid rank within 0.5 points of dense: {min(ok) if ok else 'none'}; 90% energy: {r90}")

# %% [markdown]
# ## 3 · Parameters, FLOPs and measured time <a id="param-flop-math"></a>
#
# A dense $m \times n$ layer holds $mn$ weights and does $mn$ multiply-adds per input; the factorized pair holds
# $r(m+n)$ and does as many. Factorizing therefore only *shrinks* the layer when
#
# $$r\,(m + n) < m\,n \iff r < \frac{mn}{m+n} \qquad \text{(the break-even rank; } n/2 \text{ for a square layer)}.$$
#
# Below it, fewer FLOPs still do not guarantee less time: two matmuls instead of one, an intermediate tensor,
# and thin matrices that use the hardware less well. Only a measurement tells.
#
# ### Exercise 3 · The break-even rank
#
# Write `break_even(m, n)`: the largest integer rank $r$ for which $r(m+n) < mn$ (strictly fewer parameters than
# the dense matrix, biases left out). Use integer arithmetic.

# %% solution="ex3_break_even"
def break_even(m, n):
    """Largest r with r * (m + n) < m * n."""
    ### BEGIN SOLUTION
    return (m * n - 1) // (m + n)
    ### END SOLUTION

# %% tests="ex3_break_even_tests" points=2
expect_equal(break_even(1024, 4096), 819, what="break_even(1024, 4096)  (4,194,304 / 5,120 = 819.2)")
expect_equal(break_even(256, 256), 127, what="break_even(256, 256)", wrong={
    "m n / (m + n) = 128 exactly: at r = 128 the factors hold as many weights as W (strictly fewer is asked)": 128})
### BEGIN HIDDEN TESTS
import math  # noqa: F811 (hidden section: its own imports)

from coursekit.grading.sealed import expect_equal, forbid, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: floor(mn / (m + n)) (wrong when m + n divides mn: 256x256, 6x3, 512x512); ceil or round;
# a float returned; (m + n) / (m n) inverted; delegating to coursekit.lowrank.break_even_rank (forbidden).
EX3_CASES = [(1024, 4096), (256, 256), (300, 100), (7, 3), (6, 3), (512, 512), (1, 1), (4096, 11008), (10, 90)]


def _probe():
    with forbid("coursekit.lowrank.break_even_rank", "coursekit.lowrank.svd.break_even_rank", exercise="Exercise 3"):
        return [break_even(m, n) for m, n in EX3_CASES]


def _check(out):
    want = [max(r for r in range(m * n + 1) if r * (m + n) < m * n) if m * n < 10_000 else (m * n - 1) // (m + n)
            for m, n in EX3_CASES]
    expect_equal([int(v) if float(v).is_integer() else v for v in out], want, what=f"break_even on {EX3_CASES}",
                 wrong={"floor(m n / (m + n)): when it divides exactly, that rank is not strictly smaller":
                        [m * n // (m + n) for m, n in EX3_CASES],
                        "rounded m n / (m + n)": [round(m * n / (m + n)) for m, n in EX3_CASES],
                        "ceil(m n / (m + n))": [math.ceil(m * n / (m + n)) for m, n in EX3_CASES]})
    expect_equal([type(v).__name__ for v in out], ["int"] * len(out), what="types returned (an integer rank)")

sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 3 passed")

# %% [markdown]
# Now measure. A square hidden layer of width $d$ at rank $d/8$ does 4x fewer multiply-adds. Time it at batch 1
# in torch eager, one thread, next to the dense layer (the suite in section 9 adds ONNX Runtime, batch 64 and more
# ranks):

# %%
widths = (256, 512) if FAST else (256, 512, 1024)
print(f"{'width':>5} {'rank':>4} {'FLOP ratio':>10} {'dense ms':>9} {'factorized ms':>14} {'speedup':>8}")
for d in widths:
    dense = nn.Linear(d, d).eval()
    small = lowrank.svd_factorize(dense, d // 8).eval()
    x1 = torch.randn(1, d)
    with torch.inference_mode():
        stats = measure_latency({"dense": lambda m=dense, x=x1: m(x), "small": lambda m=small, x=x1: m(x)}, repeats=20,
                                budget_s=0.3 if FAST else 1.0)
    ratio = stats["dense"].median_ms / stats["small"].median_ms
    print(f"{d:5d} {d // 8:4d} {d * d / (2 * d * d // 8):10.1f} {stats['dense'].median_ms:9.4f} "
          f"{stats['small'].median_ms:14.4f} {ratio:7.2f}x")

# %% [markdown]
# Read your own numbers: the FLOP ratio is 4 for every width, the measured ratio is not. In torch eager each
# extra layer costs a fixed Python and dispatch overhead of a few microseconds, which a small layer's arithmetic
# does not hide; ONNX Runtime's overhead is smaller, so factorization pays sooner there (section 9 measures both).
#
# **Explore.** The slider factorizes the model's first hidden layer (`net.1`, 64 -> 300) at the rank you choose
# and shows the weight error, the parameters, the test accuracy (no fine-tuning) and the latency of the whole
# model at batch 1:

# %%
def model_latency(m):
    x1 = loaders.test.dataset[0][0][None]
    with torch.inference_mode():
        return measure_latency({"m": lambda: m(x1)}, repeats=10, budget_s=0.2)["m"].median_ms


lowrank.rank_explorer(model, "net.1", loaders.test, latency_fn=model_latency, ranks=[1, 2, 4, 8, 12, 16, 24, 32, 48])

# %% [markdown]
# ## 4 · Factorizing convolutions <a id="conv-factorization"></a>
#
# A conv weight $W \in \mathbb{R}^{O \times C \times k \times k}$ can be cut two ways.
#
# * **Channel SVD** (Zhang et al., TPAMI 2016): reshape to $O \times (Ck^2)$ and truncate its SVD: a $k\times k$
#   conv with $r$ outputs, then a $1\times 1$ conv $r \to O$.
# * **Tucker-2** (Kim et al., ICLR 2016): compress both channel modes,
#   $W \approx \mathcal{G} \times_1 U_{out} \times_2 U_{in}$ with a core $\mathcal{G}$ of shape
#   $R_{out} \times R_{in} \times k \times k$: a $1\times1$ conv $C \to R_{in}$, the core $k\times k$ conv
#   $R_{in} \to R_{out}$, and a $1\times1$ conv $R_{out} \to O$. HOSVD initialises $U_{in}$ and $U_{out}$ with the
#   leading singular vectors of the two channel unfoldings; HOOI sweeps refine them (coursekit's `tucker2`
#   matches `tensorly`'s `partial_tucker` in the tests).
#
# A 64 -> 64 3x3 conv at rank 16, on a 32x32 feature map:

# %%
conv = nn.Conv2d(64, 64, 3, padding=1).eval()
variants = {"dense": conv, "channel SVD r=16": lowrank.factorize_conv(conv, 16),
            "Tucker-2 r=16": lowrank.tucker2_conv(conv, 16)}
fmap = torch.randn(1, 64, 32, 32)
with torch.inference_mode():
    stats = measure_latency({k: (lambda m=m: m(fmap)) for k, m in variants.items()}, repeats=10,
                            budget_s=0.3 if FAST else 1.0)
for k, m in variants.items():
    n_params = sum(p.numel() for p in m.parameters())
    print(f"{k:18s} {n_params:7,} parameters  {stats[k].median_ms:7.3f} ms  "
          f"{stats['dense'].median_ms / stats[k].median_ms:5.2f}x")

# %% [markdown]
# (On random weights the *error* of these factorizations is large: a random tensor has no low-rank structure.
# The suite in section 9 measures a trained LeNet whose 64-channel conv is factorized, before and after fine-tuning.)
#
# ## 5 · LoRA: factorize the update, not the weights <a id="lora"></a>
#
# SVD compression assumes the *weights* have low rank. LoRA (Hu et al., ICLR 2022) assumes the *change* made by
# fine-tuning does: it freezes $W_0$ and trains $\Delta W = \frac{\alpha}{r} B A$ with $A \in \mathbb{R}^{r\times n}$
# random and $B \in \mathbb{R}^{m \times r}$ zero at the start, so training starts exactly at the base model and
# updates $r(m+n)$ parameters instead of $mn$. After training, $W = W_0 + \frac{\alpha}{r}BA$ is merged: inference
# costs nothing extra, and nothing got smaller. The evidence for the assumption: a full fine-tune's update has a
# spectrum that decays fast (Aghajanyan et al., ACL 2021). Check it here on a shifted task (mirror-imaged digits):

# %%
def mirrored(loader):
    return [(x.flip(-1), y) for x, y in loader]


shift_train, shift_test = mirrored(loaders.train), mirrored(loaders.test)
print(f"base model on mirrored digits: {evaluate(model, shift_test)['accuracy']:.1%}")
full = copy.deepcopy(model)
seed_everything(0)
fit(full, shift_train, epochs=3 if FAST else 8, lr=1e-3, progress=False)
delta = full.net[1].weight.detach() - model.net[1].weight.detach()
w0 = model.net[1].weight.detach()
print(f"full fine-tune: {evaluate(full, shift_test)['accuracy']:.1%}; 90% of ||Delta W||^2 in rank "
      f"{lowrank.rank_for_energy(delta, 0.9)}, of ||W0||^2 in rank {lowrank.rank_for_energy(w0, 0.9)} (of 64)")
lora = copy.deepcopy(model)
for p in lora.parameters():
    p.requires_grad_(False)
for i in (1, 3, 5):
    lora.net[i] = lowrank.LoRALinear(lora.net[i], rank=4, alpha=8)
seed_everything(0)
fit(lora, shift_train, epochs=3 if FAST else 8, lr=3e-3, progress=False)
trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
acc_lora = evaluate(lora, shift_test)["accuracy"]
for i in (1, 3, 5):
    lora.net[i].merge()
print(f"LoRA r=4: {acc_lora:.1%} training {trainable:,} of {sum(p.numel() for p in model.parameters()):,} "
      f"parameters; merged: {evaluate(lora, shift_test)['accuracy']:.1%}")

# %% [markdown]
# ## 6 · Weight sharing: a codebook per layer <a id="weight-sharing"></a>
#
# Instead of a grid fixed in advance (INT4's 16 evenly spaced levels, NF4's 16 normal quantiles), **weight
# sharing** learns the $k = 2^b$ values of each layer from its weights, with k-means (Deep Compression, Sec. 3):
#
# $$\min_{c_1..c_k} \sum_{j=1}^{k} \sum_{w \in \text{cluster } j} (w - c_j)^2,$$
#
# solved by Lloyd's algorithm: **assign** every weight to its nearest centroid, **update** every centroid to the
# mean of its cluster, repeat. The layer then stores $k$ float32 centroids plus a $b$-bit index per weight.
# Deep Compression initialises the centroids *linearly* between min and max rather than by density: the few large
# weights matter most and a density-based start would leave them without a centroid.
#
# ### Exercise 4 · One k-means step
#
# Write `kmeans_step(x, centroids)` for 1-D tensors: return `(labels, new_centroids)` where `labels[i]` is the
# index of the centroid nearest to `x[i]`, and `new_centroids[j]` is the mean of the values labelled `j`; a
# centroid with no values keeps its old value.

# %% solution="ex4_kmeans"
def kmeans_step(x, centroids):
    """One Lloyd iteration: (nearest-centroid labels, updated centroids)."""
    ### BEGIN SOLUTION
    labels = (x[:, None] - centroids[None, :]).abs().argmin(dim=1)
    new = centroids.clone()
    for j in range(len(centroids)):
        members = x[labels == j]
        if len(members):
            new[j] = members.mean()
    return labels, new
    ### END SOLUTION

# %% tests="ex4_kmeans_tests" points=3
x_demo = torch.tensor([0.0, 1.0, 2.0, 10.0, 11.0, 12.0], dtype=torch.float64)
labels_demo, c_demo = kmeans_step(x_demo, torch.tensor([0.0, 12.0, 100.0], dtype=torch.float64))
expect_equal(labels_demo.tolist(), [0, 0, 0, 1, 1, 1], what="labels of kmeans_step(..., [0, 12, 100])",
             wrong={"argmax instead of argmin: the nearest centroid has the *smallest* distance": [2] * 6})
expect_close(c_demo.tolist(), [1.0, 11.0, 100.0], what="new centroids (100 has no members: it keeps its value)",
             wrong={"an empty cluster set to 0: keep its old value": [1.0, 11.0, 0.0]})
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import expect_close, expect_equal, forbid, partial, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: argmax distance; empty cluster set to 0 or NaN (a far-away centroid in every case);
# median instead of mean; centroids updated from the *old* assignment of a previous call (state); labels of the
# sorted centroids when the given ones are unsorted; delegating to coursekit.share.assign / update / lloyd
# (forbidden). Labels and centroids earn separate credit.
EX4_SEEDS = [41, 42, 43]


def _ex4_case(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(500, generator=g, dtype=torch.float64) * 0.1
    c = torch.randn(6, generator=g, dtype=torch.float64) * 0.1
    return x, torch.cat([c, torch.tensor([5.0], dtype=torch.float64)])  # unsorted, and one empty cluster


def _probe():
    out = []
    with forbid("coursekit.share.assign", "coursekit.share.kmeans.assign", "coursekit.share.update",
                "coursekit.share.kmeans.update", "coursekit.share.lloyd", "coursekit.share.kmeans.lloyd",
                exercise="Exercise 4"):
        for seed in EX4_SEEDS:
            labels, new = kmeans_step(*_ex4_case(seed))
            out.append({"labels": labels, "centroids": new})
    return out


def _check(out):
    ok_labels = ok_centroids = True
    for seed, got in zip(EX4_SEEDS, out):
        x, c = _ex4_case(seed)
        labels = (x[:, None] - c[None, :]).abs().argmin(1)
        sums = torch.zeros(len(c), dtype=torch.float64).scatter_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=len(c)).double()
        want = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        medians = torch.stack([x[labels == j].median() if counts[j] else c[j] for j in range(len(c))])
        try:
            expect_equal(list(got["labels"]), labels.tolist(), what=f"labels on hidden case (seed {seed})",
                         wrong={"argmax: the nearest centroid has the smallest distance":
                                (x[:, None] - c[None, :]).abs().argmax(1).tolist()})
        except AssertionError:
            ok_labels = False
        try:
            expect_close(got["centroids"], want.tolist(), what=f"new centroids on hidden case (seed {seed})",
                         rtol=1e-9, atol=1e-12, wrong={
                             "empty cluster set to 0: keep its old value": torch.where(counts > 0, want, 0).tolist(),
                             "median instead of mean": medians.tolist()})
        except AssertionError:
            ok_centroids = False
    return partial([(ok_labels, "assignment (nearest centroid)"), (ok_centroids, "update (cluster means)")])


sealed_test(_probe, _check, points=3)  # last expression: nbgrader reads a returned number as partial credit
### END HIDDEN TESTS

# %% [markdown]
# `share.kmeans_quantize(w, bits, init="linear" | "kmeans++")` runs Lloyd to convergence (k-means++ uses the
# greedy seeding of Arthur & Vassilvitskii, as scikit-learn does; the tests check its inertia against
# scikit-learn's `KMeans`). The codebooks of the first layer at 3 bits (8 values), with both initialisations:

# %%
w1 = model.net[1].weight.detach()
fig, ax = plt.subplots(figsize=(9, 3))
ax.hist(w1.flatten(), bins=120, color="0.7")
for init, style in (("linear", "r-"), ("kmeans++", "b--")):
    book = share.kmeans_quantize(w1, 3, init=init, seed=0)
    for i, c in enumerate(book.centroids):
        ax.axvline(c, color=style[0], ls=style[1:], lw=1, label=f"{init} init (inertia {book.inertia:.3g})"
                   if i == 0 else None)
ax.set_title("net.1 weights and their 3-bit codebooks")
ax.legend()
plt.show()

# %% [markdown]
# ### Fine-tuning the centroids
#
# Every weight of cluster $j$ *is* $c_j$, so the gradient of the loss with respect to $c_j$ is the sum of the
# gradients of its weights (Deep Compression, Eq. 3):
#
# $$\frac{\partial \mathcal{L}}{\partial c_j} = \sum_{i} \frac{\partial \mathcal{L}}{\partial W_i}\, \mathbb{1}(I_i = j).$$
#
# ### Exercise 5 · Centroid gradients
#
# Write `centroid_grad(grad, labels, k)`: a tensor of length `k` whose entry `j` is the sum of `grad` over the
# positions where `labels == j` (`grad` and `labels` have the same shape; a cluster without weights gets 0).

# %% solution="ex5_centroid_grad"
def centroid_grad(grad, labels, k):
    """Sum of the weight gradients per cluster (Deep Compression, Eq. 3)."""
    ### BEGIN SOLUTION
    return torch.zeros(k, dtype=grad.dtype).index_add_(0, labels.reshape(-1), grad.reshape(-1))
    ### END SOLUTION

# %% tests="ex5_centroid_grad_tests" points=2
g_demo = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
l_demo = torch.tensor([[0, 1], [0, 1]])
expect_close(centroid_grad(g_demo, l_demo, 3).tolist(), [2.5, -0.75, 0.0], what="centroid_grad(2x2 example, k=3)",
             wrong={"mean instead of sum (that is the MIT lab's re-centering, not Eq. 3)": [1.25, -0.375, 0.0]})
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: mean per cluster; length = number of *used* clusters (bincount without minlength, the
# last clusters are empty here); summing all gradients into every centroid; delegating to
# coursekit.share.centroid_gradients (forbidden). The reference is autograd through centroids[labels].
EX5_CASES = [((30, 20), 16, 51), ((7, 3, 3, 3), 8, 52)]


def _ex5_case(shape, k, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randint(0, k - 2, shape, generator=g)


def _probe():
    with forbid("coursekit.share.centroid_gradients", "coursekit.share.finetune.centroid_gradients",
                exercise="Exercise 5"):
        return [centroid_grad(*_ex5_case(shape, k, seed), k) for shape, k, seed in EX5_CASES]


def _check(out):
    for (shape, k, seed), got in zip(EX5_CASES, out):
        grad, labels = _ex5_case(shape, k, seed)
        c = torch.zeros(k, requires_grad=True)
        (c[labels] * grad).sum().backward()
        counts = torch.bincount(labels.reshape(-1), minlength=k).clamp(min=1)
        expect_close(got, c.grad.tolist(), what=f"centroid_grad on a hidden {shape} layer, k={k}",
                     rtol=1e-5, atol=1e-5, wrong={"mean instead of sum": (c.grad / counts).tolist()})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 5 passed")

# %% [markdown]
# `share.KMeansQuantizer(model, bits)` gets Eq. 3 from autograd: it re-parametrizes each weight as
# `centroids[labels]`, whose backward is exactly this scatter-add, so the shared training loop `fit` trains the
# codebooks. Accuracy before and after one short fine-tune (the MIT HAN lab's lab 2 saw 92.7 / 81.6 / 16.2% at 8 / 4
# / 2 bits, back to 92.7% at 4 bits after one epoch), next to linear INT4 (one scale per output channel) and NF4
# (blocks of 64) from chapters 01-02, which use a fixed grid and no fine-tuning:

# %%
def shared_model(bits, epochs):
    m = copy.deepcopy(model)
    q = share.KMeansQuantizer(m, bits)
    before = evaluate(m, loaders.test)["accuracy"]
    seed_everything(0)
    fit(m, loaders.train, epochs=epochs, lr=1e-3, progress=False)
    q.remove()
    return m, before, evaluate(m, loaders.test)["accuracy"]


print(f"FP32 {fp32_acc:.1%}")
for bits, epochs in ((8, 1), (4, 1), (2, 2 if FAST else 5)):
    _, before, after = shared_model(bits, epochs)
    print(f"k-means {bits}-bit: {before:.1%} -> {after:.1%} after {epochs} epoch(s) of centroid fine-tuning")
from coursekit.formats import nf4_cast, quantize_dequantize

for label, fn in (("INT4 per channel", lambda w: torch.stack([quantize_dequantize(r, "int4") for r in w])),
                  ("NF4 (blocks of 64)", nf4_cast)):
    m = copy.deepcopy(model)
    with torch.no_grad():
        for i in (1, 3, 5):
            m.net[i].weight.copy_(fn(m.net[i].weight))
    print(f"{label:18s} {evaluate(m, loaders.test)['accuracy']:.1%} (no fine-tuning, plus a scale per row/block)")

# %% [markdown]
# ## 7 · Huffman coding: fewer bits for frequent indices <a id="huffman"></a>
#
# After sharing, a layer is a stream of $b$-bit indices, and they are not equally frequent: clusters near zero
# are crowded. Huffman's code (1952) gives frequent symbols short codewords: repeatedly merge the two least
# frequent subtrees; a symbol's code length is its depth in the tree. Its expected length $L$ per symbol is within
# one bit of the entropy, the bound no symbol-by-symbol code can beat:
#
# $$H = -\sum_s p_s \log_2 p_s \;\le\; L \;<\; H + 1 .$$
#
# Worked example: counts a:4, b:3, c:2, d:1. Merge d+c (3), then that with b (6), then with a (10): lengths
# a=1, b=2, c=3, d=3, so $4\cdot1 + 3\cdot2 + 2\cdot3 + 1\cdot3 = 19$ bits instead of $10 \cdot 2 = 20$.
#
# ### Exercise 6 · Huffman code length
#
# Write `huffman_bits(counts)`: given a dict `{symbol: count}` (counts > 0), return the total number of bits of
# the Huffman-coded sequence, $\sum_s \text{count}_s \cdot \text{length}_s$, as an `int`. A sequence with a single
# distinct symbol still needs 1 bit per symbol. (Hint: `heapq`; the total is the sum of all merged weights.)

# %% solution="ex6_huffman"
import heapq


def huffman_bits(counts):
    """Total bits of the Huffman code of a sequence with these symbol counts."""
    ### BEGIN SOLUTION
    weights = [c for c in counts.values() if c > 0]
    if len(weights) == 1:
        return weights[0]
    heapq.heapify(weights)
    total = 0
    while len(weights) > 1:
        merged = heapq.heappop(weights) + heapq.heappop(weights)
        total += merged
        heapq.heappush(weights, merged)
    return total
    ### END SOLUTION

# %% tests="ex6_huffman_tests" points=2
expect_equal(huffman_bits({"a": 4, "b": 3, "c": 2, "d": 1}), 19, what="huffman_bits(a:4, b:3, c:2, d:1)",
             wrong={"fixed-length code: ceil(log2 4) = 2 bits each": 20,
                    "the entropy bound n H = 18.46 is not a code length": 18})
expect_equal(huffman_bits({"x": 5}), 5, what="huffman_bits({'x': 5}) (one symbol: 1 bit each)",
             wrong={"0 bits: a code still needs one bit per symbol": 0})
### BEGIN HIDDEN TESTS
import math  # noqa: F811 (hidden section: its own imports)

import torch

from coursekit.grading.sealed import expect_equal, forbid, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: fixed-length ceil(log2 k) bits; entropy n*H (rounded or not); Shannon code lengths
# ceil(-log2 p); one symbol -> 0 bits; merging the two *largest* subtrees; delegating to coursekit.share.huffman
# (forbidden). Optimal code *lengths* can differ between trees on ties, the total cannot: that is what is graded.
EX6_FIXED = [{"a": 4, "b": 3, "c": 2, "d": 1}, {0: 8, 1: 4, 2: 2, 3: 2}, {"z": 7}, {1: 1, 2: 1},
             {0: 100, 1: 1, 2: 1, 3: 1, 4: 1}]


def _ex6_cases():
    cases = [dict(c) for c in EX6_FIXED]
    for seed in (61, 62, 63):
        g = torch.Generator().manual_seed(seed)
        k = 4 + seed % 13
        cases.append({s: int(c) for s, c in enumerate(torch.randint(1, 500, (k,), generator=g))})
    return cases


def _probe():
    with forbid("coursekit.share.huffman.coded_bits", "coursekit.share.huffman.code_lengths",
                "coursekit.share.huffman.encode", exercise="Exercise 6"):
        return [huffman_bits(dict(c)) for c in _ex6_cases()]


def _check(out):
    from coursekit.share import huffman

    cases = _ex6_cases()
    want = [huffman.coded_bits(c) for c in cases]
    n = [sum(c.values()) for c in cases]
    expect_equal(out, want, what="huffman_bits on hidden count tables", wrong={
        "fixed-length code (ceil(log2 k) bits per symbol)": [m * max(1, math.ceil(math.log2(len(c))))
                                                             for m, c in zip(n, cases)],
        "entropy n H is a bound, not a code length": [round(huffman.entropy_bits(c)) for c in cases],
        "Shannon lengths ceil(-log2 p) are not optimal": [sum(v * math.ceil(-math.log2(v / m)) for v in c.values())
                                                          for m, c in zip(n, cases)]})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 6 passed")

# %% [markdown]
# On the model's 4-bit indices, fixed length vs Huffman vs the entropy bound (`share.huffman` writes the real
# bitstream, and decodes it back):

# %%
shared4, _, _ = shared_model(4, 1)
for i in (1, 3, 5):
    w = shared4.net[i].weight.detach()
    labels = torch.unique(w, return_inverse=True)[1].flatten().tolist()
    data, lengths = share.huffman.encode(labels)
    assert share.huffman.decode(data, lengths, len(labels)) == labels
    print(f"net.{i}: {len(labels):6,} indices: fixed 4 bits {4 * len(labels) / 8:8,.0f} B, Huffman "
          f"{share.huffman.coded_bits(labels) / 8:8,.0f} B (file {len(data):,} B), entropy bound "
          f"{share.huffman.entropy_bits(labels) / 8:8,.0f} B")

# %% [markdown]
# ## 8 · Deep Compression, every byte counted <a id="deep-compression"></a>
#
# The pipeline of Han, Mao & Dally (ICLR 2016): **prune** the small weights and retrain with the mask, **share**
# the survivors with a k-means codebook and fine-tune the centroids, then **Huffman-code** the indices and the
# positions of the survivors (stored as gaps between consecutive nonzeros, `index_bits` wide, with filler entries
# for longer gaps). On LeNet-300-100 / MNIST the paper reports 40x smaller at no accuracy loss. `share.encode_model`
# writes exactly those bytes (biases stay float32) and `share.decode_model` rebuilds the weights from them, so the
# ratio below is a measurement of a file, not an estimate:

# %%
dc = copy.deepcopy(model)
share.magnitude_prune(dc, {"net.1": 0.9, "net.3": 0.9, "net.5": 0.7})  # the small last layer less (paper, Table 2)
pruned_acc = evaluate(dc, loaders.test)["accuracy"]
seed_everything(0)
fit(dc, loaders.train, epochs=5 if FAST else 10, lr=1e-3, progress=False, callbacks=[share.PruningMask(dc)])
retrained_acc = evaluate(dc, loaders.test)["accuracy"]
q = share.KMeansQuantizer(dc, 4)
fit(dc, loaders.train, epochs=1 if FAST else 3, lr=1e-3, progress=False)
q.remove()
blob, sizes = share.encode_model(dc)
restored = share.decode_model(blob, copy.deepcopy(model))
dc_acc = evaluate(restored, loaders.test)["accuracy"]
print(f"prune 90/90/70%: {pruned_acc:.1%} -> retrained {retrained_acc:.1%} -> 4-bit shared + Huffman {dc_acc:.1%} "
      f"(FP32 {fp32_acc:.1%})")
print(f"{sizes['dense_fp32']:,} B dense FP32 -> {len(blob):,} B: {sizes['dense_fp32'] / len(blob):.1f}x smaller")
print("bytes by part:", {k: v for k, v in sizes.items() if k not in ("total", "dense_fp32")})

# %% [markdown]
# Read the parts: the *positions* of the survivors cost about as much as their *values*, and the float32 biases,
# which nobody compresses, are a visible share of a model this small. Forgetting either is the classic way to
# overstate a compression ratio.
#
# ### Exercise 7 · The smallest model under a byte budget
#
# Produce `my_blob`, the bytes of `share.encode_model(...)` for a compressed copy of `model` (same architecture),
# that is **at most `BUDGET` bytes** (1/20 of the FP32 model) and loses **at most 1 point** of test accuracy. Any
# recipe counts (pruning level, bits, fine-tuning epochs, index bits); the grader decodes your bytes into a fresh
# model and measures both itself. Half the points for the size, half for the accuracy.

# %%
BUDGET = sizes["dense_fp32"] // 20
print(f"budget: {BUDGET:,} bytes; accuracy floor {fp32_acc - 0.01:.1%}")

# %% solution="ex7_budget"
### BEGIN SOLUTION
my_model = copy.deepcopy(dc)  # the pipeline above already fits
my_blob, _ = share.encode_model(my_model)
### END SOLUTION

# %% tests="ex7_budget_tests" points=2
print(f"your blob: {len(my_blob):,} bytes (budget {BUDGET:,})")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import partial, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: no pruning (4-bit sharing of every weight is about 4x too big); 2-bit sharing without
# fine-tuning (accuracy lost); pruning 99% (accuracy lost); bytes of another architecture (decoding fails).
EX7_DIVISOR = 20


def _probe():
    return {"blob": bytes(my_blob).hex()}


def _check(out):
    import copy

    from coursekit import share
    from coursekit.data import get_loaders
    from coursekit.train import evaluate, pretrained

    reference = pretrained("mlp", "digits", hidden=(300, 100), fast=True, progress=False)
    test = get_loaders("digits", fast=True).test
    want_acc = evaluate(reference, test)["accuracy"]
    budget = 4 * sum(t.numel() for t in reference.state_dict().values()) // EX7_DIVISOR
    blob = bytes.fromhex(out["blob"])
    try:
        got_acc = evaluate(share.decode_model(blob, copy.deepcopy(reference)), test)["accuracy"]
    except Exception as err:  # noqa: BLE001 (any failure to decode means the bytes are not this model's)
        raise AssertionError(f"your bytes do not decode into the chapter's MLP: {type(err).__name__}: {err}") from None
    return partial([(len(blob) <= budget, f"size {len(blob):,} B <= budget {budget:,} B"),
                    (got_acc >= want_acc - 0.01 - 1e-9, f"accuracy {got_acc:.2%} >= {want_acc - 0.01:.2%}")])


sealed_test(_probe, _check, points=2)  # last expression: nbgrader reads a returned number as partial credit
### END HIDDEN TESTS

# %% [markdown]
# ## 9 · Benchmark: your hardware (the `lowrank_latency` suite) <a id="benchmark"></a>
#
# The cell below runs `coursekit bench --suite lowrank_latency` on one pinned thread: square Linear layers (256,
# 512, 1024) at ranks d/8, d/4 and d/2 (just above break-even) in torch eager and ONNX Runtime at batch 1 and 64,
# and a 64-channel 3x3 conv with Tucker-2 and channel SVD at rank 16. The reading is generated from *your*
# numbers. The complete suite, `coursekit bench --suite lowrank` (run it in a terminal: it trains and fine-tunes,
# several minutes), adds the accuracy of factorized MLPs (512 and 1024 wide) and of a LeNet with a Tucker-2 conv
# before and after fine-tuning, the rank a sensitivity scan picks against the 90%-energy rule, k-means 8/4/2 bits
# with centroid fine-tuning next to INT4 and NF4, and Deep Compression's bytes.

# %%
from coursekit.suites import run_suite
from coursekit.suites.lowrank import reading

result = run_suite("lowrank_latency", fast=FAST, progress=False)
print(reading(result["records"]))

# %% [markdown]
# How to read it: the break-even rank bounds what *can* pay; the measured speedup says what *does*. Speedups are
# ratios of medians; where another program disturbed the medians, the reading adds the ratio of the fastest
# samples ("min-to-min"), which measures the work itself, and you should rerun on a quieter machine. A layer of
# width 256 at batch 1 is too small for the saved arithmetic to beat the cost of a second operator: look for it in
# the "does not pay" line (typically in torch eager, whose per-layer overhead is the largest). Wide layers, and a
# graph runtime (ONNX Runtime), are where low-rank pays; at batch 64 the GEMMs are compute-bound and the FLOP
# ratio shows more directly. Weight sharing, by contrast, saves *bytes*, not time: the k-means model still runs
# dense float32 matmuls after decoding (a lookup kernel would be needed to run it from the codebook).
#
# ## 10 · Common mistakes <a id="mistakes"></a>
#
# * **Factorizing tiny layers.** Below a few hundred features, or at a rank near $mn/(m+n)$, the factorized
#   pair is as big and slower; the suite's 256-wide layer shows it.
# * **Counting FLOPs instead of measuring.** The same 4x FLOP reduction can make a small layer slower in torch
#   eager and a wide one several times faster in ONNX Runtime on the same CPU; measure in the runtime you ship.
# * **Choosing the rank by energy alone.** 90% of the energy can ask for far more rank than the accuracy needs (or,
#   in a sensitive layer, too little); scan the accuracy, then fine-tune.
# * **Forgetting index storage in codebook sizes.** A 4-bit codebook model is not "8x smaller than FP32": add the
#   codebook, the positions of the nonzeros after pruning, and the uncompressed biases, and measure the file.
# * **Fine-tuning shared weights as if they were free.** Update the centroids with the *summed* gradient of their
#   cluster (or re-center them), otherwise the weights drift apart and the codebook is gone.
# * **Confusing LoRA with compression.** LoRA makes fine-tuning cheap; the merged model has exactly the original
#   size.
# * **Reporting Huffman gains against the entropy.** The entropy is a bound; the Huffman code is up to one bit per
#   symbol above it, and the file adds the code table and padding.
#
# ## 11 · Interview questions <a id="interview"></a>
#
# Practise with the quiz below (immediate feedback and explanations), or in a terminal with
# `coursekit drill --chapter 06`. The graded questions further down are left out of the practice quiz.

# %% locked="quiz_ids"
from coursekit import quiz

QUIZ_IDS = ["ch06-frobenius-error", "ch06-break-even-rank", "ch06-linear-to-two", "ch06-lora-relation",
            "ch06-kmeans-ratio", "ch06-centroid-finetune", "ch06-deep-compression"]
quiz.show(chapter="06", n=6, exclude=QUIZ_IDS)

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
    "ch06-frobenius-error": 3.2016,
    "ch06-break-even-rank": 819,
    "ch06-linear-to-two": "D",
    "ch06-lora-relation": "B",
    "ch06-kmeans-ratio": 6.3987,
    "ch06-centroid-finetune": "A",
    "ch06-deep-compression": "D",
}
### END SOLUTION

# %% tests="quiz_answers_tests" points=7
# One point per question. Visible: which questions you have not answered yet.
unanswered = [qid for qid in QUIZ_IDS if not isinstance(answers, dict) or qid not in answers]
print("not answered yet: " + ", ".join(unanswered) if unanswered else "all questions answered")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import sealed_quiz

# one point per question; the returned number is nbgrader's partial credit
sealed_quiz(["ch06-frobenius-error", "ch06-break-even-rank", "ch06-linear-to-two", "ch06-lora-relation",
            "ch06-kmeans-ratio", "ch06-centroid-finetune", "ch06-deep-compression"])
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# * The truncated SVD is the best rank-$r$ approximation; its error is the discarded spectrum (Eckart-Young), and a
#   trained layer's spectrum can fall faster than a random one's (check it per layer).
# * Choose ranks by a sensitivity scan (energy is a cheap first guess), then fine-tune.
# * Factorizing saves parameters only below $r < mn/(m+n)$, and saves *time* only where the runtime and the layer
#   size let the smaller GEMMs win: wide layers, graph runtimes; not tiny layers in eager mode.
# * Convolutions factorize by channel SVD or Tucker-2; LoRA applies the same low-rank idea to fine-tuning updates.
# * Weight sharing stores a per-layer k-means codebook plus indices; centroids fine-tune with the summed gradients
#   of their clusters; Huffman coding then spends fewer bits on frequent indices.
# * Deep Compression (prune -> share -> Huffman) shrinks the MLP by the factor printed above, measured on the
#   bytes of a file that decodes back to the model.
#
# Next: **07 · LLM compression**.
