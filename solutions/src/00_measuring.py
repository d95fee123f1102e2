# %% [markdown] locked="title"
# # 00 · Measuring models
#
# **Why this chapter comes first.** Every compression technique in this course is sold with one of three promises:
# *smaller*, *faster*, or *just as accurate*. None of them is true until it is measured, and most published
# "speedups" are measured badly. Here you build the instruments the rest of the course relies on:
#
# 1. the arithmetic of model memory (why a 7-billion-parameter model needs 28 GB before it does anything),
# 2. a latency timer that does not lie, and the statistics worth reporting, tail latency (p95, p99) included,
# 3. the three different "sizes" of a model,
# 4. a report of *your* hardware: which reduced-precision paths it accelerates,
# 5. a first benchmark of your own machine: FP32 vs BF16 vs FP16 vs INT8, read honestly,
# 6. the roofline of your machine: which kernels are limited by memory and which by arithmetic,
# 7. Amdahl's law: why speeding up one part of a model speeds up the whole by less.
#
# Run the notebook cell by cell (Shift+Enter): "Run All" stops at the first exercise you have not answered yet,
# as in any nbgrader course.
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below it.
# A failing test tells you what it expected and what your code returned. `coursekit check
# notebooks/00_measuring.ipynb` grades the whole notebook (hidden tests included) from a terminal.

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
from coursekit.grading.sealed import expect_close, expect_equal

FAST = fast_mode()  # True under COURSEKIT_FAST=1 and during grading: smaller runs, same checks
torch.manual_seed(0)
print(f"coursekit {coursekit.__version__}, torch {torch.__version__}, fast mode: {FAST}")

# %% [markdown]
# ## 1 · The deployment problem <a id="why-compress"></a>
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
# roughly halves the time on memory-bound hardware (section 6 makes "memory-bound" precise). The third promise,
# accuracy, is the price: every later chapter measures what the first two cost.
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
MISTAKES_GB = {  # what the usual slips return for 7e9 FP32 weights
    "you divided by 2**30: the exercise asks for GB = 1e9 bytes": 7e9 * 4 / 2**30,
    "you forgot to divide the bits by 8 (a byte has 8 bits)": 224.0,
    "you returned bytes: divide by 1e9 for GB": 28e9,
}
expect_close(weight_memory_gb(7e9, 32), 28.0, what="weight_memory_gb(7e9, 32)", wrong=MISTAKES_GB)
expect_close(weight_memory_gb(7e9, 4), 3.5, what="weight_memory_gb(7e9, 4)",
             wrong={"you divided by 2**30: the exercise asks for GB = 1e9 bytes": 3.5e9 / 2**30})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_close, forbid, sealed_test

# wrong answers caught: GiB instead of GB (divided by 2**30); bits taken for bytes (no / 8); bytes returned (no
# / 1e9); delegating to coursekit.formats.memory_bytes (forbidden here, and it has no 3- or 6-bit format)
CASES = [(7_000_000_000, 32), (7_000_000_000, 4), (1_300_000_000, 16), (70_000_000_000, 8), (123_456_789, 32),
         (1_000_000_000, 3), (405_000_000_000, 6)]


def _probe():
    from coursekit.formats import memory

    by_name = {k: v for k, v in globals().items() if v is memory.memory_bytes}  # `from ... import memory_bytes`
    with forbid("coursekit.formats.memory_bytes", "coursekit.formats.memory.memory_bytes", exercise="Exercise 1"):
        globals().update({k: memory.memory_bytes for k in by_name})  # now the refusing stand-in
        try:
            return {"gb": [weight_memory_gb(n, b) for n, b in CASES]}
        finally:
            globals().update(by_name)


def _check(out):
    from coursekit.formats import memory_bytes

    names = {32: "fp32", 16: "fp16", 8: "int8", 4: "int4"}
    want = [memory_bytes(n, names[b]) / 1e9 if b in names else n * b / 8 / 1e9 for n, b in CASES]
    expect_close(out["gb"], want, what="weight_memory_gb on the hidden cases", wrong={
        "you divided by 2**30: the exercise asks for GB = 1e9 bytes": [w * 1e9 / 2**30 for w in want],
        "you forgot to divide the bits by 8 (a byte has 8 bits)": [w * 8 for w in want],
        "you returned bytes: divide by 1e9 for GB": [w * 1e9 for w in want],
    })


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 1 passed")

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
# 1. **Cold start.** <a id="warm-up"></a> The first call allocates memory, picks kernels and fills caches. It is
#    often many times slower than the steady state (the next cell measures the ratio on your machine). *Fix: warm
#    up, and do not time the warm-up.*
# 2. **Noise.** One sample is one draw from a distribution with a long tail (other processes, frequency scaling,
#    interrupts). *Fix: repeat, and report the minimum (what the hardware can do), the median (what users typically
#    get) and a high percentile such as p90 or p99 (the tail your SLA is written against). The mean is dragged by
#    outliers.*
# 3. **Drift and order.** A shared machine speeds up and slows down over seconds; if you time all of A then all of B,
#    A and B saw different machines. *Fix: interleave: A B A B ...*
# 4. **Hidden settings.** torch uses all cores by default, and a GPU kernel launch returns *before* the work is done.
#    *Fix: pin the thread count and report it; call `torch.cuda.synchronize()` before reading the clock.*
#
# <a id="timers"></a>Also: use `time.perf_counter()` (a monotonic, high-resolution clock), not `time.time()` (the
# wall clock: it can jump when the system clock is adjusted, and its resolution is coarse on some systems).
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
#
# The tests do not run a real model: they pass a *stub* whose calls "take" a scripted time on a fake clock that
# replaces `time.perf_counter` (`coursekit.bench.fakeclock`). That way the right answer is exact, a loaded machine
# cannot fail a correct timer, and a timer that reads another clock is caught.

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
# Visible tests: a stub "model" on a fake clock. Its first (cold) call takes 500 ms, the next ones 2, 3 and 4 ms.
from coursekit.bench.fakeclock import FakeClock

