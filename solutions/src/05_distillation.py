# %% [markdown] locked="title"
# # 05 · Knowledge distillation
#
# **The deployment problem.** You have a big, accurate model (a wide CNN, an ensemble, a large language model) and a
# device, a latency budget or a bill that only a model ten times smaller fits. Training the small model on the
# labels alone gives you a small, *worse* model. **Knowledge distillation** (Hinton, Vinyals & Dean 2015) trains the
# small *student* to reproduce what the big *teacher* outputs: its whole probability distribution over the classes,
# not just the one right answer. Those soft targets carry more information per example than a label, and, more
# important in practice, the teacher can produce them for inputs that *nobody labelled*.
#
# In this chapter you build, and measure:
#
# 1. soft targets and temperature: what the teacher says that a label does not (a figure and a widget),
# 2. the Hinton loss, its KL direction, `log_softmax` + `batchmean`, and why the soft term is multiplied by $T^2$,
# 3. one distillation step with a frozen teacher, and the cached-teacher trainer of `coursekit.train.distill`,
# 4. feature (hint) distillation with a learned projection, and relational / attention transfer,
# 5. **the transfer set**: 800 labels plus 8,000 unlabelled inputs the teacher labels: where the student gains,
# 6. Hinton's omitted-class experiment, measured,
# 7. same data, small student: when distillation does *not* help, and why a high $T$ hurts a tiny student,
# 8. choosing $T$ and $\alpha$ on validation data, a student under a parameter budget, and the speed the student
#    buys in ONNX Runtime on your machine.
#
# Run the notebook cell by cell (Shift+Enter): "Run All" stops at the first exercise you have not answered yet,
# as in any nbgrader course.
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below it.
# `coursekit check notebooks/05_distillation.ipynb` grades the whole notebook (hidden tests included) from a terminal.

# %% locked="setup"
# Setup: run this first. Warnings are silenced so that graded cells stay clean.
import warnings

warnings.filterwarnings("ignore")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import coursekit
from coursekit._env import fast_mode
from coursekit.distill import HintLoss, kd_loss, soft_gradient_norm
from coursekit.grading.sealed import expect_close, expect_equal
from coursekit.models import build_model, count_parameters
from coursekit.train import evaluate, seed_everything
from coursekit.train.distill import distill
from coursekit.train.transfer import transfer_set

FAST = fast_mode()  # True under COURSEKIT_FAST=1 and during grading: fewer epochs, same checks
seed_everything(0)
torch.set_num_threads(1)  # these models are tiny: a second thread only adds synchronisation
print(f"coursekit {coursekit.__version__}, torch {torch.__version__}, fast mode: {FAST}")

# %% [markdown]
# ## 1 · A big accurate model, a small fast one <a id="deployment"></a>
#
# The models of this chapter work on MNIST-1D (Greydanus & Kobak 2020: ten digit shapes drawn as 40-sample 1D
# signals, shifted, scaled, sheared and noisy; hard enough that model size matters, small enough to train in
# seconds). The **teacher** is a 1D CNN with 64 channels per layer; the **student** is an MLP with two hidden layers
# of 32 units, about ten times fewer parameters. The teacher is trained once on the labelled training split and
# cached (`coursekit.suites.distill.teacher_model`, built on `coursekit.train.pretrained`).

# %%
from coursekit.suites.distill import STUDENT, TEACHER, teacher_model

teacher = teacher_model(progress=False)
student_template = build_model(STUDENT[0], "mnist1d", **STUDENT[1])
n_teacher, n_student = count_parameters(teacher), count_parameters(student_template)
print(f"teacher {TEACHER[0]} {TEACHER[1]}: {n_teacher:,} parameters, test accuracy "
      f"{teacher.checkpoint_info['test_accuracy']:.1%}")
print(f"student {STUDENT[0]} {STUDENT[1]}: {n_student:,} parameters ({n_teacher / n_student:.1f}x fewer)")

# %% [markdown]
# ## 2 · Soft targets: what the teacher knows that the label does not <a id="soft-targets"></a>
#
# A label says "this is a 3". The teacher's output says "this is a 3, it looks a bit like an 8, and nothing like a
# 1". Those ratios between *wrong* classes are what Hinton called **dark knowledge**: how the teacher generalises,
# which inputs it finds similar. A student trained to match them learns the teacher's similarity structure, which
# a one-hot label cannot transmit.
#
# ### Temperature <a id="temperature"></a>
#
# At the ordinary softmax a confident teacher gives the wrong classes tiny probabilities (often $10^{-3}$ and less),
# so they hardly move a loss.
# Dividing the logits $z$ by a **temperature** $T > 0$ before the softmax (Hinton et al. 2015, eq. 1)
#
# $$q_i(T) = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}$$
#
# flattens the distribution: $T = 1$ is the usual softmax, $T \to \infty$ tends to uniform, and the ranking of the
# classes never changes (dividing by a positive number is monotonic). The figure shows one test example: the label,
# and the teacher's distribution at three temperatures, on a log scale so the small bars are visible; the legend
# gives each distribution's entropy.

# %%
from coursekit.distill.explore import class_similarity, plot_soft_targets, temperature_explorer

test_x, test_y = transfer_set(800, 0)["test"].x, transfer_set(800, 0)["test"].y
with torch.no_grad():
    test_logits = teacher(test_x)
k = 3
plot_soft_targets(test_logits[k], int(test_y[k]), temperatures=(1.0, 4.0, 10.0))
plt.title(f"teacher on test example {k} (label {int(test_y[k])})")
plt.tight_layout()
plt.show()
sim = class_similarity(test_logits, test_y, T=4.0)
off = sim.clone().fill_diagonal_(0)
pairs = sorted(((float(off[a, b] + off[b, a]), a, b) for a in range(10) for b in range(a + 1, 10)), reverse=True)
print("classes the teacher finds most similar (mean soft target at T=4, both directions):",
      ", ".join(f"{a}~{b} ({v:.2f})" for v, a, b in pairs[:4]))

# %% [markdown]
# ### Explore: the temperature slider
#
# Move $T$ and pick examples. Watch the entropy (0 bits = certain, $\log_2 10 = 3.32$ bits = uniform) and which
# wrong classes the teacher ranks next: they are the same few pairs again and again, the similarity structure
# printed above. At $T \approx 1$ most examples look one-hot; at $T \approx 4$ the second and third choices appear;
# at $T = 30$ everything is nearly uniform and the signal is gone.

# %%
temperature_explorer(test_logits[:200], test_y[:200])

# %% [markdown]
# ### Exercise 1 · Softmax at temperature $T$
#
# Write `softmax_temperature(logits, T)`: the softmax of `logits / T` along the last dimension, for a tensor of
# shape `(batch, classes)`. It must stay finite for large logits (subtract the row maximum, or use `torch.softmax`,
# which does). Do not call `coursekit.distill.softmax_t` (it is the reference).

# %% solution="ex1_softmax_t"
def softmax_temperature(logits, T):
    """softmax(logits / T) along the last dimension."""
    ### BEGIN SOLUTION
    return torch.softmax(logits / T, dim=-1)
    ### END SOLUTION

