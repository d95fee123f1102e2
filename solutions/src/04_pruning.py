# %% [markdown] locked="title"
# # 04 · Pruning: unstructured, N:M and structured
#
# **The deployment problem.** Your model is accurate but too big or too slow for its target, and most of its
# weights are close to zero. Pruning removes them. The catch, and the lesson of this chapter: a zero in a dense
# tensor is still stored and still multiplied. Unstructured sparsity saves *storage* only in a sparse format and
# *time* only with sparse kernels; structured (channel) pruning gives smaller dense layers that are faster
# everywhere. You will prune, fine-tune, store and time models and see both halves on your own CPU.
#
# In this chapter you build:
#
# 1. fine-grained magnitude masks, per layer and with one global threshold (Han et al. 2015);
# 2. the sensitivity scan, and per-layer sparsities chosen for a size target;
# 3. prune -> fine-tune -> recover, and gradual (cubic, Zhu & Gupta 2017) vs one-shot pruning;
# 4. N:M (2:4) sparsity, the pattern NVIDIA's sparse tensor cores run;
# 5. channel pruning that physically shrinks two consecutive convolutions, and MACs vs measured latency;
# 6. sparse storage formats (CSR, bitmask, N:M) with exact byte counts, and where they break even;
# 7. lottery tickets: a winning ticket vs random re-initialisation, measured.
#
# Run the notebook cell by cell (Shift+Enter): "Run All" stops at the first exercise you have not answered yet,
# as in any nbgrader course.
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below
# it. `coursekit check notebooks/04_pruning.ipynb` grades the whole notebook (hidden tests included).

# %% locked="setup"
# Setup: run this first. Warnings are silenced so that graded cells stay clean.
import copy
import math
import warnings

warnings.filterwarnings("ignore")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import coursekit
from coursekit import bench, prune
from coursekit._env import fast_mode
from coursekit.data import get_loaders
from coursekit.grading.sealed import expect_close, expect_equal
from coursekit.models import build_model
from coursekit.prune import explore
from coursekit.surgery import WEIGHT_LAYER_TYPES, get_layer, named_layers
from coursekit.train import evaluate, finetune, pretrained

FAST = fast_mode()  # True under COURSEKIT_FAST=1 and during grading: smaller runs, same checks
torch.manual_seed(0)
model = pretrained("lenet", "digits", progress=False)  # the digits LeNet of chapters 00-03, cached
train_loader, val_loader, test_loader = get_loaders("digits")
dense_acc = evaluate(model, test_loader)["accuracy"]
print(f"coursekit {coursekit.__version__}, torch {torch.__version__}, fast mode: {FAST}; "
      f"LeNet test accuracy {dense_acc:.2%} on {len(test_loader.dataset)} images")

# %% [markdown]
# <a id="what-is-pruning"></a>
# ## 1 · Why networks can be pruned
#
# Trained networks are over-parameterised: many more weights than the task needs, which makes them easy to
# train (Frankle & Carbin 2019 argue the extra weights are what lets SGD find a good sub-network). Most weights end
# up near zero. The histograms of the LeNet's five weight layers show it: a sharp peak at 0, thin tails.

# %%
explore.plot_weight_histograms(model)
plt.tight_layout()
plt.show()
for row in prune.sparsity_report(model)[:-1]:
    w = get_layer(model, row["layer"]).weight.detach().abs().flatten()
    small = float((w < 0.1 * w.max()).float().mean())
    print(f"{row['layer']:13s} {row['params']:6,d} weights, {small:.0%} below a tenth of the largest |w|")

# %% [markdown]
# **Pruning** removes parameters that contribute little: single weights (*unstructured* or *fine-grained*),
# groups of weights in a fixed pattern (*N:M*, *semi-structured*), or whole neurons, channels, heads or layers
# (*structured*). It always has the same loop: **score** the candidates (here by magnitude), **remove** the
# lowest, **fine-tune** to recover, and **measure** what was saved: parameters, bytes on disk, MACs, and the
# latency that the runtime actually delivers.
#
# <a id="magnitude"></a>
# ## 2 · Magnitude pruning
#
# For a weight tensor $W$ and a sparsity $s$ (the fraction of entries set to zero), magnitude pruning keeps the
# largest $|W_i|$ (Han et al. 2015):
#
# $$M_i = \mathbb{1}\left[\,|W_i| > t\,\right], \qquad t = \text{the } k\text{-th smallest } |W_i|, \quad
# k = \operatorname{round}(s \cdot \text{numel}(W)), \qquad W' = W \odot M.$$
#
# The mask is applied by *reparametrisation* (the design of `torch.nn.utils.prune`): the trained weights move to
# `weight_orig`, a 0/1 buffer `weight_mask` is added, and before every forward pass `weight = weight_orig *
# weight_mask`. Gradients reach only the kept weights, so the zeros survive fine-tuning; `prune.remove` bakes the
# product into a plain parameter (do it before export).

# %%
layer = copy.deepcopy(model.classifier[1])
prune.magnitude_prune(layer, "weight", amount=0.8)
print("parameters:", [n for n, _ in layer.named_parameters()], " buffers:", [n for n, _ in layer.named_buffers()])
print(f"zeros in the weight the forward pass uses: {float((layer.weight == 0).float().mean()):.0%}")
prune.remove(layer)
print("after remove:", [n for n, _ in layer.named_parameters()], [n for n, _ in layer.named_buffers()],
      f"zeros kept: {float((layer.weight == 0).float().mean()):.0%}")

# %% [markdown]
# ### Exercise 1 · A fine-grained magnitude mask
#
# Write `my_magnitude_mask(weight, sparsity)` returning a float tensor of the same shape as `weight`, 0.0 at the
# `k = round(sparsity * weight.numel())` entries of smallest **absolute value** and 1.0 elsewhere (Python's `round`,
# as `torch.nn.utils.prune` does). `weight` may have any shape (a conv weight is 4-d). The hidden inputs have no
# ties.

# %% solution="ex1_magnitude_mask"
def my_magnitude_mask(weight, sparsity):
    """0/1 mask zeroing the round(sparsity * numel) smallest-|w| entries of `weight`."""
    ### BEGIN SOLUTION
    k = round(sparsity * weight.numel())
    mask = torch.ones_like(weight, dtype=torch.float32)
    if k > 0:
        idx = torch.topk(weight.detach().abs().flatten(), k, largest=False).indices
        mask.view(-1)[idx] = 0.0
    return mask
    ### END SOLUTION

# %% tests="ex1_magnitude_mask_tests" points=2
# Visible tests. |w| sorted: 0.02 0.05 0.1 | 0.3 0.6 0.8 -> the three smallest go at 50%
w = torch.tensor([[0.1, -0.8, 0.05], [0.3, -0.02, 0.6]])
expect_equal(my_magnitude_mask(w, 0.5).tolist(), [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]], what="my_magnitude_mask(w, 0.5)",
             wrong={"ranked by the signed value (-0.8 is one of the largest weights): use |w|":
                    [[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]],
                    "kept the smallest and pruned the largest": [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]})
# 0.25 * 6 = 1.5 entries: round half to even gives 2 (the two smallest, 0.02 and 0.05)
expect_equal(my_magnitude_mask(w, 0.25).tolist(), [[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]], what="my_magnitude_mask(w, 0.25)",
             wrong={"k truncated with int(): int(1.5) = 1, round(1.5) = 2": [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]})
