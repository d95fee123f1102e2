# %% [markdown] locked="title"
# # 00 · Measuring models
#
# **Why this chapter comes first.** Every compression technique in this course is sold with one of three promises:
# *smaller*, *faster*, or *just as accurate*. None of them is true until it is measured, and most published
# "speedups" are measured badly. Here you build the instruments the rest of the course relies on:
#
# 1. the arithmetic of model memory (why a 7-billion-parameter model needs 28 GB before it does anything),
# 2. a latency timer that does not lie, and the statistics worth reporting,
# 3. the three different "sizes" of a model,
# 4. a report of *your* hardware: which reduced-precision paths it accelerates,
# 5. a first benchmark of your own machine: FP32 vs BF16 vs FP16 vs INT8, read honestly.
#
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below it.
# `coursekit check notebooks/00_measuring.ipynb` grades the whole notebook (hidden tests included) from a terminal.

# %% locked="setup"
# Setup: run this first. Warnings are silenced so that graded cells stay clean.
import os
import time
import warnings

warnings.filterwarnings("ignore")
import matplotlib.pyplot as plt
import numpy as np
import torch

import coursekit
from coursekit import bench
from coursekit._env import fast_mode

FAST = fast_mode()  # True under COURSEKIT_FAST=1 and during grading: smaller runs, same checks
torch.manual_seed(0)
print(f"coursekit {coursekit.__version__}, torch {torch.__version__}, fast mode: {FAST}")

# %% [markdown]
# ## 1 · The deployment problem
#
# A team wants to serve a 7B-parameter language model. Their options:
#
# | hardware | memory |
# |---|---|
# | laptop / phone | 8–16 GB RAM shared with everything else |
# | consumer GPU (RTX 4090) | 24 GB |
# | data-centre GPU (A100 / H100) | 40–80 GB |
#
# Every parameter is a number, and a number in FP32 takes 4 bytes. So the weights alone take
#
# $$\text{memory} = N_\text{params} \times \frac{\text{bits}}{8}\ \text{bytes} = 7\times 10^9 \times 4 = 28\ \text{GB}.$$
#
# That does not fit the consumer GPU, let alone the phone. At 16 bits it is 14 GB, at 8 bits 7 GB, at 4 bits 3.5 GB
# (plus a little for the per-group scales that low-bit formats need, chapter 01). Memory is the first promise of
# compression. The second is latency: generating one token of text reads *every* weight once, so halving the bytes
# roughly halves the time on memory-bound hardware. The third promise, accuracy, is the price: every later chapter
# measures what the first two cost.
#
# **The trade-off to keep in mind all course long: latency, memory, accuracy. You can usually buy two.**

# %% [markdown]
# ### Exercise 1 · Weight memory at a given precision
#
# Write `weight_memory_gb(num_params, bits)` returning the memory of `num_params` weights stored with `bits` bits
# each, in gigabytes (1 GB = 10⁹ bytes, the convention of GPU spec sheets). Ignore scales and metadata for now.

# %% solution="ex1_memory"
def weight_memory_gb(num_params, bits):
    """Gigabytes (1e9 bytes) needed to store num_params numbers of `bits` bits each."""
    ### BEGIN SOLUTION
    return num_params * bits / 8 / 1e9
    ### END SOLUTION

# %% tests="ex1_memory_tests" points=2
# Visible tests: the 7B example above.
assert abs(weight_memory_gb(7e9, 32) - 28.0) < 1e-9
assert abs(weight_memory_gb(7e9, 4) - 3.5) < 1e-9
### BEGIN HIDDEN TESTS
from coursekit.formats import memory_bytes

for n, name, bits in [(1_300_000_000, "fp16", 16), (70_000_000_000, "int8", 8), (123_456_789, "fp32", 32)]:
    assert abs(weight_memory_gb(n, bits) - memory_bytes(n, name) / 1e9) < 1e-6, (n, bits)
### END HIDDEN TESTS
print("ex1 passed")

# %% [markdown]
# Now the same arithmetic with coursekit, including the per-group scales that 4-bit formats store (one FP16 scale for
# every 128 weights adds 16/128 = 0.125 bits per weight: 0.11 GB for 7B):

# %%
from coursekit.formats import memory_bytes