# %% tests="ex1_softmax_t_tests" points=2
# Visible tests: the logits [2, 1, 0] at T = 1 and T = 2 (the values the quiz asks for)
z = torch.tensor([[2.0, 1.0, 0.0]])
expect_close(softmax_temperature(z, 1.0)[0].tolist(), [0.66524, 0.24473, 0.09003], what="softmax_temperature([2,1,0], 1)",
             rtol=1e-4)
expect_close(softmax_temperature(z, 2.0)[0].tolist(), [0.50648, 0.30719, 0.18632], what="softmax_temperature([2,1,0], 2)",
             rtol=1e-4, wrong={"you multiplied by T instead of dividing": [0.86681, 0.11731, 0.01588]})
### BEGIN HIDDEN TESTS
import torch

from coursekit.grading.sealed import expect_close, forbid, sealed_test

# Wrong answers caught (each verified to fail): logits * T instead of logits / T; softmax over dim 0 (the batch)
# instead of the classes; exp without the max subtraction (inf/inf = nan on the large-logit case); the reference
# coursekit.distill.softmax_t called (forbidden).
EX1_T = [1.0, 2.0, 0.5, 7.0]


def _ex1_inputs():
    g = torch.Generator().manual_seed(51)
    small = 3.0 * torch.randn(4, 6, generator=g)
    big = torch.tensor([[1000.0, 998.0, 0.0], [-5.0, 900.0, 899.0]])
    return small, big


def _probe():
    small, big = _ex1_inputs()
    with forbid("coursekit.distill.softmax_t", "coursekit.distill.soft.softmax_t", exercise="Exercise 1"):
        return {"small": [softmax_temperature(small, T) for T in EX1_T],
                "big": [softmax_temperature(big, T) for T in (1.0, 10.0)]}


def _check(out):
    small, big = _ex1_inputs()
    want = [torch.softmax(small / T, -1).tolist() for T in EX1_T]
    expect_close(out["small"], want, what="softmax_temperature on hidden logits at T = 1, 2, 0.5, 7", rtol=1e-5,
                 atol=1e-7, wrong={"you multiplied the logits by T instead of dividing":
                                   [torch.softmax(small * T, -1).tolist() for T in EX1_T],
                                   "softmax over dim 0 (the batch): normalise over the classes (last dimension)":
                                   [torch.softmax(small / T, 0).tolist() for T in EX1_T]})
    expect_close(out["big"], [torch.softmax(big / T, -1).tolist() for T in (1.0, 10.0)],
                 what="softmax_temperature on logits near 1000 (exp overflows: subtract the row maximum first)",
                 rtol=1e-5, atol=1e-7)


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 1 passed")

# %% [markdown]
# ## 3 · The distillation loss, and why $T^2$ <a id="kd-loss"></a>
#
# Let $p^T = \mathrm{softmax}(z_t / T)$ be the teacher's softened distribution and $q^T = \mathrm{softmax}(z_s / T)$
# the student's. The Hinton loss mixes a *soft* term at temperature $T$ with the ordinary *hard* cross-entropy at
# $T = 1$:
#
# $$L = \alpha\, T^2\, \mathrm{KL}\!\left(p^T \,\|\, q^T\right) + (1 - \alpha)\, \mathrm{CE}\!\left(y,\ q^1\right),
# \qquad \mathrm{KL}(p\|q) = \sum_i p_i (\log p_i - \log q_i).$$
#
# The KL differs from the soft cross-entropy $-\sum_i p_i \log q_i$ only by the teacher's entropy, a constant for
# the student: same gradients, but the KL is 0 when the student matches. Its gradient with respect to a student
# logit is (Hinton et al. 2015, sec. 2.1)
#
# $$\frac{\partial\, T^2 \mathrm{KL}}{\partial z_{s,i}} = T\,(q^T_i - p^T_i) \;\approx\; \frac{z_{s,i} - z_{t,i}}{N}
# \quad\text{for large } T \text{ (zero-mean logits, } N \text{ classes)},$$
#
# so *without* the $T^2$ the soft gradient shrinks like $1/T^2$: raising $T$ from 1 to 4 would silently weaken the
# teacher 16-fold and you would be re-tuning $\alpha$ for every $T$. The high-$T$ limit is also instructive: it is
# logit matching (a squared error between logits), which Caruana's earlier model compression used.
#
# In PyTorch, `F.kl_div(input, target)` computes $\mathrm{KL}(\text{target}\,\|\,\cdot)$ with `input` the
# **log**-probabilities of the model being trained, `target` the teacher's probabilities, and needs
# `reduction="batchmean"` (the default `"mean"` also divides by the number of classes). `coursekit.distill.kd_loss`
# does all three; the cell measures the gradient norm of the soft term with and without $T^2$.

# %%
g = torch.Generator().manual_seed(0)
s_demo, t_demo = torch.randn(256, 10, generator=g), 3 * torch.randn(256, 10, generator=g)
temps = [1, 2, 4, 8, 16]
unscaled = [soft_gradient_norm(s_demo, t_demo, T, scaled=False) for T in temps]
scaled = [soft_gradient_norm(s_demo, t_demo, T, scaled=True) for T in temps]
fig, ax = plt.subplots(figsize=(6, 3))
ax.loglog(temps, unscaled, "o-", label="KL alone")
ax.loglog(temps, scaled, "s-", label="T² · KL")
ax.loglog(temps, [unscaled[0] / T**2 for T in temps], "k:", label="1/T² reference")
ax.set_xlabel("temperature T")
ax.set_ylabel("‖∂loss/∂z_s‖")
ax.legend()
plt.tight_layout()
plt.show()
print("gradient norm, KL alone:", ", ".join(f"T={T}: {v:.2e}" for T, v in zip(temps, unscaled)))
print("gradient norm, T^2 * KL:", ", ".join(f"T={T}: {v:.2e}" for T, v in zip(temps, scaled)))

# %% [markdown]
# ### Exercise 2 · The KD loss with $T^2$
#
# Write `distillation_loss(student_logits, teacher_logits, targets, T, alpha)` $= \alpha T^2
# \mathrm{KL}(p^T\|q^T) + (1-\alpha)\,\mathrm{CE}(y, q^1)$, averaged over the batch (`batchmean` for the KL, the
# mean for the cross-entropy). Use `F.log_softmax`, `F.softmax` (or `log_target=True`), `F.kl_div` and
# `F.cross_entropy`. Do not call `coursekit.distill.kd_loss` or `soft_loss`.