expect_equal(my_magnitude_mask(w, 0.0).tolist(), [[1.0] * 3] * 2, what="my_magnitude_mask(w, 0.0)")
### BEGIN HIDDEN TESTS
import math  # noqa: F811 (each hidden section stands alone)

from coursekit.grading.sealed import expect_equal, forbid, sealed_test

# wrong answers caught: ranking by the signed value instead of |w|; keeping the smallest instead of the largest;
# k = int(s * n) or ceil(s * n) instead of round(s * n); delegating to coursekit.prune.magnitude_mask or
# torch.nn.utils.prune (forbidden while the probe runs)
CASES = [((8, 16), 0.5, 1), ((3, 4, 3, 3), 0.35, 2), ((50,), 0.9, 3), ((6, 5), 0.25, 4), ((7, 7), 0.75, 5),
         ((10, 3), 0.05, 6), ((4, 4), 1.0, 7), ((20,), 0.0, 8), ((5, 5), 0.33, 9), ((10,), 0.25, 10)]


def _weights():
    import torch
    return [torch.randn(shape, generator=torch.Generator().manual_seed(seed)) for shape, _, seed in CASES]


def _probe():
    with forbid("coursekit.prune.magnitude_mask", "coursekit.prune.magnitude.magnitude_mask",
                "torch.nn.utils.prune.l1_unstructured", exercise="Exercise 1"):
        return [my_magnitude_mask(w, s) for w, (_, s, _) in zip(_weights(), CASES)]


def _check(out):
    import torch
    import torch.nn.utils.prune as tprune

    def reference(w, s):
        return tprune.L1Unstructured(amount=s).compute_mask(w, default_mask=torch.ones_like(w))

    weights = _weights()
    want = [reference(w, s).tolist() for w, (_, s, _) in zip(weights, CASES)]
    got = [torch.as_tensor(o, dtype=torch.float32).tolist() for o in out]

    def variant(rank, count):
        masks = []
        for w, (_, s, _) in zip(weights, CASES):
            k = count(s * w.numel())
            m = torch.ones(w.numel())
            if k:
                m[torch.topk(rank(w).flatten(), k, largest=False).indices] = 0
            masks.append(m.reshape(w.shape).tolist())
        return masks

    expect_equal(got, want, what="my_magnitude_mask on hidden tensors (2-d, 4-d conv, 1-d)", wrong={
        "ranked by the signed value instead of the magnitude |w|": variant(lambda w: w, round),
        "kept the smallest-|w| entries instead of the largest": variant(lambda w: -w.abs(), round),
        "k = int(s * numel) truncates; use round(s * numel)": variant(lambda w: w.abs(), int),
        "k = ceil(s * numel); use round(s * numel)": variant(lambda w: w.abs(), math.ceil),
    })


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 1 passed")

# %% [markdown]
# ### Prune, fine-tune, recover
#
# Pruning without fine-tuning throws accuracy away; a few epochs of fine-tuning with the mask held fixed recover
# most of it. The curve below prunes the LeNet globally (next section) to each sparsity, then fine-tunes with
# `coursekit.train.finetune` (SGD, cosine learning rate); the masks stay applied through every optimizer step.

# %%
sparsities = [0.5, 0.8, 0.9, 0.95] if not FAST else [0.5, 0.9]
ft_epochs = 1 if FAST else 3
curve = {"before": [], "after": []}
for s in sparsities:
    m = copy.deepcopy(model)
    prune.global_magnitude_prune([(layer, "weight") for _, layer in named_layers(m, WEIGHT_LAYER_TYPES)], s)
    curve["before"].append(evaluate(m, test_loader)["accuracy"])
    torch.manual_seed(0)
    finetune(m, train_loader, epochs=ft_epochs, lr=0.01)
    curve["after"].append(evaluate(m, test_loader)["accuracy"])
    print(f"sparsity {s:.0%}: {curve['before'][-1]:.2%} after pruning -> {curve['after'][-1]:.2%} after "
          f"{ft_epochs} epoch(s) of fine-tuning (dense {dense_acc:.2%}); zeros still {prune.sparsity(m):.1%}")
fig, ax = plt.subplots(figsize=(5, 2.6))
ax.plot(sparsities, curve["before"], "o-", label="pruned, no fine-tuning")
ax.plot(sparsities, curve["after"], "o-", label="pruned + fine-tuned")
ax.axhline(dense_acc, color="gray", ls="--", label="dense")
ax.set_xlabel("global sparsity")
ax.set_ylabel("test accuracy")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# <a id="global-vs-layer"></a>
# ## 3 · Local vs global
#
# *Layer-wise* (local) pruning gives every layer the same sparsity. *Global* pruning ranks all weights of all
# layers together and uses **one** threshold $t$: layers with many small weights (usually the big fully connected
# ones) lose more, small sensitive layers less. Its risk: a layer whose weights are systematically smaller (other
# initialisation, normalisation after it) can be pruned almost entirely, disconnecting the network; cap the
# per-layer sparsity or exclude the first and last layers.

# %%
for scope in ("layer", "global"):
    m = copy.deepcopy(model)
    targets = [(layer, "weight") for _, layer in named_layers(m, WEIGHT_LAYER_TYPES)]
    if scope == "global":
        prune.global_magnitude_prune(targets, 0.8)
    else:
        for layer, name in targets:
            prune.magnitude_prune(layer, name, 0.8)
    per_layer = ", ".join(f"{r['layer']} {r['sparsity']:.0%}" for r in prune.sparsity_report(m)[:-1])
    print(f"{scope:6s} 80%: accuracy {evaluate(m, test_loader)['accuracy']:.2%} before fine-tuning; {per_layer}")

# %% [markdown]
# ### Exercise 2 · One global threshold
#
# Write `my_global_masks(weights, sparsity)`: `weights` is a list of tensors (any shapes); return a list of 0/1
# float masks (same shapes) that together prune the `round(sparsity * N)` smallest-|w| entries among **all** `N`
# entries of all tensors, as `torch.nn.utils.prune.global_unstructured` does.

# %% solution="ex2_global"
def my_global_masks(weights, sparsity):
    """Masks pruning the round(sparsity * total) smallest |w| over all tensors together."""
    ### BEGIN SOLUTION
    flat = torch.cat([w.detach().abs().flatten() for w in weights])
    k = round(sparsity * flat.numel())
    keep = torch.ones_like(flat)
    if k > 0:
        keep[torch.topk(flat, k, largest=False).indices] = 0.0
    masks, start = [], 0
    for w in weights:
        masks.append(keep[start:start + w.numel()].reshape(w.shape))
        start += w.numel()
    return masks
    ### END SOLUTION

# %% tests="ex2_global_tests" points=2
# Visible tests: |w| over both tensors: 0.05 0.1 0.2 | 0.3 0.4 0.6 -> global 50% prunes 0.05, 0.1 and 0.2;
# layer-wise 50% would prune 2 of each tensor (round(1.5) = 2): 0.05, 0.1 and 0.2, 0.3
a, b = torch.tensor([0.1, -0.6, 0.05]), torch.tensor([[0.3], [-0.2], [0.4]])
got = [m.tolist() for m in my_global_masks([a, b], 0.5)]
expect_equal(got, [[0.0, 1.0, 0.0], [[1.0], [0.0], [1.0]]], what="my_global_masks([a, b], 0.5)", wrong={
    "pruned each tensor separately (layer-wise): one threshold over all tensors is asked":
        [[0.0, 1.0, 0.0], [[0.0], [0.0], [1.0]]],
    "ranked by the signed value (-0.6 is the largest magnitude): use |w|": [[1.0, 0.0, 0.0], [[1.0], [0.0], [1.0]]]})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_equal, forbid, sealed_test  # noqa: F811