sizes = {
    "FP32": memory_bytes(7_000_000_000, "fp32"),
    "FP16": memory_bytes(7_000_000_000, "fp16"),
    "INT8": memory_bytes(7_000_000_000, "int8"),
    "INT4 (g128)": memory_bytes(7_000_000_000, "int4", group_size=128),
}
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.barh(list(sizes), [v / 1e9 for v in sizes.values()], color=["#999", "#69c", "#3a7", "#e83"])
for limit, label in [(24, "RTX 4090 (24 GB)"), (8, "phone (8 GB)")]:
    ax.axvline(limit, ls="--", c="k", lw=0.8)
    ax.text(limit, 3.45, " " + label, fontsize=8)
ax.set_xlabel("GB for the weights of a 7B model")
ax.invert_yaxis()
plt.show()
for name, b in sizes.items():
    print(f"{name:12s} {b / 1e9:6.2f} GB")

# %% [markdown]
# ## 2 · Measuring latency without fooling yourself
#
# The obvious way to time a model is
#
# ```python
# start = time.time(); model(x); print(time.time() - start)
# ```
#
# It lies in four ways:
#
# 1. **Cold start.** The first call allocates memory, picks kernels and fills caches. It can be 10–100x slower than
#    the steady state. *Fix: warm up, and do not time the warm-up.*
# 2. **Noise.** One sample is one draw from a distribution with a long tail (other processes, frequency scaling,
#    interrupts). *Fix: repeat, and report the minimum (what the hardware can do), the median (what users typically
#    get) and a high percentile such as p90 (the tail your SLA is written against). The mean is dragged by outliers.*
# 3. **Drift and order.** A shared machine speeds up and slows down over seconds; if you time all of A then all of B,
#    A and B saw different machines. *Fix: interleave: A B A B ...*
# 4. **Hidden settings.** torch uses all cores by default, and a GPU kernel launch returns *before* the work is done.
#    *Fix: pin the thread count and report it; call `torch.cuda.synchronize()` before reading the clock.*
#
# Also: use `time.perf_counter()` (a monotonic, high-resolution clock), not `time.time()` (wall clock, can jump).
#
# Let us see the first two with our own eyes:

# %%
from coursekit.models import build_model

model = build_model("mlp", "digits").eval()
x = torch.randn(64, 1, 8, 8)
samples = []
with torch.inference_mode():
    for _ in range(60 if FAST else 300):
        start = time.perf_counter()
        model(x)
        samples.append((time.perf_counter() - start) * 1e3)
print(f"first call {samples[0]:.3f} ms, median of the rest {np.median(samples[1:]):.3f} ms "
      f"({samples[0] / np.median(samples[1:]):.1f}x)")
fig, ax = plt.subplots(1, 2, figsize=(9, 2.8))
ax[0].plot(samples, ".", ms=3)
ax[0].set_yscale("log")
ax[0].set_xlabel("call #")
ax[0].set_ylabel("ms")
ax[0].set_title("the first call is special")
ax[1].hist(samples[5:], bins=40)
for q, c in [(0, "g"), (50, "b"), (90, "r")]:
    ax[1].axvline(np.percentile(samples[5:], q), c=c, label=f"p{q}" if q else "min")
ax[1].legend()
ax[1].set_xlabel("ms")
ax[1].set_title("steady state: a distribution with a tail")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Exercise 2 · A fair timer
#
# Write `time_calls(fn, warmup=3, repeats=20)`: call `fn()` `warmup` times without timing, then time `repeats` calls
# one by one with `time.perf_counter()`, and return the list of `repeats` durations **in milliseconds**.

# %% solution="ex2_timer"
def time_calls(fn, warmup=3, repeats=20):
    """Per-call durations of fn() in ms, after `warmup` untimed calls."""
    ### BEGIN SOLUTION
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples
    ### END SOLUTION

# %% tests="ex2_timer_tests" points=3
calls = []
out = time_calls(lambda: calls.append(1), warmup=2, repeats=5)
assert len(calls) == 7, "warm-up calls + timed calls"
assert len(out) == 5 and all(t >= 0 for t in out)
### BEGIN HIDDEN TESTS
state = {"n": 0}


def cold_then_fast():
    state["n"] += 1
    time.sleep(0.05 if state["n"] == 1 else 0.002)


cold = time_calls(cold_then_fast, warmup=1, repeats=4)
assert max(cold) < 30, "the cold first call must not be timed, and durations are in ms"
assert min(cold) > 1.5, "a 2 ms sleep should measure about 2 ms"
assert len(time_calls(lambda: None, warmup=0, repeats=3)) == 3
### END HIDDEN TESTS
print("ex2 passed")