# %% solution="ex2_kd_loss"
def distillation_loss(student_logits, teacher_logits, targets, T, alpha):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, targets)."""
    ### BEGIN SOLUTION
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits.detach() / T, dim=1),
                    reduction="batchmean")
    return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(student_logits, targets)
    ### END SOLUTION

# %% tests="ex2_kd_loss_tests" points=3
# Visible test: a hand-checkable case. Student [0, 0], teacher [ln 3, 0] -> p = [0.75, 0.25], q = [0.5, 0.5] at T=1
s1, t1, y1 = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0986123, 0.0]]), torch.tensor([0])
kl = 0.75 * torch.log(torch.tensor(0.75 / 0.5)) + 0.25 * torch.log(torch.tensor(0.25 / 0.5))
expect_close(float(distillation_loss(s1, t1, y1, 1.0, 1.0)), float(kl), what="soft term alone at T=1", rtol=1e-4,
             wrong={"KL direction swapped: you computed KL(student || teacher)": 0.143841})
expect_close(float(distillation_loss(s1, t1, y1, 1.0, 0.0)), 0.693147, what="hard term alone (CE of [0,0], label 0)",
             rtol=1e-4)
### BEGIN HIDDEN TESTS
import torch
import torch.nn.functional as F  # noqa: F811

from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811

# Wrong answers caught (each verified to fail): T^2 factor forgotten; KL direction swapped (KL(q || p));
# probabilities instead of log-probabilities as kl_div's first argument; reduction="mean" (also divides by the
# classes); hard cross-entropy at temperature T; alpha on the wrong term; kd_loss/soft_loss called (forbidden).
EX2_CASES = [(4.0, 0.9), (2.0, 0.5), (1.0, 0.3), (8.0, 1.0), (3.0, 0.0)]


def _ex2_inputs(i):
    g = torch.Generator().manual_seed(520 + i)
    s = 2.0 * torch.randn(16, 10, generator=g)
    t = 3.0 * torch.randn(16, 10, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    return s, t, y


def _probe():
    names = ("coursekit.distill.kd_loss", "coursekit.distill.soft_loss", "coursekit.distill.soft.kd_loss",
             "coursekit.distill.soft.soft_loss")
    with forbid(*names, exercise="Exercise 2"):
        return [float(distillation_loss(*_ex2_inputs(i), T, a)) for i, (T, a) in enumerate(EX2_CASES)]


def _ex2_variant(i, variant=None):
    s, t, y = _ex2_inputs(i)
    T, a = EX2_CASES[i]
    ls, pt = F.log_softmax(s / T, 1), F.softmax(t / T, 1)
    soft = F.kl_div(ls, pt, reduction="batchmean")
    hard = F.cross_entropy(s, y)
    if variant == "no_t2":
        return float(a * soft + (1 - a) * hard)
    if variant == "swapped":
        return float(a * T * T * F.kl_div(F.log_softmax(t / T, 1), F.softmax(s / T, 1), reduction="batchmean")
                     + (1 - a) * hard)
    if variant == "probs":
        return float(a * T * T * F.kl_div(F.softmax(s / T, 1), pt, reduction="batchmean") + (1 - a) * hard)
    if variant == "mean":
        return float(a * T * T * soft / s.shape[1] + (1 - a) * hard)
    if variant == "hard_at_T":
        return float(a * T * T * soft + (1 - a) * F.cross_entropy(s / T, y))
    if variant == "alpha_swapped":
        return float((1 - a) * T * T * soft + a * hard)
    return float(a * T * T * soft + (1 - a) * hard)


def _check(out):
    n = len(EX2_CASES)
    want = [_ex2_variant(i) for i in range(n)]
    try:
        expect_close(out, want, what="distillation_loss on hidden (T, alpha) cases", rtol=1e-4, atol=1e-6)
    except AssertionError:
        named = {"the T^2 factor is missing": "no_t2",
                 "KL direction swapped: the teacher's distribution is the target (second argument of kl_div)": "swapped",
                 "kl_div's first argument must be the student's LOG-probabilities (log_softmax), not probabilities":
                     "probs",
                 "reduction='mean' divides by batch x classes: use reduction='batchmean'": "mean",
                 "the hard cross-entropy is computed at T = 1, not on logits / T": "hard_at_T",
                 "alpha weights the soft (teacher) term, 1 - alpha the hard term": "alpha_swapped"}
        expect_close(out, want, what="distillation_loss on hidden (T, alpha) cases", rtol=1e-4, atol=1e-6,
                     wrong={m: [_ex2_variant(i, v) for i in range(n)] for m, v in named.items()})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 2 passed")

# %% [markdown]
# ## 4 · Training with a frozen teacher <a id="training"></a>
#
# One distillation step: run the teacher on the batch **in eval mode and under `torch.no_grad()`** (eval mode: its
# dropout is off and its BatchNorm uses running statistics, so its targets are a fixed function of the input;
# no_grad: no activations stored, no gradient ever reaches it), run the student, compute the loss, and take an
# optimizer step on the *student's* parameters. A teacher left in train mode gives noisy, batch-dependent targets
# and, with BatchNorm, quietly rewrites its own running statistics on the student's batches.
#
# ### Exercise 3 · One distillation step
#
# Write `distill_step(student, teacher, optimizer, x, y, T, alpha)`: put the teacher in eval mode and the student in
# train mode, compute the teacher's logits under `torch.no_grad()`, compute `kd_loss(student(x), teacher_logits, y,
# T, alpha)` (the library loss is allowed here; the exercise is the step), zero the gradients, back-propagate, step,
# and return the loss (computed before the step) as a Python float.

# %% solution="ex3_step"
def distill_step(student, teacher, optimizer, x, y, T, alpha):
    """One optimisation step of the student against a frozen teacher; returns the loss as a float."""
    ### BEGIN SOLUTION
    teacher.eval()
    student.train()
    with torch.no_grad():
        teacher_logits = teacher(x)
    loss = kd_loss(student(x), teacher_logits, y, T, alpha)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()
    ### END SOLUTION

# %% tests="ex3_step_tests" points=3
# Visible tests: a teacher with dropout handed over in train mode; the step must freeze it and move the student
torch.manual_seed(0)
vis_teacher = nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10)).train()
vis_student = nn.Sequential(nn.Flatten(), nn.Linear(40, 10))
vis_x, vis_y = torch.randn(32, 40), torch.randint(0, 10, (32,))
opt = torch.optim.SGD(vis_student.parameters(), lr=0.1)
w_before = vis_student[1].weight.detach().clone()
loss = distill_step(vis_student, vis_teacher, opt, vis_x, vis_y, 4.0, 0.9)
expect_equal(type(loss).__name__, "float", what="type of distill_step's result",
             wrong={"you returned the loss tensor: return loss.item()": "Tensor"})
expect_equal(vis_teacher.training, False, what="teacher.training after distill_step",
             wrong={"the teacher is still in train mode: call .eval() on the teacher before running it": True})
moved = not torch.equal(w_before, vis_student[1].weight)
expect_equal(moved, True, what="did the student's weights change after one step?",
             wrong={"nothing moved: zero the gradients BEFORE backward(), then call optimizer.step()": False})
### BEGIN HIDDEN TESTS
import torch
from torch import nn

from coursekit.grading.sealed import expect_close, expect_equal, sealed_test

# Wrong answers caught (each verified to fail): teacher left in train mode (dropout randomises its targets, its
# BatchNorm running statistics change); teacher run with gradients enabled (no torch.no_grad); gradients never
# zeroed (they accumulate); zero_grad between backward and step; the loss returned after the step; a tensor returned.
EX3_STEPS = 3
EX3_CASES = [(4.0, 0.9), (2.0, 0.5)]


class _Recorder(nn.Module):
    """A teacher with dropout and BatchNorm that records, at each call, its mode and whether grad was enabled."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(530)
        self.body = nn.Sequential(nn.Linear(12, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Dropout(0.5), nn.Linear(24, 5))
        with torch.no_grad():
            self.body[1].running_mean.uniform_(-0.5, 0.5)
            self.body[1].running_var.uniform_(0.5, 2.0)
        self.calls = []

    def forward(self, x):
        self.calls.append({"training": self.training, "grad": torch.is_grad_enabled()})
        return self.body(x)


def _ex3_setup(i):
    teacher = _Recorder().train()          # handed over in train mode: the step must freeze it
    torch.manual_seed(531 + i)
    student = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5))
    opt = torch.optim.SGD(student.parameters(), lr=0.2, momentum=0.9)
    g = torch.Generator().manual_seed(532 + i)
    batches = [(torch.randn(20, 12, generator=g), torch.randint(0, 5, (20,), generator=g)) for _ in range(EX3_STEPS)]
    return teacher, student, opt, batches