clock, calls = FakeClock(), []
script_s = [0.5, 0.002, 0.003, 0.004]


def stub_model():
    clock.advance(script_s[min(len(calls), 3)])
    calls.append(1)


with clock.installed(globals()):  # time.perf_counter() now reads the fake clock
    got = time_calls(stub_model, warmup=1, repeats=3)
other_clocks = [name for name in clock.reads if not name.startswith("perf_counter")]
assert not other_clocks, f"time_calls read time.{other_clocks[0]}(): use time.perf_counter()"
expect_equal(len(calls), 4, what="calls of stub_model by time_calls(stub_model, warmup=1, repeats=3)",
             wrong={"the warm-up call is missing": 3})
expect_close(got, [2.0, 3.0, 4.0], what="time_calls(stub_model, warmup=1, repeats=3)", wrong={
    "durations in seconds: multiply by 1e3 for milliseconds": [0.002, 0.003, 0.004],
    "the cold first call was timed: time only the calls after the warm-up": [500.0, 2.0, 3.0],
    "the warm-up call was returned too: return only the `repeats` timed durations": [500.0, 2.0, 3.0, 4.0],
    "you timed the whole loop once and divided by repeats: time each call on its own": [3.0, 3.0, 3.0],
})
### BEGIN HIDDEN TESTS
from coursekit.bench.fakeclock import FakeClock
from coursekit.grading.sealed import expect_close, expect_equal, forbid, sealed_test  # noqa: F811 (each hidden section stands alone)

# wrong answers caught: time.time() (coarse wall clock), time.monotonic() or process_time() instead of
# time.perf_counter(); no warm-up (the cold first calls timed); warm-up calls timed and returned too; seconds instead
# of milliseconds; one timing around the whole loop divided by `repeats`; delegating to bench.measure_latency
CASES = [(2, 5), (0, 3), (4, 6), (1, 1)]  # (warmup, repeats)
COLD_S = [0.8, 0.3, 0.1]  # a cold model's first calls ...
WARM_S = [0.0021, 0.0035, 0.0024, 0.009, 0.0031, 0.0042, 0.0022, 0.0055, 0.0028]  # ... then steady-state calls


def _duration(i):
    return COLD_S[i] if i < len(COLD_S) else WARM_S[(i - len(COLD_S)) % len(WARM_S)]


def _probe():
    runs = []
    for warmup, repeats in CASES:
        clock, calls = FakeClock(), []

        def stub(clock=clock, calls=calls):
            clock.advance(_duration(len(calls)))
            calls.append(1)

        with clock.installed(globals()), forbid("coursekit.bench.measure_latency",
                                                "coursekit.bench.timing.measure_latency", exercise="Exercise 2"):
            ms = time_calls(stub, warmup=warmup, repeats=repeats)
        runs.append({"ms": ms, "calls": len(calls), "reads": dict(clock.reads)})
    return runs


def _check(runs):
    expect_equal(len(runs), len(CASES), what="number of hidden cases run")
    for (warmup, repeats), run in zip(CASES, runs):
        other = sorted(name for name in run["reads"] if not name.startswith("perf_counter"))
        assert not other, (f"time_calls read time.{other[0]}(): use time.perf_counter(), the monotonic "
                           "high-resolution clock (time.time() is the wall clock: coarse, and it jumps when the "
                           "system clock is adjusted)")
        what = f"time_calls(stub, warmup={warmup}, repeats={repeats})"
        expect_equal(run["calls"], warmup + repeats, what=f"number of calls made by {what}",
                     wrong={"the warm-up calls are missing": repeats})
        want = [_duration(i) * 1e3 for i in range(warmup, warmup + repeats)]
        expect_close(run["ms"], want, what=what, rtol=1e-6, atol=1e-6, wrong={
            "the first (cold) calls were timed: time only the calls after the warm-up":
                [_duration(i) * 1e3 for i in range(repeats)],
            "durations in seconds: multiply by 1e3 for milliseconds": [w / 1e3 for w in want],
            "the warm-up calls were returned too: return only the `repeats` timed durations":
                [_duration(i) * 1e3 for i in range(warmup + repeats)],
            "you timed the whole loop once and divided by repeats: time each call on its own":
                [sum(want) / repeats] * repeats,
        })


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 2 passed")

# %% [markdown]
# ### Exercise 3 · Statistics worth reporting <a id="percentiles"></a>
#
# Write `latency_summary(samples)` returning a dict with keys `"min"`, `"median"`, `"p90"` and `"p99"`. Use linear
# interpolation for the percentiles (what `np.percentile` does by default; note that it takes the percentile in
# 0..100, not as a fraction).