# %% [markdown]
# ### Exercise 3 · Statistics worth reporting
#
# Write `latency_summary(samples)` returning a dict with keys `"min"`, `"median"` and `"p90"`. Use linear
# interpolation for the percentile (what `np.percentile` does by default).

# %% solution="ex3_summary"
def latency_summary(samples):
    """min, median and 90th percentile of a list of latencies."""
    ### BEGIN SOLUTION
    return {"min": float(np.min(samples)), "median": float(np.median(samples)),
            "p90": float(np.percentile(samples, 90))}
    ### END SOLUTION

# %% tests="ex3_summary_tests" points=2
s = latency_summary([1.0, 2.0, 3.0, 4.0, 100.0])
assert s["min"] == 1.0 and s["median"] == 3.0
assert abs(s["p90"] - 61.6) < 1e-9  # 4 + 0.6 * (100 - 4)
### BEGIN HIDDEN TESTS
rng = np.random.default_rng(7)
for _ in range(5):
    values = list(rng.lognormal(size=int(rng.integers(3, 200))))
    got = latency_summary(values)
    stats = bench.LatencyStats("x", values)
    assert abs(got["min"] - stats.min_ms) < 1e-12
    assert abs(got["median"] - stats.median_ms) < 1e-12
    assert abs(got["p90"] - stats.p90_ms) < 1e-9
### END HIDDEN TESTS
print("ex3 passed")

# %% [markdown]
# ### Exercise 4 · Compare two variants fairly: interleave
#
# Write `compare(fn_a, fn_b, repeats=20)` that first calls each function 3 times untimed, then in each of `repeats`
# rounds times **one** call of `fn_a` and **one** call of `fn_b` (A B A B ...), and returns
# `{"a": median_ms_of_a, "b": median_ms_of_b, "speedup": median_a / median_b}`.

# %% solution="ex4_compare"
def compare(fn_a, fn_b, repeats=20):
    """Interleaved timing of two callables; speedup = median(a) / median(b)."""
    ### BEGIN SOLUTION
    for _ in range(3):
        fn_a()
        fn_b()
    times = {"a": [], "b": []}
    for _ in range(repeats):
        for key, fn in (("a", fn_a), ("b", fn_b)):
            start = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - start) * 1e3)
    a, b = float(np.median(times["a"])), float(np.median(times["b"]))
    return {"a": a, "b": b, "speedup": a / b}
    ### END SOLUTION

# %% tests="ex4_compare_tests" points=3
order = []
result = compare(lambda: order.append("a"), lambda: order.append("b"), repeats=4)
assert set(result) == {"a", "b", "speedup"}
assert order[-8:] == ["a", "b"] * 4, "timed calls must alternate A B A B"
### BEGIN HIDDEN TESTS
r = compare(lambda: time.sleep(0.006), lambda: time.sleep(0.002), repeats=5)
assert 5 < r["a"] < 60 and 1.5 < r["b"] < 40, "medians in ms"
assert 1.5 < r["speedup"] < 5, "a 6 ms vs 2 ms sleep is about a 3x speedup"
assert abs(r["speedup"] - r["a"] / r["b"]) < 1e-9
### END HIDDEN TESTS
print("ex4 passed")

# %% [markdown]
# `coursekit.bench.measure_latency` is the production version of exercises 2–4: warm-up, interleaving with rotating
# order, a pinned thread count, CUDA synchronisation, and loops of several calls per sample when one call is shorter
# than the clock can resolve well. Every benchmark in the course uses it.

# %%
from coursekit.suites.basics import LINEAR_HEAVY_WIDTH, linear_heavy_model

big = linear_heavy_model()  # 4 x Linear(2048, 2048), the model of section 5's benchmark
x1 = torch.randn(1, LINEAR_HEAVY_WIDTH)
stats = bench.measure_latency({"1 thread": lambda: big(x1)}, threads=1, repeats=10 if FAST else 30)
stats |= bench.measure_latency({f"{os.cpu_count()} threads": lambda: big(x1)}, threads=os.cpu_count(),
                               repeats=10 if FAST else 30)
for name, s in stats.items():
    print(f"{name:10s} min {s.min_ms:.3f}  median {s.median_ms:.3f}  p90 {s.p90_ms:.3f} ms")

# %% [markdown]
# On a GPU, timing without synchronisation measures only the kernel *launch*. The cell below shows the difference
# when you have CUDA (on a CPU-only machine it says so and does nothing):