def _probe():
    runs = []
    for i, (T, a) in enumerate(EX3_CASES):
        teacher, student, opt, batches = _ex3_setup(i)
        student.eval()
        torch.manual_seed(99)
        losses = [distill_step(student, teacher, opt, x, y, T, a) for x, y in batches]
        runs.append({"losses": losses, "types": [type(v).__name__ for v in losses], "calls": teacher.calls,
                     "student_training": student.training, "student": [p.detach() for p in student.parameters()],
                     "teacher_bn": teacher.body[1].running_mean, "teacher_grads": [p.grad is None
                                                                                  for p in teacher.parameters()]})
    return runs


def _ex3_reference(i, variant=None):
    from coursekit.distill import kd_loss

    T, a = EX3_CASES[i]
    teacher, student, opt, batches = _ex3_setup(i)
    teacher.eval()
    losses = []
    for x, y in batches:
        student.train()
        with torch.no_grad():
            t = teacher(x)
        loss = kd_loss(student(x), t, y, T, a)
        if variant not in ("no_zero_grad", "late_zero_grad"):
            opt.zero_grad()
        loss.backward()
        if variant == "late_zero_grad":
            opt.zero_grad()
        opt.step()
        if variant == "after":
            with torch.no_grad():
                loss = kd_loss(student(x), t, y, T, a)
        losses.append(loss.item())
    return teacher, student, losses


def _check(runs):
    for i, run in enumerate(runs):
        teacher, student, want = _ex3_reference(i)
        what = f"distill_step, hidden case {i + 1} (T, alpha) = {EX3_CASES[i]}"
        expect_equal(run["types"], ["float"] * EX3_STEPS, what=f"types returned by {what}",
                     wrong={"you returned the loss tensor: return loss.item()": ["Tensor"] * EX3_STEPS})
        expect_equal([c["training"] for c in run["calls"]], [False] * len(run["calls"]),
                     what=f"teacher mode during each teacher call of {what}",
                     wrong={"the teacher ran in train mode: call teacher.eval() before using it": [True] * EX3_STEPS})
        expect_equal([c["grad"] for c in run["calls"]], [False] * len(run["calls"]),
                     what=f"gradient recording during each teacher call of {what}",
                     wrong={"the teacher ran with gradients enabled: wrap it in torch.no_grad()": [True] * EX3_STEPS})
        expect_equal(len(run["calls"]), EX3_STEPS, what=f"number of teacher calls in {EX3_STEPS} steps of {what}")
        expect_close(run["teacher_bn"], teacher.body[1].running_mean.tolist(), rtol=1e-6, atol=1e-7,
                     what=f"teacher BatchNorm running mean after {what} (a teacher in train mode rewrites it)")
        expect_equal(run["student_training"], True, what=f"student mode after {what}",
                     wrong={"the student was left in eval mode: call student.train()": False})
        try:
            expect_close(run["losses"], want, what=f"losses returned by {what}", rtol=1e-4, atol=1e-6)
        except AssertionError:
            expect_close(run["losses"], want, what=f"losses returned by {what}", rtol=1e-4, atol=1e-6, wrong={
                "gradients never zeroed: call optimizer.zero_grad() before backward()": _ex3_reference(i, "no_zero_grad")[2],
                "zero_grad() between backward() and step() wipes the gradients": _ex3_reference(i, "late_zero_grad")[2],
                "you returned the loss after the step: return the loss computed before it": _ex3_reference(i, "after")[2]})
        expect_close(run["student"], [p.detach().tolist() for p in student.parameters()], rtol=1e-4, atol=1e-6,
                     what=f"student parameters after {EX3_STEPS} steps of {what}")


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 3 passed")

# %% [markdown]
# ### The trainer: `coursekit.train.distill.distill`
#
# The library's trainer runs exactly that step inside the shared loop (`coursekit.train.fit`, with a
# `loss_fn(outputs, targets, inputs)` that calls the teacher), and adds what a real run needs: the teacher is frozen
# (a teacher passed in train mode is switched to eval mode with a warning, and `history["teacher_was_training"]`
# says so); with `cache_teacher=True` its logits are computed **once** for the whole transfer set and looked up per
# batch, so over $E$ epochs the expensive model runs $E$ times less; and the progress bar and history are `fit`'s.
# Students are cached like the reference models (`cached_student`), so re-running a cell loads them.

# %%

small = transfer_set(200, 1000, seed=0)["combined"]
demo_student = build_model(STUDENT[0], "mnist1d", **STUDENT[1])
hist = distill(demo_student, teacher, DataLoader(small, batch_size=128, shuffle=True), T=2.0, alpha=1.0, epochs=3,
               lr=3e-3, progress=False, device="cpu")
print(f"3 epochs over {len(small):,} rows: the teacher ran on {hist['teacher_forward_rows']:,} rows "
      f"({hist['cache_hits']:,} cache look-ups); without the cache it would have run on {3 * len(small):,}")

# %% [markdown]
# ## 5 · Response vs feature distillation <a id="feature-distillation"></a>
#
# Everything so far is **response** distillation: the student matches the teacher's *outputs*. **Feature** (hint)
# distillation, FitNets (Romero et al. 2015, eq. 3), also matches an *intermediate* layer: the student's "guided"
# layer $u_s(x)$ passes through a small learned **regressor** $r$ so that its shape matches the teacher's "hint"
# layer $u_t(x)$, and $\tfrac12\|u_t(x) - r(u_s(x))\|^2$ is added to the loss. The regressor is needed whenever
# the widths differ (a 32-unit student layer cannot be compared with a 64-channel teacher map without one); it is
# trained with the student and thrown away afterwards. Hints help most for deep, thin students whose early layers
# get little signal from the output alone.
#
# Two relatives in `coursekit.distill` need no regressor because they compare *structure*, not values:
# **relational KD** (Park et al. 2019) matches the normalised pairwise distances between the examples of a batch
# (`rkd_distance_loss`), and **attention transfer** (Zagoruyko & Komodakis 2017) matches where in the input each
# network's activations are large (`attention_transfer_loss`). The cell checks both on made-up features.

# %%
from coursekit.distill import attention_transfer_loss, rkd_distance_loss

torch.manual_seed(0)
emb_t = torch.randn(16, 64)
rotation = torch.linalg.qr(torch.randn(64, 64))[0]
emb_s_same = 5.0 * emb_t @ rotation
print(f"RKD distance loss, student = scaled rotation of the teacher: {rkd_distance_loss(emb_s_same, emb_t):.2e} "
      f"(relations identical); random student: {rkd_distance_loss(torch.randn(16, 8), emb_t):.3f}")
maps_t = torch.randn(4, 64, 10)
print(f"attention transfer loss, student with 8 of the teacher's channels: "
      f"{attention_transfer_loss(maps_t[:, :8], maps_t):.3f}; same maps: {attention_transfer_loss(maps_t, maps_t):.1e}")