# %% solution="ex3_summary"
def latency_summary(samples):
    """min, median, 90th and 99th percentile of a list of latencies."""
    ### BEGIN SOLUTION
    return {"min": float(np.min(samples)), "median": float(np.median(samples)),
            "p90": float(np.percentile(samples, 90)), "p99": float(np.percentile(samples, 99))}
    ### END SOLUTION

# %% tests="ex3_summary_tests" points=2
# Visible tests: five samples (unsorted on purpose) with one slow outlier.
s = latency_summary([4.0, 1.0, 3.0, 100.0, 2.0])
expect_equal(sorted(s), ["median", "min", "p90", "p99"], what="the keys of latency_summary's dict")
expect_close([s["min"], s["median"], s["p90"], s["p99"]], [1.0, 3.0, 61.6, 96.16],
             what="[min, median, p90, p99] of [4, 1, 3, 100, 2]", wrong={
    "mean instead of median: the outlier drags the mean to 22": [1.0, 22.0, 61.6, 96.16],
    "np.percentile takes percent: use 90 and 99, not 0.9 and 0.99": [1.0, 3.0, 1.036, 1.0396],
    "nearest-rank percentiles: interpolate linearly between neighbours (np.percentile's default)":
        [1.0, 3.0, 100.0, 100.0],
    "percentiles rounded down to a sample: interpolate linearly between neighbours": [1.0, 3.0, 4.0, 4.0],
})  # p90: position 0.9 * (5 - 1) = 3.6 in the sorted list, so 4 + 0.6 * (100 - 4) = 61.6
### BEGIN HIDDEN TESTS
import numpy as np

from coursekit.grading.sealed import expect_close, expect_equal, forbid, sealed_test  # noqa: F811 (each hidden section stands alone)

# wrong answers caught: mean instead of median; percentiles given as fractions (np.percentile(s, 0.9)); nearest-rank
# or rounded-down percentiles (no interpolation); indexing the unsorted list; delegating to coursekit.bench's
# percentile / LatencyStats (forbidden, also when imported by name)
SIZES = [7, 50, 201, 1000]


def _samples():
    rng = np.random.default_rng(2026)
    out = [[float(v) for v in rng.lognormal(0.0, 0.5, size=n)] for n in SIZES]
    out[1][17] = 80.0  # one stall in the middle of a run
    return out


def _probe():
    from coursekit.bench import timing

    by_name = {k: v for k, v in globals().items() if v is timing.percentile or v is timing.LatencyStats}
    with forbid("coursekit.bench.percentile", "coursekit.bench.timing.percentile", "coursekit.bench.LatencyStats",
                "coursekit.bench.timing.LatencyStats", exercise="Exercise 3"):
        globals().update({k: timing.percentile for k in by_name})  # now the refusing stand-in
        try:
            return [latency_summary(s) for s in _samples()]
        finally:
            globals().update(by_name)


def _check(out):
    for n, s, got in zip(SIZES, _samples(), out):
        expect_equal(sorted(got) if isinstance(got, dict) else got, ["median", "min", "p90", "p99"],
                     what="the keys of latency_summary's dict")

        def row(median=np.median, method="linear", scale=1.0, s=s):
            return [min(s), float(median(s)), float(np.percentile(s, 90 * scale, method=method)),
                    float(np.percentile(s, 99 * scale, method=method))]

        expect_close([got["min"], got["median"], got["p90"], got["p99"]], row(), rtol=1e-9,
                     what=f"[min, median, p90, p99] of {n} hidden samples", wrong={
            "mean instead of median: the mean is dragged by the slow tail": row(median=np.mean),
            "np.percentile takes percent: use 90 and 99, not 0.9 and 0.99": row(scale=0.01),
            "nearest-rank percentiles: interpolate linearly between neighbours": row(method="inverted_cdf"),
            "percentiles rounded up to a sample: interpolate linearly between neighbours": row(method="higher"),
            "percentiles rounded down to a sample: interpolate linearly between neighbours": row(method="lower"),
            "percentiles picked from the unsorted list: sort first (or use np.percentile)":
                [min(s), float(np.median(s)), s[int(0.9 * len(s))], s[int(0.99 * len(s))]],
        })


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 3 passed")

# %% [markdown]
# ### Tail latency: p95 and p99 <a id="tail-latency"></a>
#
# The median says what a typical request sees; the **p99** is the latency that 99% of requests beat, so 1 request
# in 100 waits longer. Services write their objectives against the tail, for two reasons:
#
# * **The mean hides it.** A stall in one request in a hundred barely moves the mean, but every user who makes many
#   requests meets it.
# * **Fan-out multiplies it.** A page that waits for $k$ independent model calls is as slow as the slowest of them.
#   The chance that at least one of the $k$ calls lands beyond the p99 is
#   $$P(\text{slowest} > p_{99}) = 1 - 0.99^{k}:\quad 1\%\ (k=1),\ \ 9.6\%\ (k=10),\ \ 63\%\ (k=100).$$
#
# Tails need many samples: a p99 rests on the slowest 1% of the samples, so from 100 samples it is an interpolation
# between the two largest ones. The cell below times 1,000 (5,000 in full mode) calls of the same MLP, one call per
# sample, and reads the tail off your own distribution, then checks the fan-out formula on it by drawing groups of
# 10 samples.