# %%
if torch.cuda.is_available():
    a = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    a @ a
    launch_only = (time.perf_counter() - start) * 1e3
    s = bench.measure_latency({"matmul": lambda: a @ a}, device="cuda", repeats=10)["matmul"]
    print(f"without synchronize: {launch_only:.3f} ms (the launch); with: {s.median_ms:.3f} ms (the work)")
else:
    print("No CUDA GPU here: on a GPU, remember torch.cuda.synchronize() before reading the clock.")

# %% [markdown]
# ### Explore: batch size and threads
#
# Latency per *batch* grows with batch size, but much more slowly than the batch at first: the hardware does more
# useful work per weight it loads. Throughput (items per second) therefore rises until the cores are saturated.
# Threads help large batches far more than batch 1. Pick a model, a batch size and a thread count, press
# **measure**, and build the two curves yourself (each point is measured live on your machine).

# %%
from coursekit.bench.explore import latency_explorer

explorer = latency_explorer({
    "mlp (digits)": (build_model("mlp", "digits"), (1, 8, 8)),
    "lenet (digits)": (build_model("lenet", "digits"), (1, 8, 8)),
    "linear_heavy": (big, (LINEAR_HEAVY_WIDTH,)),
})
explorer

# %% [markdown]
# ## 3 · Three different "sizes"
#
# * **Size on disk**: bytes of the saved file (`torch.save`), including metadata.
# * **Parameter memory**: `num_params x bits / 8`, what the weights occupy in RAM at a given precision.
# * **Peak memory**: the most memory actually used while running: weights + activations + workspace + allocator
#   overhead. This is what decides whether a model *fits*, and it grows with the batch size.

# %%
from coursekit.models import count_parameters
from coursekit.train import pretrained

cnn = pretrained("lenet", "digits", progress=False).eval()
n = count_parameters(cnn)
disk = bench.serialized_size(cnn)
param_mem = bench.parameter_memory(cnn)
peaks = {b: bench.peak_memory(lambda b=b: cnn(torch.randn(b, 1, 8, 8))).peak_bytes for b in (1, 4096)}
print(f"LeNet on digits: {n:,} parameters")
print(f"  size on disk         {disk / 1e3:8.1f} kB")
for fmt, b in param_mem.items():
    print(f"  parameter memory {fmt:4s} {b / 1e3:8.1f} kB")
for b, p in peaks.items():
    print(f"  peak extra memory, batch {b:5d}: {p / 1e6:7.2f} MB  (sampled RSS: a lower bound)")

# %% [markdown]
# For this small CNN the activations of a large batch dwarf the weights; for a 7B language model it is the other way
# round, until the KV cache of long conversations catches up (chapter 07).
#
# ## 4 · What does *your* hardware accelerate?
#
# Reduced precision only runs faster when the hardware has instructions for it. `coursekit doctor` (in a terminal)
# or the cell below prints the report. Read it line by line:
#
# * **ISA flags**: `avx2` / `avx512f` are wide FP32 vector units. `avx512_vnni` / `avx_vnni` add an INT8 dot-product
#   instruction (4 multiply-adds of 8-bit numbers into a 32-bit sum): the reason INT8 is fast on x86. `amx_int8` /
#   `amx_bf16` are Intel's matrix tiles (Sapphire Rapids and later). `avx512_bf16` adds BF16 dot products. On Arm,
#   `asimddp` / `i8mm` play VNNI's role.
# * **torch uses ... kernels**: the vector width torch dispatches to on this CPU.
# * **quantized engines**: `x86`/`fbgemm` and `onednn` run INT8 on x86; `qnnpack` targets Arm.
# * **GPU**: compute capability decides the formats: 7.0 FP16 tensor cores, 7.5 INT8, 8.0 BF16, 8.9/9.0 FP8.

# %%
print(bench.format_hardware_report())

# %% [markdown]
# ## 5 · Benchmark your machine: FP32 vs BF16 vs FP16 vs INT8
#
# The `basics` suite (also `coursekit bench --suite basics`) measures a Linear-heavy model (4 layers of 2048x2048:
# the shape of a transformer's MLP, memory-bound at batch 1) and the digits CNN, at batch 1 and 64, in four formats:
#
# * **fp32**: the baseline.
# * **bf16 / fp16**: the whole model cast to 16 bits. Half the bytes, but only faster where the CPU has the
#   instructions (and torch's kernels use them).
# * **int8_dynamic**: torch's dynamic quantization: weights stored in INT8, activations quantized on the fly at
#   each Linear layer. Convolutions are left in FP32.
#
# Variants are interleaved, threads pinned to 1, and the table shows min / median / p90 and the speedup of the
# median over FP32.