# wrong answers caught: layer-wise masks (each tensor pruned to the same sparsity); ranking by signed value;
# averaging per-layer thresholds; delegating to coursekit.prune.global_magnitude_prune or torch's
# global_unstructured (forbidden while the probe runs)
SHAPES = [((16, 8), 0.05), ((32, 16), 1.0), ((10, 32), 0.3), ((4, 2, 3, 3), 2.0)]
SPARSITIES = [0.5, 0.8, 0.33]


def _weights(seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(shape, generator=g) for shape, scale in SHAPES]


def _probe():
    with forbid("coursekit.prune.global_magnitude_prune", "coursekit.prune.magnitude.global_magnitude_prune",
                "torch.nn.utils.prune.global_unstructured", exercise="Exercise 2"):
        return [my_global_masks(_weights(i), s) for i, s in enumerate(SPARSITIES)]


def _check(out):
    import torch
    import torch.nn.utils.prune as tprune

    def reference(ws, s):
        params = [torch.nn.Module() for _ in ws]
        for p, w in zip(params, ws):
            p.weight = torch.nn.Parameter(w.clone())
        tprune.global_unstructured([(p, "weight") for p in params], pruning_method=tprune.L1Unstructured, amount=s)
        return [p.weight_mask.tolist() for p in params]

    def layerwise(ws, s):
        return [tprune.L1Unstructured(amount=s).compute_mask(w, torch.ones_like(w)).tolist() for w in ws]

    def signed(ws, s):
        flat = torch.cat([w.flatten() for w in ws])
        k = round(s * flat.numel())
        keep = torch.ones_like(flat)
        keep[torch.topk(flat, k, largest=False).indices] = 0
        out, i = [], 0
        for w in ws:
            out.append(keep[i:i + w.numel()].reshape(w.shape).tolist())
            i += w.numel()
        return out

    cases = [(_weights(i), s) for i, s in enumerate(SPARSITIES)]
    got = [[torch.as_tensor(m, dtype=torch.float32).tolist() for m in masks] for masks in out]
    expect_equal(got, [reference(ws, s) for ws, s in cases], what="my_global_masks on hidden layers of different scales",
                 wrong={"each tensor pruned separately to the same sparsity (layer-wise), not one global threshold":
                        [layerwise(ws, s) for ws, s in cases],
                        "ranked by the signed value instead of |w|": [signed(ws, s) for ws, s in cases]})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 2 passed")

# %% [markdown]
# ## 4 · The sensitivity scan: how much can each layer lose?
#
# Prune **one layer at a time** to each sparsity, leave the others dense, and measure accuracy without
# fine-tuning (Han et al. 2015, Figure 5; Li et al. 2017, section 4.1). A flat curve means the layer is robust; a
# curve that falls early marks a sensitive layer (often the first conv, which has few weights, and the last layer,
# which produces the logits). Give robust layers high sparsity and sensitive ones little: that is how per-layer
# sparsities are chosen for a size target.

# %%
scan_sparsities = [0.3, 0.5, 0.7, 0.8, 0.9] if not FAST else [0.5, 0.7, 0.9]
scan = prune.sensitivity_scan(model, lambda m: evaluate(m, test_loader)["accuracy"], scan_sparsities)
prune.plot_sensitivity(scan)
plt.show()
weights_per_layer = {r["layer"]: r["params"] for r in prune.sparsity_report(model)[:-1]}
for name, accs in scan["layers"].items():
    print(f"{name:13s} {weights_per_layer[name]:6,d} weights ({weights_per_layer[name] / sum(weights_per_layer.values()):5.1%}"
          f" of all): " + ", ".join(f"{s:.0%} -> {a:.1%}" for s, a in zip(scan["sparsities"], accs)))

# %% [markdown]
# ### Exercise 3 · Per-layer sparsities for a size target (graded on the result)
#
# Choose `plan`, a dict `{layer name: sparsity}` over the five weight layers above, such that after magnitude
# pruning each layer to its sparsity and the fixed fine-tuning below (`plan_result`: 3 epochs of
# `coursekit.train.finetune`, seed 0), the model keeps **at most 30% of its dense non-zero weights** and loses
# **at most 1 point** of test accuracy. Use the scan: the weight counts tell you where the size is, the curves
# where the sensitivity is. One point for each of the two targets.

# %%
def plan_result(plan, base=None):
    """Prune a copy of the LeNet layer by layer with `plan`, fine-tune 3 epochs (seed 0), return the numbers."""
    base = model if base is None else base
    m = copy.deepcopy(base)
    for name, s in plan.items():
        prune.magnitude_prune(get_layer(m, name), "weight", float(s))
    torch.manual_seed(0)
    finetune(m, train_loader, epochs=3, lr=0.01)
    kept = prune.nonzero_weights(m) / prune.nonzero_weights(base)
    return {"kept": kept, "accuracy": evaluate(m, test_loader)["accuracy"],
            "dense_accuracy": evaluate(base, test_loader)["accuracy"]}

# %% solution="ex3_plan"
### BEGIN SOLUTION
plan = {"features.0": 0.0, "features.4": 0.5, "classifier.1": 0.85, "classifier.3": 0.8, "classifier.5": 0.3}
### END SOLUTION

# %% tests="ex3_plan_tests" points=2
# Visible: the result on your kernel's model (the hidden test recomputes it in a clean process)
res = plan_result(plan)
print(f"kept {res['kept']:.1%} of the non-zero weights (target <= 30%), accuracy {res['accuracy']:.2%} vs dense "
      f"{res['dense_accuracy']:.2%} ({100 * (res['accuracy'] - res['dense_accuracy']):+.2f} points, target >= -1)")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import partial, sealed_test

# wrong answers caught: a plan too light for the size target (e.g. 50% everywhere: 50% of the weights kept);
# a plan that reaches the size by gutting a sensitive layer (e.g. the first conv or the logits layer at 95%,
# more than 1 point lost); unknown layer names or sparsities outside [0, 1] (no credit)
LAYERS = ["features.0", "features.4", "classifier.1", "classifier.3", "classifier.5"]


def _probe():
    return {"plan": plan}


def _check(out):
    import copy

    import torch

    from coursekit import prune
    from coursekit.data import get_loaders
    from coursekit.surgery import get_layer
    from coursekit.train import evaluate, finetune, pretrained

    given = out["plan"]
    if not isinstance(given, dict) or set(given) - set(LAYERS):
        raise AssertionError(f"plan must be a dict whose keys are among {LAYERS}, got {given!r}")
    if not all(isinstance(v, (int, float)) and 0 <= v < 1 for v in given.values()):
        raise AssertionError("every sparsity in plan must be a number in [0, 1)")
    base = pretrained("lenet", "digits", progress=False)
    train, _, test = get_loaders("digits")
    m = copy.deepcopy(base)
    for name, s in given.items():
        prune.magnitude_prune(get_layer(m, name), "weight", float(s))
    torch.manual_seed(0)
    finetune(m, train, epochs=3, lr=0.01)
    kept = prune.nonzero_weights(m) / prune.nonzero_weights(base)
    drop = 100 * (evaluate(base, test)["accuracy"] - evaluate(m, test)["accuracy"])
    return partial([(kept <= 0.30, f"size: {kept:.1%} of the non-zero weights kept (target <= 30%)"),
                    (drop <= 1.0, f"accuracy: {drop:+.2f} points lost after fine-tuning (target <= 1)")])


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 3 result recorded")

