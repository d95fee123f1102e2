# %% [markdown] locked="title"
# # 08 · Deployment: ONNX Runtime tuned and validated, OpenVINO, a batching server under load, and Java
#
# **The deployment problem.** The INT8 digits model of chapters 02-03 is accurate in a notebook. Now it has to
# answer requests: from a Python service on a 2-core cloud VM, from a Java back end that a different team owns,
# and on a device in a field with no network. Every one of those steps can break the model *silently*: an
# export that fixed the batch size, a "quantized" graph that still multiplies in float, a session that fights
# three other processes for the same cores, a server whose p99 explodes at 80% load, a Java client whose
# preprocessing differs by one normalisation. The checklist of this chapter is what catches each of them, with a
# number measured on your machine.
#
# In this chapter you build, and measure:
#
# 1. the deployment pipeline, train -> prune -> quantize -> validate -> export -> deploy, and the check that
#    belongs after each step;
# 2. a runtime and precision chosen from the hardware report (`coursekit doctor`), computed live;
# 3. the export pitfalls, each one shown failing: opset, dynamic axes, fake-quant vs real INT8 graphs,
#    unsupported operators;
# 4. parity testing (max abs error, top-1 agreement, per class) and a model card read from the graph;
# 5. ONNX Runtime session options (threads, graph optimisation, execution mode), measured; OpenVINO side by side;
# 6. a dynamic-batching HTTP server (`coursekit serve`), the queueing picture of latency vs throughput, and a
#    real load test (`coursekit loadtest`);
# 7. the same INT8 model from Java with DJL and Spring Boot; the edge workflow; energy as a cost.
#
# Run the notebook cell by cell (Shift+Enter): "Run All" stops at the first exercise you have not answered yet,
# as in any nbgrader course.
# Exercises are marked **Exercise**; write your code where it says `YOUR CODE HERE`, then run the test cell below it.
# `coursekit check notebooks/08_deployment.ipynb` grades the whole notebook (hidden tests included) from a terminal.

# %% locked="setup"
# Setup: run this first. Warnings are silenced so that graded cells stay clean.
import os
import shutil
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
import matplotlib.pyplot as plt
import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

import coursekit
from coursekit import export
from coursekit._env import fast_mode
from coursekit.bench import accelerated_paths, hardware_report, measure_latency
from coursekit.data import get_loaders
from coursekit.grading.sealed import expect_close, expect_equal
from coursekit.models import build_model
from coursekit.train import evaluate, pretrained, seed_everything

FAST = fast_mode()  # True under COURSEKIT_FAST=1 and during grading: smaller runs, same checks
seed_everything(0)
torch.set_num_threads(2)
WORK = Path(tempfile.mkdtemp(prefix="coursekit_ch08_"))  # every file this chapter writes goes here
# The model to deploy: the digits LeNet of chapters 00-04 (the quickly trained checkpoint, so that every run and
# the grader see the same weights), exported to ONNX in FP32 and quantized to INT8 by ONNX Runtime (static, QDQ).
model = pretrained("lenet", "digits", fast=True, progress=False)
loaders = get_loaders("digits", fast=True)
x_test = torch.cat([x for x, _ in loaders.test])
y_test = torch.cat([y for _, y in loaders.test])
calibration = [x for _, (x, _) in zip(range(8), loaders.train)]
fp32_path = export.export_onnx(model, x_test[:1], WORK / "lenet_fp32.onnx")
int8_path = export.ort_quantize_static(fp32_path, WORK / "lenet_int8.onnx", calibration)
fp32_acc = evaluate(model, loaders.test)["accuracy"]
print(f"coursekit {coursekit.__version__}, torch {torch.__version__}, onnxruntime {ort.__version__}, "
      f"fast mode: {FAST}")
print(f"LeNet on digits: test accuracy {fp32_acc:.1%} on {len(y_test)} images; ONNX files in {WORK}")

# %% [markdown]
# ## 1 · The deployment pipeline, and where each check belongs <a id="pipeline"></a>
#
# Every technique of this course ends the same way: **train -> prune -> quantize -> validate -> export ->
# deploy**. Each arrow can change the function the model computes, and each change is caught only by a check
# placed *right after* it: a bug found at the end of the pipeline could have come from any step.
#
# | step | what can go wrong | the check right after it |
# |---|---|---|
# | train | overfitting, a lucky seed | validation accuracy; test set touched once |
# | prune | accuracy lost; sparsity that no kernel uses | accuracy after fine-tuning; *measured* latency |
# | quantize | calibration data unlike production; an outlier layer | accuracy drop within budget, per class; top-1 agreement with FP32 |
# | validate | an average hiding a broken class or slice | per-class / per-slice metrics against the FP32 reference |
# | export | a fixed batch size, an op translated differently, train-mode layers | `onnx.checker`; **parity** with torch at several batch sizes |
# | deploy | float kernels in an "INT8" graph; thread oversubscription; queueing | graph inspection; latency on the *target*; a load test's p99; the same parity from every client (Java) |
#
# The model that leaves the pipeline travels with a **model card**: what it is (inputs, opset, precision of each
# layer), how good it is (accuracy, parity), how fast it was and *on what hardware*, and the hash of the exact
# file. Section 5 writes one.

# %%
steps = ["train", "prune", "quantize", "validate", "export", "deploy"]
checks = ["val. accuracy", "accuracy after\nfine-tune, latency", "accuracy drop,\nagreement", "per-class,\nslices",
          "checker, parity,\nbatch sizes", "graph, p99 under\nload, client parity"]
fig, ax = plt.subplots(figsize=(11, 2.2))
for i, (step, check) in enumerate(zip(steps, checks)):
    ax.add_patch(plt.Rectangle((i * 1.8, 0.55), 1.3, 0.4, color="#cfe2f3"))
    ax.text(i * 1.8 + 0.65, 0.75, step, ha="center", va="center", fontsize=11)
    ax.text(i * 1.8 + 0.65, 0.25, check, ha="center", va="center", fontsize=8, color="#7f3f00")
    if i < len(steps) - 1:
        ax.annotate("", xy=(i * 1.8 + 1.75, 0.75), xytext=(i * 1.8 + 1.32, 0.75), arrowprops={"arrowstyle": "->"})
ax.set_xlim(-0.1, len(steps) * 1.8)
ax.set_ylim(0, 1)
ax.axis("off")
ax.set_title("each step, then the check that catches what it can break", fontsize=10)
plt.show()

# %% [markdown]
# ## 2 · Choosing a runtime by hardware <a id="execution-providers"></a>
#
# An INT8 model is only faster where the hardware multiplies 8-bit integers natively *and* the runtime maps the
# graph onto those kernels. On x86 that means VNNI (`avx512_vnni`, `avx_vnni`) or AMX-INT8 (`amx_int8`); on Arm,
# the dot-product instructions (`asimddp`, `i8mm`). FP16 arithmetic on an x86 CPU needs `avx512_fp16` or
# `amx_fp16`: the common `f16c` flag only *converts* FP16 to FP32, so an FP16 model there is stored small and
# computed in float32, often slower. On NVIDIA GPUs the tensor cores decide: FP16 from compute capability 7.0
# (Volta), INT8 from 7.5 (Turing), and TensorRT is the runtime that uses them best (through ONNX Runtime's
# TensorRT execution provider or on its own).
#
# ONNX Runtime runs one graph on several **execution providers** (CPU, CUDA, TensorRT, OpenVINO, CoreML, ...):
# each node goes to the first provider in the session's list that supports it, the rest falls back to the CPU.
# What does *your* machine have? This is `coursekit doctor`, computed live:

# %%
report = hardware_report()
for p in accelerated_paths(report):
    print(f"[{'yes' if p.accelerated else ' no'}] {p.path}: {p.reason}")
print("ISA flags:", " ".join(report["cpu"]["isa"]) or "(none)")
print("ONNX Runtime providers installed here:", ort.get_available_providers())

# %% [markdown]
# ### Exercise 1 · A runtime and a precision from a hardware report
#
# Write `choose_runtime(report)`: given a report shaped like `hardware_report()` (`report["cpu"]["isa"]`: the
# flag list, `report["cpu"]["arch"]`, `report["cuda"]`: a list of GPUs, each with `"capability"` such as `"8.6"`),
# return a dict `{"device", "runtime", "precision"}` by these rules:
#
# * **a CUDA GPU is present** (use the one with the highest capability): `device="cuda"`, `runtime="tensorrt"`,
#   precision `"int8"` from capability 7.5, `"fp16"` from 7.0, else `"fp32"`;
# * **otherwise**: `device="cpu"`, `runtime="onnxruntime"`, precision `"int8"` when the CPU has an INT8 dot-product
#   instruction (`avx512_vnni`, `avx_vnni`, `amx_int8`, `asimddp` or `i8mm`); else `"fp16"` when it computes FP16
#   natively (`avx512_fp16` or `amx_fp16`, or any Arm CPU (`arch` `"aarch64"`/`"arm64"`) with `asimd`); else `"fp32"`.
#
# (Compare capabilities as numbers: `"10.0"` is newer than `"9.0"`.)

# %% solution="ex1_runtime"
def choose_runtime(report):
    """{"device", "runtime", "precision"} for a hardware report shaped like coursekit.bench.hardware_report()."""
    ### BEGIN SOLUTION
    gpus = report.get("cuda") or []
    if gpus:
        cap = max(tuple(int(v) for v in g["capability"].split(".")) for g in gpus)
        precision = "int8" if cap >= (7, 5) else "fp16" if cap >= (7, 0) else "fp32"
        return {"device": "cuda", "runtime": "tensorrt", "precision": precision}
    isa = set(report["cpu"]["isa"])
    arm = report["cpu"]["arch"].lower() in ("aarch64", "arm64")
    if isa & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"}:
        precision = "int8"
    elif isa & {"avx512_fp16", "amx_fp16"} or (arm and "asimd" in isa):
        precision = "fp16"
    else:
        precision = "fp32"
    return {"device": "cpu", "runtime": "onnxruntime", "precision": precision}
    ### END SOLUTION

# %% tests="ex1_runtime_tests" points=2
mine = choose_runtime(report)
print(f"your machine -> {mine}")
avx2_only = {"cpu": {"arch": "x86_64", "isa": ["avx", "avx2", "f16c", "fma"]}, "cuda": []}
expect_equal(choose_runtime(avx2_only)["precision"], "fp32", what="precision on an AVX2-only CPU (f16c, no VNNI)",
             wrong={"int8 without VNNI/AMX: INT8 saves memory but runs no faster there": "int8",
                    "fp16: f16c only converts, the arithmetic is still float32": "fp16"})
ampere = {"cpu": {"arch": "x86_64", "isa": ["avx2"]}, "cuda": [{"index": 0, "name": "A10", "capability": "8.6"}]}
expect_equal(choose_runtime(ampere), {"device": "cuda", "runtime": "tensorrt", "precision": "int8"},
             what="choice for an Ampere GPU (capability 8.6)")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_equal, forbid, sealed_test