# %%
tail = bench.measure_latency({"mlp": lambda: model(x)}, repeats=1000 if FAST else 5000, warmup=10,
                             min_sample_ms=0.0, budget_s=None)["mlp"].samples_ms
qs = {q: float(np.percentile(tail, q)) for q in (50, 90, 95, 99, 99.9)}
print(f"{len(tail)} samples of one MLP call (batch 64): "
      + ", ".join(f"p{q:g} {v:.3f} ms" for q, v in qs.items()) + f", max {max(tail):.3f} ms, mean {np.mean(tail):.3f} ms")
print(f"the p99 is {qs[99] / qs[50]:.2f}x the median; {sum(t > qs[99] for t in tail)} samples lie above it")
groups = np.random.default_rng(0).choice(tail, size=(2000, 10))
print(f"groups of 10 calls whose slowest call exceeds the p99: {np.mean(groups.max(axis=1) > qs[99]):.1%} "
      f"(formula: {1 - 0.99**10:.1%})")
fig, ax = plt.subplots(figsize=(7, 2.8))
ax.plot(np.sort(tail), np.linspace(0, 100, len(tail)), lw=1.5)
for (q, v), c in zip(qs.items(), ["b", "orange", "m", "r", "k"]):
    ax.axvline(v, c=c, ls="--", lw=0.8, label=f"p{q:g}")
ax.set_xscale("log")
ax.set_xlabel("ms per call")
ax.set_ylabel("% of calls at most this slow")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### Exercise 4 · Compare two variants fairly: interleave <a id="fair-comparison"></a>
#
# Write `compare(fn_a, fn_b, repeats=20)` that first calls each function 3 times untimed, then in each of `repeats`
# rounds times **one** call of `fn_a` and **one** call of `fn_b` (A B A B ...) with `time.perf_counter()`, and
# returns `{"a": median_ms_of_a, "b": median_ms_of_b, "speedup": median_a / median_b}`.

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
# Visible tests: two stubs on a fake clock. Each one's first 3 calls are cold (1 s); then A takes 6, 6, 30, 6 ms
# (one stall) and B 2 ms per call.
from coursekit.bench.fakeclock import FakeClock

clock, order = FakeClock(), []
steady_s = {"a": [0.006, 0.006, 0.030, 0.006], "b": [0.002] * 4}


def stub(name):
    def call():
        n = order.count(name)
        clock.advance(1.0 if n < 3 else steady_s[name][min(n - 3, 3)])
        order.append(name)
    return call


with clock.installed(globals()):
    try:
        result = compare(stub("a"), stub("b"), repeats=4)
    except ZeroDivisionError:  # a median of 0 ms: a clock too coarse for 2 ms calls
        result = None
other_clocks = [name for name in clock.reads if not name.startswith("perf_counter")]
assert not other_clocks, f"compare read time.{other_clocks[0]}(): use time.perf_counter()"
expect_equal(sorted(result), ["a", "b", "speedup"], what="the keys of compare's dict")
expect_equal([order.count("a"), order.count("b")], [7, 7], what="calls of fn_a and fn_b (3 warm-up + 4 timed each)",
             wrong={"the 3 warm-up calls of each function are missing": [4, 4]})
expect_equal("".join(order[-8:]), "abababab", what="the order of the 8 timed calls",
             wrong={"all of A, then all of B: interleave A B A B": "aaaabbbb"})
expect_close([result["a"], result["b"], result["speedup"]], [6.0, 2.0, 3.0], what="compare(...) as [a, b, speedup]",
             wrong={"mean instead of median: A's one stall drags its mean to 12 ms": [12.0, 2.0, 6.0],
                    "speedup inverted: speedup = median(a) / median(b)": [6.0, 2.0, 1 / 3],
                    "medians in seconds: multiply by 1e3 for milliseconds": [0.006, 0.002, 3.0]})
### BEGIN HIDDEN TESTS
from coursekit.bench.fakeclock import FakeClock
from coursekit.grading.sealed import expect_close, expect_equal, forbid, sealed_test  # noqa: F811 (each hidden section stands alone)

# wrong answers caught: mean instead of median; no warm-up (cold calls timed); all of A then all of B instead of
# interleaving; speedup inverted (b / a); seconds instead of ms; time.time() or another clock instead of
# time.perf_counter(); delegating to coursekit.bench.measure_latency (forbidden; its warm-up also differs)
CASES = [7, 4]  # repeats
COLD_S = {"a": [0.9, 0.4, 0.2], "b": [0.5, 0.3, 0.1]}
WARM_S = {"a": [0.0060, 0.0062, 0.0300, 0.0059, 0.0061, 0.0063, 0.0250],
          "b": [0.0020, 0.0021, 0.0019, 0.0120, 0.0022, 0.00205, 0.00195]}


def _duration(name, i):
    cold, warm = COLD_S[name], WARM_S[name]
    return cold[i] if i < len(cold) else warm[(i - len(cold)) % len(warm)]