# %% [markdown]
# <a id="n-m"></a>
# ## 5 · N:M sparsity, and why GPUs like it
#
# Unstructured zeros fall anywhere, so a kernel cannot know in advance which products to skip. **N:M** sparsity
# fixes the pattern: in every group of $m$ consecutive weights along the input (reduction) dimension, at most $n$
# are non-zero. At **2:4** (50%), NVIDIA Ampere and later sparse tensor cores store the 2 kept values of each group
# plus a 2-bit index each, and skip the zeros, for up to 2x matmul throughput (Mishra et al. 2021). The price: the
# choice is local (the 2 largest of each 4, even if a pruned weight is larger than a kept one elsewhere), so it
# costs a little more accuracy than unstructured 50%. A CPU has no such kernel: torch's
# `to_sparse_semi_structured` refuses CPU tensors.
#
# For a Linear weight (out, in) the groups run along each row; for a conv weight (out, in, kh, kw) along the
# flattened (in, kh, kw) of each output channel.

# %% [markdown]
# ### Exercise 4 · The N:M mask
#
# Write `my_nm_mask(weight, n, m)` for a 2-d `weight` (out, in) whose `in` divides by `m`: a float 0/1 mask that
# keeps, in every group of `m` consecutive entries of each row, the `n` of largest |w|.