# Wrong answers caught: INT8 on any AVX2/AVX-512 CPU (VNNI/AMX ignored: case "skylake"); only avx512_vnni checked
# (AMX-only and avx_vnni-only and Arm dot-product cases); FP16 on a CPU with f16c only; FP16 from avx512f; Arm
# FP16 missed; the GPU ignored (CPU rules applied); capabilities compared as strings ("10.0" < "7.5"); the first
# GPU used instead of the best; INT8 on a Volta (7.0); delegating to coursekit.bench.accelerated_paths (forbidden).
EX1_CASES = {
    "skylake": {"arch": "x86_64", "isa": ["avx", "avx2", "avx512f", "avx512bw", "avx512vl", "f16c", "fma"]},
    "cascade_lake": {"arch": "x86_64", "isa": ["avx2", "avx512f", "avx512_vnni", "f16c"]},
    "alder_lake": {"arch": "x86_64", "isa": ["avx2", "avx_vnni", "f16c", "fma"]},
    "amx_only": {"arch": "x86_64", "isa": ["avx2", "amx_tile", "amx_int8", "amx_bf16"]},
    "sapphire_fp16": {"arch": "x86_64", "isa": ["avx2", "avx512f", "avx512_fp16", "f16c"]},
    "zen2": {"arch": "x86_64", "isa": ["avx", "avx2", "f16c", "fma", "sse4_2"]},
    "graviton2": {"arch": "aarch64", "isa": ["asimd", "asimddp"]},
    "cortex_a53": {"arch": "aarch64", "isa": ["asimd"]},
    "apple": {"arch": "arm64", "isa": ["asimd", "asimddp", "bf16", "i8mm"]},
    "old_arm": {"arch": "armv7l", "isa": []},
}
EX1_GPUS = {"none": [], "t4": [{"index": 0, "name": "T4", "capability": "7.5"}],
            "v100": [{"index": 0, "name": "V100", "capability": "7.0"}],
            "p100": [{"index": 0, "name": "P100", "capability": "6.0"}],
            "mixed": [{"index": 0, "name": "P100", "capability": "6.0"},
                      {"index": 1, "name": "B200", "capability": "10.0"}]}
EX1_PAIRS = [(c, "none") for c in EX1_CASES] + [("zen2", g) for g in EX1_GPUS if g != "none"] + \
    [("graviton2", "v100")]


def _probe():
    import copy

    out = []
    with forbid("coursekit.bench.accelerated_paths", "coursekit.bench.hardware.accelerated_paths",
                exercise="Exercise 1"):
        for cpu, gpus in EX1_PAIRS:
            got = choose_runtime({"cpu": copy.deepcopy(EX1_CASES[cpu]), "cuda": copy.deepcopy(EX1_GPUS[gpus]),
                                  "software": {}})
            out.append({k: got.get(k) for k in ("device", "runtime", "precision")} if isinstance(got, dict) else got)
    return out


def _check(out):
    from coursekit.bench import accelerated_paths

    five = {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"}

    def rule(cpu, gpus, int8_flags=five, f16c_counts=False, pick="best"):
        if EX1_GPUS[gpus]:
            caps = [g["capability"] for g in EX1_GPUS[gpus]]
            cap = {"best": max(caps, key=lambda c: tuple(int(v) for v in c.split("."))), "string": max(caps),
                   "first": caps[0]}[pick]
            cap = tuple(int(v) for v in cap.split("."))
            p = "int8" if cap >= (7, 5) else "fp16" if cap >= (7, 0) else "fp32"
            return {"device": "cuda", "runtime": "tensorrt", "precision": p}
        isa, arm = set(EX1_CASES[cpu]["isa"]), EX1_CASES[cpu]["arch"] in ("aarch64", "arm64")
        fp16 = bool(isa & {"avx512_fp16", "amx_fp16"}) or (arm and "asimd" in isa) or (f16c_counts and "f16c" in isa)
        p = "int8" if isa & int8_flags else "fp16" if fp16 else "fp32"
        return {"device": "cpu", "runtime": "onnxruntime", "precision": p}

    want = [rule(c, g) for c, g in EX1_PAIRS]
    for (cpu, gpus), w in zip(EX1_PAIRS, want):  # the rules agree with coursekit doctor's verdicts
        if not EX1_GPUS[gpus]:
            fast = {p.path: p.accelerated for p in accelerated_paths({"cpu": EX1_CASES[cpu], "cuda": []})}
            assert w["precision"] == ("int8" if fast["CPU INT8"] else "fp16" if fast["CPU FP16"] else "fp32")
    expect_equal(out, want, what=f"choose_runtime on {len(EX1_PAIRS)} hidden hardware reports", wrong={
        "capabilities compared as strings: '10.0' < '7.5' as text; compare (major, minor) numbers":
            [rule(c, g, pick="string") for c, g in EX1_PAIRS],
        "the first GPU, not the one with the highest capability": [rule(c, g, pick="first") for c, g in EX1_PAIRS],
        "INT8 needs VNNI / AMX-INT8 / Arm dot product, not just AVX2 or AVX-512":
            [rule(c, g, five | {"avx2", "avx512f"}) for c, g in EX1_PAIRS],
        "only avx512_vnni checked: avx_vnni, amx_int8, asimddp and i8mm are INT8 dot products too":
            [rule(c, g, {"avx512_vnni"}) for c, g in EX1_PAIRS],
        "f16c only converts FP16 to FP32: no native FP16 arithmetic":
            [rule(c, g, five, True) for c, g in EX1_PAIRS]})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 1 passed")

# %% [markdown]
# The rules are a starting point, not a verdict: they say where a speedup is *possible*. Only a measurement on
# the target says whether your graph gets it (section 6 and the benchmark in section 13).
#
# ## 3 · Export, and its four classic pitfalls <a id="onnx-export"></a>
#
# `torch.onnx.export` *traces* the model on an example input and writes a graph of standard, versioned ONNX
# operators plus the weights. `export.export_onnx(model, example, path)` does it in eval mode, marks the batch
# dimension dynamic and runs `onnx.checker`. Four things go wrong in practice; each is shown failing below.
#
# ### Opset: which operator versions the graph may use <a id="opsets"></a>
#
# Every ONNX file declares an **opset** per domain. Operators change between versions: `QuantizeLinear` /
# `DequantizeLinear` took per-tensor scales only in opset 10 and gained the `axis` attribute (per-channel scales)
# in opset 13. The opset must be one the *target* runtime supports: too old and the graph cannot express what you
# need, too new and an older runtime refuses the file. Both, live:

# %%
import re

import onnx.defs
import onnx.version_converter


def has_axis(op, version):
    return "axis" in onnx.defs.get_schema(op, version, "").attributes


first_axis = min(v for v in range(10, onnx.defs.onnx_opset_version() + 1) if has_axis("DequantizeLinear", v))
int8_model = onnx.load(str(int8_path))
print(f"our INT8 file: opset {int8_model.opset_import[0].version}; per-axis Q/DQ exists from opset {first_axis}; "
      f"this onnx package knows up to opset {onnx.defs.onnx_opset_version()}")
try:
    onnx.version_converter.convert_version(int8_model, 12)
except Exception as err:  # noqa: BLE001 (the point is the message)
    print("down-converting the per-channel INT8 model to opset 12 fails:", str(err).split("failed:")[-1].strip())
future = onnx.load(str(fp32_path))
future.opset_import[0].version = onnx.defs.onnx_opset_version() + 2  # a file from a runtime newer than yours
onnx.save(future, WORK / "future_opset.onnx")
try:
    ort.InferenceSession(str(WORK / "future_opset.onnx"), providers=["CPUExecutionProvider"])
except Exception as err:  # noqa: BLE001
    why = re.search(r"support for domain ai\.onnx is till opset \d+", str(err))
    print(f"ONNX Runtime {ort.__version__} refuses a file at opset {future.opset_import[0].version}:",
          why.group(0) if why else str(err)[:200])

# %% [markdown]
# ### Dynamic axes: a batch size frozen at export
#
# Tracing records shapes as constants unless you mark them dynamic. Export with a batch of 1 and no dynamic axis,
# and the file accepts exactly one image:

# %%
fixed_path = export.export_onnx(model, x_test[:1], WORK / "lenet_fixed_batch.onnx", dynamic_batch=False)
for path in (fixed_path, fp32_path):
    session = export.ort_session(path)
    try:
        out = export.ort_run(session, x_test[:8])
        print(f"{path.name}: input {session.get_inputs()[0].shape} -> batch of 8 runs, output {out.shape}")
    except Exception as err:  # noqa: BLE001
        print(f"{path.name}: input {session.get_inputs()[0].shape} -> batch of 8 fails: "
              f"{' '.join(str(err).split())[:110]}")

# %% [markdown]
# (A fixed shape is sometimes what you *want*: some accelerators compile faster kernels for static shapes. Then
# it is a decision written in the model card, and the server batches to exactly that size.)
#
# ### Fake-quant vs real INT8 graphs <a id="qdq"></a>
#
# Two files can both be called "the INT8 model" and be very different:
#
# * the **fake-quant export** of a QAT/PTQ torch model (chapters 02-03): FP32 weights, each followed by a
#   `QuantizeLinear -> DequantizeLinear` pair, activations too. ONNX Runtime folds the constant weight pairs when it
#   loads the file and fuses `DQ -> Conv -> Q` into integer kernels, but the *file* holds float weights;
# * **ONNX Runtime's own quantization** (`quantize_static`, QDQ format): INT8 weights stored as INT8 initializers,
#   each read by a lone `DequantizeLinear`; or the **QOperator** format, where the ops themselves are integer ops
#   (`QLinearConv`, `QGemm`, `MatMulInteger`).
#
# And a QDQ graph is only fast when the runtime *fuses* it: run it with graph optimisations off and every Q/DQ
# pair executes in float, slower than the FP32 model. Count and weigh the files:

# %%
from coursekit import quant

fq_model = quant.quantize_model(model, quant.QuantConfig(quantize_outputs=True), calibration)  # chapter 02
fq_path = export.export_onnx(fq_model, x_test[:1], WORK / "lenet_fakequant.onnx")
dyn_path = export.ort_quantize_dynamic(fp32_path, WORK / "lenet_dynamic.onnx")
for name, path in (("FP32", fp32_path), ("fake-quant export", fq_path), ("ORT static QDQ", int8_path),
                   ("ORT dynamic", dyn_path)):
    ops = export.op_counts(path)
    shown = {k: v for k, v in ops.items() if k in ("Conv", "Gemm", "QuantizeLinear", "DequantizeLinear",
                                                    "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear")}
    print(f"{name:18s} {export.file_size(path) / 1e3:6.1f} kB  {shown}")

# %% [markdown]
# ### ONNX Runtime's static quantization and its calibration reader <a id="ort-static"></a> <a id="calibration-reader"></a>
#
# `export.ort_quantize_static(fp32, out, batches)` wraps `onnxruntime.quantization.quantize_static`: it first runs
# `quant_pre_process` (shape inference and the graph fusions, so that Q/DQ pairs land where the runtime will fuse
# them), then feeds the calibration batches through a `CalibrationDataReader` whose `get_next()` returns
# `{input_name: array}` for one batch and `None` at the end, and collects activation ranges (MinMax by default;
# Entropy or Percentile on request). Its defaults are QDQ format, signed INT8 activations and weights (S8S8) and
# per-tensor weights; coursekit turns per-channel weights on. Dynamic quantization (`ort_quantize_dynamic`)
# needs no calibration: it quantizes activations per batch at run time, which pays off on MatMul-heavy models and
# not on small CNNs (the `DynamicQuantizeLinear` work is a large share of a small conv). Chapter 02 measures both.
#
# ### 4-bit weights: MatMulNBits, and which ops it touches <a id="ort-int4"></a>
#
# ONNX Runtime's 4-bit path (`MatMulNBits`, block-wise weights with per-block scales; `accuracy_level=4` makes
# the CPU kernel quantize activations to INT8 and use integer dot products) rewrites **MatMul** nodes only. A 2-D
# `nn.Linear` exports as `Gemm` and is left alone, so count the ops of *your* export before expecting a gain:

# %%
lin_model = build_model("linear_heavy").eval()
lin_path = export.export_onnx(lin_model, torch.randn(1, 1024), WORK / "linear_heavy_fp32.onnx")
print("linear_heavy exports as:", export.op_counts(lin_path), "-> MatMulNBits would find no MatMul to rewrite")

# %% [markdown]
# ### Unsupported operators <a id="unsupported-ops"></a>
#
# An export fails when an operator has no ONNX translation at the chosen opset. A model that computes an intensity
# histogram of its input inside `forward` (`torch.histc`) is a typical example:

# %%
import contextlib
import ctypes


class HistogramFeatures(nn.Module):
    """A feature extractor that calls torch.histc inside forward (no ONNX translation at opset 17)."""

    def forward(self, x):
        return torch.stack([torch.histc(row, bins=8, min=0.0, max=1.0) for row in x.flatten(1)])


@contextlib.contextmanager
def c_level_output_hidden():
    """A failing torchscript export also dumps its whole graph on the C-level stdout; hide it (Linux/macOS)."""
    try:
        libc = ctypes.CDLL(None)
        libc.fflush(None)
        saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    except (OSError, AttributeError, TypeError):  # no C library to flush (Windows): show everything
        yield
        return
    os.dup2(null, 1)
    try:
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def first_line(err):
    return f"{type(err).__name__}: " + str(err).strip().splitlines()[0]


try:
    with c_level_output_hidden():
        export.export_onnx(HistogramFeatures(), x_test[:2], WORK / "histogram.onnx")
except Exception as err:  # noqa: BLE001
    print(first_line(err))
# the classic case: a torch.ao dynamic-quantized model (packed-parameter ops that have no ONNX translation)
mlp = build_model("mlp", "digits").eval()
ao_int8 = torch.ao.quantization.quantize_dynamic(mlp, {nn.Linear}, dtype=torch.qint8)
try:
    with c_level_output_hidden():
        export.export_onnx(ao_int8, x_test[:2], WORK / "ao_dynamic.onnx")
except Exception as err:  # noqa: BLE001
    print(first_line(err))

# %% [markdown]
# The second failure is why this course quantizes *after* export: a torch.ao dynamic-quantized model cannot be
# exported, while the float model (or a fake-quant one, whose quantizers become Q/DQ pairs) can, and ONNX Runtime
# quantizes the file. The fixes for an unsupported op, from best to worst: move the step out of the graph (preprocess in the client, and ship that code
# with the model); rewrite it with supported ops (a histogram is a comparison and a sum); try the `dynamo`
# exporter or a newer opset; register a custom op, which then has to exist in *every* runtime you deploy to
# (Python, Java, the phone).
#
# ## 4 · Parity: is the exported model the model you validated? <a id="parity"></a>
#
# Run the same real inputs through the reference (torch) and the candidate (the ONNX file in ONNX Runtime) and
# compare two things:
#
# $$\text{max abs error} = \max_{i,j} \lvert y^{\text{ref}}_{ij} - y^{\text{cand}}_{ij} \rvert, \qquad
# \text{top-1 agreement} = \frac{1}{N}\sum_{i=1}^{N} \mathbb{1}\big[\arg\max_j y^{\text{ref}}_{ij} =
# \arg\max_j y^{\text{cand}}_{ij}\big].$$
#
# For an FP32 export the error is float rounding ($10^{-6}$ to $10^{-5}$ on logits of size 10) and the agreement is
# exactly 1: a tight *absolute* tolerance on the *maximum* catches a single broken output. The mean would hide it,
# and a relative error explodes on logits near zero. After INT8 quantization elementwise agreement is not
# expected any more: then the question becomes the task metric, the top-1 agreement with FP32, and the agreement
# *per class* (a 99% average can hide a class where a third of the decisions flipped).
#
# ### Exercise 2 · A parity check
#
# Write `parity_check(reference, candidate, atol=1e-4)`: two NumPy arrays of logits of shape `(N, classes)` (the
# reference model's and the exported model's outputs on the same inputs). Return a dict with
# `"max_abs_error"` (a float), `"top1_agreement"` (the fraction of rows whose argmax agrees, a float in [0, 1])
# and `"passed"`: `True` only when the max abs error is at most `atol` **and** every row's argmax agrees.

# %% solution="ex2_parity"
def parity_check(reference, candidate, atol=1e-4):
    """Max absolute error, top-1 agreement and a pass/fail verdict between two (N, classes) logit arrays."""
    ### BEGIN SOLUTION
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    max_err = float(np.abs(ref - cand).max())
    agreement = float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1)))
    return {"max_abs_error": max_err, "top1_agreement": agreement,
            "passed": bool(max_err <= atol and agreement == 1.0)}
    ### END SOLUTION