def _probe():
    runs = []
    for repeats in CASES:
        clock, order = FakeClock(), []

        def stub(name, clock=clock, order=order):
            def call():
                clock.advance(_duration(name, order.count(name)))
                order.append(name)
            return call

        with clock.installed(globals()), forbid("coursekit.bench.measure_latency",
                                                "coursekit.bench.timing.measure_latency", exercise="Exercise 4"):
            try:
                result = compare(stub("a"), stub("b"), repeats=repeats)
            except ZeroDivisionError as exc:  # e.g. a median of 0 ms from a clock too coarse for 2 ms calls
                result = {"error": f"ZeroDivisionError: {exc}"}
        runs.append({"result": result, "order": "".join(order), "reads": dict(clock.reads)})
    return runs


def _check(runs):
    import statistics

    expect_equal(len(runs), len(CASES), what="number of hidden cases run")
    for repeats, run in zip(CASES, runs):
        other = sorted(name for name in run["reads"] if not name.startswith("perf_counter"))
        assert not other, f"compare read time.{other[0]}(): use time.perf_counter(), the monotonic high-resolution clock"
        order, result = run["order"], run["result"]
        what = f"compare(stub_a, stub_b, repeats={repeats})"
        assert "error" not in result, f"{what} raised {result['error']}"
        expect_equal(sorted(result) if isinstance(result, dict) else result, ["a", "b", "speedup"],
                     what=f"the keys of {what}")
        expect_equal([order.count("a"), order.count("b")], [3 + repeats] * 2, what=f"calls of each stub by {what}",
                     wrong={"the 3 warm-up calls of each function are missing": [repeats] * 2})
        expect_equal(sorted(order[:6]), list("aaabbb"), what=f"the first 6 calls of {what} (the warm-up)")
        expect_equal(order[6:], "ab" * repeats, what=f"the order of the timed calls of {what}",
                     wrong={"all of A, then all of B: interleave A B A B": "a" * repeats + "b" * repeats})

        def row(stat=statistics.median, first=3, unit=1e3, repeats=repeats):
            a = stat([_duration("a", i) * unit for i in range(first, first + repeats)])
            b = stat([_duration("b", i) * unit for i in range(first, first + repeats)])
            return [a, b, a / b]

        want = row()
        expect_close([result["a"], result["b"], result["speedup"]], want, what=f"{what} as [a, b, speedup]",
                     rtol=1e-6, atol=1e-6, wrong={
            "mean instead of median: the mean is dragged by the slow outliers": row(stat=statistics.fmean),
            "speedup inverted: speedup = median(a) / median(b)": [want[0], want[1], 1 / want[2]],
            "medians in seconds: multiply by 1e3 for milliseconds": row(unit=1.0),
            "the cold first calls were timed: warm up first": row(first=0),
        })


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 4 passed")

# %% [markdown]
# `coursekit.bench.measure_latency` is the production version of exercises 2–4: warm-up, interleaving with rotating
# order, a pinned thread count, CUDA synchronisation, a time budget per variant, and loops of several calls per
# sample when one call is shorter than the clock can resolve well. Every benchmark in the course uses it.
#
# <a id="threads"></a>The thread count is part of the result: the same model at 1 thread and at all of your cores.

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
# <a id="synchronisation"></a>On a GPU, timing without synchronisation measures only the kernel *launch*. The cell
# below shows the difference when you have CUDA (on a CPU-only machine it says so and does nothing):

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
# ### Explore: batch size and threads <a id="batch-size"></a>
#
# Latency per *batch* grows with batch size, but much more slowly than the batch at first: the hardware does more
# useful work per weight it loads (section 6 puts a number on this: arithmetic intensity). Throughput (items per
# second) therefore rises until the cores are saturated. Pick a model, a batch size and a thread count, press
# **measure**, and build the two curves yourself (each point is measured live on your machine): does a second
# thread help batch 1 as much as batch 256?

# %%
from coursekit.bench.explore import latency_explorer

explorer = latency_explorer({
    "mlp (digits)": (build_model("mlp", "digits"), (1, 8, 8)),
    "lenet (digits)": (build_model("lenet", "digits"), (1, 8, 8)),
    "linear_heavy": (big, (LINEAR_HEAVY_WIDTH,)),
})
explorer

