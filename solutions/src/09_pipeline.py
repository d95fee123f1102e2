# %% [markdown] locked="title"
# # 09 · The compression pipeline: order, validation, budgets and the Pareto front
#
# **The deployment problem.** A product team gives you a budget, not a technique: "the model must be at least
# 3x smaller, lose at most one point of accuracy, and no class may fall apart". Every earlier chapter taught one
# tool (quantization in 01-03, pruning in 04, distillation in 05, low-rank in 06). Real compression combines them,
# and the combination raises questions no single chapter answers: *in which order?* *how do the losses add up?*
# *what do you measure after each step, and what do you do when a step breaks the budget?* *which of the
# variants you made should ship?*
#
# In this chapter you run the course's compression pipeline, `coursekit compress` (a recipe file in, a
# validated ONNX model, a step log and a report out), and you build its key parts yourself:
#
# 1. the order question, measured live: quantize-then-prune against prune-then-quantize,
# 2. how errors accumulate, and validation after every step: accuracy, per-class accuracy (the rare-case risk),
#    robustness to noise and shift, size and latency,
# 3. a validation gate (Exercise 1) and a recipe run with its step log and a **rollback**,
# 4. the Pareto front of accuracy, latency and size (Exercise 2), the dashboard and its widget,
# 5. choosing the step order for a budget (Exercise 3), the use cases mapped to recipes and budgets,
# 6. an open challenge graded on the measured result: your own recipe against a budget (Exercise 4).
#
# Run the notebook cell by cell (Shift+Enter): "Run All" stops at the first exercise you have not answered yet,
# as in any nbgrader course.
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below it.
# `coursekit check notebooks/09_pipeline.ipynb` grades the whole notebook (hidden tests included) from a terminal.

# %% locked="setup"
# Setup: run this first. Warnings are silenced so that graded cells stay clean.
import json
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
try:
    import tomllib  # a recipe may be a TOML string (Python 3.11+; tomli on 3.10)
except ModuleNotFoundError:
    import tomli as tomllib
import matplotlib.pyplot as plt
import torch

import coursekit
from coursekit import pipeline
from coursekit._env import fast_mode
from coursekit.grading.sealed import expect_equal
from coursekit.train import seed_everything

FAST = fast_mode()  # True under COURSEKIT_FAST=1 and during grading: one training epoch per step, same checks
seed_everything(0)
torch.set_num_threads(2)
RUNS = Path(tempfile.mkdtemp(prefix="coursekit-ch09-"))  # every compress run of this notebook writes a folder here
print(f"coursekit {coursekit.__version__}, torch {torch.__version__}, fast mode: {FAST}")
print(f"bundled recipes: {', '.join(pipeline.list_recipes())}")
print(f"runs go to {RUNS}")

# %% [markdown]
# ## 1 · Why order matters <a id="order"></a>
#
# A recipe is a list of steps, each a function from a model to a model. Two steps rarely commute: pruning
# chooses which weights to zero by their magnitude, and quantization changes the magnitudes; quantization sets
# its scales from the ranges of the weights and activations, and pruning plus fine-tuning changes the ranges. The
# textbook order, **distill → prune (+ fine-tune) → quantize → export**, follows one idea: steps that *train* come
# first, steps that *freeze the number format* come last, so that no later training invalidates the scales.
#
# Rules of thumb are worth measuring. The two bundled recipes below apply the same two steps to the MNIST-1D
# CNN in both orders: 60% magnitude pruning per layer with fine-tuning (5 epochs, 1 in fast mode), and 4-bit
# per-tensor weight quantization (8-bit activations) calibrated after the step before it. In
# `order-quantize-then-prune` the pruning fine-tunes *through* the frozen 4-bit quantizers (the straight-through
# estimator of chapter 03), in `order-prune-then-quantize` nothing trains after the quantizer.

# %%
print(pipeline.recipes_dir().joinpath("order-prune-then-quantize.toml").read_text())
orders = {}
for name in ("order-prune-then-quantize", "order-quantize-then-prune"):
    orders[name] = pipeline.compress(name, RUNS / name, fast=FAST, progress=False)


def accuracies(log):
    """Gate-split accuracy (%) of the baseline and after every step of a compress log."""
    return [100 * r["metrics"]["accuracy"] for r in [log["baseline"], *log["steps"]]]


for name, log in orders.items():
    steps = " -> ".join(f"{r['label']} {100 * r['metrics']['accuracy']:.2f}%" for r in log["steps"])
    print(f"{name}: baseline {100 * log['baseline']['metrics']['accuracy']:.2f}% -> {steps}; "
          f"lost {log['final']['drop_points']:.2f} points in all")