# %% tests="ex2_parity_tests" points=3
with torch.no_grad():
    ref_logits = model(x_test).numpy()
fp32_logits = export.ort_run(export.ort_session(fp32_path), x_test)
int8_logits = export.ort_run(export.ort_session(int8_path), x_test)
p32, p8 = parity_check(ref_logits, fp32_logits), parity_check(ref_logits, int8_logits)
print(f"torch vs ORT FP32: {p32}")
print(f"torch vs ORT INT8: {p8}")
expect_equal(p32["passed"], True, what="the FP32 export passes parity at atol 1e-4",
             wrong={"not passed: a relative error explodes on logits near zero; compare absolute errors": False})
expect_close(p8["max_abs_error"], float(np.abs(ref_logits.astype(np.float64) - int8_logits).max()), rtol=1e-9,
             what="max abs error, torch vs INT8",
             wrong={"mean instead of max: one bad output hides in the mean":
                    float(np.abs(ref_logits.astype(np.float64) - int8_logits).mean())})
expect_equal(p8["passed"], False, what="the INT8 model does not pass an FP32 parity tolerance",
             wrong={"argmax only: an INT8 model can agree on every class and still be far from FP32": True})
### BEGIN HIDDEN TESTS
import numpy as np

from coursekit.grading.sealed import expect_close, expect_equal, forbid, partial, sealed_test  # noqa: F811

# Wrong answers caught: mean abs error instead of max (case "one_spike"); relative error |a-b|/|a| instead of
# absolute ("large_logits", "near_zero"); argmax only, error ignored in "passed" ("agree_far"); error only,
# argmax ignored in "passed" ("tie_flip": a near-tie flips one row within atol); agreement as a count instead of a
# fraction; atol ignored (the default 1e-4 used: "loose_atol"); delegating to coursekit.export.parity /
# agreement_stats / parity_report or coursekit.metrics.count_agreeing (forbidden). Errors and "passed" earn
# separate credit.
EX2_CASES = ["one_spike", "large_logits", "near_zero", "agree_far", "tie_flip", "identical", "loose_atol"]


def _ex2_case(name):
    rng = np.random.default_rng(80 + EX2_CASES.index(name))
    ref = rng.normal(0, 3, size=(64, 10))
    cand = ref + rng.uniform(-2e-6, 2e-6, size=ref.shape)
    atol = 1e-4
    if name == "one_spike":
        cand[17, 3] += 5e-3
    elif name == "large_logits":
        ref *= 1e4
        cand = ref * (1 + 5e-7)
    elif name == "near_zero":
        ref[5, 2] = 1e-9
        cand[5, 2] = 5e-8
    elif name == "agree_far":
        cand = ref + 0.05 * np.sign(ref)
    elif name == "tie_flip":
        top = ref[9].argmax()
        other = (top + 1) % 10
        ref[9, other] = ref[9, top] - 2e-5
        cand[9] = ref[9]
        cand[9, other] = ref[9, top] + 2e-5
    elif name == "identical":
        cand = ref.copy()
    elif name == "loose_atol":
        cand[3, 3] += 3e-3
        atol = 1e-2
    return ref, cand, atol


def _probe():
    out = []
    with forbid("coursekit.export.parity", "coursekit.export.agreement_stats", "coursekit.export.parity_report",
                "coursekit.export.parity.agreement_stats", "coursekit.export.parity.parity_report",
                "coursekit.metrics.count_agreeing", exercise="Exercise 2"):
        for name in EX2_CASES:
            ref, cand, atol = _ex2_case(name)
            got = parity_check(ref.copy(), cand.copy(), atol=atol)
            out.append({k: got.get(k) for k in ("max_abs_error", "top1_agreement", "passed")}
                       if isinstance(got, dict) else got)
    return out


def _check(out):
    expect_equal(len(out), len(EX2_CASES), what="number of hidden cases")
    ok_err = ok_pass = True
    messages = []
    for name, got in zip(EX2_CASES, out):
        ref, cand, atol = _ex2_case(name)
        diff = np.abs(ref - cand)
        agree = float(np.mean(ref.argmax(1) == cand.argmax(1)))
        want_pass = bool(diff.max() <= atol and agree == 1.0)
        try:
            expect_close([got["max_abs_error"], got["top1_agreement"]], [float(diff.max()), agree], rtol=1e-6,
                         atol=1e-12, what=f"(max_abs_error, top1_agreement) on hidden case {name!r}", wrong={
                             "mean instead of max": [float(diff.mean()), agree],
                             "relative instead of absolute error": [float((diff / np.abs(ref)).max()), agree],
                             "agreement as a count, not a fraction": [float(diff.max()), agree * len(ref)]})
        except AssertionError as err:
            ok_err = False
            messages.append(str(err))
        try:
            expect_equal(got["passed"], want_pass, what=f"'passed' on hidden case {name!r}", wrong={
                "argmax only: the error must be within atol too": agree == 1.0,
                "the error only: every row's argmax must agree too": bool(diff.max() <= atol),
                "atol ignored (1e-4 used)": bool(diff.max() <= 1e-4 and agree == 1.0)} if
                name in ("agree_far", "tie_flip", "loose_atol") else None)
        except AssertionError as err:
            ok_pass = False
            messages.append(str(err))
    fraction, label = partial([(ok_err, "max_abs_error / top1_agreement"), (ok_pass, "passed")])
    return fraction, (label + ("; " + messages[0] if messages else "")) if label else None


sealed_test(_probe, _check, points=3)  # last expression: nbgrader reads a returned number as partial credit
### END HIDDEN TESTS

# %% [markdown]
# The library's version, `export.parity_report(model, path, inputs)`, adds the mean error and the agreement *per
# class the reference predicts* (`export.parity.format_parity` prints the worst classes first). On the INT8 model:

# %%
from coursekit.export.parity import format_parity, parity_report

print(format_parity(parity_report(model, int8_path, [x_test])))
for bs in (1, 7, 64):  # parity at several batch sizes: a dynamic axis that silently broke shows up here
    r = parity_report(model, fp32_path, [x_test[:bs]])
    print(f"FP32 export, batch {bs:2d}: max abs error {r['max_abs_error']:.1e}, agreement {r['top1_agreement']:.0%}")