# %% [markdown]
# ## 3 · Three different "sizes" <a id="memory"></a>
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
# Compare the two lines above: for this small CNN the activations of a large batch dwarf the weights. For a 7B
# language model it is the other way round, until the KV cache of long conversations catches up (chapter 07).
#
# ## 4 · What does *your* hardware accelerate? <a id="isa-flags"></a>
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
# The printout above is generated from *your* measurements. Read it with the hardware report of section 4 next to
# it, and with these mechanisms in mind:
#
# * **INT8 dynamic on the Linear-heavy model** reads a quarter of the weight bytes of FP32, and on a CPU with VNNI or
#   AMX it also multiplies with an INT8 dot-product instruction. Where both hold, this is the row to expect the
#   largest speedup in; without those flags, expect much less. Section 6 explains why fewer bytes matter most at
#   batch 1.
# * **INT8 dynamic on the CNN** quantizes only the small Linear layers at the end, and quantizing the activations at
#   run time costs time of its own. Section 7 measures how much of the CNN's time those layers take, and what that
#   caps the speedup at. Dynamic quantization is a tool for Linear/LSTM-heavy models; CNNs need *static*
#   quantization (chapter 02).
# * **BF16 / FP16** are faster only where the CPU has BF16/FP16 arithmetic *and* torch uses it. Without it they are
#   converted to FP32 and back around every operation (emulated), which can make them *slower* than FP32: check
#   your rows against the `avx512_bf16` / `amx_bf16` / `avx512_fp16` flags above.
# * **Sizes** follow the bits: INT8 weights are about 4x smaller. The accuracy line says what the formats cost the
#   CNN on the digits test set.
#
# If a number surprises you, rerun the cell: the table is a sample, and the min..p90 bars show how noisy it was.
#
# ## 6 · Roofline: memory-bound or compute-bound? <a id="roofline"></a>
#
# A kernel does two things: it moves bytes between memory and the cores, and it does arithmetic on them. Its
# **arithmetic intensity** is the ratio
#
# $$I = \frac{\text{FLOPs performed}}{\text{bytes moved}}\quad\text{(FLOP/byte)}.$$
#
# A machine with peak compute $P$ (FLOP/s) and memory bandwidth $B$ (bytes/s) can run a kernel of intensity $I$ at
# most at
#
# $$\text{attainable}(I) = \min(P,\ I \cdot B),$$
#
# the **roofline** (Williams, Waterman & Patterson, 2009). Below the ridge point $I^* = P / B$ the kernel waits for
# memory (*memory-bound*: fewer bytes make it faster, which is what weight quantization does); above it, the
# arithmetic units are the limit (*compute-bound*: only faster arithmetic helps, e.g. INT8 dot products).
#
# For a Linear layer $y = xW^\top$ with $W$ of shape (out, in) and a batch of $b$ rows, counting a multiply-add as
# 2 FLOPs and every value moved once:
#
# $$I_\text{linear} = \frac{2\,b\cdot\text{in}\cdot\text{out}}{(\text{in}\cdot\text{out} + b\,(\text{in} + \text{out}))
#   \cdot \text{bytes per value}}\ \approx\ \frac{2b}{\text{bytes per value}}\ \text{ when the weights dominate}.$$
#
# At batch 1 (a GEMV, as in LLM decoding) every weight byte is used for one multiply-add: in FP32 about 0.5 FLOP/byte,
# far below the ridge point of any modern CPU or GPU. A batch of 64 reuses every weight 64 times. An elementwise
# `a + b` does 1 FLOP per 12 bytes in FP32: always memory-bound.
#
# The cell below measures *your* roof with one thread (like the benchmark above): bandwidth from a sum over a
# tensor far larger than the caches, peak FLOP/s from a large FP32 matmul. Then it times three kernels and places
# them on the roof: a filled marker is what the kernel achieved, the dashed line goes up to what the roof allows.

# %%
import torch.nn.functional as F

from coursekit.bench import roofline

bandwidth = roofline.measure_bandwidth()  # bytes/s that one core reads from memory
peak = roofline.measure_peak_flops(torch.float32)  # FLOP/s of one core in FP32
W = torch.randn(4096, 4096)  # 67 MB in FP32: larger than the caches of most CPUs
x_1, x_64 = torch.randn(1, 4096), torch.randn(64, 4096)
numel = 2**23
a_in, b_in, ab_out = torch.randn(numel), torch.randn(numel), torch.empty(numel)
reps = 5 if FAST else 15
kernels = [
    roofline.measure_kernel(roofline.linear_kernel(4096, 4096, batch=1), lambda: F.linear(x_1, W), repeats=reps),
    roofline.measure_kernel(roofline.linear_kernel(4096, 4096, batch=64), lambda: F.linear(x_64, W), repeats=reps),
    roofline.measure_kernel(roofline.elementwise_kernel(numel, name="elementwise a + b"),
                            lambda: torch.add(a_in, b_in, out=ab_out), repeats=reps),
]
roofline.roofline_figure(peak, bandwidth, kernels, title=f"roofline of this machine, 1 thread, torch {torch.__version__}")
plt.show()
print(roofline.roofline_reading(peak, bandwidth, kernels))

# %% [markdown]
# How to read it: the two Linear kernels do the same work per row, yet batch 64 sits far to the right of batch 1,
# because it reads the same weights once for 64 rows. A kernel left of the ridge can only get faster by moving fewer
# bytes (4-bit weights move 8x fewer than FP32); a kernel right of it needs faster arithmetic. Real kernels reach a
# fraction of their roof (the roof is an upper bound). A point *above* the memory roof is possible: the roof was
# measured with a read-only kernel on data far larger than the caches, and a kernel whose data partly stays in cache,
# or whose reads and writes overlap, can beat it.
#
# The same arithmetic bounds LLM decoding: at batch 1 every generated token reads every weight once, so
#
# $$\text{tokens/s} \le \frac{\text{bandwidth}}{\text{bytes of weights}}.$$

# %%
bandwidth_all = roofline.measure_bandwidth(threads=os.cpu_count())
print(f"read bandwidth: one core {bandwidth / 1e9:.1f} GB/s, all {os.cpu_count()} cores {bandwidth_all / 1e9:.1f} GB/s")
if bandwidth_all < bandwidth:
    print("  (all cores measured less than one: other processes are using the cores right now; rerun when it is quiet)")