# %% [markdown]
# ### Errors accumulate <a id="accumulation"></a>
#
# Write $a_0$ for the baseline's accuracy and $a_k$ for the accuracy after step $k$. The drop after $K$ steps is a
# telescoping sum of per-step drops,
#
# $$D_K = 100\,(a_0 - a_K) = \sum_{k=1}^{K} \delta_k, \qquad \delta_k = 100\,(a_{k-1} - a_k) \text{ points},$$
#
# and each $\delta_k$ depends on everything before step $k$: the same pruning costs a different number of points
# on a dense model and on a quantized one. Two consequences drive the whole pipeline. First, the gate must
# compare each step with the **baseline** ($D_k$), not with the step before ($\delta_k$): three steps that each
# lose 0.6 points pass a per-step check of 1 point and lose 1.8 in all. Second, the step that comes *last* keeps
# its whole $\delta$: a step followed by fine-tuning can be repaired, the last one cannot.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for name, log in orders.items():
    labels = ["baseline"] + [r["kind"] for r in log["steps"]]
    axes[0].plot(range(len(labels)), accuracies(log), "o-", label=name)
    for i, lab in enumerate(labels):
        axes[0].annotate(lab, (i, accuracies(log)[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
axes[0].set_xticks(range(3), ["baseline", "step 1", "step 2"])
axes[0].set_ylabel("accuracy (%, validation split)")
axes[0].set_title("accuracy after every step")
axes[0].legend(fontsize=7)
for j, (name, log) in enumerate(orders.items()):
    acc = accuracies(log)
    bottom = 0.0
    for k, r in enumerate(log["steps"], start=1):
        delta = acc[k - 1] - acc[k]
        axes[1].bar(j, delta, bottom=bottom, color=f"C{2 + k}", label=f"step {k}" if j == 0 else None)
        axes[1].annotate(f"{r['kind']} {delta:+.2f}", (j, bottom + delta / 2), ha="center", fontsize=8)
        bottom += delta
    axes[1].plot(j, log["final"]["drop_points"], "k_", ms=40, mew=2, label="D_K, the total" if j == 0 else None)
axes[1].legend(fontsize=7)
axes[1].set_xticks(range(2), [n.replace("order-", "") for n in orders], fontsize=8)
axes[1].set_ylabel("points lost (delta_k, stacked = D_K)")
axes[1].set_title("per-step drops add up to the total")
axes[1].axhline(0, color="k", lw=0.5)
plt.tight_layout()
plt.show()

pq, qp = orders["order-prune-then-quantize"], orders["order-quantize-then-prune"]
first, second = sorted(orders, key=lambda n: orders[n]["final"]["drop_points"])
gap = orders[second]["final"]["drop_points"] - orders[first]["final"]["drop_points"]
print(f"On this run {first} lost {orders[first]['final']['drop_points']:.2f} points and {second} "
      f"{orders[second]['final']['drop_points']:.2f}: {gap:.2f} points apart"
      + (" (within a point: on this model the order barely matters)." if gap < 1 else "."))
for name, log in orders.items():
    last = log["steps"][-1]
    acc = accuracies(log)
    print(f"  {name}: the last step ({last['kind']}) cost {acc[-2] - acc[-1]:+.2f} points"
          f"{' with fine-tuning' if (last['detail'] or {}).get('finetune') else ', nothing trained after it'}")

# %% [markdown]
# Read your numbers with the mechanism in mind. When 4-bit quantization comes last, nothing trains after it and
# its whole error stays. When it comes first, the pruning's fine-tuning trains through the quantizers and repairs
# part of both errors, but the scales were set on the dense weights, and the zeros pruning makes are no longer
# grid points chosen for them. Which effect wins depends on the model, the bit width and the training budget;
# that is why the textbook order is written "quantize last *and fine-tune it* (QAT)" or "quantize last *with a
# gentle format* (INT8)". A recipe with a final 4-bit PTQ and no training after it breaks the rule's assumption,
# and the measurement says by how much.
#
# ## 2 · Validation after every step <a id="validation"></a>
#
# `coursekit compress` exports every step's model to ONNX and measures *that file*, the artifact that would
# ship, with `coursekit.pipeline.validate.validate_stage`:
#
# | measurement | what it catches |
# |---|---|
# | accuracy on the validation split (the gate) and on the test split (reported) | the average cost of the step |
# | per-class accuracy and the worst class | a class the average hides (the rare-case risk) |
# | accuracy with Gaussian noise $\mathcal{N}(0, (0.1\,\sigma_x)^2)$ on the inputs | lost robustness margin |
# | ONNX file size, parameters and non-zeros | what the step bought in memory |
# | ORT latency at batch 1, interleaved with the baseline in the same call | what the step bought in time, here |
#
# Every record of the log holds these numbers:

# %%
record = qp["steps"][-1]
shown = {k: v for k, v in record["metrics"].items() if k not in ("per_class",)}
print(json.dumps({"label": record["label"], "status": record["status"], "drop_points": round(record["drop_points"], 3),
                  **shown}, indent=1, default=str)[:1500])

# %% [markdown]
# ### Fairness across classes: the rare-case risk <a id="fairness"></a>
#
# Compression removes capacity, and the network gives it up where it hurts the *average* least: rare classes,
# hard examples, inputs near a decision boundary. A one-point mean drop can hide a ten-point drop on one class,
# which for a medical device is a patient subgroup and for a camera a lighting condition. The per-class accuracy
# (recall) of the baseline and of the final model, for both orders:

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), sharey=True)
for ax, (name, log) in zip(axes, orders.items()):
    base = [100 * (a or 0) for a in log["baseline"]["metrics"]["per_class"]]
    final = [100 * (a or 0) for a in log["final"]["metrics"]["per_class"]]
    ax.bar([c - 0.2 for c in range(len(base))], base, width=0.4, label="baseline")
    ax.bar([c + 0.2 for c in range(len(final))], final, width=0.4, label="final")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("class")
    ax.set_xticks(range(len(base)))
axes[0].set_ylabel("accuracy of the class (%)")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()
for name, log in orders.items():
    base, final = log["baseline"]["metrics"]["per_class"], log["final"]["metrics"]["per_class"]
    drops = [100 * (b - f) for b, f in zip(base, final) if b is not None and f is not None]
    worst = max(range(len(drops)), key=drops.__getitem__)
    print(f"{name}: mean drop {log['final']['drop_points']:.2f} points, worst class {worst} drops "
          f"{drops[worst]:.2f} points ({100 * base[worst]:.1f}% -> {100 * final[worst]:.1f}%), "
          f"{drops[worst] / max(log['final']['drop_points'], 1e-9):.1f}x the mean")

# %% [markdown]
# **Robustness: a noise test and a shift test.** The log's `robust_accuracy` is the accuracy with Gaussian noise
# added to every input. A *shift* test asks another question: does the compressed model still work when the
# inputs move? Below, each MNIST-1D signal is shifted by 2 samples (`torch.roll`), and the baseline and the final
# ONNX files are evaluated on the same shifted inputs in ONNX Runtime.

# %%
from coursekit.data import get_loaders
from coursekit.metrics import evaluate
from coursekit.pipeline.validate import ort_runner

mnist1d = get_loaders("mnist1d", fast=FAST)
shifted = [(torch.roll(x, 2, dims=-1), y) for x, y in mnist1d.val]
for name, log in orders.items():
    folder = RUNS / name
    row = {}
    for who, path, m in (("baseline", folder / "steps" / "00-baseline.onnx", log["baseline"]["metrics"]),
                         ("final", folder / "model.onnx", log["final"]["metrics"])):
        row[who] = (100 * m["accuracy"], 100 * m["robust_accuracy"],
                    100 * evaluate(ort_runner(path), shifted)["accuracy"])
    print(f"{name}:")
    for who, (clean, noisy, moved) in row.items():
        print(f"  {who:8s} clean {clean:6.2f}%  noise {noisy:6.2f}% ({noisy - clean:+.2f})  "
              f"shift by 2 {moved:6.2f}% ({moved - clean:+.2f})")
    extra = {test: (row["final"][i] - row["final"][0]) - (row["baseline"][i] - row["baseline"][0])
             for i, test in ((1, "noise"), (2, "shift"))}
    print("  reading: " + "; ".join(
        f"under {test} the final model loses {abs(x):.2f} points {'more' if x < 0 else 'less'} than the baseline"
        + (" (margin taken away)" if x < -1 else "") for test, x in extra.items()))

# %% [markdown]
# If the final model loses more under noise or shift than the baseline does, compression took away margin that
# the clean accuracy does not show; a robustness budget ("at most 2 points more than the baseline under noise")
# belongs in the gate of a product that sees dirty inputs.
#
# ### Exercise 1 · A validation gate
#
# Write `accept_step(before, after, budget)`. `before` holds the measurements of the **baseline** (the model
# before any compression) and `after` those of the model after a step: `"accuracy"` (a fraction in [0, 1]) and
# `"per_class"` (a list of per-class accuracies, fractions, the same classes in the same order). `budget` holds
# `"max_drop_points"` and `"max_class_drop_points"`, in **percentage points**. Return `True` if the step may be
# kept: the accuracy drop, $100\,(a_\text{before} - a_\text{after})$, is at most `max_drop_points` **and** no
# class drops by more than `max_class_drop_points`. A drop exactly equal to the budget is within it. A gain (a
# negative drop) is always fine.

# %% solution="ex1_gate"
def accept_step(before, after, budget):
    """True if the step that turned `before` (the baseline) into `after` stays within `budget` (points)."""
    ### BEGIN SOLUTION
    drop = 100 * (before["accuracy"] - after["accuracy"])
    if drop > budget["max_drop_points"]:
        return False
    class_drops = [100 * (b - a) for b, a in zip(before["per_class"], after["per_class"])]
    return max(class_drops) <= budget["max_class_drop_points"]
    ### END SOLUTION

# %% tests="ex1_gate_tests" points=3
# Visible tests: a budget of 1 point on average and 5 points per class
budget = {"max_drop_points": 1.0, "max_class_drop_points": 5.0}
base = {"accuracy": 0.5, "per_class": [0.5, 0.5]}
expect_equal(accept_step(base, {"accuracy": 0.4921875, "per_class": [0.49, 0.4943]}, budget), True,
             what="accept_step: 50% -> 49.22% (0.78 points lost, classes -1.0 and -0.6)",
             wrong={"a relative drop, 100 (b - a) / b = 1.56 %, is not a drop in points": False})
expect_equal(accept_step(base, {"accuracy": 0.5, "per_class": [0.6, 0.4]}, budget), False,
             what="accept_step: mean unchanged but one class loses 10 points",
             wrong={"the per-class check is missing: a mean can hide a class that falls apart": True})
expect_equal(accept_step(base, {"accuracy": 0.4921875, "per_class": [0.4375, 0.546875]},
                         {"max_drop_points": 0.78125, "max_class_drop_points": 6.25}), True,
             what="accept_step: exactly at both limits (0.78125 points, one class 6.25 points): within them",
             wrong={"'<' instead of '<=': a drop equal to the budget is within it": False})
expect_equal(accept_step(base, {"accuracy": 0.47, "per_class": [0.47, 0.47]}, budget), False,
             what="accept_step: 3 points lost", wrong={"fractions compared with points (0.03 <= 1.0)": True})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_equal, forbid, sealed_test

# Wrong answers caught: a relative drop 100 (b - a) / b instead of absolute points; '<' instead of '<=' at the
# boundary (the boundary cases are exact in binary: 0.75 -> 0.7421875 is 0.78125 points); the per-class check
# missing; the per-class check on the mean of the class drops; fractions compared with points (no factor 100);
# comparing 'after' with itself or 'before' reversed (a gain rejected); delegating to
# coursekit.pipeline.validate.within_budget / accuracy_drop or budget_verdict (forbidden).
EX1_CASES = [
    # (before acc, before per class, after acc, after per class, max drop, max class drop)
    (0.75, [0.75, 0.75], 0.7421875, [0.74, 0.7443], 0.78125, 5.0),        # exactly at the mean budget
    (0.5, [0.5, 0.5], 0.4921875, [0.4921875, 0.4921875], 1.0, 5.0),       # relative drop 1.56 points
    (0.9, [0.9, 0.9, 0.9, 0.8], 0.895, [0.95, 0.93, 0.92, 0.55], 1.0, 10.0),  # one class falls apart
    (0.9, [0.9, 0.9], 0.87, [0.87, 0.87], 1.0, 5.0),                      # 3 points lost
    (0.75, [0.75, 0.75, 0.75], 0.75, [0.6875, 0.78125, 0.78125], 1.0, 6.25),  # one class exactly at its budget
    (0.8, [0.8, 0.8], 0.82, [0.81, 0.83], 0.5, 2.0),                      # a gain
    (0.625, [0.625, 0.625], 0.6171875, [0.6171875, 0.6171875], 0.5, 2.0),  # 0.78 points over 0.5
    (0.9, [1.0, 0.8, 0.9], 0.9, [0.9, 0.9, 0.9], 1.0, 5.0),               # mean same, a class -10 points
]


def _probe():
    with forbid("coursekit.pipeline.validate.within_budget", "coursekit.pipeline.validate.accuracy_drop",
                "coursekit.pipeline.compress.budget_verdict", exercise="Exercise 1"):
        return [bool(accept_step({"accuracy": ba, "per_class": list(bp)}, {"accuracy": aa, "per_class": list(ap)},
                                 {"max_drop_points": md, "max_class_drop_points": mc}))
                for ba, bp, aa, ap, md, mc in EX1_CASES]


def _check(out):
    want, relative, strict, no_class, mean_class, fraction = [], [], [], [], [], []
    for ba, bp, aa, ap, md, mc in EX1_CASES:
        drop = 100 * (ba - aa)
        cls = [100 * (b - a) for b, a in zip(bp, ap)]
        want.append(drop <= md and max(cls) <= mc)
        relative.append(100 * (ba - aa) / ba <= md and max(100 * (b - a) / b for b, a in zip(bp, ap)) <= mc)
        strict.append(drop < md and max(cls) < mc)
        no_class.append(drop <= md)
        mean_class.append(drop <= md and sum(cls) / len(cls) <= mc)
        fraction.append((ba - aa) <= md and max(b - a for b, a in zip(bp, ap)) <= mc)
    expect_equal(out, want, what=f"accept_step on {len(EX1_CASES)} hidden (baseline, step, budget) cases", wrong={
        "a relative drop 100 (b - a) / b instead of points": relative,
        "'<' instead of '<=': a drop equal to the budget is within it": strict,
        "the per-class check is missing": no_class,
        "the per-class check on the mean class drop, not the worst class": mean_class,
        "fractions compared with points (missing factor 100)": fraction})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 1 passed")

# %% [markdown]
# `coursekit.pipeline.validate.within_budget` is the library's mean-accuracy gate (it adds a $10^{-9}$ tolerance
# for float rounding), and `compress` applies it after every step against the baseline.
#
# ## 3 · `coursekit compress`: a recipe, a step log, a rollback <a id="compress"></a>
#
# A recipe is a TOML (or YAML) file: the model and its data set, the budget, how to validate, and the steps. The
# bundled `rollback-demo` fails on purpose: its first step prunes 98% of the LeNet's weights at once with no
# fine-tuning. `compress` validates the step, sees that it broke the 1-point budget and **rolls it back**: the
# model from before the step goes on to the next step, and the log says so. (With `on_fail = "finetune"` it would
# first fine-tune the broken step and re-check it.) The same run from a terminal:
#
# ```
# coursekit compress --recipe rollback-demo --out runs/rollback     # a bundled name or a .toml/.yaml file
# coursekit compress --recipe my.toml --out runs/mine --resume      # continue an interrupted run
# ```

# %%
print(pipeline.recipes_dir().joinpath("rollback-demo.toml").read_text())
demo = pipeline.compress("rollback-demo", RUNS / "rollback-demo", fast=FAST, progress=False)
for r in demo["steps"]:
    print(f"step {r['label']:12s} {r['status']:12s} drop {r['drop_points']:6.2f} points"
          + (f"  <- {r['reason']}" if r["status"] == "rolled_back" else ""))
print(f"final: {demo['final']['label']}, kept {demo['final']['kept_steps']}, rolled back "
      f"{demo['final']['rolled_back_steps']}; budget met: {demo['budget']['met']}")
print(sorted(p.name for p in (RUNS / "rollback-demo").iterdir()))

# %% [markdown]
# The output folder holds `model.onnx` with its model card (`model.card.md`/`.json`: inputs, precision per layer,
# size, sha256), `log.json` (every step's settings, measurements and status), `report.md` and `report.html`, and
# `steps/` with each step's model, which is what makes the folder **resumable**: a second run with
# `resume=True` (`--resume`) loads the finished steps instead of training them again, and refuses a changed
# recipe. An existing folder is never overwritten or deleted. The run's report:

# %%
print((RUNS / "rollback-demo" / "report.md").read_text())
again = pipeline.compress("rollback-demo", RUNS / "rollback-demo", resume=True, fast=FAST, progress=False)
print(f"resumed steps (loaded, not run again): {again['resumed_steps']}")

# %% [markdown]
# ## 4 · The Pareto front <a id="pareto"></a>
#
# Every step of every recipe is a *variant*: a point in (accuracy, latency, size). Variant $a$ **dominates** $b$
# when it is at least as good on every objective and strictly better on at least one:
#
# $$a \succ b \iff \big(\text{acc}_a \ge \text{acc}_b \,\wedge\, t_a \le t_b \,\wedge\, s_a \le s_b\big)
#   \,\wedge\, \big(\text{acc}_a > \text{acc}_b \,\vee\, t_a < t_b \,\vee\, s_a < s_b\big).$$
#
# The **Pareto front** is the set of variants that no other variant dominates: the only ones worth deploying.
# Which one to deploy is then a budget question: the most accurate point on the front that meets the latency and
# size limits. Two identical points do not dominate each other (neither is strictly better), so both stay.
#
# ### Exercise 2 · Pareto-front computation
#
# Write `pareto_mask(points)`: `points` is a list of dicts with `"accuracy"` (higher is better), `"latency_ms"`
# and `"size_bytes"` (lower is better); return a list of booleans, `True` where the point is on the front.

# %% solution="ex2_pareto"
def pareto_mask(points):
    """For each point: True if no other point is at least as good on all three objectives and better on one."""
    ### BEGIN SOLUTION
    def dominates(a, b):
        at_least = (a["accuracy"] >= b["accuracy"] and a["latency_ms"] <= b["latency_ms"]
                    and a["size_bytes"] <= b["size_bytes"])
        better = (a["accuracy"] > b["accuracy"] or a["latency_ms"] < b["latency_ms"]
                  or a["size_bytes"] < b["size_bytes"])
        return at_least and better

    return [not any(dominates(q, p) for q in points) for p in points]
    ### END SOLUTION

# %% tests="ex2_pareto_tests" points=3
# Visible tests: the six configurations of the quiz (size equal for all), then ties and a third axis
six = [(0.92, 10), (0.91, 6), (0.90, 7), (0.88, 3), (0.89, 5), (0.87, 4)]
pts = [{"accuracy": a, "latency_ms": t, "size_bytes": 1000} for a, t in six]
expect_equal(pareto_mask(pts), [True, True, False, True, True, False], what="pareto_mask on the six configurations",
             wrong={"latency maximised instead of minimised": [True, False, False, False, False, False]})
twins = [{"accuracy": 0.9, "latency_ms": 2.0, "size_bytes": size} for size in (500, 500, 400)]  # 3 dicts
expect_equal(pareto_mask(twins), [False, False, True], what="pareto_mask: two twins, and a point smaller than both")
expect_equal(pareto_mask(twins[:2]), [True, True], what="pareto_mask: two identical points",
             wrong={"a tie counted as domination (no strictly-better test)": [False, False]})
### BEGIN HIDDEN TESTS
import random

from coursekit.grading.sealed import expect_equal, forbid, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: a point that ties (equal on every axis) counted as dominating (twins knock each other
# out); latency (or size) maximised; only neighbours compared after sorting by accuracy (a point dominated by a
# non-neighbour survives); size ignored (2-D front); dominance without the strictly-better test but skipping
# exact twins; delegating to coursekit.pipeline.pareto_front / dominates / dominated (forbidden).
EX2_FIXED = [
    [(0.9, 5.0, 100), (0.9, 5.0, 100), (0.8, 1.0, 50)],
    [(0.9, 5.0, 100), (0.9, 4.0, 100), (0.9, 4.0, 90), (0.85, 4.0, 90)],
    [(0.95, 9.0, 900), (0.90, 8.0, 800), (0.93, 7.0, 700), (0.80, 8.5, 850), (0.70, 1.0, 100)],
    [(0.5, 1.0, 10)],
]


def _ex2_cases():
    cases = [list(c) for c in EX2_FIXED]
    for seed in (91, 92, 93):
        rng = random.Random(seed)
        cases.append([(rng.randint(80, 90) / 100, float(rng.randint(1, 8)), rng.randint(1, 6) * 100)
                      for _ in range(25)])
    return cases


def _probe():
    with forbid("coursekit.pipeline.pareto_front", "coursekit.pipeline.pareto.pareto_front",
                "coursekit.pipeline.dominates", "coursekit.pipeline.pareto.dominates",
                "coursekit.pipeline.dominated", "coursekit.pipeline.pareto.dominated", exercise="Exercise 2"):
        return [[bool(f) for f in pareto_mask([{"accuracy": a, "latency_ms": t, "size_bytes": s} for a, t, s in c])]
                for c in _ex2_cases()]


def _check(out):
    def front(points, senses, strict=True):
        def dom(p, q):
            ge = all((x >= y) if s > 0 else (x <= y) for x, y, s in zip(p, q, senses) if s)
            gt = any((x > y) if s > 0 else (x < y) for x, y, s in zip(p, q, senses) if s)
            return ge and (gt or not strict)
        return [not any(dom(q, p) for j, q in enumerate(points) if j != i) for i, p in enumerate(points)]

    def neighbours(points):
        order = sorted(range(len(points)), key=lambda i: -points[i][0])
        flags = [True] * len(points)
        for k, i in enumerate(order):
            for j in (order[k - 1] if k else None, order[k + 1] if k + 1 < len(order) else None):
                if j is not None and front([points[j], points[i]], (1, -1, -1))[1] is False:
                    flags[i] = False
        return flags

    cases = _ex2_cases()
    expect_equal(out, [front(c, (1, -1, -1)) for c in cases], what="pareto_mask on hidden variant sets", wrong={
        "a tie (equal on every axis) counted as domination": [front(c, (1, -1, -1), strict=False) for c in cases],
        "latency maximised instead of minimised": [front(c, (1, 1, -1)) for c in cases],
        "size ignored (a 2-D front)": [front(c, (1, -1, 0)) for c in cases],
        "only neighbours compared after sorting by accuracy": [neighbours(c) for c in cases]})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 2 passed")

# %% [markdown]
# `coursekit.pipeline.pareto_front` computes the same flags in $O(n \log n + nf)$ for a front of $f$ points
# (sort, then compare each point with the front found so far). `coursekit report` gathers the variants of
# compress folders, and of benchmark-suite files (`coursekit bench --suite NAME --json FILE`) from the earlier
# chapters, and writes the dashboard: a static `pareto.png`, `variants.json` and **`pareto.html`**, a
# self-contained page whose interactive plot (hover for labels, dominated points grey, an axis selector) opens
# offline in any browser, with no network access.
#
# ```
# coursekit report runs/ bench-ptq.json --out dashboard     # every compress folder under runs/, a suite file
# ```
#
# One dashboard should hold one model on one data set: accuracies on different data are not comparable. Below,
# the MNIST-1D CNN's variants: the two order recipes of section 1, and a third recipe written as a Python dict
# (25% of the channels removed and fine-tuned, then INT8 in ONNX Runtime):

# %%
from IPython.display import Image, display

int8_recipe = {"name": "cnn1d-channels-int8", "model": {"name": "cnn1d", "dataset": "mnist1d"},
               "budget": {"max_accuracy_drop": 100.0}, "validate": {"repeats": 10},
               "steps": [{"kind": "prune", "method": "channel", "amount": 0.25, "epochs": 3},
                         {"kind": "quantize", "method": "ptq", "backend": "ort"}]}
pipeline.compress(int8_recipe, RUNS / "cnn1d-channels-int8", fast=FAST, progress=False)
dashboard = pipeline.report(RUNS / "order-prune-then-quantize", RUNS / "order-quantize-then-prune",
                            RUNS / "cnn1d-channels-int8", out=RUNS / "dashboard")
display(Image(filename=str(RUNS / "dashboard" / "pareto.png")))
on_front = [v["label"] for v in dashboard["variants"] if v["front"]]
print(f"{len(dashboard['variants'])} variants, {len(on_front)} on the 3-D front (accuracy, latency, size):")
for v in dashboard["variants"]:
    print(f"  {'front    ' if v['front'] else 'dominated'} {v['label']:45s} {100 * v['accuracy']:6.2f}%  "
          f"{v['latency_ms']:.4f} ms  {v['size_bytes']:8,.0f} B")
print(f"offline page: {RUNS / 'dashboard' / 'pareto.html'}")

# %% [markdown]
# The widget recomputes the front on the variants you keep: switch the axis, untick a recipe, raise the accuracy
# floor. Removing a recipe can put a dominated point back on the front, which a static plot cannot show.

# %%
from coursekit.pipeline.explore import pareto_explorer

pareto_explorer(dashboard["variants"])

# %% [markdown]
# ## 5 · Choosing the step order for a budget
#
# With measurements in hand the order question becomes a selection: run the candidate orders (cheap on a small
# model, and `compress` caches the baseline), read each one's total drop and size ratio, and keep the order that
# meets the budget. A rule of thumb ("quantize last", or its opposite) is where you *start* the search, not a
# substitute for it.
#
# ### Exercise 3 · Choose the order
#
# Write `choose_order(results, budget)`. `results` is a list of measured runs, each a dict with `"order"` (a list
# of step names), `"drop_points"` (accuracy lost against the baseline, in points) and `"size_ratio"` (baseline
# size / compressed size). `budget` has `"max_accuracy_drop"` (points) and `"min_size_ratio"`. Return the
# `"order"` (a list) of the run that meets **both** items (a value exactly at a limit meets it) with the
# **smallest drop**, breaking ties by the larger size ratio; return `None` when no run meets the budget.

# %% solution="ex3_order"
def choose_order(results, budget):
    """The order of the run that meets the budget with the smallest accuracy drop (ties: smaller model)."""
    ### BEGIN SOLUTION
    meets = [r for r in results
             if r["drop_points"] <= budget["max_accuracy_drop"] and r["size_ratio"] >= budget["min_size_ratio"]]
    if not meets:
        return None
    return list(min(meets, key=lambda r: (r["drop_points"], -r["size_ratio"]))["order"])
    ### END SOLUTION

# %% tests="ex3_order_tests" points=2
# Visible tests
runs = [{"order": ["quantize", "prune"], "drop_points": 2.5, "size_ratio": 4.1},
        {"order": ["prune", "quantize"], "drop_points": 0.8, "size_ratio": 4.1},
        {"order": ["quantize"], "drop_points": 0.25, "size_ratio": 2.4}]
expect_equal(choose_order(runs, {"max_accuracy_drop": 1.0, "min_size_ratio": 4.0}), ["prune", "quantize"],
             what="choose_order: 1 point, 4x smaller",
             wrong={"'quantize first' is a rule of thumb, not a measurement": ["quantize", "prune"],
                    "the size budget is ignored": ["quantize"]})
expect_equal(choose_order(runs, {"max_accuracy_drop": 0.5, "min_size_ratio": 4.0}), None,
             what="choose_order: no run meets 0.5 points and 4x")
# the runs measured in section 1 (a fake-quant export keeps float weights: size is not the question there)
measured = [{"order": [r["kind"] for r in log["steps"] if r["status"] != "rolled_back"],
             "drop_points": log["final"]["drop_points"], "size_ratio": log["final"]["metrics"]["size_ratio"]}
            for log in orders.values()]
print("measured:", [(m["order"], round(m["drop_points"], 2)) for m in measured])
print("order chosen for 'at most 10 points, any size':",
      choose_order(measured, {"max_accuracy_drop": 10.0, "min_size_ratio": 0.0}))
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_equal, forbid, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: 'quantize first' (or 'quantize last') as a fixed rule; the size budget ignored (smallest
# drop overall); the accuracy budget ignored (the most compressed run); '<' / '>' instead of '<=' / '>=' at the
# limits (the values are exact in binary); the first run in the list that meets the budget (not the best); ties
# broken towards the larger model; a run returned when none meets the budget (None expected).
P, Q, D, L = "prune", "quantize", "distill", "lowrank"
EX3_CASES = [
    ([([Q, P], 2.5, 4.125), ([P, Q], 0.75, 4.125), ([D, P, Q], 0.5, 6.0)], 1.0, 4.0),
    ([([P, Q], 0.75, 3.875), ([Q, P], 0.25, 3.875)], 1.0, 3.5),
    ([([P, Q], 1.5, 4.0), ([Q, P], 2.0, 4.0)], 1.0, 4.0),
    ([([Q], 0.0, 2.375), ([P, Q], 0.5, 4.5), ([L, Q], 0.75, 4.0)], 1.0, 4.0),
    ([([D, P, Q], 3.0, 12.0), ([P, Q], 0.875, 4.25)], 1.0, 4.0),
    ([([D, Q], 0.5, 4.0), ([L, Q], 0.5, 4.5), ([P, Q], 0.625, 5.0)], 1.0, 4.0),
    ([([P, Q], 1.0, 3.0), ([Q, P], 1.25, 3.5)], 1.0, 3.0),
    ([([L, P, Q], 0.875, 5.0), ([P, L, Q], 0.25, 5.5)], 1.0, 5.0),
]


def _probe():
    with forbid("coursekit.pipeline.compress.budget_verdict", "coursekit.pipeline.budget_verdict",
                exercise="Exercise 3"):
        return [choose_order([{"order": list(o), "drop_points": d, "size_ratio": s} for o, d, s in runs],
                             {"max_accuracy_drop": md, "min_size_ratio": ms}) for runs, md, ms in EX3_CASES]


def _check(out):
    def pick(runs, ok, key=lambda r: (r[1], -r[2])):
        meets = [r for r in runs if ok(r)]
        return list(min(meets, key=key)[0]) if meets else None

    want, quant_first, no_size, no_acc, strict, first_ok = [], [], [], [], [], []
    for runs, md, ms in EX3_CASES:
        want.append(pick(runs, lambda r, md=md, ms=ms: r[1] <= md and r[2] >= ms))
        quant_first.append(pick([r for r in runs if r[0][0] == "quantize"] or runs, lambda r: True))
        no_size.append(pick(runs, lambda r, md=md: r[1] <= md))
        no_acc.append(pick(runs, lambda r, ms=ms: r[2] >= ms, key=lambda r: -r[2]))
        strict.append(pick(runs, lambda r, md=md, ms=ms: r[1] < md and r[2] > ms))
        first_ok.append(next((list(r[0]) for r in runs if r[1] <= md and r[2] >= ms), None))
    expect_equal(out, want, what=f"choose_order on {len(EX3_CASES)} hidden measured tables", wrong={
        "'quantize first' as a fixed rule": quant_first, "the size budget ignored": no_size,
        "the accuracy budget ignored (the most compressed run)": no_acc,
        "'<' or '>' at the limits: a value exactly at the limit meets it": strict,
        "the first run that meets the budget, not the one with the smallest drop": first_ok})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 3 passed")

# %% [markdown]
# ## 6 · Use cases: from a product to a recipe and a budget <a id="use-cases"></a>
#
# A budget comes from the product, and it decides the techniques. Four classic deployments:
#
# | product | what binds | techniques | budget in a recipe |
# |---|---|---|---|
# | **mobile app** (offline, on-device) | download size, battery, latency on a phone CPU/NPU | distill to a small architecture, channel pruning, INT8 (ORT/TFLite/Core ML) | `min_size_ratio = 4`, `max_accuracy_drop = 1`, `target_latency_ms` measured *on the phone* |
# | **IoT camera** (integer-only NPU, ~256 MB RAM) | integer-only operators, fixed memory | compact detector, structured pruning, *full-integer static* INT8 calibrated on camera images | `target_size_bytes`, `max_accuracy_drop`, per-class (rare objects) and noise checks |
# | **chatbot** (LLM serving) | decode speed (weight bandwidth), KV-cache memory per chat | 4-bit weight-only (GPTQ/AWQ, chapter 07), INT8 KV cache, distilled smaller model | task accuracy and perplexity drop, tokens/s, chats per GPU |
# | **more instances per GPU** (cost) | memory per model copy | INT8/INT4 weights, pruning, smaller students | copies $= \lfloor (M_\text{GPU} - M_\text{reserved}) / M_\text{model} \rfloor$ |
#
# The bundled recipes are small versions of the first two: `cnn1d-wide-4x` (channel pruning, then ORT INT8, on
# the conv-heavy MNIST-1D CNN; its budget asks for at least 4x smaller and 2x faster at batch 1 with at most 1
# point lost), `lenet-digits-4x` (channel pruning, then 8-bit QAT, on the digits LeNet, a model so small that
# per-call overhead may eat the speedup: its report measures how much is left on your machine),
# `distill-mlp-small` (distillation, then INT8). Each recipe's `description` says why its steps are what they are. The chatbot row uses chapter 07's tools (`coursekit.llm`), and the
# instances-per-GPU arithmetic is `coursekit.formats.memory_bytes`:

# %%
from coursekit.formats import memory_bytes

for fmt, group in (("fp16", None), ("int8", None), ("int4", 128)):
    gb = memory_bytes(7 * 10**9, fmt, group_size=group) / 1e9
    print(f"7B model in {fmt}{f' (groups of {group})' if group else ''}: {gb:5.2f} GB per copy -> "
          f"{int((80 - 10) // gb)} copies on an 80 GB GPU with 10 GB reserved")

# %% [markdown]
# ## 7 · The challenge: your recipe against a budget <a id="challenge"></a>
#
# ### Exercise 4 · A recipe that meets the budget (graded on the measured result)
#
# Write `my_recipe`, a recipe for the digits LeNet (`[model] name = "lenet"`, `dataset = "digits"`, no other
# model settings) as a Python dict or as a TOML string, that compresses it to an ONNX file **at least 3x smaller**
# than the baseline's while losing **at most 1 point of test accuracy**. Any steps count (see
# `pipeline.STEP_SETTINGS`). The hidden test rebuilds the model from your recipe with `coursekit.pipeline.compress`
# in fast mode (one epoch per training step), in the grader's own process, with the chapter's budget
# (`max_accuracy_drop = 1`, steps over it are rolled back) and measures the final file: one point for the size,
# one for the accuracy on the **test** split, which no step and no rollback decision ever reads. Latency is
# reported but **not graded**: a sub-millisecond batch-1 time on a shared machine varies too much between runs for
# a hidden test to be fair. The cell after yours runs your recipe the way the grader will.

# %%
from coursekit.pipeline.recipe import REQUIRED

for kind, settings in pipeline.STEP_SETTINGS.items():
    print(f"{kind:9s}", ", ".join(f"{k}={'(required)' if v is REQUIRED else repr(v)}" for k, v in settings.items()))
print("every step also takes:", ", ".join(f"{k}={v!r}" for k, v in pipeline.COMMON_SETTINGS.items()))


def graded_recipe(recipe):
    """`recipe` (a dict or a TOML string) as the grader runs it: the chapter's budget, fast validation."""
    recipe = tomllib.loads(recipe) if isinstance(recipe, str) else dict(recipe)
    on_fail = (recipe.get("budget") or {}).get("on_fail")
    return {**recipe, "budget": {"max_accuracy_drop": 1.0, **({"on_fail": on_fail} if on_fail else {})},
            "validate": {"repeats": 3, "noise_std": 0.1}}

# %% solution="ex4_recipe"
### BEGIN SOLUTION
# Low-rank factorization of the Linear layers (they hold 87% of the LeNet's weights) at rank 16, fine-tuned,
# then INT8 in ONNX Runtime: 3.1x smaller; channel pruning of the small convs costs too much accuracy in one epoch.
my_recipe = """
name = "lenet-lowrank-int8"
[model]
name = "lenet"
dataset = "digits"
[budget]
max_accuracy_drop = 1.0
[[steps]]
kind = "lowrank"
rank = 16
epochs = 3
[[steps]]
kind = "quantize"
method = "ptq"
backend = "ort"
"""
### END SOLUTION

# %%
# Your recipe, run as the grader runs it (fast mode, the chapter's budget): read the numbers before you submit.
challenge = pipeline.compress(graded_recipe(my_recipe), RUNS / "challenge", fast=True, progress=False)
b, f = challenge["baseline"]["metrics"], challenge["final"]["metrics"]
print(f"steps: {[(r['label'], r['status']) for r in challenge['steps']]}")
print(f"size: {b['size_bytes']:,} B -> {f['size_bytes']:,} B = {f['size_ratio']:.2f}x smaller "
      "(needs 3x)")
print(f"test accuracy: {100 * b['test_accuracy']:.2f}% -> {100 * f['test_accuracy']:.2f}% "
      f"({100 * (b['test_accuracy'] - f['test_accuracy']):.2f} points lost, at most 1 allowed)")
print(f"latency (not graded), batch 1 in ORT on this machine: fastest samples {f['latency_ms_min']['ort']:.4f} ms vs "
      f"baseline {f['baseline_latency_ms_min']['ort']:.4f} ms ({f['speedup_min']:.2f}x), medians "
      f"{f['latency_ms']['ort']:.4f} vs {f['baseline_latency_ms']['ort']:.4f} ms ({f['speedup']:.2f}x)")

# %% tests="ex4_recipe_tests" points=2
print("your recipe is a", type(my_recipe).__name__)
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import partial, sealed_test

# Wrong answers caught: INT8 alone (2.4x, too big); channel pruning at 50% with one epoch (rolled back, so the
# final model is INT8 alone: too big); low-rank at rank 1 (more than a point of test accuracy lost, or rolled
# back and too big); a smaller LeNet in [model] kwargs (a different baseline: refused); a bundled recipe's name
# instead of a recipe (not a TOML document: refused).


def _probe():
    return {"recipe": my_recipe if isinstance(my_recipe, str) else dict(my_recipe)}


def _check(out):
    import tempfile
    from pathlib import Path

    from coursekit.pipeline import compress

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    given = out["recipe"]
    if isinstance(given, str):
        try:
            given = tomllib.loads(given)
        except tomllib.TOMLDecodeError as err:
            raise AssertionError(f"my_recipe is a string but not a TOML recipe ({err}); write the recipe itself, "
                                 "not the name of a bundled one") from None
    if not isinstance(given, dict):
        raise AssertionError(f"my_recipe must be a dict or a TOML string, got {type(given).__name__}")  # noqa: TRY004 (a grading verdict)
    model = given.get("model") if isinstance(given.get("model"), dict) else {}
    extra = {k: v for k, v in model.items() if k not in ("name", "dataset") and v not in ({}, None, 0)}
    if model.get("name") != "lenet" or model.get("dataset") != "digits" or extra:
        raise AssertionError(f"[model] must be name = 'lenet', dataset = 'digits' and nothing else (the chapter's "
                             f"baseline), got {model}")
    on_fail = given["budget"].get("on_fail") if isinstance(given.get("budget"), dict) else None
    recipe = {**given, "budget": {"max_accuracy_drop": 1.0, **({"on_fail": on_fail} if on_fail else {})},
              "validate": {"repeats": 3, "noise_std": 0.1}}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            log = compress(recipe, Path(tmp) / "run", fast=True, progress=False)
        except (ValueError, TypeError, FileNotFoundError) as err:
            raise AssertionError(f"compress refused your recipe: {err}") from None
    b, f = log["baseline"]["metrics"], log["final"]["metrics"]
    drop = 100 * (b["test_accuracy"] - f["test_accuracy"])
    return partial([(f["size_ratio"] >= 3.0, f"ONNX file {f['size_ratio']:.2f}x smaller (at least 3x)"),
                    (drop <= 1.0 + 1e-9, f"test accuracy drop {drop:.2f} points (at most 1)")])


sealed_test(_probe, _check, points=2)  # last expression: nbgrader reads a returned number as partial credit
### END HIDDEN TESTS

# %% [markdown]
# ## 8 · Benchmark: your hardware <a id="benchmark"></a>
#
# Every latency in this chapter was measured by `coursekit.bench.measure_latency` inside `compress`: the step's
# ONNX file and the baseline's, in ONNX Runtime on one thread at batch 1, timed *interleaved* in the same call, so
# the ratio compares like with like on your machine at the same moment. The reading below is generated from
# those numbers.

# %%
logs = {name: json.loads((RUNS / name / "log.json").read_text()) for name in
        ("order-prune-then-quantize", "order-quantize-then-prune", "cnn1d-channels-int8", "rollback-demo", "challenge")
        if (RUNS / name / "log.json").exists()}  # the challenge's run exists once Exercise 4 is answered
for name, log in logs.items():
    m = log["final"]["metrics"]
    print(f"{name:26s} fastest samples {m['baseline_latency_ms_min']['ort']:.4f} -> {m['latency_ms_min']['ort']:.4f} ms "
          f"({m['speedup_min']:.2f}x); medians {m['baseline_latency_ms']['ort']:.4f} -> {m['latency_ms']['ort']:.4f} ms "
          f"({m['speedup']:.2f}x); {m['size_ratio']:.2f}x smaller")
speedups = {name: log["final"]["metrics"]["speedup_min"] for name, log in logs.items()}
faster = [name for name, x in speedups.items() if x >= 1.2]
slower = [name for name, x in speedups.items() if x <= 1 / 1.2]
noisy = [name for name, log in logs.items()
         if max(log["final"]["metrics"]["speedup"], speedups[name]) / min(log["final"]["metrics"]["speedup"],
                                                                          speedups[name]) > 1.5]
print("Reading: on your machine "
      + (f"{', '.join(faster)} ran at least 1.2x faster than its baseline (fastest samples); " if faster else
         "no compressed model ran 1.2x faster than its baseline (fastest samples); ")
      + (f"{', '.join(slower)} ran slower: the extra Quantize/Dequantize or factorized operators cost more per call "
         "than the arithmetic they save on a model this small." if slower else "none ran clearly slower."))
if noisy:
    print(f"The median and fastest-sample ratios disagree by more than 1.5x for {', '.join(noisy)}: other programs "
          "disturbed the medians; the fastest samples measure the work itself. Rerun on a quiet machine.")

# %% [markdown]
# How to read it: the course's chapter models are tiny (tens of kilobytes), so a batch-1 call is dominated by
# per-operator overhead, not by arithmetic. Smaller files do not make such a model faster, and INT8 graphs add
# Quantize/Dequantize operators: on a small model they can be *slower*, which is what the "ran slower" list says
# when it is not empty. The fake-quantized 4-bit models of section 1 gain little on disk (read their "x smaller"
# above): a simulated 4-bit model (chapter 03) is exported with its weights in INT8 or float containers, never
# packed two to a byte, so the file follows the container, not the bit width; ORT's INT8 graphs store one byte
# per weight. Speed comes from compression when the work is large:
# wide layers, conv-heavy models (`cnn1d-wide-4x`), big batches; `coursekit bench --suite ptq` and
# `--suite deploy` measure that side by side.
#
# ## 9 · Mini-projects <a id="mini-projects"></a>
#
# Each is a portfolio-sized project; the starting point is the coursekit piece to build on.
#
# 1. **A benchmarking dashboard.** Run `coursekit bench --suite ptq --json ptq.json` (and `prune`, `distill`,
#    `lowrank`), several recipes, then `coursekit report runs/ *.json --out dashboard`; write up which variant
#    you would ship under three different budgets, with the hardware named. Start: `coursekit.pipeline.report`.
# 2. **A compression toolkit.** Add a step kind to `coursekit compress` (e.g. 2:4 semi-structured pruning from
#    chapter 04, or weight sharing from chapter 06): one function in `coursekit/pipeline/steps.py`, its settings
#    in `recipe.STEP_SETTINGS`, a test that its validation is right. Start: `coursekit.pipeline.steps`.
# 3. **The order study, done properly.** Every permutation of distill / prune / lowrank / quantize on two
#    models, three seeds each, with confidence intervals; does "quantize last" hold with QAT? with INT8 PTQ?
#    Start: the two `order-*.toml` recipes and Exercise 3.
# 4. **Compress a small LLM for a chatbot.** GPTQ/AWQ 4-bit weights and an INT8 KV cache on the course's
#    TinyGPT; report bits/char, tokens/s and chats per GB. Start: chapter 07, `coursekit.llm`.
# 5. **Deploy and load-test.** Serve a compressed model (`coursekit serve`), load-test FP32 vs INT8
#    (`coursekit loadtest`), and find the batch size and instance count that meet a p99 budget. Start: chapter 08.
# 6. **A fairness and robustness audit.** For every variant on the Pareto front, per-class accuracy, noise and
#    shift curves; add a worst-class and a robustness item to the recipe budget. Start: `pipeline.validate`.
#
# ## 10 · Common mistakes <a id="common-mistakes"></a>
#
# * **Validating only at the end.** The losses accumulate and interact; without a measurement after each step you
#   cannot tell which step broke the budget, and you build the next step on a broken model.
# * **Gating against the previous step.** Each step "only" loses a little, and the total drifts past the budget:
#   compare every step with the baseline.
# * **Relative vs absolute points.** "1% worse" of 90% is 0.9 points; budgets are usually in points. Say which.
# * **Reading only the mean.** The mean accuracy hides the class (or subgroup) that collapsed; gate on the worst
#   class too.
# * **Tuning on the test set.** Choosing the pruning ratio, the calibration method or the recipe by test accuracy
#   makes the test number optimistic; gate on validation, report test.
# * **Quantizing, then training without the quantizer.** Fine-tuning after PTQ (without QAT) moves the weights off
#   the grid the scales were calibrated for; either recalibrate, or train through the quantizer.
# * **Counting a fake-quant export as compressed.** A QDQ graph with float weights is a simulation; measure the
#   file, and measure the latency in the runtime you ship.
# * **Comparing latencies from different runs or machines.** Interleave the baseline and the variant in one
#   measurement, on the target hardware, at the batch size the product uses.
#
# ## 11 · Interview questions <a id="interview"></a>
#
# Practise with the quiz below (immediate feedback and explanations), or in a terminal with
# `coursekit drill --chapter 09`. The graded questions further down are left out of the practice quiz.

# %% locked="quiz_ids"
from coursekit import quiz

QUIZ_IDS = ["ch09-validate-each-step", "ch09-pareto-count", "ch09-pareto-pick", "ch09-end-to-end-ratio",
            "ch09-test-set-leakage", "ch09-use-case-iot-camera", "ch09-instances-per-gpu", "ch09-gate-baseline"]
quiz.show(chapter="09", n=6, exclude=QUIZ_IDS)

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
    "ch09-validate-each-step": "C",
    "ch09-pareto-count": 4,
    "ch09-pareto-pick": "D",
    "ch09-end-to-end-ratio": 26.667,
    "ch09-test-set-leakage": "B",
    "ch09-use-case-iot-camera": "B",
    "ch09-instances-per-gpu": 19,
    "ch09-gate-baseline": 1.8,
}
### END SOLUTION

# %% tests="quiz_answers_tests" points=8
# One point per question. Visible: which questions you have not answered yet.
unanswered = [qid for qid in QUIZ_IDS if not isinstance(answers, dict) or qid not in answers]
print("not answered yet: " + ", ".join(unanswered) if unanswered else "all questions answered")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import sealed_quiz

# one point per question; the returned number is nbgrader's partial credit
sealed_quiz(["ch09-validate-each-step", "ch09-pareto-count", "ch09-pareto-pick", "ch09-end-to-end-ratio",
             "ch09-test-set-leakage", "ch09-use-case-iot-camera", "ch09-instances-per-gpu", "ch09-gate-baseline"])
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# * Compression steps do not commute. The order "train-like steps first, the number format last" is a good
#   start; the measurement on your model decides (section 1 measured both orders).
# * Accuracy drops add up ($D_K = \sum_k \delta_k$): gate every step against the **baseline**, on a validation
#   split, in points, on the mean *and* the worst class; roll back (or fine-tune) a step that breaks the budget.
# * Validate the artifact you ship (the ONNX file): accuracy, per-class accuracy, noise and shift robustness, size,
#   and latency interleaved with the baseline on the target machine.
# * The Pareto front keeps the variants worth deploying; the budget picks one of them. `coursekit report` draws
#   it (PNG and an offline HTML page); the widget recomputes it as you filter.
# * A budget comes from a product: mobile, IoT camera, chatbot and GPU packing each bind a different resource, and
#   a recipe writes that budget down so that `coursekit compress` can check it.
#
# This is the last chapter: the mini-projects above are where to go next.