# %% [markdown]
# ## 5 · What is in the graph: inspection and the model card <a id="model-card"></a>
#
# "INT8" on a file name proves nothing. The graph says which ops will run on integer kernels: a weight op
# (`Conv`, `Gemm`, `MatMul`) whose *weight* input comes out of a `DequantizeLinear` (QDQ format: the runtime fuses
# it into an integer kernel), or an integer op itself (`QLinearConv`, `QGemm`, `QLinearMatMul`, `ConvInteger`,
# `MatMulInteger`: QOperator and dynamic formats). Counting `QuantizeLinear` nodes counts *activation*
# quantizers, not layers; and a layer excluded from quantization can still read a dequantized *activation* while
# its weights stay float.
#
# ### Exercise 3 · The precision field of a model card
#
# Write `int8_weight_ops(path)`: load the ONNX file at `path` with `onnx.load` and return
# `{"int8": n, "float": m}`, where `n` counts the weight ops that run with INT8 weights and `m` those with float
# weights, by these rules: a `Conv`, `Gemm` or `MatMul` node counts as INT8 when its weight input (`node.input[1]`)
# is produced by a `DequantizeLinear` node, else as float; every node whose `op_type` is in
# `{"QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger"}` counts as INT8.

# %% solution="ex3_card"
def int8_weight_ops(path):
    """{"int8": weight ops with INT8 weights, "float": weight ops with float weights} of an ONNX file."""
    ### BEGIN SOLUTION
    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    counts = {"int8": 0, "float": 0}
    for node in graph.node:
        if node.op_type in ("QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger"):
            counts["int8"] += 1
        elif node.op_type in ("Conv", "Gemm", "MatMul"):
            src = producer.get(node.input[1])
            counts["int8" if src is not None and src.op_type == "DequantizeLinear" else "float"] += 1
    return counts
    ### END SOLUTION

# %% tests="ex3_card_tests" points=2
for name, path in (("FP32", fp32_path), ("fake-quant export", fq_path), ("ORT static QDQ", int8_path),
                   ("ORT dynamic", dyn_path)):
    print(f"{name:18s} {int8_weight_ops(path)}")
expect_equal(int8_weight_ops(fp32_path), {"int8": 0, "float": 5}, what="int8_weight_ops(FP32 LeNet)")
expect_equal(int8_weight_ops(int8_path), {"int8": 5, "float": 0}, what="int8_weight_ops(ORT static QDQ LeNet)",
             wrong={"you counted QuantizeLinear nodes (activation quantizers), not layers":
                    {"int8": export.op_counts(int8_path)["QuantizeLinear"], "float": 0}})