for label, weight_bytes in [("7B in FP16", 14e9), ("7B in INT4", 3.5e9)]:
    print(f"{label}: at most {bandwidth / weight_bytes:5.2f} tokens/s on one core, "
          f"{bandwidth_all / weight_bytes:5.2f} tokens/s on all cores")

# %% [markdown]
# Whatever the bandwidth, the ratio between the two formats is the ratio of their bytes: 4x fewer bytes, a 4x higher
# bound.
#
# ### Exercise 5 · Arithmetic intensity of a Linear layer
#
# Write `linear_intensity(in_features, out_features, batch, bytes_per_value)`: the arithmetic intensity in FLOP/byte
# of a Linear layer on a batch, by the formula above. FLOPs: 2 per multiply-add (no bias). Bytes: the weight matrix,
# the input and the output activations, each moved once, all stored with `bytes_per_value` bytes.

# %% solution="ex5_intensity"
def linear_intensity(in_features, out_features, batch, bytes_per_value):
    """FLOP per byte of y = x W^T for x of shape (batch, in_features)."""
    ### BEGIN SOLUTION
    flops = 2 * batch * in_features * out_features
    moved = (in_features * out_features + batch * (in_features + out_features)) * bytes_per_value
    return flops / moved
    ### END SOLUTION

# %% tests="ex5_intensity_tests" points=2
# Visible test: the GEMV of a 4096 x 4096 FP16 layer at batch 1 is about 1 FLOP/byte.
want = 2 * 4096**2 / ((4096**2 + 2 * 4096) * 2)
expect_close(linear_intensity(4096, 4096, 1, 2), want, what="linear_intensity(4096, 4096, 1, 2)", wrong={
    "multiply-adds counted as 1 FLOP: count 2 FLOPs each": want / 2,
    "only the weights counted: the input and output activations are moved too": 1.0,
})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_close, forbid, sealed_test  # noqa: F811 (each hidden section stands alone)

# wrong answers caught: 1 FLOP per multiply-add; weights only (activations left out); activations of one row only
# (batch left out of the bytes); batch left out of the FLOPs; delegating to coursekit.bench.roofline.linear_kernel
# (forbidden, also when imported by name)
CASES = [(4096, 4096, 1, 2), (2048, 2048, 1, 4), (4096, 11008, 64, 2), (768, 3072, 512, 1), (10, 10, 1000, 4)]


def _probe():
    import coursekit.bench.roofline as roofline_module

    by_name = {k: v for k, v in globals().items() if v is roofline_module.linear_kernel}
    with forbid("coursekit.bench.roofline.linear_kernel", exercise="Exercise 5"):
        globals().update({k: roofline_module.linear_kernel for k in by_name})  # now the refusing stand-in
        try:
            return [linear_intensity(*case) for case in CASES]
        finally:
            globals().update(by_name)


def _check(out):
    from coursekit.bench.roofline import linear_kernel

    want = [linear_kernel(i, o, b, weight_bytes=v, activation_bytes=v).intensity for i, o, b, v in CASES]
    expect_close(out, want, what="linear_intensity on the hidden cases", rtol=1e-9, wrong={
        "multiply-adds counted as 1 FLOP: count 2 FLOPs each": [w / 2 for w in want],
        "only the weights counted: the input and output activations are moved too":
            [2 * b * i * o / (i * o * v) for i, o, b, v in CASES],
        "activations of one row only: the input and output bytes grow with the batch":
            [2 * b * i * o / ((i * o + i + o) * v) for i, o, b, v in CASES],
        "the batch is missing from the FLOPs: every row does in * out multiply-adds":
            [2 * i * o / ((i * o + b * (i + o)) * v) for i, o, b, v in CASES],
    })


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 5 passed")

# %% [markdown]
# ## 7 · Amdahl's law: the part you did not speed up <a id="amdahl"></a>
#
# If a fraction $p$ of the run time gets $s$ times faster and the rest is untouched, the new time is $(1-p) + p/s$ of
# the old one (Amdahl, 1967):
#
# $$\text{speedup} = \frac{1}{(1 - p) + p / s}\ \le\ \frac{1}{1 - p}.$$
#
# **Worked example.** Linear layers take 60% of a model's time and INT8 makes them 4x faster: the new time is
# $0.4 + 0.6/4 = 0.55$, a speedup of $1/0.55 = 1.82$x, not 4x. Even infinitely fast Linear layers would give at most
# $1/0.4 = 2.5$x. A kernel micro-benchmark can show 4x while the model around it barely moves.
#
# Your own CNN shows it. Dynamic INT8 quantizes only its Linear layers (the classifier); the convolutions stay FP32.
# The cell below measures the share of the classifier in the CNN's time at batch 64, and compares what Amdahl allows
# with what the benchmark of section 5 measured.

# %%
from coursekit.bench.amdahl import amdahl_speedup

xb = torch.randn(64, 1, 8, 8)
with torch.inference_mode():
    features = cnn.features(xb)
parts = bench.measure_latency({"convolutions": lambda: cnn.features(xb), "classifier": lambda: cnn.classifier(features)},
                              repeats=20 if FAST else 60)
t_conv, t_linear = parts["convolutions"].median_ms, parts["classifier"].median_ms
p = t_linear / (t_conv + t_linear)