# %% [markdown]
# ### Exercise 4 · A hint loss with a projection
#
# Write `hint_loss(student_features, teacher_features, regressor)`: apply the learned `regressor` (an `nn.Linear`
# from the student's width to the teacher's) to the **student** features and return the mean squared error to the
# teacher features. The teacher side is a fixed target: no gradient may flow into it (detach it).

# %% solution="ex4_hint"
def hint_loss(student_features, teacher_features, regressor):
    """FitNets hint loss: mean squared error between regressor(student_features) and the detached teacher features."""
    ### BEGIN SOLUTION
    return F.mse_loss(regressor(student_features), teacher_features.detach())
    ### END SOLUTION

# %% tests="ex4_hint_tests" points=2
# Visible tests: 32 student units projected to 64 teacher units
torch.manual_seed(1)
reg = nn.Linear(32, 64)
fs, ft = torch.randn(8, 32), torch.randn(8, 64)
expect_close(float(hint_loss(fs, ft, reg)), float(((reg(fs) - ft) ** 2).mean()), what="hint_loss value", rtol=1e-5,
             wrong={"sum instead of mean": float(((reg(fs) - ft) ** 2).sum()),
                    "1/2 x mean: the exercise asks for the plain mean squared error": float(((reg(fs) - ft) ** 2).mean() / 2),
                    "absolute instead of squared error": float((reg(fs) - ft).abs().mean())})
ft_leaf = ft.clone().requires_grad_(True)
hint_loss(fs, ft_leaf, reg).backward()
expect_equal(ft_leaf.grad is None, True, what="no gradient reaches the teacher features",
             wrong={"the teacher features received a gradient: detach them": False})
### BEGIN HIDDEN TESTS
import torch
from torch import nn

from coursekit.grading.sealed import expect_close, expect_equal, sealed_test

# Wrong answers caught (each verified to fail): teacher features not detached (they receive a gradient); sum instead
# of mean; 1/2 * mean (the paper's 1/2 folded in: the exercise asks for the plain mean); regressor applied to the
# teacher (shape error); L1 instead of squared error.
EX4_SHAPES = [(8, 32, 64), (5, 3, 7), (12, 16, 16)]


def _ex4_inputs(i):
    b, cs, ct = EX4_SHAPES[i]
    torch.manual_seed(540 + i)
    reg = nn.Linear(cs, ct)
    g = torch.Generator().manual_seed(541 + i)
    return torch.randn(b, cs, generator=g), torch.randn(b, ct, generator=g), reg


def _probe():
    out = []
    for i in range(len(EX4_SHAPES)):
        s, t, reg = _ex4_inputs(i)
        t = t.requires_grad_(True)
        loss = hint_loss(s, t, reg)
        loss.backward()
        out.append({"loss": float(loss), "teacher_grad": t.grad is not None,
                    "reg_grad": reg.weight.grad if reg.weight.grad is not None else None})
    return out


def _check(out):
    for i, run in enumerate(out):
        s, t, reg = _ex4_inputs(i)
        diff = reg(s) - t
        want = (diff ** 2).mean()
        what = f"hint_loss on hidden shapes {EX4_SHAPES[i]} (batch, student width, teacher width)"
        expect_close(run["loss"], float(want), what=what, rtol=1e-5, atol=1e-7,
                     wrong={"sum instead of mean": float((diff ** 2).sum()),
                            "1/2 x mean: the exercise asks for the plain mean squared error": float(want / 2),
                            "absolute error instead of squared": float(diff.abs().mean())})
        expect_equal(run["teacher_grad"], False, what=f"gradient on the teacher features in {what}",
                     wrong={"the teacher features received a gradient: detach them": True})
        want.backward()
        expect_close(run["reg_grad"], reg.weight.grad.tolist(), rtol=1e-4, atol=1e-7,
                     what=f"gradient of the regressor's weight in {what}")


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 4 passed")

# %% [markdown]
# ### Does a hint help this student? Measured
#
# `distill(..., hint=(student_layer, teacher_layer, HintLoss(...)))` adds the hint loss to the KD loss: here the
# student's second hidden layer (`net.4`, 32 units) is regressed onto the teacher's flattened last feature map
# (`classifier.0`, 64 channels x 5 positions = 320 values), on a smaller transfer set (800 labels + 2,000 inputs),
# with two hint weights. The teacher now runs on every batch (its features cannot come from the logit cache).

# %%
hint_data = transfer_set(800, 2000, seed=0)
hint_test = DataLoader(hint_data["test"], batch_size=512)
for weight in (0.0, 0.1, 1.0):
    seed_everything(0)
    m = build_model(STUDENT[0], "mnist1d", **STUDENT[1])
    hint = None if weight == 0 else ("net.4", "classifier.0", HintLoss(32, 320))
    distill(m, teacher, DataLoader(hint_data["combined"], batch_size=128, shuffle=True), T=2.0, alpha=1.0,
            epochs=10, lr=3e-3, hint=hint, hint_weight=weight or 1.0, progress=False, device="cpu")
    label = "response only (KD loss)" if weight == 0 else f"KD loss + {weight:g} x hint loss"
    print(f"{label:28s}: test accuracy {evaluate(m, hint_test)['accuracy']:.1%}")

# %% [markdown]
# Read the result before believing the method. FitNets was designed for *deep, thin* students whose lower layers get
# little signal from the output; this student has two hidden layers and no convolution, so the teacher's
# translation-aware feature map is not something its hidden layer can represent. In the runs behind this chapter
# (fast and full mode, one seed) the small weight moved the accuracy by less than a point either way, within the
# seed-to-seed noise, and the weight 1.0 cost 2-3 points. Feature distillation earns its cost when student and teacher have
# comparable structure (a thinner CNN under a wider one, a shallower transformer under a deeper one).

# %% [markdown]
# ## 6 · The transfer set: where distillation pays <a id="transfer-set"></a>
#
# Hinton et al. (2015, sec. 3) point out that the student can be trained on a **transfer set** that is not the
# teacher's training data, and need not be labelled: the teacher's soft targets *are* the labels. That is the
# situation distillation is really for: labels are expensive (a doctor, a lawyer, a human rater per example), inputs
# are cheap (logs, traffic, sensor streams), and a big model that already works exists.
#
# The experiment: the student gets **800 labelled examples** and **8,000 unlabelled inputs** (fresh MNIST-1D draws,
# disjoint from the test set; their label is `UNLABELED = -1`). Baseline: the same student trained on the 800 labels
# alone. Distilled: the same student trained with `kd_loss` ($T = 2$, $\alpha = 1$: soft targets only) on all 8,800
# inputs, the teacher labelling each one. Everything is evaluated on the 1,000 test signals.

# %%
from coursekit.suites.distill import transfer_experiment

res = transfer_experiment(seed=0)
fig, ax = plt.subplots(figsize=(6, 2.8))
names = ["teacher", "student, 800 labels", "student distilled,\n800 labels + 8k unlabelled"]
vals = [res["teacher"], res["scratch"], res["distilled"]]
ax.barh(names, [100 * v for v in vals], color=["#777", "#e83", "#3a7"])
for i, v in enumerate(vals):
    ax.text(100 * v + 0.5, i, f"{v:.1%}", va="center")