# %%
from coursekit.suites import run_suite
from coursekit.suites.basics import reading

result = run_suite("basics", progress=False)
records = result["records"]
print(bench.format_table(records))

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
for ax, b in zip(axes, (1, 64)):
    bench.plot_latency(records, batch=b, ax=ax)
plt.tight_layout()
plt.show()
print(reading(records))

# %% [markdown]
# ### Reading the numbers honestly
#
# The printout above is generated from *your* measurements, so read it against these explanations rather than
# trusting a number from a blog post:
#
# * **INT8 dynamic on the Linear-heavy model** is usually the clear winner at batch 1 on a CPU with VNNI/AMX: a
#   quarter of the bytes to read and an INT8 dot-product instruction. Without VNNI, expect much less.
# * **INT8 dynamic on the CNN** barely moves: only its small Linear layers were quantized, and quantizing the
#   activations at run time costs time of its own. Dynamic quantization is a tool for Linear/LSTM-heavy models;
#   CNNs need *static* quantization (chapter 02).
# * **BF16 / FP16**: faster only where the CPU has BF16/FP16 instructions *and* torch uses them, mostly at larger
#   batches; at batch 1 the conversion overhead can eat the gain. On many laptops FP16 is *slower* than FP32.
# * **Sizes** follow the bits: INT8 weights are about 4x smaller; the CNN's accuracy barely changes at 8 or 16 bits.
#
# If a number surprises you, rerun the cell: the table is a sample, and the min..p90 bars show how noisy it was.
#
# ## 6 · Common mistakes
#
# * Timing the first call, or a single call.
# * Reporting the mean of a long-tailed distribution; reporting a speedup without the hardware, thread count and
#   batch size.
# * Comparing variants measured at different times or with different thread counts (interleave, pin threads).
# * Forgetting `torch.cuda.synchronize()`: you measure the launch, not the work.
# * Confusing size on disk with the memory needed to run: the peak includes activations and grows with the batch.
# * Assuming fewer bits means faster: it means faster only where the hardware has the instructions (section 4).
# * Skipping the benchmark altogether: the seed tutorials' list of mistakes ends with it for good reason.
#
# ## 7 · Interview questions
#
# Practise with the quiz below (immediate feedback and explanations), or in a terminal with
# `coursekit drill --chapter 00`.

# %%
from coursekit import quiz

quiz.show(chapter="00", n=5)

# %% [markdown]
# ### Graded interview questions
#
# Answer each question in a dictionary called `answers` that maps the question id to your answer: a letter for a
# choice question (`"B"`, or `"A,C"` when several are right), a number for a numeric one. For example
# `answers = {"ch00-...": "B", ...}`. The hidden test checks them against the bank installed with coursekit.

# %% locked="quiz_questions"
QUIZ_IDS = ["ch00-warmup-iterations", "ch00-threads-unfair", "ch00-memory-kinds", "ch00-peak-vs-disk",
            "ch00-decode-upper-bound"]
quiz.render(QUIZ_IDS)

# %% solution="quiz_answers"
### BEGIN SOLUTION
answers = {
    "ch00-warmup-iterations": "A",
    "ch00-threads-unfair": "C",
    "ch00-memory-kinds": "B,D,E",
    "ch00-peak-vs-disk": "D",
    "ch00-decode-upper-bound": 28.57,
}
### END SOLUTION

# %% tests="quiz_answers_tests" points=5
assert isinstance(answers, dict) and set(answers) == set(QUIZ_IDS), "answer every question id"
### BEGIN HIDDEN TESTS
quiz.grade_answers(answers, QUIZ_IDS)
### END HIDDEN TESTS
print("quiz passed")

# %% [markdown]
# ## Summary
#
# * Memory = parameters x bits / 8 (+ scales); 7B is 28 GB in FP32, 3.6 GB in INT4 with group scales.
# * Time with warm-up, repeats, interleaving, pinned threads and synchronisation; report min, median, p90.
# * Size on disk, parameter memory and peak memory are three different numbers.
# * Lower precision is faster only where the hardware accelerates it; `coursekit doctor` tells you where.
#
# Next: **01 · Precision formats**: what exactly FP16, BF16, FP8, INT4 and NF4 can and cannot represent.