def speedup_of(model_name, batch=64):
    return next(r["speedup"] for r in records
                if (r["model"], r["variant"], r["batch"]) == (model_name, "int8_dynamic", batch))


s_linear = speedup_of("linear_heavy")
print(f"CNN at batch 64: convolutions {t_conv:.3f} ms, classifier (Linear layers) {t_linear:.3f} ms: p = {p:.0%}")
print(f"INT8 dynamic made the Linear-heavy model {s_linear:.2f}x faster at batch 64 (section 5)")
print(f"Amdahl: if the CNN's Linear layers sped up as much, the CNN would get {amdahl_speedup(p, s_linear):.2f}x; "
      f"with infinitely fast Linear layers, at most {amdahl_speedup(p, float('inf')):.2f}x")
measured = speedup_of("lenet_digits")
print(f"measured in section 5: {measured:.2f}x, "
      + ("below Amdahl's estimate: the CNN's own Linear layers gained less than the big ones" if
         measured < 0.9 * amdahl_speedup(p, s_linear) else "close to Amdahl's estimate"))

# %% [markdown]
# Amdahl's estimate assumed the CNN's Linear layers speed up as much as the 2048x2048 layers of the Linear-heavy
# model. They are tiny (64 -> 120 -> 84 -> 10 features), so the fixed cost of quantizing their activations on the
# fly weighs much more: the likely reason when your measurement falls below the estimate. Either way the bound
# holds: no change to a share $p$ of the time can speed up the whole by more than $1/(1-p)$. Profile first, then
# spend effort where $p$ is large.
#
# ## 8 · Common mistakes
#
# * Timing the first call, or a single call.
# * Reading the wall clock (`time.time()`) instead of `time.perf_counter()`.
# * Reporting the mean of a long-tailed distribution; reporting a speedup without the hardware, thread count and
#   batch size; reporting a p99 from a few dozen samples.
# * Comparing variants measured at different times or with different thread counts (interleave, pin threads).
# * Forgetting `torch.cuda.synchronize()`: you measure the launch, not the work.
# * Confusing size on disk with the memory needed to run: the peak includes activations and grows with the batch.
# * Assuming fewer bits means faster: it means faster only where the hardware has the instructions (section 4), or
#   where the kernel is memory-bound (section 6).
# * Quoting a kernel's speedup as the model's: Amdahl's law caps it by the share of time that kernel takes.
# * Skipping the measurement altogether: every number above came from your machine, and would differ on another.
#
# ## 9 · Interview questions
#
# Practise with the quiz below (immediate feedback and explanations), or in a terminal with
# `coursekit drill --chapter 00`. The graded questions further down are left out of the practice quiz.

# %% locked="quiz_ids"
from coursekit import quiz

QUIZ_IDS = ["ch00-warmup-iterations", "ch00-threads-unfair", "ch00-memory-kinds", "ch00-peak-vs-disk",
            "ch00-decode-upper-bound", "ch00-ridge-point", "ch00-amdahl"]
quiz.show(chapter="00", n=5, exclude=QUIZ_IDS)

# %% [markdown]
# ### Graded interview questions
#
# Answer each question in a dictionary called `answers` that maps the question id to your answer: a letter for a
# choice question (`"B"`, or `"A,C"` when several are right), a number for a numeric one. For example
# `answers = {"ch00-...": "B", ...}`. Each question is worth one point; the hidden test checks them against the bank
# installed with coursekit.

# %% locked="quiz_questions"
quiz.render(QUIZ_IDS)

# %% solution="quiz_answers"
### BEGIN SOLUTION
answers = {
    "ch00-warmup-iterations": "A",
    "ch00-threads-unfair": "C",
    "ch00-memory-kinds": "B,D,E",
    "ch00-peak-vs-disk": "D",
    "ch00-decode-upper-bound": 28.57,
    "ch00-ridge-point": 50,
    "ch00-amdahl": 1.818,
}
### END SOLUTION

# %% tests="quiz_answers_tests" points=7
# One point per question. Visible: which questions you have not answered yet.
unanswered = [qid for qid in QUIZ_IDS if not isinstance(answers, dict) or qid not in answers]
print("not answered yet: " + ", ".join(unanswered) if unanswered else "all questions answered")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import sealed_quiz

# one point per question; the returned number is nbgrader's partial credit
sealed_quiz(["ch00-warmup-iterations", "ch00-threads-unfair", "ch00-memory-kinds", "ch00-peak-vs-disk",
            "ch00-decode-upper-bound", "ch00-ridge-point", "ch00-amdahl"])
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# * Memory = parameters x bits / 8 (+ scales); 7B is 28 GB in FP32, 3.6 GB in INT4 with group scales.
# * Time with warm-up, repeats, interleaving, pinned threads and synchronisation, on `time.perf_counter()`; report
#   min, median and a tail percentile, and collect enough samples for the tail you report.
# * Size on disk, parameter memory and peak memory are three different numbers.
# * Lower precision is faster only where the hardware accelerates it (`coursekit doctor` tells you where) or where
#   the kernel is memory-bound: the roofline says which, from arithmetic intensity and your measured roof.
# * A speedup of one part is capped by Amdahl's law: measure the share of time before you optimise it.
#
# Next: **01 · Precision formats**: what exactly FP16, BF16, FP8, INT4 and NF4 can and cannot represent.