# %% solution="ex4_nm"
def my_nm_mask(weight, n, m):
    """Keep the n largest |w| of every m consecutive entries along dim 1."""
    ### BEGIN SOLUTION
    rows, cols = weight.shape
    groups = weight.detach().abs().reshape(rows, cols // m, m)
    mask = torch.zeros_like(groups)
    mask.scatter_(2, torch.topk(groups, n, dim=2).indices, 1.0)
    return mask.reshape(rows, cols)
    ### END SOLUTION

# %% tests="ex4_nm_tests" points=2
# Visible tests: group 1 [0.3, -0.9, 0.1, 0.5] keeps -0.9, 0.5; group 2 [-0.2, 0.05, 0.7, 0.01] keeps -0.2, 0.7
w = torch.tensor([[0.3, -0.9, 0.1, 0.5, -0.2, 0.05, 0.7, 0.01]])
expect_equal(my_nm_mask(w, 2, 4).tolist(), [[0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]], what="my_nm_mask(w, 2, 4)",
             wrong={"ranked by the signed value: -0.9 is the largest magnitude of its group":
                    [[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]],
                    "global 50% instead of 2 per group of 4 (0.3 is pruned in its group although larger than -0.2)":
                    [[1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]]})
expect_close(float(my_nm_mask(torch.randn(6, 12), 1, 3).sum()), 24.0, what="kept count of 1:3 on a 6x12 weight")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_equal, forbid, sealed_test  # noqa: F811

# wrong answers caught: signed values; keeping the smallest; groups along the output dimension (columns);
# strided groups (every (in/m)-th entry); a global threshold instead of per-group; delegating to
# coursekit.prune.nm_mask (forbidden while the probe runs)
CASES = [((8, 16), 2, 4, 1), ((4, 24), 1, 4, 2), ((6, 12), 2, 3, 3), ((16, 32), 2, 8, 4), ((3, 8), 4, 4, 5)]


def _w(shape, seed):
    import torch
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _probe():
    with forbid("coursekit.prune.nm_mask", "coursekit.prune.nm.nm_mask", exercise="Exercise 4"):
        return [my_nm_mask(_w(shape, seed), n, m) for shape, n, m, seed in CASES]


def _check(out):
    import torch

    from coursekit.prune import magnitude_mask, nm_mask

    def by(fn):
        return [fn(_w(shape, seed), n, m).tolist() for shape, n, m, seed in CASES]

    def strided(w, n, m):
        r, c = w.shape
        g = w.abs().reshape(r, m, c // m).transpose(1, 2)
        mask = torch.zeros_like(g).scatter_(2, torch.topk(g, n, dim=2).indices, 1.0)
        return mask.transpose(1, 2).reshape(r, c)

    def columns(w, n, m):
        return nm_mask(w.t().contiguous(), n, m).t() if w.shape[0] % m == 0 else torch.zeros_like(w)

    got = [torch.as_tensor(o, dtype=torch.float32).tolist() for o in out]
    expect_equal(got, by(nm_mask), what="my_nm_mask on hidden weights (2:4, 1:4, 2:3, 2:8, 4:4)", wrong={
        "ranked by the signed value instead of |w|": by(_signed),
        "kept the smallest of each group": by(lambda w, n, m: 1 - nm_mask(w, m - n, m)),
        "groups of m consecutive entries along the output dimension (columns) instead of the input": by(columns),
        "strided groups (every (in/m)-th entry) instead of m consecutive entries": by(strided),
        "one global threshold instead of n per group of m": by(lambda w, n, m: magnitude_mask(w, 1 - n / m)),
    })


def _signed(w, n, m):
    import torch
    r, c = w.shape
    g = w.reshape(r, c // m, m)
    return torch.zeros_like(g).scatter_(2, torch.topk(g, n, dim=2).indices, 1.0).reshape(r, c)


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 4 passed")

# %% [markdown]
# On the LeNet, 2:4 applies to every layer whose input dimension divides by 4; the printed line names the layers
# skipped (the two convs have 1 x 5 x 5 = 25 and 6 x 5 x 5 = 150 inputs per filter). The accuracy cost, before
# and after one fine-tuning run:

# %%
m24 = copy.deepcopy(model)
skipped = []
for name, layer in named_layers(m24, WEIGHT_LAYER_TYPES):
    if (layer.weight.numel() // layer.weight.shape[0]) % 4 == 0:
        prune.nm_prune(layer, "weight", 2, 4)
    else:
        skipped.append(name)
acc24 = evaluate(m24, test_loader)["accuracy"]
torch.manual_seed(0)
finetune(m24, train_loader, epochs=ft_epochs, lr=0.01)
print(f"2:4 (skipped {', '.join(skipped)}): sparsity {prune.sparsity(m24):.1%}, accuracy {acc24:.2%} -> "
      f"{evaluate(m24, test_loader)['accuracy']:.2%} after fine-tuning (dense {dense_acc:.2%})")

# %% [markdown]
# <a id="schedules"></a>
# ## 6 · Gradual vs one-shot: the cubic schedule
#
# Pruning 95% at once removes weights the network still relies on, and fine-tuning must then repair a large
# loss. **Gradual** pruning raises the sparsity during training, pruning a little, training, pruning more. Zhu &
# Gupta 2017 (eq. 1) use a cubic ramp from $s_i$ at step $t_0$ to $s_f$ at $t_0 + n\Delta t$:
#
# $$s_t = s_f + (s_i - s_f)\left(1 - \frac{t - t_0}{n\,\Delta t}\right)^3 \quad \text{for } t_0 \le t \le t_0 + n\Delta t,$$
#
# $s_i$ before the ramp and $s_f$ after it. It prunes fast while many weights are redundant and slowly at the end,
# when each removal hurts. In coursekit, `prune.GradualPruning(targets, final, begin, end, every)` is a callback
# of the shared training loop (`coursekit.train.fit` / `finetune`): after each optimizer step it recomputes the
# masks to the scheduled sparsity.

# %%
steps = np.arange(0, 101)
fig, ax = plt.subplots(figsize=(5, 2.4))
ax.plot(steps, [prune.cubic_schedule(int(t), 0.0, 0.95, 10, 80) for t in steps], label="cubic (Zhu & Gupta)")
ax.plot(steps, np.clip((steps - 10) / 70, 0, 1) * 0.95, "--", label="linear ramp")
ax.set_xlabel("optimizer step")
ax.set_ylabel("sparsity")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### Exercise 5 · The cubic schedule
#
# Write `my_cubic_schedule(step, initial, final, begin, end)` returning the sparsity of the formula above with
# $t_0 = $ `begin` and $t_0 + n\Delta t = $ `end`: `initial` up to `begin`, `final` from `end` on.

# %% solution="ex5_cubic"
def my_cubic_schedule(step, initial, final, begin, end):
    """Zhu & Gupta 2017, eq. 1."""
    ### BEGIN SOLUTION
    if step <= begin:
        return float(initial)
    if step >= end:
        return float(final)
    return final + (initial - final) * (1 - (step - begin) / (end - begin)) ** 3
    ### END SOLUTION

# %% tests="ex5_cubic_tests" points=2
# Visible tests: halfway, (1 - 0.5)^3 = 0.125 of the distance remains: 0.8 - 0.8 * 0.125 = 0.7
expect_close(my_cubic_schedule(15, 0.0, 0.8, 10, 20), 0.7, what="my_cubic_schedule(15, 0.0, 0.8, 10, 20)",
             wrong={"a linear ramp: the schedule is cubic": 0.4,
                    "cubed the progress instead of the remaining fraction: s_f + (s_i - s_f) * (1 - r^3)": 0.1,
                    "squared instead of cubed": 0.6})
# a fifth of the way from 0.2 to 0.8: 0.8 - 0.6 * 0.8^3 = 0.4928
expect_close(my_cubic_schedule(12, 0.2, 0.8, 10, 20), 0.4928, what="my_cubic_schedule(12, 0.2, 0.8, 10, 20)",
             wrong={"initial and final swapped": 0.5072, "(1 - r^3) instead of (1 - r)^3": 0.2048,
                    "a linear ramp": 0.32, "squared instead of cubed": 0.416})
expect_close(my_cubic_schedule(5, 0.1, 0.8, 10, 20), 0.1, what="before begin",
             wrong={"no clamp before begin: the formula overshoots": 0.8 - 0.7 * 1.5 ** 3})
expect_close(my_cubic_schedule(30, 0.1, 0.8, 10, 20), 0.8, what="after end",
             wrong={"no clamp after end: (1 - 2)^3 = -1 sends it above final": 1.5})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811

# wrong answers caught: linear ramp; (1 - r^3) instead of (1 - r)^3; square instead of cube; no clamping before
# begin or after end; initial and final swapped; delegating to coursekit.prune.cubic_schedule (forbidden)
CASES = [(t, si, sf, b, e) for (si, sf, b, e) in [(0.0, 0.9, 100, 1100), (0.2, 0.95, 0, 40), (0.0, 0.5, 7, 8)]
         for t in (0, 3, 7, 8, 20, 39, 40, 99, 100, 350, 600, 1099, 1100, 5000)]


def _probe():
    with forbid("coursekit.prune.cubic_schedule", "coursekit.prune.schedule.cubic_schedule", exercise="Exercise 5"):
        return [float(my_cubic_schedule(*c)) for c in CASES]


def _check(out):
    from coursekit.prune import cubic_schedule

    def variant(fn, clamp=True):
        vals = []
        for t, si, sf, b, e in CASES:
            if clamp and t <= b:
                vals.append(si)
            elif clamp and t >= e:
                vals.append(sf)
            else:
                vals.append(fn((t - b) / (e - b), si, sf))
        return vals

    expect_close(out, [cubic_schedule(*c) for c in CASES], what="my_cubic_schedule on hidden steps", rtol=1e-9, wrong={
        "a linear ramp instead of the cubic": variant(lambda r, si, sf: si + (sf - si) * r),
        "(1 - r^3) instead of (1 - r)^3": variant(lambda r, si, sf: sf + (si - sf) * (1 - r ** 3)),
        "squared instead of cubed": variant(lambda r, si, sf: sf + (si - sf) * (1 - r) ** 2),
        "no clamping outside [begin, end]": variant(lambda r, si, sf: sf + (si - sf) * (1 - r) ** 3, clamp=False),
        "initial and final swapped": variant(lambda r, si, sf: si + (sf - si) * (1 - r) ** 3),
    })


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 5 passed")

# %% [markdown]
# Section 10 measures gradual vs one-shot at 95% on MNIST-1D (the digits are too easy to separate them), with
# the same fine-tuning budget for both.
#
# <a id="structured"></a><a id="channel-pruning"></a>
# ## 7 · Structured pruning: removing channels
#
# Unstructured zeros leave every tensor its shape. **Channel pruning** (Li et al. 2017) removes whole output
# channels of a conv (or neurons of a Linear): rank the filters $F_j$ by a norm $\|F_j\|_2$, drop the least
# important, and **remove the matching input channels of every layer that reads them**. Between two convs that is
# the BatchNorm entries ($\gamma, \beta$, running mean and variance) and the next conv's kernel slices $W[:, j]$;
# after a Flatten it is the $H \cdot W$ columns per channel of the Linear head. The result is a smaller *dense*
# model, faster in any runtime.
#
# The dependency is the hard part. When a channel reaches an **addition** (a ResNet skip connection), it is tied
# to the other branch: both sides must lose the same channels, or neither. `coursekit.prune.channel_prune`
# traces the model with `torch.fx`, follows BatchNorm, activations, pooling and Flatten, prunes free layers and
# refuses tied ones with an error that names the block (tested against the `torch-pruning` library, DepGraph of
# Fang et al. 2023: same channels removed, same shapes and outputs).

# %%
print("free layers of the LeNet:", prune.prunable_layers(model))
resnet = build_model("resnet", "digits")  # structure only: no training needed to read its dependencies
print("free layers of the ResNet:", prune.prunable_layers(resnet))
try:
    prune.channel_prune(resnet, {"stages.0.conv2": 0.5})
except ValueError as error:
    print("refused:", str(error)[:160], "...")
x_probe = torch.randn(4, 1, 8, 8)
same = torch.equal(prune.channel_prune(model, 0.0)(x_probe), model(x_probe))
small = prune.channel_prune(model, 0.5)
print(f"amount=0 gives identical outputs: {same}; 50% channels: {sum(p.numel() for p in model.parameters()):,} -> "
      f"{sum(p.numel() for p in small.parameters()):,} parameters, shapes {[tuple(l.weight.shape) for _, l in named_layers(small, WEIGHT_LAYER_TYPES)]}")

# %% [markdown]
# ### Exercise 6 · Channel importance and physical removal of two consecutive convs
#
# Write `prune_conv_pair(conv1, conv2, keep)`: `conv2` reads `conv1`'s output (through a ReLU). Return two **new**
# `nn.Conv2d` modules: the first keeps the `keep` output channels of `conv1` with the largest L2 norm of their
# filter (`conv1.weight[j]`, all of its entries), **in their original order**, with their biases; the second is
# `conv2` with only the matching input channels (and all of its outputs and its bias). Same kernel sizes, strides
# and padding as before.

# %% solution="ex6_channels"
def prune_conv_pair(conv1, conv2, keep):
    """Keep the `keep` filters of conv1 with the largest L2 norm (original order) and the matching inputs of conv2."""
    ### BEGIN SOLUTION
    importance = conv1.weight.detach().flatten(1).norm(dim=1)
    idx = torch.topk(importance, keep).indices.sort().values
    new1 = nn.Conv2d(conv1.in_channels, keep, conv1.kernel_size, stride=conv1.stride, padding=conv1.padding,
                     bias=conv1.bias is not None)
    new2 = nn.Conv2d(keep, conv2.out_channels, conv2.kernel_size, stride=conv2.stride, padding=conv2.padding,
                     bias=conv2.bias is not None)
    with torch.no_grad():
        new1.weight.copy_(conv1.weight[idx])
        if conv1.bias is not None:
            new1.bias.copy_(conv1.bias[idx])
        new2.weight.copy_(conv2.weight[:, idx])
        if conv2.bias is not None:
            new2.bias.copy_(conv2.bias)
    return new1, new2
    ### END SOLUTION

# %% tests="ex6_channels_tests" points=3
# Visible tests: filter norms are 1, 5, 2, 0.5 -> keeping 2 keeps channels 1 and 2, in that order
c1, c2 = nn.Conv2d(1, 4, 1), nn.Conv2d(4, 2, 1)
with torch.no_grad():
    c1.weight.copy_(torch.tensor([1.0, -5.0, 2.0, 0.5]).reshape(4, 1, 1, 1))
    c1.bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    c2.weight.copy_(torch.arange(8.0).reshape(2, 4, 1, 1))
n1, n2 = prune_conv_pair(c1, c2, 2)
expect_equal(list(n1.weight.shape) + list(n2.weight.shape), [2, 1, 1, 1, 2, 2, 1, 1],
             what="shapes of the two new weights",
             wrong={"sliced conv2's outputs instead of its inputs": [2, 1, 1, 1, 2, 4, 1, 1]})
expect_close(n1.weight.flatten().tolist() + n1.bias.tolist(), [-5.0, 2.0, 0.2, 0.3], what="new conv1 weight and bias",
             wrong={"ranked by the signed value instead of the norm": [1.0, 2.0, 0.1, 0.3],
                    "kept the smallest filters": [1.0, 0.5, 0.1, 0.4]})
expect_close(n2.weight.flatten().tolist(), [1.0, 2.0, 5.0, 6.0], what="new conv2 weight (columns 1 and 2)")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811

# wrong answers caught: L1 instead of L2 norm; signed sum instead of a norm; keeping the smallest filters; kept
# channels in importance order instead of the original order; conv2's outputs sliced instead of its inputs (shapes
# differ); conv1's bias not sliced (shapes differ); delegating to coursekit.prune's channel pruning (forbidden)
CASES = [(3, 8, 5, 3, 4, 1), (2, 16, 6, 3, 5, 2), (4, 12, 3, 1, 6, 3), (1, 10, 4, 5, 3, 4)]


def _pair(c_in, c_mid, c_out, k, seed):
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    conv1, conv2 = nn.Conv2d(c_in, c_mid, k, padding=k // 2), nn.Conv2d(c_mid, c_out, 3, padding=1)
    with torch.no_grad():
        # filters with few large entries or many small ones: L1 and L2 rankings differ
        spikes = (torch.rand(c_mid, c_in, k, k, generator=g) < 0.3).float() * 3 + 0.3
        conv1.weight.copy_(torch.randn(c_mid, c_in, k, k, generator=g) * spikes * torch.rand(c_mid, 1, 1, 1, generator=g))
        conv1.bias.copy_(torch.randn(c_mid, generator=g))
        conv2.weight.copy_(torch.randn(c_out, c_mid, 3, 3, generator=g))
        conv2.bias.copy_(torch.randn(c_out, generator=g))
    return conv1, conv2, torch.randn(2, c_in, 7, 7, generator=g)


def _probe():
    import torch

    results = []
    with forbid("coursekit.prune.remove_channels", "coursekit.prune.channel.remove_channels",
                "coursekit.prune.channel_prune", "coursekit.prune.channel.channel_prune", exercise="Exercise 6"):
        for c_in, c_mid, c_out, k, keep, seed in CASES:
            conv1, conv2, x = _pair(c_in, c_mid, c_out, k, seed)
            n1, n2 = prune_conv_pair(conv1, conv2, keep)
            with torch.no_grad():
                y = n2(torch.relu(n1(x)))
            results.append({"w1": n1.weight, "b1": n1.bias, "w2": n2.weight, "b2": n2.bias, "y": y})
    return results


def _check(out):
    import torch

    from coursekit.prune import remove_channels

    def expected(order):
        want = []
        for c_in, c_mid, c_out, k, keep, seed in CASES:
            conv1, conv2, x = _pair(c_in, c_mid, c_out, k, seed)
            seq = torch.nn.Sequential(conv1, torch.nn.ReLU(), conv2)
            small = remove_channels(seq, {"0": order(conv1.weight.detach().flatten(1), keep)})
            with torch.no_grad():
                y = small(x)
            want.append([small[0].weight.tolist(), small[0].bias.tolist(), small[2].weight.tolist(),
                         small[2].bias.tolist(), y.tolist()])
        return want

    def top(score, sort=True, largest=True):
        def order(w, keep):
            idx = torch.topk(score(w), keep, largest=largest).indices
            return idx.sort().values if sort else idx
        return order

    l2 = lambda w: w.norm(dim=1)
    got = [[o["w1"], o["b1"], o["w2"], o["b2"], o["y"]] for o in out]
    expect_close(got, expected(top(l2)), what="prune_conv_pair on hidden conv pairs", rtol=1e-5, atol=1e-6, wrong={
        "ranked filters by the L1 norm; the exercise asks for L2": expected(top(lambda w: w.abs().sum(1))),
        "ranked filters by their signed sum instead of a norm": expected(top(lambda w: w.sum(1))),
        "kept the smallest filters": expected(top(l2, largest=False)),
        "kept the channels in importance order; keep their original order": expected(top(l2, sort=False)),
    })


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 6 passed")

# %% [markdown]
# <a id="macs-vs-latency"></a>
# ## 8 · MACs vs measured latency
#
# A multiply-accumulate (MAC) count is what the *model* asks for: $C_{out} \cdot C_{in} \cdot k_h k_w$ per output
# pixel of a conv, $in \cdot out$ per example of a Linear. `prune.count_macs` counts them with hooks; zeros in a
# dense weight are still counted, because a dense kernel multiplies them. Halving both channel counts of a conv
# divides its MACs by 4, yet latency rarely follows: fixed costs per call and per layer (dispatch, memory
# allocation, activations and pooling, which do not shrink with the weights), memory traffic, and kernels whose
# speed depends on the width (vector lanes of 8 or 16 floats: a width of 31 can be *slower* than 32). On a model
# as small as the digits LeNet a batch-1 call takes microseconds and is all fixed cost. MIT 6.5940's lab measured
# only 1.1x CPU speedup for 2x fewer MACs at 30% channel pruning. Section 10 measures it here.

# %%
x1 = torch.zeros(1, 1, 8, 8)
for label, m in (("dense", model), ("channels -50%", small)):
    macs = prune.count_macs(m, x1)
    print(f"{label:14s} {macs['total']:8,d} MACs: " + ", ".join(f"{k} {v:,}" for k, v in macs["layers"].items()))
lat = bench.measure_latency({"dense": lambda: model(x1), "channels -50%": lambda: small(x1)}, repeats=20,
                            budget_s=0.5)
print(f"torch eager, batch 1: dense {lat['dense'].median_ms * 1e3:.0f} us, pruned {lat['channels -50%'].median_ms * 1e3:.0f}"
      f" us ({lat['dense'].median_ms / lat['channels -50%'].median_ms:.2f}x) for "
      f"{prune.count_macs(model, x1)['total'] / prune.count_macs(small, x1)['total']:.1f}x fewer MACs")

# %% [markdown]
# ## 9 · Sparse storage and its break-even
#
# A dense tensor stores every zero. A sparse format stores the non-zeros and where they are:
#
# | format | bytes for a rows x cols matrix with nnz non-zeros, b-byte values, i-byte indices |
# |---|---|
# | dense | rows $\cdot$ cols $\cdot$ b |
# | CSR (compressed sparse row) | nnz $\cdot$ b (values) + nnz $\cdot$ i (column indices) + (rows + 1) $\cdot$ i (row pointers) |
# | bitmask + values | $\lceil$rows $\cdot$ cols / 8$\rceil$ + nnz $\cdot$ b |
# | N:M | rows $\cdot$ cols $\cdot \frac{n}{m}$ values of b bytes + as many $\lceil\log_2 m\rceil$-bit indices |
#
# With FP32 values and int32 indices CSR costs 8 bytes per non-zero: it only becomes smaller than dense above
# 50% sparsity (`prune.csr_break_even`), and a conv weight is viewed as (out channels) x (in x kh x kw). Storage is
# not time, either: the CSR *matmul* has its own, much higher break-even (section 10).

# %% [markdown]
# ### Exercise 7 · CSR byte count
#
# Write `csr_bytes(weight, value_bytes=4, index_bytes=4)`: the exact number of bytes of `weight` in CSR, with the
# tensor viewed as `weight.shape[0]` rows (a conv weight's other dimensions flattened into columns).

# %% solution="ex7_csr"
def csr_bytes(weight, value_bytes=4, index_bytes=4):
    """Bytes of CSR storage: values + column indices of the non-zeros + (rows + 1) row pointers."""
    ### BEGIN SOLUTION
    nnz = int((weight != 0).sum())
    return nnz * value_bytes + nnz * index_bytes + (weight.shape[0] + 1) * index_bytes
    ### END SOLUTION

# %% tests="ex7_csr_tests" points=2
# Visible tests: 3 non-zeros in a 4 x 10 matrix: 3 * 4 + 3 * 4 + 5 * 4 = 44 bytes (dense: 160)
w = torch.zeros(4, 10)
w[0, 1], w[2, 3], w[3, 9] = 1.0, 2.0, 3.0
expect_close(csr_bytes(w), 44, what="csr_bytes(4x10 with 3 non-zeros)",
             wrong={"forgot the row pointers": 24, "rows row pointers instead of rows + 1": 40,
                    "counted every entry instead of the non-zeros": 4 * 40 * 2 + 20})
# the quiz's case: 1000 x 1000 at 50% sparsity is *larger* than dense (4,000,000 bytes)
half = (torch.arange(1_000_000) % 2).float().reshape(1000, 1000)
expect_close(csr_bytes(half), 4_004_004, what="csr_bytes(1000x1000, 50% sparse)")
expect_close(csr_bytes(w, value_bytes=2, index_bytes=2), 22, what="csr_bytes(w, 2, 2) (fp16 values, int16 indices)")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811

# wrong answers caught: no row pointers; rows instead of rows + 1 pointers; numel instead of nnz; pointers sized
# as values; columns + 1 pointers (CSC); delegating to coursekit.prune.storage_bytes (forbidden)
CASES = [((64, 32), 0.9, 4, 4, 1), ((16, 8, 3, 3), 0.75, 4, 2, 2), ((100, 7), 0.5, 2, 2, 3), ((5, 300), 0.99, 4, 4, 4),
         ((33, 20), 0.0, 2, 4, 5)]


def _w(shape, sparsity, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) >= sparsity)


def _probe():
    with forbid("coursekit.prune.storage_bytes", "coursekit.prune.storage.storage_bytes", exercise="Exercise 7"):
        return [int(csr_bytes(_w(shape, s, seed), vb, ib)) for shape, s, vb, ib, seed in CASES]


def _check(out):
    from coursekit.prune import storage_bytes

    want = [storage_bytes(_w(shape, s, seed), "csr_int32" if ib == 4 else "csr_int16", value_bytes=vb)
            for shape, s, vb, ib, seed in CASES]

    def variant(fn):
        vals = []
        for shape, s, vb, ib, seed in CASES:
            w = _w(shape, s, seed)
            vals.append(fn(int((w != 0).sum()), w.numel(), shape[0], w.numel() // shape[0], vb, ib))
        return vals

    expect_close(out, want, what="csr_bytes on hidden tensors", wrong={
        "forgot the row pointers": variant(lambda z, n, r, c, vb, ib: z * (vb + ib)),
        "rows row pointers instead of rows + 1": variant(lambda z, n, r, c, vb, ib: z * (vb + ib) + r * ib),
        "counted every entry instead of the non-zeros": variant(lambda z, n, r, c, vb, ib: n * (vb + ib) + (r + 1) * ib),
        "row pointers sized like values": variant(lambda z, n, r, c, vb, ib: z * (vb + ib) + (r + 1) * vb),
        "columns + 1 pointers (that is CSC)": variant(lambda z, n, r, c, vb, ib: z * (vb + ib) + (c + 1) * ib),
    })


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 7 passed")

# %% [markdown]
# ## 10 · The benchmark on your hardware
#
# `coursekit bench --suite prune` (here through `run_suite`) measures, with one pinned thread, at batch 1 and 64,
# in ONNX Runtime and torch: the dense model, 50/75/90% global unstructured sparsity (exported as ordinary dense
# weights), 2:4 masks (dense kernels), 30/50/70% channel pruning (kept widths rounded to multiples of 8) and the
# 50% widths minus one channel, on the digits LeNet (fine-tuned, with accuracy) and on a 32x32 conv-heavy LeNet
# (latency on random inputs); a 1024x1024 CSR matmul against dense from 50% to 99% sparsity; 2:4 kernels when a
# CUDA GPU is present; gradual vs one-shot pruning and lottery tickets on MNIST-1D. This is the chapter's long
# cell: a few minutes on 2 cores (about 4 minutes measured on a busy 2-core machine), because it fine-tunes every
# LeNet variant for 10 epochs and trains the lottery tickets (3 seeds x 5 trainings). In fast mode
# (grading) it runs the `prune_quick` suite instead: the conv-heavy model and the CSR break-even, with small
# timing budgets, so treat those latencies as rough. The reading below is generated from the numbers.

# %%
from coursekit.suites import run_suite
from coursekit.suites.prune import reading

result = run_suite("prune_quick" if FAST else "prune", progress=False)
records = result["records"]
columns = ["model", "variant", "batch", "runtime", "latency_ms_median", "speedup", "macs", "params_nonzero",
           "onnx_bytes", "onnx_gzip_bytes", "csr_bytes", "accuracy"]
shown = [r for r in records if r["model"] in ("lenet_digits", "conv_heavy") and r["batch"] == 1
         and r["runtime"] == "ort"]
print(bench.format_table(shown, columns))
print()
print(reading(records))

# %% [markdown]
# How to read it:
#
# * **Unstructured sparsity does not speed up dense kernels.** The unstructured and 2:4 rows run the same dense
#   convolutions and matrix products as the dense model: their speedups should sit near 1.00x, and any deviation
#   is noise. The ONNX file does not shrink either; only a sparse format (CSR) or a general-purpose compressor
#   (gzip finds the runs of zeros) turns the zeros into saved bytes.
# * **Channel pruning speeds up everything**, but less than the MAC ratio, and least on tiny models at batch 1
#   where fixed per-call costs dominate: compare the two models and the two batch sizes.
# * **Widths matter.** The `channel50_odd` row has fewer MACs than `channel50` and, where vector lanes are left
#   half empty, is slower.
# * **CSR needs very high sparsity to win time**, far beyond its storage break-even of 50%: an irregular gather of
#   the input per non-zero is much slower than a dense, vectorised product.
# * **2:4** is a GPU feature: on a CPU, torch has no kernel for it, and the suite says it skipped that row.

# %% [markdown]
# ### Gradual vs one-shot, measured
#
# The MNIST-1D MLP (a harder task than the digits: about 65% for this MLP) is pruned to 95% once and fine-tuned,
# or pruned gradually during the same number of fine-tuning epochs with the cubic schedule. Read the per-seed
# numbers: with few epochs (fast mode) the difference is within noise; the full run uses three seeds.

# %%
if not any(r["model"] == "mnist1d_mlp" for r in records):
    print("not measured in fast mode: run this notebook normally, or `coursekit bench --suite prune`")
for r in records:
    if r["model"] == "mnist1d_mlp":
        extra = f", {r['accuracy_before_finetune']:.1%} before fine-tuning" if r.get("accuracy_before_finetune") else ""
        sparse = "" if r.get("sparsity") is None else f", sparsity {r['sparsity']:.1%}"
        print(f"{r['variant']:11s} seed {r['seed']}: accuracy {r['accuracy']:.1%}{sparse}{extra}")

# %% [markdown]
# <a id="lottery-ticket"></a>
# ### Lottery tickets, measured
#
# Frankle & Carbin 2019: a randomly initialised dense network contains a sparse sub-network (a *winning ticket*)
# that, trained from **the same initial weights**, matches the dense network. Found by iterative magnitude
# pruning: train, prune p% of the surviving weights, **rewind** the rest to their initial values (or to an early
# iteration, for bigger networks: Frankle et al. 2020), repeat. The control keeps the same mask but draws new random
# weights: if the ticket beats it, the initial values mattered, not only the mask. `prune.lottery_ticket` runs
# both; the suite did it per seed:

# %%
if not any(r["model"] == "mnist1d_lottery" for r in records):
    print("not measured in fast mode: run this notebook normally, or `coursekit bench --suite prune`")
for r in records:
    if r["model"] == "mnist1d_lottery":
        print(f"{r['variant']:16s} seed {r['seed']}: accuracy {r['accuracy']:.1%} at sparsity {r['sparsity']:.1%}")

# %% [markdown]
# ## 11 · Explore: sparsity per layer -> accuracy, size, latency
#
# Move each layer's slider and switch between unstructured masks and channel pruning. The numbers are before
# fine-tuning. Things to try: 90% on `classifier.1` alone (the biggest layer; little loss) vs 90% on `features.0`;
# the same sliders in channel mode (the latency moves, the CSR size does not help); 2x fewer MACs vs the latency.

# %%
x_lat = torch.zeros(1, 1, 8, 8)


def quick_latency(m):
    return bench.measure_latency({"m": lambda: m(x_lat)}, repeats=10, budget_s=0.2)["m"].median_ms


explorer = explore.sparsity_explorer(model, lambda m: evaluate(m, test_loader)["accuracy"], x_lat, quick_latency)
explorer

# %% [markdown]
# ## 12 · Common mistakes
#
# * **Pruning without fine-tuning.** Section 2's curve: the accuracy right after pruning is far below what a few
#   epochs of fine-tuning (with the mask held) recover.
# * **Forgetting `remove` before export.** The exported graph carries `weight_orig`, `weight_mask` and a multiply:
#   a bigger file and an extra op per layer. And a state dict saved with masks does not load into a plain model.
# * **Counting zeros as savings.** A dense tensor with 90% zeros has the same bytes, the same MACs for a dense
#   kernel and the same latency. Savings exist only in a sparse format, with a sparse kernel, or after structured
#   pruning: measure file size and latency, not the sparsity.
# * **One global threshold without safeguards**: a layer of small weights can vanish (cap per-layer sparsity,
#   protect the first and last layers).
# * **Channel pruning only the conv** and not the BatchNorm, the next layer's inputs or the Linear after a
#   Flatten; or pruning a channel tied to a skip connection on one side only.
# * **Widths that are not multiples of 8** (or 16): fewer MACs, slower kernels.
# * **Expecting 2:4 to help on a CPU**, or unstructured 50% to help anywhere.
# * **Reading MACs as latency**: at batch 1 on small models fixed costs dominate.
#
# ## 13 · Interview questions
#
# Practise with the quiz below, or in a terminal with `coursekit drill --chapter 04`. The graded questions
# further down are left out of the practice quiz.

# %% locked="quiz_ids"
from coursekit import quiz

QUIZ_IDS = ["ch04-cubic-schedule", "ch04-csr-overhead", "ch04-2-4-storage", "ch04-global-risks"]
quiz.show(chapter="04", n=5, exclude=QUIZ_IDS)

# %% [markdown]
# ### Graded interview questions
#
# Answer each question in a dictionary called `answers` that maps the question id to your answer: a letter for a
# choice question (`"B"`, or `"A,C"` when several are right), a number for a numeric one. Each question is worth
# one point.

# %% locked="quiz_questions"
quiz.render(QUIZ_IDS)

# %% solution="quiz_answers"
### BEGIN SOLUTION
answers = {
    "ch04-cubic-schedule": 0.7875,
    "ch04-csr-overhead": 4.004004,
    "ch04-2-4-storage": 1.7778,
    "ch04-global-risks": "B,C,D",
}
### END SOLUTION

# %% tests="quiz_answers_tests" points=4
# One point per question. Visible: which questions you have not answered yet.
unanswered = [qid for qid in QUIZ_IDS if not isinstance(answers, dict) or qid not in answers]
print("not answered yet: " + ", ".join(unanswered) if unanswered else "all questions answered")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import sealed_quiz

# one point per question; the returned number is nbgrader's partial credit
sealed_quiz(["ch04-cubic-schedule", "ch04-csr-overhead", "ch04-2-4-storage", "ch04-global-risks"])
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# * Magnitude pruning zeroes the smallest $|w|$, per layer or with one global threshold; masks by
#   reparametrisation survive fine-tuning, `remove` makes them permanent before export. Always fine-tune.
# * Choose per-layer sparsity with a sensitivity scan: big robust layers take most of the pruning.
# * Gradual (cubic) pruning spreads the damage over training; N:M (2:4) is the pattern sparse tensor cores run.
# * Unstructured sparsity saves storage only in a sparse format (CSR breaks even at 50% for FP32 + int32) and time
#   only with sparse kernels (CSR matmul needs far higher sparsity; 2:4 needs a GPU).
# * Channel pruning removes channels and the matching inputs downstream: smaller dense layers, faster everywhere,
#   but less than the MAC ratio, and only with widths the kernels like.
# * Lottery tickets: the sparse sub-network trained from its original initialisation vs the same mask re-initialised.
#
# Next: **05 · Knowledge distillation**.