expect_equal(int8_weight_ops(dyn_path)["int8"], 5, what="INT8 weight ops of the dynamic-quantized LeNet",
             wrong={"ConvInteger / MatMulInteger are INT8 ops too": 0})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_equal, forbid, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: counting QuantizeLinear nodes; counting DequantizeLinear nodes (weights, biases and
# activations); counting DequantizeLinear nodes on initializers (weights *and* int32 biases); counting a weight op
# as INT8 when only its *activation* input is dequantized (the excluded layers of "exclude_last" and
# "exclude_two"); missing the QOperator / dynamic integer ops ("qoperator", "dynamic"); only DequantizeLinear
# of a stored int8 initializer accepted (misses the fake-quant export, whose weights pass Q -> DQ); delegating to
# coursekit.export.inspect.graph_summary / layer_precisions (forbidden).
EX3_VARIANTS = ["fp32", "static", "exclude_last", "exclude_two", "qoperator", "dynamic", "fakequant"]


def _ex3_files(folder):
    """The hidden ONNX files: an untrained seeded LeNet, exported and quantized seven ways (deterministic)."""
    import os

    import torch
    from onnxruntime.quantization import QuantFormat, quantize_static

    from coursekit import export, quant
    from coursekit.export.ort import _quiet, calibration_reader
    from coursekit.models import build_model

    torch.manual_seed(81)
    net = build_model("lenet", "digits").eval()
    calib = [torch.rand(16, 1, 8, 8) for _ in range(2)]
    fp = export.export_onnx(net, calib[0][:1], os.path.join(folder, "fp32.onnx"))
    files = {"fp32": fp, "static": export.ort_quantize_static(fp, os.path.join(folder, "static.onnx"), calib),
             "dynamic": export.ort_quantize_dynamic(fp, os.path.join(folder, "dynamic.onnx"))}
    for name, fmt, exclude in (("exclude_last", QuantFormat.QDQ, ["/classifier/classifier.5/Gemm"]),
                               ("exclude_two", QuantFormat.QDQ, ["/features/features.0/Conv",
                                                                 "/classifier/classifier.3/Gemm"]),
                               ("qoperator", QuantFormat.QOperator, [])):
        files[name] = os.path.join(folder, f"{name}.onnx")
        with _quiet():
            quantize_static(str(fp), files[name], calibration_reader(calib, "input"), quant_format=fmt,
                            nodes_to_exclude=exclude, per_channel=True)
    fq = quant.quantize_model(net, quant.QuantConfig(quantize_outputs=True), calib)
    files["fakequant"] = export.export_onnx(fq, calib[0][:1], os.path.join(folder, "fakequant.onnx"))
    return files


def _probe():
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        files = _ex3_files(folder)
        with forbid("coursekit.export.inspect.graph_summary", "coursekit.export.inspect.layer_precisions",
                    exercise="Exercise 3"):
            out = []
            for name in EX3_VARIANTS:
                got = int8_weight_ops(str(files[name]))
                out.append({"int8": got.get("int8"), "float": got.get("float")} if isinstance(got, dict) else got)
            return out


def _check(out):
    import tempfile

    import onnx

    from coursekit.export.inspect import layer_precisions

    want, q_nodes, dq_nodes, dq_inits, act_too, no_integer, stored_only = [], [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        files = _ex3_files(folder)
        for name in EX3_VARIANTS:
            layers = layer_precisions(files[name])  # coursekit's reading of the graph: the weight type per op
            n8 = sum(layer["weight"] != "float32" for layer in layers)
            want.append({"int8": n8, "float": len(layers) - n8})
            graph = onnx.load(str(files[name])).graph
            inits = {i.name for i in graph.initializer}
            ops = [n.op_type for n in graph.node]
            total = len(layers)
            q_nodes.append({"int8": ops.count("QuantizeLinear"), "float": total - min(total, ops.count(
                "QuantizeLinear"))})
            dq_nodes.append({"int8": ops.count("DequantizeLinear"), "float": 0})
            n_init = sum(n.op_type == "DequantizeLinear" and n.input[0] in inits for n in graph.node)
            dq_inits.append({"int8": n_init, "float": total - min(total, n_init)})
            n_act = sum(layer["weight"] != "float32" or layer["activation"] != "float32" for layer in layers)
            act_too.append({"int8": n_act, "float": total - n_act})
            n_qdq = sum(layer["format"] == "QDQ" and layer["weight"] != "float32" for layer in layers)
            no_integer.append({"int8": n_qdq, "float": total - n_qdq})
            producer = {o: n for n in graph.node for o in n.output}
            n_stored = sum(1 for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")
                           and producer.get(n.input[1]) is not None
                           and producer[n.input[1]].op_type == "DequantizeLinear"
                           and producer[n.input[1]].input[0] in inits) + \
                sum(layer["format"] == "QOperator" for layer in layers)
            stored_only.append({"int8": n_stored, "float": total - n_stored})
    expect_equal(out, want, what=f"int8_weight_ops on hidden LeNet files {EX3_VARIANTS}", wrong={
        "you counted QuantizeLinear nodes (activation quantizers), not weight ops": q_nodes,
        "you counted DequantizeLinear nodes (weights, biases and activations)": dq_nodes,
        "you counted DequantizeLinear nodes on initializers: the int32 biases have one too": dq_inits,
        "a dequantized *activation* does not make a layer INT8: look at the weight input (input[1])": act_too,
        "QLinearConv / QGemm / ConvInteger / MatMulInteger are INT8 ops too": no_integer,
        "a fake-quant export's weights pass QuantizeLinear -> DequantizeLinear: still INT8 weights": stored_only})


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 3 passed")

# %% [markdown]
# coursekit's `export.inspect.graph_summary(path)` reads the same graph (format, quantized ops, Q/DQ pairs,
# opset, initializer bytes) and `export.model_card.write_model_card(path, ...)` writes it beside the model as
# `<model>.card.json` (and a short `.md`), together with the accuracy, latency, size, the hardware it was
# measured on and the file's SHA-256:

# %%
from coursekit.export.model_card import format_model_card, read_model_card, write_model_card

for name, path in (("FP32", fp32_path), ("INT8", int8_path)):
    print(f"{name}: ops ORT runs at level 'basic' {export.optimized_op_counts(path, 'basic')}")
    print(f"{name}: ops ORT runs at level 'all'   {export.optimized_op_counts(path, 'all')}")
int8_session = export.ort_session(int8_path, threads=1)
lat = measure_latency({b: (lambda b=b: export.ort_run(int8_session, x_test[:b])) for b in (1, 64)}, repeats=10,
                      budget_s=0.2 if FAST else 0.5)
card_path = write_model_card(
    int8_path, model=model, dataset="sklearn digits 8x8, test split",
    accuracy={"test": float(np.mean(int8_logits.argmax(1) == y_test.numpy())), "fp32_reference": fp32_acc},
    latency_ms={f"ORT batch {b}, 1 thread, median": st.median_ms for b, st in lat.items()},
    calibration=f"{len(calibration)} training batches, MinMax, per-channel weights",
    parity=parity_report(model, int8_path, [x_test]), hardware=report)
card = read_model_card(card_path)  # verify=True: the card's SHA-256 must match the file beside it
print(format_model_card(card)[:1500])

# %% [markdown]
# ## 6 · Tuning the ONNX Runtime session <a id="threads"></a>
#
# Three options change a deployed model's speed without touching the model:
#
# * **`intra_op_num_threads`**: how many threads split one operator. The default `0` means "every core": right
#   for one process alone on a machine, wrong for a server running four worker processes on eight cores, where
#   each session would start eight threads and they would thrash the caches. Pin it so that
#   processes x threads <= physical cores, and pin it in benchmarks so that numbers are reproducible.
# * **`inter_op_num_threads`** and **`execution_mode`**: `ORT_PARALLEL` runs independent *branches* of the graph at
#   once on the inter-op pool; a chain such as LeNet has none, so sequential mode with one inter-op thread is
#   the right setting. (With `inter_op_num_threads = 1` ONNX Runtime runs sequentially even when asked for
#   parallel mode: `session.get_session_options()` then reports `ORT_SEQUENTIAL`. The sweep below gives
#   parallel mode two inter-op threads.)
# * **`graph_optimization_level`**: `ORT_DISABLE_ALL` runs the graph as exported; `BASIC` folds constants and
#   removes redundant nodes; `EXTENDED` adds the fusions, among them the one that turns `DQ -> Conv -> Q` into
#   `QLinearConv` and `DQ -> Gemm` into `QGemm`; `ALL` adds layout changes. Below `EXTENDED` a QDQ model
#   computes its Conv/Gemm in float (`export.optimized_op_counts(path, level)` shows the graph that really runs).
#
# Setting `OMP_NUM_THREADS` does **not** pin ONNX Runtime's default CPU build: it uses its own thread pool. Only
# the `SessionOptions` do.
#
# ### Exercise 4 · A session with pinned threads
#
# Write `pinned_session(path, threads)`: an `onnxruntime.InferenceSession` for the file at `path` on the CPU
# execution provider whose options say `intra_op_num_threads = threads`, `inter_op_num_threads = 1` and
# sequential execution (`ort.ExecutionMode.ORT_SEQUENTIAL`), with full graph optimisation
# (`ort.GraphOptimizationLevel.ORT_ENABLE_ALL`).

# %% solution="ex4_session"
def pinned_session(path, threads):
    """An ORT CPU session with `threads` intra-op threads, 1 inter-op thread, sequential, full optimisation."""
    ### BEGIN SOLUTION
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    ### END SOLUTION

# %% tests="ex4_session_tests" points=2
s = pinned_session(int8_path, 1)
opts = s.get_session_options()
print(f"intra {opts.intra_op_num_threads}, inter {opts.inter_op_num_threads}, {opts.execution_mode}, "
      f"{opts.graph_optimization_level}, providers {s.get_providers()}")
expect_equal(opts.intra_op_num_threads, 1, what="intra_op_num_threads of pinned_session(path, 1)",
             wrong={"0 means 'all cores': set SessionOptions.intra_op_num_threads (OMP_NUM_THREADS is not read)": 0})
expect_equal(str(opts.execution_mode), str(ort.ExecutionMode.ORT_SEQUENTIAL), what="execution mode")
expect_equal(export.ort_run(s, x_test[:4]).argmax(1).tolist(), int8_logits[:4].argmax(1).tolist(),
             what="the session runs the INT8 model")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_close, expect_equal, forbid, sealed_test  # noqa: F811 (hidden section)

# Wrong answers caught: OMP_NUM_THREADS / environment variables set instead of the options (intra stays 0);
# intra left at 0 ("all cores"); threads given to inter_op_num_threads instead; inter-op threads left at 0;
# parallel execution mode with more than one inter-op thread (with exactly one, ORT itself runs sequentially and
# reports ORT_SEQUENTIAL, so that setting is harmless and passes); optimisation disabled or basic; a session on another file (outputs compared); the
# threads argument ignored (3 threads asked in one case); delegating to coursekit.export.ort_session or
# coursekit.export.session.session_options (forbidden).
EX4_THREADS = [1, 2, 3]


def _ex4_file(folder):
    import os

    import torch

    from coursekit import export
    from coursekit.models import build_model

    torch.manual_seed(84)
    net = build_model("mlp", "digits").eval()
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(85))
    return export.export_onnx(net, x[:1], os.path.join(folder, "mlp.onnx")), net, x


def _probe():
    import tempfile

    out = []
    with tempfile.TemporaryDirectory() as folder:
        path, _, x = _ex4_file(folder)
        with forbid("coursekit.export.ort_session", "coursekit.export.ort.ort_session",
                    "coursekit.export.session.session_options", exercise="Exercise 4"):
            sessions = [pinned_session(str(path), n) for n in EX4_THREADS]
        for session in sessions:
            o = session.get_session_options()
            y = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
            out.append({"intra": o.intra_op_num_threads, "inter": o.inter_op_num_threads,
                        "mode": str(o.execution_mode), "level": str(o.graph_optimization_level),
                        "providers": list(session.get_providers()), "y": y})
    return out


def _check(out):
    import tempfile

    import onnxruntime as ort
    import torch

    with tempfile.TemporaryDirectory() as folder:
        _, net, x = _ex4_file(folder)
        with torch.no_grad():
            y = net(x).tolist()
    expect_equal([o["intra"] for o in out], EX4_THREADS, what=f"intra_op_num_threads for threads={EX4_THREADS}",
                 wrong={"0 = all cores: set SessionOptions.intra_op_num_threads, environment variables are not read":
                        [0, 0, 0], "the threads went to inter_op_num_threads": [0, 0, 0]})
    expect_equal([o["inter"] for o in out], [1, 1, 1], what="inter_op_num_threads (one: no parallel branches)",
                 wrong={"left at 0 (all cores)": [0, 0, 0], "threads given to inter-op": EX4_THREADS})
    expect_equal(sorted({o["mode"] for o in out}), [str(ort.ExecutionMode.ORT_SEQUENTIAL)], what="execution mode",
                 wrong={"parallel mode: a chain-shaped model has no branches to run in parallel":
                        [str(ort.ExecutionMode.ORT_PARALLEL)]})
    expect_equal(sorted({o["level"] for o in out}), [str(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)],
                 what="graph optimisation level")
    expect_equal([o["providers"][:1] for o in out], [["CPUExecutionProvider"]] * 3, what="execution provider")
    for o in out:
        expect_close(o["y"], y, rtol=1e-4, atol=1e-5, what="outputs of the session on the hidden model")


sealed_test(_probe, _check)
### END HIDDEN TESTS
print("Exercise 4 passed")

# %% [markdown]
# Now measure what the options do. The cell times the FP32 and INT8 LeNet and the Linear-heavy model (FP32 and
# dynamic INT8) at batch 1 and 64 for each combination of threads, optimisation level and execution mode, all
# variants of a model interleaved (`coursekit.bench.measure_latency`):

# %%
from coursekit.export.session import session_options

lin_int8 = export.ort_quantize_dynamic(lin_path, WORK / "linear_heavy_int8.onnx")
files = {"LeNet FP32": (fp32_path, x_test), "LeNet INT8": (int8_path, x_test),
         "Linear-heavy FP32": (lin_path, torch.randn(64, 1024)), "Linear-heavy INT8": (lin_int8, torch.randn(64, 1024))}
grid = [(t, lvl, mode) for t in (1, 2) for lvl in ("none", "all") for mode in ("sequential", "parallel")]
if FAST:  # fewer combinations and shorter timings: the same comparisons, noisier numbers
    grid = [(1, "none", "sequential"), (1, "all", "sequential"), (2, "all", "sequential"), (1, "all", "parallel")]
rows = []
for name, (path, data) in files.items():
    for batch in (1, 64):
        x = data[:batch].numpy()
        fns = {}
        for t, lvl, mode in grid:
            opts = session_options(t, lvl, mode, inter_threads=2 if mode == "parallel" else 1)
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            feed = {sess.get_inputs()[0].name: x}
            fns[(t, lvl, mode)] = lambda sess=sess, feed=feed: sess.run(None, feed)
        stats = measure_latency(fns, repeats=3 if FAST else 15, budget_s=0.05 if FAST else 0.5)
        for key, st in stats.items():
            rows.append((name, batch, *key, st.median_ms, st.min_ms))
print(f"{'model':18s} {'batch':>5} {'threads':>7} {'opt':>5} {'mode':>10} {'median ms':>10}")
for r in rows:
    print(f"{r[0]:18s} {r[1]:5d} {r[2]:7d} {r[3]:>5} {r[4]:>10} {r[5]:10.3f}")

# %%
def best_ms(name, batch, threads=1, opt="all", mode="sequential"):
    """The median of the one setting asked for (defaults: the pinned, optimised, sequential session)."""
    return next(r[5] for r in rows if r[:5] == (name, batch, threads, opt, mode))


noisy = sum(r[5] > 1.5 * r[6] for r in rows)
if noisy > len(rows) // 4:
    print(f"note: {noisy} of {len(rows)} timings have a median over 1.5x their fastest sample: other programs "
          f"shared the cores (load average {os.getloadavg()[0]:.1f}); small differences below are noise")


for name in ("LeNet INT8", "Linear-heavy INT8"):
    off, on = best_ms(name, 1, opt="none"), best_ms(name, 1, opt="all")
    print(f"{name}, batch 1: optimisation off {off:.3f} ms vs all {on:.3f} ms -> {off / on:.2f}x from the fusions")
for name in ("LeNet FP32", "Linear-heavy FP32"):
    for batch in (1, 64):
        one, two = best_ms(name, batch), best_ms(name, batch, threads=2)
        verdict = "helps" if two < 0.9 * one else "does not help" if two < 1.1 * one else "hurts"
        print(f"{name}, batch {batch:2d}: 2 threads {two:.3f} ms vs 1 thread {one:.3f} ms: a second thread {verdict}")
lp, ls = best_ms("LeNet FP32", 1, mode="parallel"), best_ms("LeNet FP32", 1)
print(f"LeNet FP32 batch 1, parallel vs sequential execution: {lp:.3f} vs {ls:.3f} ms (a chain has no branches)")
for batch in (1, 64):
    print(f"Linear-heavy, batch {batch}: INT8 {best_ms('Linear-heavy FP32', batch) / best_ms('Linear-heavy INT8', batch):.2f}x"
          f" faster than FP32; LeNet: {best_ms('LeNet FP32', batch) / best_ms('LeNet INT8', batch):.2f}x")

# %% [markdown]
# Compare your numbers with what the mechanics predict. A second thread can pay only where one operator is big
# enough to split (the Linear-heavy model, large batches); on the tiny LeNet at batch 1 waking a thread costs
# about as much as the work. Without graph optimisation the INT8 QDQ model runs its Q/DQ pairs in float. Parallel
# execution has nothing to overlap on a chain: at best it changes nothing, at worst its inter-op threads compete
# with the intra-op ones for the same cores. Where your numbers disagree, read the noise note above: on a shared
# machine timings need more repeats, which the `deploy` suite of section 13 takes.
#
# ## 7 · OpenVINO side by side; TensorRT <a id="tensorrt-openvino"></a>
#
# OpenVINO (Intel) reads the same ONNX file, converts it to its own representation, and picks kernels for Intel
# CPUs, GPUs and NPUs (VNNI/AMX for INT8 and BF16 on CPUs); it runs on AMD and Arm CPUs too. Its quantizer, NNCF,
# does post-training quantization of the same model. TensorRT (NVIDIA) builds an *engine* tuned for one GPU model
# and one TensorRT version, so the ONNX file stays the portable artifact and the engine is rebuilt per target.
# Same files, two runtimes, one thread each (OpenVINO pinned to FP32 inference so that it is compared with ORT's
# FP32, not with bfloat16 it may pick by itself on CPUs with BF16 instructions). The `deploy` suite of section 13
# adds the Linear-heavy model, NNCF's own INT8 quantization of the same model next to the course's PTQ, and a
# reading of the numbers:

# %%
from coursekit.export import openvino_run, openvino_session

runners = {"ORT FP32": export.ort_session(fp32_path), "ORT INT8 (QDQ)": export.ort_session(int8_path),
           "OpenVINO FP32": openvino_session(fp32_path), "OpenVINO, same INT8 file": openvino_session(int8_path)}


def run_any(runner, x):
    return openvino_run(runner, x) if hasattr(runner, "request") else export.ort_run(runner, x)


outs = {name: run_any(r, x_test) for name, r in runners.items()}
timed = measure_latency({(name, b): (lambda r=r, b=b: run_any(r, x_test[:b])) for name, r in runners.items()
                         for b in (1, 64)}, repeats=3 if FAST else 15, budget_s=0.05 if FAST else 0.5)
print(f"{'LeNet, 1 thread':26s} {'accuracy':>8} {'max |diff| vs ORT FP32':>22} {'batch 1 ms':>10} {'batch 64 ms':>11}")
for name, out in outs.items():
    print(f"{name:26s} {np.mean(out.argmax(1) == y_test.numpy()):8.1%} "
          f"{np.abs(out - outs['ORT FP32']).max():22.2e} {timed[(name, 1)].median_ms:10.3f} "
          f"{timed[(name, 64)].median_ms:11.3f}")
print("TensorRT / CUDA execution provider:", "available" if "CUDAExecutionProvider" in ort.get_available_providers()
      else "skipped: no CUDA device and provider on this machine (the deploy suite says the same)")

# %% [markdown]
# ## 8 · Serving: dynamic batching and the queueing picture <a id="batching"></a>
#
# A server receives requests one at a time, but the model is more efficient per row on a batch: a batch of $b$
# rows costs about $c(b) = c_0 + c_1 b$ (a fixed cost per call, $c_0$, and a cost per row, $c_1$), so full batches
# serve up to
#
# $$\text{throughput}_{\max}(b) = \frac{b}{c_0 + c_1 b} \;\xrightarrow{b\to\infty}\; \frac{1}{c_1}$$
#
# requests per unit time. A **dynamic batcher** (TensorFlow Serving, NVIDIA Triton, `coursekit serve`) holds
# requests in a queue and starts a batch when `max_batch` requests wait **or** the oldest has waited `max_wait`,
# whichever comes first, as soon as the model is free. A request's latency is
#
# $$T = \underbrace{W_{\text{batch}}}_{\le\, \text{max wait}} + \underbrace{W_{\text{queue}}}_{\text{model busy}}
# + c(b).$$
#
# At low load the batch rarely fills: each request pays the wait for nothing. At high load batches fill at once
# and the model is the bottleneck: as the utilisation $\rho = \lambda\, c(b)/b$ approaches 1 the queueing term grows
# without bound (for one server with fixed service time $S$, the M/D/1 queue: $T = S + \frac{\rho S}{2(1-\rho)}$).
# A bounded queue turns that unbounded latency into fast `503` answers instead. The compute curve of the INT8
# Linear-heavy model, measured here:

# %%
from coursekit.serve import queueing
from coursekit.serve.explore import batching_explorer, simulate_load

# The model the server will run: the Linear-heavy model in dynamic INT8, 2048 wide in full mode (4 GEMMs of
# 2048x2048: the model's time must be large next to the HTTP server's own cost per request for INT8 to matter).
SERVE_WIDTH = 1024 if FAST else 2048
if FAST:
    serve_fp32, serve_int8 = lin_path, lin_int8
else:
    wide = build_model("linear_heavy", input_shape=(SERVE_WIDTH,), width=SERVE_WIDTH).eval()
    serve_fp32 = export.export_onnx(wide, torch.randn(1, SERVE_WIDTH), WORK / "serve_fp32.onnx")
    serve_int8 = export.ort_quantize_dynamic(serve_fp32, WORK / "serve_int8.onnx")
serve_session = export.ort_session(serve_int8, threads=1)
x_rows = np.random.default_rng(0).standard_normal((64, SERVE_WIDTH)).astype(np.float32)
sizes = (1, 4, 16, 64) if FAST else (1, 2, 4, 8, 16, 32, 64)
timed = measure_latency({b: (lambda b=b: export.ort_run(serve_session, x_rows[:b])) for b in sizes},
                        repeats=5 if FAST else 15, budget_s=0.2 if FAST else 0.6)
curve = {b: timed[b].min_ms for b in sizes}  # compute time of one batch (fastest sample: the work itself), ms
c1 = (curve[64] - curve[1]) / 63
print("compute per batch (ms):", {b: round(ms, 3) for b, ms in curve.items()})
print(f"fit c(b) ~ {curve[1] - c1:.3f} + {c1:.4f} b ms; full batches of 64 serve up to "
      f"{queueing.throughput_per_s(curve)[64]:,.0f} requests/s, one at a time {queueing.throughput_per_s(curve)[1]:,.0f}/s")

# %% [markdown]
# Now the whole picture: Poisson arrivals (many independent clients) replayed through the batcher's rule with
# that measured compute curve (`serve.explore.simulate_load`: no clock, the same numbers on every run). Each
# curve is one `(max_batch, max_wait)` setting; moving right, the arrival rate grows:

# %%
capacity = queueing.throughput_per_s(curve)[64]
rates = np.linspace(capacity / 40, capacity * 0.98, 12 if FAST else 24)
settings = [(1, 0.0), (8, 1.0), (8, 5.0), (32, 1.0), (32, 5.0)]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
for max_batch, max_wait in settings:
    sims = [simulate_load(r, max_batch, max_wait, curve, n=4_000 if FAST else 20_000) for r in rates]
    served = [s_["throughput_per_s"] for s_ in sims]
    axes[0].plot(served, [s_["p99_ms"] for s_ in sims], "o-", ms=3, label=f"max batch {max_batch}, wait {max_wait:g} ms")
    axes[1].plot(rates, [s_["mean_batch"] for s_ in sims], "o-", ms=3)
axes[0].set_yscale("log")
axes[0].set_xlabel("throughput served (requests/s)")
axes[0].set_ylabel("p99 latency (ms)")
axes[0].legend(fontsize=7)
axes[1].set_xlabel("arrival rate (requests/s)")
axes[1].set_ylabel("mean batch size")
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the figure: without batching (max batch 1) the p99 shoots up once the arrival rate nears $1/c(1)$; a larger
# max batch pushes that wall to the right (more throughput) at the price of the wait at low load; a long max wait
# buys nothing at high load (the batch fills first) and costs latency at low load. `queueing.batching_latency`
# gives the closed form when requests arrive at even intervals (the dashed line in the explorer below).
#
# ### Exercise 5 · Latency arithmetic of a burst
#
# Write `burst_latency(n, max_batch, max_wait_ms, overhead_ms, per_row_ms)`: `n` requests arrive **together** at
# $t = 0$ at an idle server. The batcher starts a batch when `max_batch` requests are waiting, or when the oldest
# waiting request has waited `max_wait_ms`, and only when the model is free (one batch at a time; a batch takes at
# most `max_batch` requests). A batch of $b$ requests computes for `overhead_ms + b * per_row_ms`; every request of
# a batch finishes when its batch finishes. Return `{"batches": number of batches, "mean_ms": mean latency,
# "max_ms": largest latency}` (latency = finish time - arrival time).

# %% solution="ex5_burst"
def burst_latency(n, max_batch, max_wait_ms, overhead_ms, per_row_ms):
    """Batches, mean and max latency (ms) of n requests arriving together at an idle dynamic batcher."""
    ### BEGIN SOLUTION
    free, left, batches, latencies = 0.0, n, 0, []
    while left > 0:
        b = min(max_batch, left)
        start = free if b == max_batch else max(free, max_wait_ms)  # a partial batch waits for max_wait
        free = start + overhead_ms + b * per_row_ms
        latencies += [free] * b  # everyone arrived at t = 0
        left -= b
        batches += 1
    return {"batches": batches, "mean_ms": sum(latencies) / n, "max_ms": max(latencies)}
    ### END SOLUTION

# %% tests="ex5_burst_tests" points=3
got = burst_latency(10, 4, 5.0, 2.0, 0.5)
print(f"burst_latency(10 requests, max batch 4, max wait 5 ms, c(b) = 2 + 0.5 b ms) = {got}")
expect_equal(got["batches"], 3, what="number of batches for 10 requests, max batch 4",
             wrong={"floor(10 / 4) = 2 drops the last 2 requests: ceil": 2})
expect_close(got["mean_ms"], (4 * 4.0 + 4 * 8.0 + 2 * 11.0) / 10, what="mean latency",
             wrong={"latency is the batch's compute time, not its share per request (c(b)/b)":
                    (4 * 1.0 + 4 * 2.0 + 2 * 3.5) / 10,
                    "a request finishes with its whole batch, at start + c(b), not at start + c(b)/b":
                    (4 * 1.0 + 4 * 5.0 + 2 * 9.5) / 10})
got = burst_latency(3, 8, 5.0, 2.0, 0.5)
expect_close(got["max_ms"], 5.0 + 3.5, what="3 requests, max batch 8, max wait 5 ms: latency",
             wrong={"a partial batch waits max_wait_ms for more requests": 3.5})
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import expect_close, expect_equal, forbid, partial, sealed_test  # noqa: F811

# Wrong answers caught: the max wait forgotten (a partial batch started at once: cases with n < max_batch and
# with a partial batch that is ready before max_wait); latency divided by the batch size (c(b)/b per request);
# floor instead of ceil for the number of batches (the last partial batch dropped); the wait added to every batch;
# the wait counted from when the model becomes free instead of from the arrival; delegating to
# coursekit.serve.explore.simulate_batcher or coursekit.serve.queueing.batching_latency (forbidden).
# (n, max_batch, max_wait_ms, overhead_ms, per_row_ms); batches, mean and max earn separate credit.
EX5_CASES = [(10, 4, 5.0, 2.0, 0.5), (10, 4, 20.0, 2.0, 0.5), (3, 8, 4.0, 1.0, 0.25), (16, 4, 3.0, 1.5, 0.5),
             (1, 1, 10.0, 2.0, 1.0), (33, 8, 2.0, 0.5, 0.125), (7, 32, 0.0, 3.0, 0.1), (50, 16, 100.0, 4.0, 0.25)]


def _probe():
    out = []
    with forbid("coursekit.serve.explore.simulate_batcher", "coursekit.serve.explore.simulate_load",
                "coursekit.serve.queueing.batching_latency", exercise="Exercise 5"):
        for case in EX5_CASES:
            got = burst_latency(*case)
            out.append({k: got.get(k) for k in ("batches", "mean_ms", "max_ms")} if isinstance(got, dict) else got)
    return out


def _check(out):
    def schedule(n, b_max, wait, c0, c1, forget_wait=False, per_row=False, floor=False, wait_every=False,
                 wait_from_free=False):
        free, left, lat, batches = 0.0, n, [], 0
        while left > (b_max - 1 if floor else 0):
            b = min(b_max, left)
            if wait_every:
                start = free + wait
            elif b == b_max or forget_wait:
                start = free
            else:
                start = free + wait if wait_from_free else max(free, wait)
            free = start + c0 + c1 * b
            lat += [(start + (c0 + c1 * b) / b) if per_row else free] * b
            left -= b
            batches += 1
        return [batches, sum(lat) / max(len(lat), 1), max(lat, default=0.0)]

    want = [schedule(*c) for c in EX5_CASES]
    mistakes = {"the max wait forgotten: a partial batch waits until max_wait_ms after its oldest request arrived":
                {"forget_wait": True}, "latency is the batch's compute time, not c(b)/b": {"per_row": True},
                "floor instead of ceil: the last partial batch is a batch too": {"floor": True},
                "only a partial batch waits: full batches start at once": {"wait_every": True},
                "the wait counts from the arrival (t = 0), not from when the model is free": {"wait_from_free": True}}
    results = []
    for k, label in enumerate(("batches", "mean_ms", "max_ms")):
        got = [o[label] if isinstance(o, dict) else None for o in out]
        try:
            expect_close(got, [w[k] for w in want], rtol=1e-9, atol=1e-9, what=f"{label} on hidden bursts {EX5_CASES}",
                         wrong={m: [schedule(*c, **kw)[k] for c in EX5_CASES] for m, kw in mistakes.items()})
            results.append((True, label))
        except AssertionError as err:
            results.append((False, f"{label} ({err})"))
    return partial(results)


sealed_test(_probe, _check, points=3)  # last expression: nbgrader reads a returned number as partial credit
### END HIDDEN TESTS

# %% [markdown]
# **Explore.** Move max batch, max wait and the arrival rate; the plots redraw p50 and p99 against the arrival rate
# from the simulation (Poisson arrivals, your measured compute curve) and the closed form for evenly spaced
# arrivals (`coursekit.serve.explore.batching_explorer`, built on `coursekit.serve.queueing`):

# %%
batching_explorer(curve, n=2_000 if FAST else 5_000)

# %% [markdown]
# ### Exercise 6 · A server configuration that meets a p99 budget
#
# Product asks for **p99 <= 8 ms at 2,000 requests/s** on a model whose batch of $b$ rows computes for
# $c(b) = 0.95 + 0.25\,b$ ms (the curve `TARGET_CURVE` below: a fixed cost per call and a cost per row, the shape
# you measured above). Choose `max_batch` (an int, 1-64) and `max_wait_ms` (a float >= 0) and store them in
# `server_config = {"max_batch": ..., "max_wait_ms": ...}`. The grader replays 40,000 Poisson arrivals at 2,000/s
# through the batcher with its own random seed (a simulated server, no clock) and gives one point for a
# configuration whose full batches can keep up with the rate ($b / c(b) > \lambda$) and one for p99 <= 8 ms. Use
# the explorer or `simulate_load(2000, max_batch, max_wait_ms, TARGET_CURVE, seed=...)`: several seeds, and keep a
# margin.

# %%
TARGET_CURVE = {1: 1.2, 64: 16.95}  # c(b) = 0.95 + 0.25 b ms, linear between (and beyond) the two points
TARGET_RATE, TARGET_P99_MS = 2000.0, 8.0

# %% solution="ex6_config"
### BEGIN SOLUTION
server_config = {"max_batch": 16, "max_wait_ms": 1.0}
### END SOLUTION

# %% tests="ex6_config_tests" points=2
for seed in (1, 2, 3):
    sim = simulate_load(TARGET_RATE, server_config["max_batch"], server_config["max_wait_ms"], TARGET_CURVE, seed=seed)
    print(f"seed {seed}: p50 {sim['p50_ms']:.2f} ms, p99 {sim['p99_ms']:.2f} ms (budget {TARGET_P99_MS} ms), "
          f"mean batch {sim['mean_batch']:.1f}, served {sim['throughput_per_s']:,.0f}/s")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import partial, sealed_test  # noqa: F811 (hidden section: its own imports)

# Wrong answers caught: no batching (max batch 1: capacity 833/s < 2000/s, the queue grows without bound);
# max batch 2 (capacity 1379/s); max batch 4 (keeps up on paper, p99 ~50 ms: utilisation 0.97); a long max wait
# with big batches (32 and 10 ms: p99 ~18 ms); a config that is not a dict of numbers (scored 0).


def _probe():
    cfg = server_config if isinstance(server_config, dict) else {}
    return {"max_batch": cfg.get("max_batch"), "max_wait_ms": cfg.get("max_wait_ms")}


def _check(out):
    import math

    from coursekit.serve.explore import simulate_load
    from coursekit.serve.queueing import compute_ms_at

    curve, rate, budget = {1: 1.2, 64: 16.95}, 2000.0, 8.0
    b, w = out["max_batch"], out["max_wait_ms"]
    if not (isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 64):
        raise AssertionError(f"server_config['max_batch'] must be an int from 1 to 64, got {b!r}")
    if not (isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and 0 <= w <= 1000):
        raise AssertionError(f"server_config['max_wait_ms'] must be a number from 0 to 1000, got {w!r}")
    keeps_up = b * 1e3 / compute_ms_at(curve, b) > rate
    p99 = max(simulate_load(rate, b, float(w), curve, n=40_000, seed=s)["p99_ms"] for s in (8101, 8102))
    return partial([(keeps_up, f"full batches of {b} keep up with {rate:.0f}/s"),
                    (p99 <= budget, f"p99 {p99:.2f} ms <= {budget} ms")])


sealed_test(_probe, _check, points=2)  # last expression: nbgrader reads a returned number as partial credit
### END HIDDEN TESTS

# %% [markdown]
# ## 9 · The server and a real load test <a id="load-test"></a>
#
# `coursekit serve MODEL.onnx --max-batch 8 --max-wait-ms 2` runs the batcher behind HTTP (FastAPI on uvicorn,
# loopback only): `POST /predict` with `{"inputs": [[...], ...]}` answers `{"outputs": ..., "argmax": ...}`; a wrong
# shape, dtype, malformed JSON or an empty batch gets a `4xx` with a message; a full queue answers `503` with
# `Retry-After` instead of letting latency grow; `GET /health` and `GET /metrics` (batch-size histogram, queue
# depth, rejected requests, server-side p50/p95/p99); SIGTERM drains every accepted request before it stops.
#
# A load test asks the question a benchmark of the model cannot: what does a *user* see at a given load?
# `coursekit loadtest` drives locust (headless, in its own process) against the server and reports requests per
# second and p50/p95/p99 latency. The cell starts the server in a subprocess (as you would in production), runs a
# short test, and stops it:

# %%
from coursekit.serve.loadtest import load_test

duration = 2 if FAST else 6
runs = {}
if not FAST:  # FP32 vs INT8 on the same server settings (batches of up to 8, 2 ms wait), 16 closed-loop users
    for name, path in (("FP32", serve_fp32), ("INT8", serve_int8)):
        runs[name] = load_test(path, users=16, duration_s=duration, max_batch=8, max_wait_ms=2.0, queue_size=64)
# overload: 8x more users than the queue holds -> 503s; every accepted request must still be answered
runs["INT8 overload"] = load_test(serve_int8, users=32, duration_s=duration, max_batch=8, max_wait_ms=2.0,
                                  queue_size=4)
print(f"{'run':14s} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'mean batch':>10} {'503s':>5} "
      f"{'accepted':>8} {'answered':>8}")
for name, r in runs.items():
    print(f"{name:14s} {r['rps']:7.0f} {r['p50_ms']:7.1f} {r['p95_ms']:7.1f} {r['p99_ms']:7.1f} "
          f"{r['mean_batch_rows']:10.1f} {r['rejected_503']:5d} {r['accepted']:8d} {r['answered']:8d}")
over = runs["INT8 overload"]
print(f"overload: {over['rejected_503']} of {over['n']} requests got 503; accepted {over['accepted']}, answered "
      f"{over['answered']}: {'none lost' if over['accepted'] == over['answered'] else 'REQUESTS LOST'}")
if "FP32" in runs:
    print(f"INT8 served {runs['INT8']['rps'] / runs['FP32']['rps']:.2f}x the requests/s of FP32 "
          f"(p99 {runs['INT8']['p99_ms']:.1f} vs {runs['FP32']['p99_ms']:.1f} ms) with these settings, on this machine")

# %% [markdown]
# The same from a terminal, and the whole FP32-vs-INT8 sweep over batch settings (several minutes):
#
# ```bash
# coursekit serve model.onnx --max-batch 8 --max-wait-ms 2 --port 8000     # in one terminal
# coursekit loadtest http://127.0.0.1:8000 --users 16 --duration 10        # in another
# coursekit loadtest --sweep                                               # FP32 vs INT8, every setting
# ```
#
# Read the table with two facts in mind. The load generator runs on the same cores as the server, so both
# compete (on 2 cores that is a large effect: a load test from another machine measures the server alone). And
# with closed-loop users, requests in flight = users, so throughput x latency = users (Little's law): a faster
# model shows up as more requests per second *and* a lower latency. One more trap: *dynamic* INT8 picks its
# activation scale per batch, so a request's answer can change slightly with the requests that share its batch;
# where answers must be reproducible, serve a static (calibrated) INT8 model. In fast mode only the overload check
# runs (2 seconds); the FP32-vs-INT8 comparison needs the longer runs of full mode (this cell then takes about a
# minute: three servers and three locust processes start, on the same cores).

# %% [markdown]
# ## 10 · The same model from Java: DJL and Spring Boot <a id="java-djl"></a>
#
# Many production back ends are Java. The Deep Java Library (DJL) loads the *same* INT8 ONNX file with its ONNX
# Runtime engine: a `Criteria` says what to load (input/output Java types, the model path, the engine, a
# `Translator` that turns Java objects into tensors and back, session options), `loadModel()` returns a
# `ZooModel` (load it once, share it), and each thread takes its own `Predictor` (not thread-safe). The project
# in `deploy/java/` of the course repository does exactly this, with a CLI that runs the digits test set and a
# Spring Boot REST endpoint, and JUnit tests that the Java logits equal Python ONNX Runtime's on the whole test
# set. The loading code:

# %%
JAVA = Path(coursekit.__file__).resolve().parents[1] / "deploy" / "java"
SRC = JAVA / "src" / "main" / "java" / "io" / "coursekit" / "digits"


def java_snippet(file, start, max_lines=40):
    """The block of a Java file that starts at the first line containing `start` (up to its closing brace)."""
    lines = (SRC / file).read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(lines) if start in line)
    depth, seen = 0, False
    for end in range(first, min(first + max_lines, len(lines))):
        depth += lines[end].count("{") - lines[end].count("}")
        seen = seen or "{" in lines[end]
        if seen and depth <= 0 or (not seen and lines[end].rstrip().endswith(";")):
            break
    return f"// {file}, lines {first + 1}-{end + 1}\n" + "\n".join(lines[first:end + 1])