ax.set_xlim(0, 105)
ax.set_xlabel("test accuracy (%)")
ax.invert_yaxis()
plt.tight_layout()
plt.show()
gain_pt = 100 * (res["distilled"] - res["scratch"])
print(f"seed 0: the distilled student gains {gain_pt:+.1f} points over the same student trained on the labels "
      f"alone, and closes {(res['distilled'] - res['scratch']) / (res['teacher'] - res['scratch']):.0%} of the gap to "
      f"the teacher. (The benchmark in section 11 repeats this over 3 seeds and reports the spread.)")

# %% [markdown]
# The student cannot reach the teacher: it has a tenth of the parameters and no convolution, so it cannot represent
# translation-invariant filters. But the teacher's soft targets on 8,000 extra inputs give it an order of magnitude
# more supervision than 800 labels do, and the gap it closes is large. Hinton's MNIST anchor: a student with two
# hidden layers of 800 units (not a tiny one) went from 146 test errors trained on the labels to 74 when distilled
# on the same data from a big, heavily regularised teacher (67 errors): its soft targets carried information about
# the similarity of digits.
#
# ## 7 · The omitted class <a id="omitted-class"></a>
#
# Hinton's most striking experiment (sec. 3): leave every example of one digit (the 3) out of the transfer set. The
# student never sees a 3, yet the teacher's soft targets on *other* digits ("this 8 looks a little like a 3")
# teach it what a 3 looks like. Its only handicap is that its output bias for class 3 is too low, because 3 was never
# the answer; raising that one bias (Hinton: by 3.5) recovered most of the 3s. Here the bias shift is chosen on the
# **validation** set (never on the test set), then the test set is evaluated once.

# %%
from coursekit.suites.distill import omitted_class_experiment

om = omitted_class_experiment(omit=3, seed=0)
print(f"transfer set without any 3 (labelled or not): the teacher recognises {om['teacher_omitted']:.1%} of the test 3s")
print(f"distilled student: {om['omitted_before']:.1%} of the 3s before the bias correction, "
      f"{om['omitted_after']:.1%} after raising the class-3 bias by {om['delta']:.2f} (chosen on validation); "
      f"overall test accuracy {om['accuracy_before']:.1%} -> {om['accuracy_after']:.1%}")

# %% [markdown]
# Read the numbers above, not Hinton's. The teacher knows the 3s; the student, never shown one, typically gets
# none of them until the bias is corrected, and then recovers only a small part of them (8 % in full mode, 21 % in
# fast mode in the runs behind this chapter, seed 0, while the teacher gets 85-99 %): how much depends on how much the
# teacher's soft targets on the other nine digits mention the 3, and on how well a 2,698-parameter MLP can place a
# class it was never asked to output. Hinton's student was a large MLP on MNIST and recovered 98.6 % of the 3s;
# a much smaller student on a harder signal recovers far less here. The qualitative point survives: information
# about a class reached the student only through the *wrong-class* probabilities of the teacher.
#
# ## 8 · Same data, small student: when distillation does not help <a id="student-capacity"></a>
#
# Now the textbook recipe: the student and the distilled student see the **same** labelled training split, and
# distillation is supposed to add the teacher's dark knowledge on top of the labels.

# %%
from coursekit.suites.distill import same_data_experiment

same = same_data_experiment(seed=0)
print(f"teacher {same['teacher']:.1%}; student trained on the labels: {same['scratch']:.1%}")
for key, acc in same.items():
    if key.startswith("T="):
        print(f"  distilled {key}: {acc:.1%} ({100 * (acc - same['scratch']):+.1f} points)")

# %% [markdown]
# Read the output above. In the runs behind this chapter (fast and full mode, three seeds each), same-data
# distillation did **not** beat plain training for this tiny student, and $T = 4$ made it worse; the benchmark below
# measures it on your machine over three seeds with the spread, so you can see whether a difference is larger than
# the noise. Why it happens:
#
# * **Capacity.** The student is too small to represent the teacher's function; it underfits even the labels. The
#   soft targets ask it to match ten probabilities per example instead of one class, and a model that cannot get the
#   argmax right gains nothing from spending its capacity on the order of the wrong classes. This is the
#   **capacity gap** (Mirzadeh et al. 2020: a much larger teacher can even give a worse student; a mid-sized
#   "teacher assistant" bridges it).
# * **High $T$ hurts a tiny student.** At high $T$ the soft term approaches logit matching, $\tfrac{1}{N}\sum_i
#   (z_{s,i} - z_{t,i})^2$: the student must reproduce the teacher's logits for *every* class, including very
#   negative ones that say nothing useful, and with $\alpha$ near 1 the label term is too weak to pull it back to
#   the right answer.
# * **Easy, clean labels.** When labels are plentiful and correct, the extra information in soft targets is small
#   compared with what a capacity-limited student can absorb. Distillation pays more with a bigger student, noisy or
#   scarce labels, and (above all) extra unlabelled inputs.
#
# ## 9 · Choosing $T$ and $\alpha$ <a id="choosing"></a>
#
# $T$ and $\alpha$ are hyperparameters like any other: choose them on a **validation** set and look at the test set
# once, at the end. Choosing them on the test set reports an optimistic number that the next batch of real data will
# not reproduce (with six settings and a 1,000-example test set, the best of six noisy estimates is biased upwards).
# The cell below trains a small grid on a smaller transfer set and records train, validation and test accuracy.

# %%
from coursekit.suites.distill import KD

grid_data = transfer_set(400, 2000, seed=0)
val_loader = DataLoader(grid_data["val"], batch_size=512)
test_loader = DataLoader(grid_data["test"], batch_size=512)
grid_results = []
for T in (1.0, 2.0, 4.0):
    for alpha in (0.5, 1.0):
        seed_everything(0)
        m = build_model(STUDENT[0], "mnist1d", **STUDENT[1])
        distill(m, teacher, DataLoader(grid_data["combined"], batch_size=128, shuffle=True), T=T, alpha=alpha,
                epochs=6 if FAST else 12, lr=KD["lr"], progress=False, device="cpu")
        grid_results.append({"T": T, "alpha": alpha,
                             "train_accuracy": evaluate(m, DataLoader(grid_data["labeled"], batch_size=512))["accuracy"],
                             "val_accuracy": evaluate(m, val_loader)["accuracy"],
                             "test_accuracy": evaluate(m, test_loader)["accuracy"]})
for r in grid_results:
    print(f"T={r['T']:g} alpha={r['alpha']:g}: train {r['train_accuracy']:.1%}  val {r['val_accuracy']:.1%}  "
          f"test {r['test_accuracy']:.1%}")

# %% [markdown]
# ### Exercise 5 · Choose $T$ and $\alpha$ on validation data only
#
# Write `choose_t_alpha(results)`: `results` is a list of dictionaries like `grid_results` above (keys `"T"`,
# `"alpha"`, `"train_accuracy"`, `"val_accuracy"`, `"test_accuracy"`). Return the pair `(T, alpha)` with the highest
# **validation** accuracy; on a tie, the first such entry in the list.

# %% solution="ex5_choose"
def choose_t_alpha(results):
    """(T, alpha) of the entry with the highest val_accuracy (first one on ties)."""
    ### BEGIN SOLUTION
    best = max(results, key=lambda r: r["val_accuracy"])
    return best["T"], best["alpha"]
    ### END SOLUTION