if SRC.is_dir():
    print(java_snippet("DigitsModel.java", "Criteria<float[][], DigitsPrediction> criteria"))
else:
    print(f"{JAVA} is not here (coursekit installed without the repository): clone the course repository to "
          "read and run the Java project")

# %% [markdown]
# The `Translator` is the contract between Java objects and tensors. Its input side packs a batch of rows into one
# tensor of the model's input shape; its output side reads the logits back. Preprocessing lives here, so this is
# where a Java client most often disagrees with Python (a missing normalisation shows up as a parity failure in the
# JUnit tests, not as a crash):

# %%
if SRC.is_dir():
    print(java_snippet("DigitsTranslator.java", "public NDList processInput"))
    print(java_snippet("DigitsTranslator.java", "public DigitsPrediction processOutput"))

# %% [markdown]
# The Spring Boot side is a controller: `POST /predict` takes `{"inputs": [[64 numbers], ...]}` and answers logits
# and classes; bad input gets `400` with a message. The model is one Spring bean (loaded once); each request gets its
# own `Predictor`:

# %%
if SRC.is_dir():
    print(java_snippet("PredictController.java", "@PostMapping"))

# %% [markdown]
# To build and run it you need Java 17 and Maven (`apt install openjdk-17-jdk maven` on Debian/Ubuntu, or
# `brew install openjdk@17 maven`, or SDKMAN). The Python side writes the fixture the Java code reads (the INT8
# digits model, the test set, and ONNX Runtime's logits for it): `coursekit.serve.fixture.export_java_fixture(dir)`.
# Then, in `deploy/java/`:
#
# ```bash
# mvn -B test                      # JUnit: Java logits == Python ORT logits (1e-4), top-1 identical; REST tests
# mvn -B -DskipTests package       # builds target/coursekit-digits.jar
# java -jar target/coursekit-digits.jar evaluate --fixture build/fixture --threads 1   # accuracy, p50/p99
# java -Dcoursekit.fixture=build/fixture -jar target/coursekit-digits.jar   # Spring Boot REST, POST /predict
# ```
#
# The cell below says what your machine has; set `RUN_JAVA = True` to build and run the evaluation from here
# (the first Maven build downloads DJL, ONNX Runtime and Spring Boot from Maven Central: minutes).