# %% tests="ex5_choose_tests" points=2
# Visible tests: a made-up grid where train, validation and test disagree
toy = [{"T": 1.0, "alpha": 0.5, "train_accuracy": 0.99, "val_accuracy": 0.60, "test_accuracy": 0.58},
       {"T": 4.0, "alpha": 0.9, "train_accuracy": 0.80, "val_accuracy": 0.66, "test_accuracy": 0.61},
       {"T": 2.0, "alpha": 1.0, "train_accuracy": 0.85, "val_accuracy": 0.64, "test_accuracy": 0.65},
       {"T": 8.0, "alpha": 0.5, "train_accuracy": 0.70, "val_accuracy": 0.55, "test_accuracy": 0.50}]
expect_equal(choose_t_alpha(toy), (4.0, 0.9), what="choose_t_alpha(toy)",
             wrong={"you chose on the test set: that number is then no longer an honest estimate": (2.0, 1.0),
                    "you chose on the training accuracy (the labelled rows the student was fitted to)": (1.0, 0.5),
                    "you took the LOWEST validation accuracy": (8.0, 0.5)})
chosen = choose_t_alpha(grid_results)
print(f"chosen on validation: T={chosen[0]:g}, alpha={chosen[1]:g}")
### BEGIN HIDDEN TESTS
import random

from coursekit.grading.sealed import expect_equal, sealed_test


# Wrong answers caught (each verified to fail): chosen by test accuracy; by training accuracy; by the mean of
# validation and test; the lowest validation accuracy (min instead of max); the last of tied entries.
def _ex5_grids():
    rng = random.Random(55)
    grids = []
    for n in (6, 9, 4):
        grids.append([{"T": rng.choice([1.0, 2.0, 3.0, 4.0, 8.0]), "alpha": rng.choice([0.1, 0.5, 0.7, 0.9, 1.0]),
                       "train_accuracy": round(rng.uniform(0.5, 1.0), 3), "val_accuracy": round(rng.uniform(0.4, 0.7), 3),
                       "test_accuracy": round(rng.uniform(0.4, 0.7), 3)} for _ in range(n)])
    tie = [dict(r) for r in grids[0]]
    top = max(r["val_accuracy"] for r in tie)
    tie[-1]["val_accuracy"] = top                    # a tie: the first entry with the best value wins
    tie[-1]["T"], tie[-1]["alpha"] = 16.0, 0.25
    grids.append(tie)
    return grids


def _probe():
    return [list(choose_t_alpha([dict(r) for r in g])) for g in _ex5_grids()]


def _pick(grid, key):
    best = max(grid, key=key)
    return [best["T"], best["alpha"]]


def _check(out):
    grids = _ex5_grids()
    want = [_pick(g, lambda r: r["val_accuracy"]) for g in grids]
    expect_equal(out, want, what="choose_t_alpha on hidden grids", wrong={
        "you chose on the test accuracy": [_pick(g, lambda r: r["test_accuracy"]) for g in grids],
        "you chose on the training accuracy": [_pick(g, lambda r: r["train_accuracy"]) for g in grids],
        "you mixed validation and test accuracy: the test set must not influence the choice":
            [_pick(g, lambda r: r["val_accuracy"] + r["test_accuracy"]) for g in grids],
        "you took the LOWEST validation accuracy": [_pick(g, lambda r: -r["val_accuracy"]) for g in grids],
        "on a tie, return the first entry with the best validation accuracy":
            [_pick(g[::-1], lambda r: r["val_accuracy"]) for g in grids]})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 5 passed")

# %% [markdown]
# ## 10 · A student under a parameter budget <a id="budget"></a>
#
# ### Exercise 6 · Reach the target (graded on the result)
#
# Build `my_student = build_model("mlp1d", "mnist1d", hidden=h)` with **at most 3,000 parameters** (choose `h`), train
# it using **only the 800 labels** of `data["labeled"]` plus the unlabelled inputs of `data["combined"]` and the
# teacher, and reach **at least 47 % test accuracy** on MNIST-1D. The grader rebuilds an `mlp1d` with your `h`, loads
# your weights and evaluates it on the test set itself. (Trained on the 800 labels alone, such a student reaches
# about 40 %: the budget and the labels are not enough without the teacher.)

# %%
PARAM_BUDGET, TARGET_ACCURACY = 3000, 0.47
data = transfer_set(800, 8000, seed=0)

# %% solution="ex6_budget"
### BEGIN SOLUTION
seed_everything(0)
my_student = build_model("mlp1d", "mnist1d", hidden=32)
distill(my_student, teacher, DataLoader(data["combined"], batch_size=128, shuffle=True), T=2.0, alpha=1.0,
        epochs=15 if FAST else 30, lr=3e-3, progress=False, device="cpu")
### END SOLUTION

# %% tests="ex6_budget_tests" points=3
# Visible tests: the budget and the accuracy on the test set
my_params = count_parameters(my_student)
my_acc = evaluate(my_student, DataLoader(data["test"], batch_size=512))["accuracy"]
print(f"my_student: {my_params:,} parameters, test accuracy {my_acc:.1%}")
expect_equal(my_params <= PARAM_BUDGET, True, what=f"parameters <= {PARAM_BUDGET}")
expect_equal(my_acc >= TARGET_ACCURACY, True, what=f"test accuracy >= {TARGET_ACCURACY:.0%} (got {my_acc:.1%})")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_equal, sealed_test

# Wrong answers caught (each verified to fail): the student trained on the 800 labels alone (~40 %, below the
# target); a student over the budget (hidden=100: 15,210 parameters); an untrained student.
EX6_BUDGET, EX6_TARGET = 3000, 0.47


def _probe():
    hidden = my_student.net[1].out_features
    return {"hidden": hidden, "state": {k: v.detach().cpu() for k, v in my_student.state_dict().items()}}


def _check(out):
    import torch
    from torch.utils.data import DataLoader

    from coursekit.data import load_dataset
    from coursekit.models import build_model, count_parameters
    from coursekit.train import evaluate

    model = build_model("mlp1d", "mnist1d", hidden=int(out["hidden"]))
    model.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in out["state"].items()})
    n = count_parameters(model)
    expect_equal(n <= EX6_BUDGET, True, what=f"my_student has {n:,} parameters; the budget is {EX6_BUDGET:,}")
    acc = evaluate(model, DataLoader(load_dataset("mnist1d", "test", fast=False), batch_size=512))["accuracy"]
    expect_equal(acc >= EX6_TARGET, True, what=f"test accuracy of my_student measured by the grader: {acc:.1%}, "
                 f"target {EX6_TARGET:.0%} (did you distil from the teacher on the unlabelled inputs?)")


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 6 passed")

# %% [markdown]
# ## 11 · Benchmark: teacher vs student vs distilled student on your machine <a id="benchmark"></a>
#
# The `distill` suite (also `coursekit bench --suite distill`) repeats setting (a), the transfer set, and setting (b),
# same data at several $(T, \alpha)$ (on MNIST-1D, and on the 8x8 digits with a LeNet teacher and a 1,210-parameter
# MLP student), over **three seeds** (mean ± standard deviation), and times teacher and student
# in **ONNX Runtime** at batch 1 and batch 256 (one thread, interleaved). The reading below is generated from your
# numbers: a gain counts only if it is larger than twice the seed-to-seed spread. Students already trained above are
# loaded from the cache. (In fast mode, the mode grading uses, the teacher is trained on fewer examples and epochs, so
# all accuracies are lower; full mode takes about a minute more.)