# %%
RUN_JAVA = False  # set to True to build and run the Java CLI (needs java 17+ and mvn on PATH)
have = {tool: shutil.which(tool) for tool in ("java", "mvn")}
print({tool: path or "not installed" for tool, path in have.items()})
if RUN_JAVA and all(have.values()) and SRC.is_dir():
    import subprocess

    from coursekit.serve.fixture import export_java_fixture

    fixture = export_java_fixture(JAVA / "build" / "fixture")
    subprocess.run(["mvn", "-B", "-q", "-DskipTests", "package"], cwd=JAVA, check=True)
    subprocess.run(["java", "-jar", "target/coursekit-digits.jar", "evaluate", "--fixture", "build/fixture"],
                   cwd=JAVA, check=True)
elif not all(have.values()):
    print("to run the Java part: install Java 17 and Maven (apt install openjdk-17-jdk maven), then the commands above")

# %% [markdown]
# ## 11 · The edge: cloud-trained, INT8, offline <a id="edge"></a>
#
# The last deployment target has no network at all: a camera in a factory, a phone in airplane mode, a sensor in a
# field. The workflow is the one of this chapter, with three constraints added:
#
# 1. **Train in the cloud, ship one file.** The device gets the INT8 ONNX file, its model card and the
#    preprocessing code, nothing else; the card's SHA-256 says which model a device runs when a report comes back.
# 2. **Full-integer, static quantization.** Many NPUs and DSPs execute integer ops only: every scale must be fixed
#    offline (static calibration), and an op the accelerator lacks falls back to the CPU with a copy each way.
# 3. **No connectivity, by design.** Inference on the device keeps the data there (images of people, medical
#    readings: privacy by architecture, not by policy), works without a network and has no round trip. It also
#    means nothing can be fixed remotely in a hurry: validate *before* shipping, and give the device a way to
#    report parity failures later.
#
# For phones the same model goes through a mobile runtime: ONNX Runtime Mobile (a reduced build that contains only
# the operators your model uses), LiteRT (formerly TensorFlow Lite) or ExecuTorch (PyTorch's on-device runtime).
# Here the check that the INT8 file runs with nothing but ONNX Runtime and NumPy, from the file alone, and what it
# costs to store:

# %%
import subprocess
import sys

device_dir = WORK / "device"  # what ships to the device: the model file and its inputs, nothing else
device_dir.mkdir(exist_ok=True)
shutil.copy(int8_path, device_dir / "model.onnx")
np.save(device_dir / "images.npy", x_test.numpy())
on_device = """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession('model.onnx', providers=['CPUExecutionProvider'])
y = s.run(None, {s.get_inputs()[0].name: np.load('images.npy')})[0]
np.save('predictions.npy', y.argmax(1))
print('torch imported:', 'torch' in sys.modules)
"""
run = subprocess.run([sys.executable, "-c", on_device], check=True, cwd=device_dir, capture_output=True, text=True, timeout=120)
device_pred = np.load(device_dir / "predictions.npy")
print(run.stdout.strip(), f"| the device's predictions equal the INT8 model's here: "
      f"{np.array_equal(device_pred, int8_logits.argmax(1))} | accuracy {np.mean(device_pred == y_test.numpy()):.1%}")
print(f"file to ship: FP32 {export.file_size(fp32_path) / 1e3:.1f} kB -> INT8 {export.file_size(int8_path) / 1e3:.1f} kB")

# %% [markdown]
# ## 12 · Energy is a cost too <a id="energy"></a>
#
# A served model is paid for in joules as well as milliseconds, and on a battery the joules decide. CPUs from Intel
# (Sandy Bridge on) and AMD (Zen on) count the energy of each package in RAPL registers, which Linux exposes under
# `/sys/class/powercap/intel-rapl*`; the energy of some work is the counter difference around it. Those files are
# often readable by root only, and virtual machines hide them; then `coursekit.bench.energy.measure_energy`
# **estimates** instead, as the power share of the busy cores times the CPU time ($E \approx
# \frac{\text{TDP}}{\text{cores}}\, t_{\text{CPU}}$), and labels the result so: an estimate ranks variants measured
# the same way, it is not a measurement.

# %%
from coursekit.bench import energy

n_calls = 200 if FAST else 1_000
feed = {name: (export.ort_session(path, threads=1), x_test[:64].numpy())
        for name, path in (("FP32", fp32_path), ("INT8", int8_path))}
used = {name: energy.measure_energy(lambda s=s, x=x: export.ort_run(s, x), calls=n_calls)
        for name, (s, x) in feed.items()}
for name, e in used.items():
    print(f"LeNet {name}, batch 64: {e.joules_per_call * 1e3 / 64:.4f} mJ per image over {e.seconds:.2f} s "
          f"[{e.source}: {e.note}]")
ratio = used["FP32"].joules / used["INT8"].joules
print(f"INT8 uses {ratio if ratio >= 1 else 1 / ratio:.2f}x {'less' if ratio >= 1 else 'more'} energy per image "
      f"than FP32 here ({'measured' if used['INT8'].source == 'rapl' else 'estimated from CPU time'})")

# %% [markdown]
# When RAPL is not readable, the estimate follows the CPU time, so its ratio is the speed ratio: it cannot show the
# real extra saving of INT8 (fewer bytes moved from memory costs less energy per operation). Where the counters
# are readable (`sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj` on your own Linux machine), rerun and
# compare.
#
# ## 13 · Benchmark: your hardware (the `deploy` suite) <a id="benchmark"></a>
#
# The cell below runs `coursekit bench --suite deploy`: ONNX Runtime and OpenVINO on the same FP32 and QDQ-INT8
# ONNX files (the digits LeNet and the Linear-heavy model) at batch 1 and 64 on one pinned thread, NNCF's INT8
# next to the course's own PTQ (accuracy and speed), the session-option sweep, and the CUDA / TensorRT rows, which
# run when a GPU is present and otherwise say that they were skipped. The reading is generated from *your* numbers.
# (Full mode: about a minute; it trains the Linear-heavy model on digits once, then the checkpoint is cached.)

# %%
from coursekit.suites import run_suite
from coursekit.suites.deploy import reading

result = run_suite("deploy", fast=FAST, progress=False)
print(reading(result["records"]))

# %% [markdown]
# ## 14 · Common mistakes <a id="mistakes"></a>
#
# * **Testing the export only at batch 1.** A frozen batch dimension or a mis-traced reshape shows up at the
#   second batch size; check parity at several.
# * **Calling a QDQ graph "INT8" without reading it.** Count the weight ops with INT8 weights (section 5), and
#   run with graph optimisation on: unfused Q/DQ pairs run in float, slower than FP32.
# * **Comparing INT8 with FP32 by `allclose`.** Quantization error is expected; validate the task metric, the
#   top-1 agreement and the per-class agreement instead, and keep the FP32 export as the reference.
# * **Leaving ONNX Runtime at all cores in a multi-process server** (or setting `OMP_NUM_THREADS` and believing
#   it pins ORT): processes x threads must fit the physical cores.
# * **Picking INT8 or FP16 from a data sheet.** Without VNNI/AMX (or Arm dot product) INT8 saves memory and little
#   time; `f16c` only converts. Run `coursekit doctor` and measure on the target.
# * **Tuning the batcher on the mean.** Users feel the p99; a long max wait costs latency at low load and a
#   server near full utilisation has an unbounded tail. Bound the queue and return 503s.
# * **Load testing from the same cores as the server, or without a time bound.** The load generator competes
#   with the server; say so next to the numbers, or use another machine.
# * **Serving dynamic INT8 where answers must be reproducible.** Its activation scale is computed per batch, so
#   a request's output depends on its batch neighbours; static INT8 does not have this problem.
# * **Different preprocessing in each client.** The Java, Python and device clients must normalise inputs the
#   same way; parity tests per client catch it.
# * **Poor deployment testing.** Everything above is a test that belongs in CI: parity, graph inspection,
#   latency on the target, a load test, the client tests.
#
# ## 15 · Interview questions <a id="interview"></a>
#
# Practise with the quiz below (immediate feedback and explanations), or in a terminal with
# `coursekit drill --chapter 08`. The graded questions further down are left out of the practice quiz.

# %% locked="quiz_ids"
from coursekit import quiz

QUIZ_IDS = ["ch08-dynamic-axes", "ch08-qdq-vs-qoperator", "ch08-parity-check", "ch08-thread-settings",
            "ch08-hardware-support", "ch08-batch-capacity", "ch08-djl-threads"]
quiz.show(chapter="08", n=6, exclude=QUIZ_IDS)

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
    "ch08-dynamic-axes": "D",
    "ch08-qdq-vs-qoperator": "B",
    "ch08-parity-check": "D",
    "ch08-thread-settings": "C",
    "ch08-hardware-support": "A",
    "ch08-batch-capacity": 1333.33,
    "ch08-djl-threads": "A",
}
### END SOLUTION

# %% tests="quiz_answers_tests" points=7
# One point per question. Visible: which questions you have not answered yet.
unanswered = [qid for qid in QUIZ_IDS if not isinstance(answers, dict) or qid not in answers]
print("not answered yet: " + ", ".join(unanswered) if unanswered else "all questions answered")
### BEGIN HIDDEN TESTS
from coursekit.grading.sealed import sealed_quiz

# one point per question; the returned number is nbgrader's partial credit
sealed_quiz(["ch08-dynamic-axes", "ch08-qdq-vs-qoperator", "ch08-parity-check", "ch08-thread-settings",
             "ch08-hardware-support", "ch08-batch-capacity", "ch08-djl-threads"])
### END HIDDEN TESTS

# %% [markdown]
# ## Summary
#
# * Deployment is a pipeline of changes, each followed by its check: parity after export, accuracy and agreement
#   after quantization, graph inspection, latency on the target, a load test, parity from every client.
# * Choose the runtime and precision from what the hardware accelerates (`coursekit doctor`), then measure.
# * Export pitfalls are concrete: the opset, dynamic axes, fake-quant vs real INT8 graphs, unsupported ops.
# * ONNX Runtime: pin intra-op threads, one inter-op thread, sequential mode for chains, full graph optimisation.
# * A dynamic batcher trades a bounded wait for throughput; the p99 is set by the wait at low load and by queueing
#   near full utilisation; a bounded queue answers 503 instead of letting latency explode.
# * The same INT8 file runs from Python, OpenVINO, Java (DJL) and an offline device; the model card says what it
#   is, how good and how fast it was, and on what hardware.
#
# Next: **09 · The capstone pipeline**.