# %%
from coursekit.bench import format_table
from coursekit.suites import run_suite
from coursekit.suites.distill import reading, summary

result = run_suite("distill", threads=1, progress=False)
records = result["records"]
print(format_table(summary(records), ["model", "variant", "accuracy", "spread", "seeds"]))
print()
print(format_table([r for r in records if r.get("kind") == "latency"],
                   ["model", "batch", "latency_ms_min", "latency_ms_median", "parameters", "size_bytes"]))
print()
print(reading(records))

# %% [markdown]
# Why the speedup depends on the batch: at batch 1 an ONNX Runtime call of a model this small costs a few
# microseconds of fixed overhead (input checks, the graph walk, allocations) whatever the model does, so ten times
# fewer operations buys much less than ten times the speed. At batch 256 the arithmetic dominates, and the student,
# which does about 70 times fewer multiply-adds per example than the convolutional teacher, is faster by a large
# factor. Distillation itself does not make anything faster: the *architecture* you choose for the student does;
# distillation is how that smaller architecture gets back some of the accuracy.
#
# ## 12 · Distillation for large language models <a id="llm"></a>
#
# The same idea runs a large part of today's LLM industry, with two flavours:
#
# * **Token-level KD**: the soft-target loss at every position over the vocabulary, exactly this chapter's loss with
#   a 30k-150k-class softmax. It needs the teacher's logits (so the weights, or an API that returns them) and the same
#   tokenizer. DistilBERT (Sanh et al. 2019) combined it with initialising the student from every other layer of
#   the teacher and kept about 97 % of BERT's language-understanding score with 40 % fewer parameters.
# * **Sequence-level KD**: generate text with the teacher and fine-tune the student on it as ordinary data (Kim &
#   Rush 2016). It works across tokenizers and through an API that only returns text, and it is how a small model
#   copies a large one's **style, formats and reasoning traces** (step-by-step answers): the transfer set is the
#   teacher's own output.
#
# The costs are data and compute: generating millions of teacher answers costs inference on the big model, and the
# student needs a training run. What pays back is the **task-specific student**: a support-ticket classifier, a
# compliance checker that flags contract clauses, a search re-ranker, an intent router, trained on the large
# model's labels for *your* inputs, then served at a fraction of the cost and latency. It is the transfer-set setting
# of section 6 at scale: a teacher labelling inputs nobody labelled. The limits are the same too: the student copies
# the teacher's mistakes, only learns where the transfer inputs go, and a check of the model's licence decides
# whether its outputs may be used to train another model at all.
#
# ## 13 · Combining with pruning and quantization <a id="combining"></a>
#
# Distillation produces an ordinary dense model, so everything else in this course still applies to the student:
# prune it (chapter 04), quantize it (chapters 02-03), export it. It also helps *those* techniques: fine-tuning a
# pruned or quantization-aware model with the uncompressed model as the teacher (the `loss_fn` of `fit` and
# `finetune` accepts this chapter's loss) usually recovers more accuracy than fine-tuning on labels alone, because the
# soft targets say how the original model behaved on every class. Chapter 09 chains the techniques into one
# pipeline and measures the order in which to apply them.
#
# ## 14 · Common mistakes <a id="mistakes"></a>
#
# * **Forgetting $T^2$.** The soft term's gradient shrinks like $1/T^2$ (section 3); without the factor, raising $T$
#   silently turns the teacher off.
# * **`F.kl_div` misuse.** Its first argument is the *student's log-probabilities* (`log_softmax`), its second the
#   teacher's probabilities; passing `softmax` as the first argument, or swapping the two, computes something else
#   without any error. Use `reduction="batchmean"`: the default `"mean"` also divides by the number of classes.
# * **The teacher left in train mode.** Dropout randomises its targets and its BatchNorm statistics drift on the
#   student's batches. `teacher.eval()` and `torch.no_grad()` (or the library's frozen, cached teacher).
# * **Tuning $T$ and $\alpha$ (or the bias correction) on the test set.** Choose on validation data; report the test
#   set once.
# * **Not comparing with the same student trained without the teacher.** Without the baseline (and its seed-to-seed
#   spread) you do not know whether distillation helped at all; on the same data it often does not (section 8).
# * **A transfer set that does not cover the deployment inputs.** The student only learns the teacher where it sees
#   inputs.
# * **A student too small, or a teacher too big** (capacity gap), and a very high $T$ for a tiny student.
#
# ## 15 · Interview questions <a id="interview"></a>
#
# Practise with the quiz below (immediate feedback and explanations), or in a terminal with
# `coursekit drill --chapter 05`. The graded questions further down are left out of the practice quiz.

# %% locked="quiz_ids"
from coursekit import quiz

QUIZ_IDS = ["ch05-soft-targets", "ch05-t-squared", "ch05-kl-div-torch", "ch05-teacher-eval-mode",
            "ch05-unlabelled-data", "ch05-softmax-t2", "ch05-temperature-facts"]
quiz.show(chapter="05", n=6, exclude=QUIZ_IDS)

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
    "ch05-soft-targets": "B",
    "ch05-t-squared": "A",
    "ch05-kl-div-torch": "B",
    "ch05-teacher-eval-mode": "B",
    "ch05-unlabelled-data": "D",
    "ch05-softmax-t2": 0.5065,
    "ch05-temperature-facts": "B,D,E",
}
### END SOLUTION

# %% tests="quiz_answers_tests" points=7
# One point per question. Visible: which questions you have not answered yet.
unanswered = [qid for qid in QUIZ_IDS if not isinstance(answers, dict) or qid not in answers]
print("not answered yet: " + ", ".join(unanswered) if unanswered else "all questions answered")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import sealed_quiz

# one point per question; the returned number is nbgrader's partial credit
sealed_quiz(["ch05-soft-targets", "ch05-t-squared", "ch05-kl-div-torch", "ch05-teacher-eval-mode",
            "ch05-unlabelled-data", "ch05-softmax-t2", "ch05-temperature-facts"])
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# * Soft targets carry the teacher's similarity structure (dark knowledge); a temperature $T$ makes the small
#   probabilities visible without changing the ranking.
# * The Hinton loss is $\alpha T^2 \mathrm{KL}(p^T\|q^T) + (1-\alpha)\mathrm{CE}(y, q^1)$: KL with the teacher as
#   the target, `log_softmax` for the student, `batchmean`, and $T^2$ because the soft gradient scales as $1/T^2$.
# * A distillation step freezes the teacher (eval mode, no_grad); caching its logits over the transfer set saves
#   its forward passes every epoch. Hints (with a learned regressor), relational and attention transfer match
#   intermediate structure instead of outputs.
# * Distillation pays most on a **transfer set**: a few labels plus many unlabelled inputs the teacher labels. On the
#   same data a tiny student often gains nothing, and a high $T$ hurts it: measure against the same student trained
#   without the teacher, over several seeds, and choose $T$ and $\alpha$ on validation data.
# * The speed comes from the student's architecture, not from distillation; at batch 1 fixed per-call overhead
#   limits what a smaller model buys.
#
# Next: **06 · Low-rank factorisation**: making each layer cheaper instead of the whole model smaller.
