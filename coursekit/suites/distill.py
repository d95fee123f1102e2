"""The ``distill`` suite: teacher vs student from scratch vs distilled student (Hinton et al. 2015).

Models (MNIST-1D, Greydanus & Kobak 2020): the teacher is the 1D CNN with 64 channels (``cnn1d``, 28,298
parameters), the student the MLP with two hidden layers of 32 units (``mlp1d``, 2,698 parameters: 10.5x fewer).

Two settings, each over ``SEEDS`` (mean and spread):

* **(a) transfer set** (``transfer_experiment``): the student gets ``N_LABELS`` labelled examples plus
  ``N_UNLABELED`` unlabelled inputs that the teacher labels softly (``coursekit.train.transfer``). Baseline: the
  same student trained on the labels alone. Target: the distilled student gains >= 8 points.
* **(b) same data** (``same_data_experiment``): student and distilled student both see the full labelled training
  split; several (T, alpha); on MNIST-1D and on the digits (LeNet teacher, 21,408 parameters, vs an MLP with 16
  hidden units, 1,210). Whether distillation helps here is reported as measured (often it does not).

Latency: teacher and student exported to ONNX and timed in ONNX Runtime at batch 1 and 256 (``latency_records``).
Targets: the student >= 1.5x faster at batch 1 and >= 5x at batch 256. ``reading`` says whether each gain exceeds
the seed-to-seed spread, from the measured numbers only. Trained students are cached (``cached_student``).
"""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from coursekit._env import fast_mode
from coursekit.bench import make_record, measure_latency, serialized_size
from coursekit.suites import SuiteContext, register

TEACHER = ("cnn1d", {"channels": 64})
STUDENT = ("mlp1d", {"hidden": 32})
DATASET = "mnist1d"
# (teacher, student) per dataset; digits (same-data setting only): LeNet 21,408 vs an MLP with one hidden layer of
# 16 units, 1,210 parameters (17.7x fewer).
PAIRS = {"mnist1d": (TEACHER, STUDENT), "digits": (("lenet", {}), ("mlp", {"hidden": (16,)}))}
N_LABELS, N_UNLABELED = 800, 8000
SEEDS = (0, 1, 2)
KD = {"T": 2.0, "alpha": 1.0, "lr": 3e-3, "batch_size": 128}
EPOCHS = {"kd": {"full": 30, "fast": 15}, "scratch": {"full": 150, "fast": 150}, "same": {"full": 60, "fast": 30}}
SAME_DATA_GRID = ((1.0, 0.5), (2.0, 0.5), (4.0, 0.5), (4.0, 0.9))
SAME_DATA_GRID_FAST = ((1.0, 0.5), (4.0, 0.9))   # fast mode: the two ends of the full grid
BATCHES = (1, 256)
TARGETS = {"gain_pt": 8.0, "speedup_batch1": 1.5, "speedup_batch256": 5.0}


def _fast(fast):
    return fast_mode() if fast is None else bool(fast)


def teacher_model(seed: int = 0, fast: bool | None = None, progress: bool = False, dataset: str = DATASET):
    """The cached reference teacher of ``dataset`` (``coursekit.train.pretrained``), eval mode on CPU."""
    from coursekit.train import pretrained

    name, kwargs = PAIRS[dataset][0]
    return pretrained(name, dataset, seed=seed, fast=_fast(fast), progress=progress, **kwargs)


def _loader(dataset, batch_size: int, seed: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))


def scratch_student(dataset, *, seed: int = 0, epochs: int = 150, lr: float = 3e-3, tag: str = "labels",
                    fast: bool | None = None, progress: bool = False, dataset_name: str = DATASET):
    """The student of ``dataset_name`` trained with cross-entropy on ``dataset`` alone (cached)."""
    from coursekit.train import fit
    from coursekit.train.distill import cached_student

    recipe = {"kind": "scratch", "data": tag, "n": len(dataset), "epochs": epochs, "lr": lr, "batch_size": 64}
    name, kwargs = PAIRS[dataset_name][1]
    return cached_student(name, dataset_name, recipe, lambda m: fit(
        m, _loader(dataset, 64, seed), epochs=epochs, lr=lr, device="cpu", progress=progress,
        desc="student (labels)"), seed=seed, fast=fast, **kwargs)


def distilled_student(dataset, teacher, *, seed: int = 0, T: float = KD["T"], alpha: float = KD["alpha"],
                      epochs: int = 30, lr: float = KD["lr"], tag: str = "transfer", fast: bool | None = None,
                      progress: bool = False, dataset_name: str = DATASET):
    """The student distilled from ``teacher`` on ``dataset`` (rows labelled ``UNLABELED`` get soft targets only)."""
    from coursekit.train.distill import cached_student, distill

    recipe = {"kind": "kd", "data": tag, "n": len(dataset), "teacher": teacher.checkpoint_info.get("file"),
              "T": T, "alpha": alpha, "epochs": epochs, "lr": lr, "batch_size": KD["batch_size"]}
    name, kwargs = PAIRS[dataset_name][1]
    return cached_student(name, dataset_name, recipe, lambda m: distill(
        m, teacher, _loader(dataset, KD["batch_size"], seed), T=T, alpha=alpha, epochs=epochs, lr=lr,
        device="cpu", progress=progress, desc=f"distill T={T}"), seed=seed, fast=fast, **kwargs)


def _accuracy(model, dataset) -> float:
    from coursekit.train import evaluate

    return evaluate(model, DataLoader(dataset, batch_size=512))["accuracy"]


def transfer_experiment(seed: int = 0, fast: bool | None = None, n_labels: int = N_LABELS,
                        n_unlabeled: int = N_UNLABELED, progress: bool = False) -> dict:
    """Setting (a) for one seed: test accuracy of teacher, student on labels alone, distilled student."""
    from coursekit.train.transfer import transfer_set

    fast = _fast(fast)
    mode = "fast" if fast else "full"
    data = transfer_set(n_labels, n_unlabeled, seed=seed)
    teacher = teacher_model(0, fast)
    scratch = scratch_student(data["labeled"], seed=seed, epochs=EPOCHS["scratch"][mode], fast=fast,
                              progress=progress)
    kd = distilled_student(data["combined"], teacher, seed=seed, epochs=EPOCHS["kd"][mode], fast=fast,
                           progress=progress)
    return {"seed": seed, "teacher": _accuracy(teacher, data["test"]), "scratch": _accuracy(scratch, data["test"]),
            "distilled": _accuracy(kd, data["test"]), "n_labels": n_labels, "n_unlabeled": n_unlabeled,
            "models": {"teacher": teacher, "scratch": scratch, "distilled": kd}}


def same_data_experiment(seed: int = 0, fast: bool | None = None, grid=None, progress: bool = False,
                         dataset: str = DATASET) -> dict:
    """Setting (b) for one seed: student with CE vs distilled students on the same labelled training split.

    ``grid``: (T, alpha) pairs; default ``SAME_DATA_GRID`` (``SAME_DATA_GRID_FAST`` in fast mode). ``dataset``:
    "mnist1d" or "digits" (its own teacher/student pair, ``PAIRS``)."""
    from coursekit.data import load_dataset

    fast = _fast(fast)
    grid = grid or (SAME_DATA_GRID_FAST if fast else SAME_DATA_GRID)
    mode = "fast" if fast else "full"
    train = load_dataset(dataset, "train", seed=seed, fast=fast)
    test = load_dataset(dataset, "test", seed=seed, fast=fast)
    # digits' test split depends on the seed: its teacher is trained on the same seed's split (no test leak);
    # MNIST-1D's test set is fixed, so one teacher (seed 0) serves every seed.
    teacher = teacher_model(seed if dataset == "digits" else 0, fast, dataset=dataset)
    epochs = EPOCHS["same"][mode]
    out = {"seed": seed, "teacher": _accuracy(teacher, test),
           "scratch": _accuracy(scratch_student(train, seed=seed, epochs=epochs, tag="same", fast=fast,
                                                progress=progress, dataset_name=dataset), test)}
    for T, alpha in grid:
        model = distilled_student(train, teacher, seed=seed, T=T, alpha=alpha, epochs=epochs, tag="same",
                                  fast=fast, progress=progress, dataset_name=dataset)
        out[f"T={T:g},alpha={alpha:g}"] = _accuracy(model, test)
    return out


def shift_class_bias(model, class_index: int, delta: float):
    """A copy of ``model`` whose last Linear layer's bias for ``class_index`` is raised by ``delta``."""
    import copy

    from coursekit.surgery import LINEAR_TYPES, named_layers

    out = copy.deepcopy(model)
    _, last = named_layers(out, types=LINEAR_TYPES)[-1]
    with torch.no_grad():
        last.bias[class_index] += delta
    return out


def omitted_class_experiment(omit: int = 3, seed: int = 0, fast: bool | None = None,
                             deltas=tuple(x / 4 for x in range(41)), progress: bool = False) -> dict:
    """Hinton et al. (2015), sec. 3: distil on a transfer set with no example of class ``omit`` (labelled or
    not), then raise that class's output bias by the ``delta`` that maximises *validation* accuracy.

    Returns the test accuracy overall and on the omitted class, before and after the correction, and the delta.
    """
    from coursekit.train import evaluate
    from coursekit.train.transfer import transfer_set

    fast = _fast(fast)
    data = transfer_set(N_LABELS, N_UNLABELED, seed=seed, omit_class=omit)
    teacher = teacher_model(0, fast)
    student = distilled_student(data["combined"], teacher, seed=seed, epochs=EPOCHS["kd"]["fast" if fast else "full"],
                                tag=f"omit{omit}", fast=fast, progress=progress)
    val, test = (DataLoader(data[k], batch_size=512) for k in ("val", "test"))
    best = max(deltas, key=lambda d: (evaluate(shift_class_bias(student, omit, d), val)["accuracy"], -d))
    before, after = evaluate(student, test), evaluate(shift_class_bias(student, omit, best), test)
    return {"omit": omit, "seed": seed, "delta": best, "accuracy_before": before["accuracy"],
            "accuracy_after": after["accuracy"], "omitted_before": before["per_class"][omit],
            "omitted_after": after["per_class"][omit], "teacher_omitted": evaluate(teacher, test)["per_class"][omit],
            "model": student}


def mean_spread(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def latency_records(models: dict, ctx: SuiteContext, batches=BATCHES) -> list[dict]:
    """ONNX Runtime latency of each model at each batch size (interleaved per batch), with size and parameters."""
    from coursekit.export import export_onnx, file_size, ort_session
    from coursekit.models import count_parameters

    records = []
    example = torch.randn(1, 1, 40)
    with tempfile.TemporaryDirectory() as tmp:
        sessions, sizes = {}, {}
        for name, model in models.items():
            path = export_onnx(model, example, Path(tmp) / f"{name}.onnx")
            sessions[name], sizes[name] = ort_session(path, threads=ctx.threads), file_size(path)
        for batch in batches:
            x = torch.randn(batch, 1, 40, generator=torch.Generator().manual_seed(batch)).numpy()
            calls = {n: (lambda s=s, x=x: s.run(None, {s.get_inputs()[0].name: x})) for n, s in sessions.items()}
            stats = measure_latency(calls, repeats=ctx.repeats, threads=ctx.threads,
                                    budget_s=1.0 if ctx.fast else 3.0)
            for name, model in models.items():
                records.append(make_record(f"{name}", "ort_fp32", device="cpu", batch=batch, threads=ctx.threads,
                                           stats=stats[name], size_bytes=sizes[name],
                                           parameters=count_parameters(model),
                                           torch_bytes=serialized_size(model), kind="latency"))
    return records


@register("distill", "Knowledge distillation on MNIST-1D: transfer set and same data, 3 seeds, ORT latency")
def distill_suite(ctx: SuiteContext) -> list[dict]:
    ctx.require_cpu("distill", "trains and times on CPU (the models are tiny)")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(ctx.threads)
    try:
        return _run(ctx)
    finally:
        torch.set_num_threads(previous_threads)


def _run(ctx: SuiteContext) -> list[dict]:
    records = []
    models = None
    for seed in SEEDS:
        r = transfer_experiment(seed, ctx.fast, progress=ctx.progress)
        models = models or r.pop("models")
        r.pop("models", None)
        for variant in ("teacher", "scratch", "distilled"):
            records.append(make_record("transfer", variant, device="cpu", batch=None, threads=ctx.threads,
                                       accuracy=r[variant], seed=seed, kind="accuracy"))
    for dataset, setting in (("mnist1d", "same_data"), ("digits", "same_data_digits")):
        for seed in SEEDS:
            r = same_data_experiment(seed, ctx.fast, progress=ctx.progress, dataset=dataset)
            for variant, acc in r.items():
                if variant != "seed":
                    records.append(make_record(setting, variant, device="cpu", batch=None, threads=ctx.threads,
                                               accuracy=acc, seed=seed, kind="accuracy"))
    records += latency_records({"teacher": models["teacher"], "student": models["distilled"]}, ctx)
    return records


def summary(records: list[dict]) -> list[dict]:
    """One row per (setting, variant): mean and spread of the accuracy over seeds."""
    rows = []
    for setting in dict.fromkeys(r["model"] for r in records if r.get("kind") == "accuracy"):
        for variant in dict.fromkeys(r["variant"] for r in records if r["model"] == setting):
            accs = [r["accuracy"] for r in records if r["model"] == setting and r["variant"] == variant]
            mean, sd = mean_spread(accs)
            rows.append({"model": setting, "variant": variant, "accuracy": mean, "spread": sd, "seeds": len(accs)})
    return rows


def speedups(records: list[dict], stat: str = "latency_ms_median") -> dict[int, float]:
    """Teacher / student ORT latency per batch size (``stat``: the median, or ``latency_ms_min``)."""
    lat = {(r["model"], r["batch"]): r[stat] for r in records if r.get("kind") == "latency"}
    return {b: lat[("teacher", b)] / lat[("student", b)] for (m, b) in lat if m == "student"}


def _verdict(gain: float, spread: float) -> str:
    if gain > 2 * spread and gain > 0:
        return "helped, beyond the seed-to-seed spread"
    if gain < -2 * spread and gain < 0:
        return "hurt, beyond the seed-to-seed spread"
    return "no difference beyond the seed-to-seed spread"


def reading(records: list[dict]) -> str:
    """Plain-language reading built only from the measured numbers."""
    rows = {(r["model"], r["variant"]): r for r in summary(records)}
    lines = []
    if ("transfer", "distilled") in rows:
        t, s, d = (rows[("transfer", v)] for v in ("teacher", "scratch", "distilled"))
        gain = 100 * (d["accuracy"] - s["accuracy"])
        spread = 100 * max(s["spread"], d["spread"])
        met = "met" if gain >= TARGETS["gain_pt"] else "NOT met"
        lines.append(f"(a) transfer set: teacher {t['accuracy']:.1%}; student on the labels alone "
                     f"{s['accuracy']:.1%} ± {s['spread']:.1%}; distilled {d['accuracy']:.1%} ± {d['spread']:.1%} "
                     f"({s['seeds']} seeds): {gain:+.1f} pt, {_verdict(gain, spread)} "
                     f"(target +{TARGETS['gain_pt']:.0f} pt: {met}).")
    for setting, label in (("same_data", "MNIST-1D"), ("same_data_digits", "digits")):
        same = [(v, r) for (m, v), r in rows.items() if m == setting and v not in ("teacher", "scratch")]
        if not same:
            continue
        base = rows[(setting, "scratch")]
        lines.append(f"(b) same data, {label}: student with labels {base['accuracy']:.1%} ± {base['spread']:.1%}; "
                     f"teacher {rows[(setting, 'teacher')]['accuracy']:.1%}.")
        for v, r in same:
            gain = 100 * (r["accuracy"] - base["accuracy"])
            spread = 100 * max(base["spread"], r["spread"])
            lines.append(f"    {v}: {r['accuracy']:.1%} ± {r['spread']:.1%} ({gain:+.1f} pt): {_verdict(gain, spread)}")
    sp = speedups(records)
    sp_min = speedups(records, "latency_ms_min")
    if sp:
        params = {r["model"]: r["parameters"] for r in records if r.get("kind") == "latency"}
        parts = []
        for b, x in sorted(sp.items()):
            target = TARGETS.get(f"speedup_batch{b}")
            parts.append(f"batch {b}: {x:.2f}x by the median, {sp_min[b]:.2f}x by the minimum" + (f" (target {target:g}x: {'met' if x >= target else 'NOT met'})"
                                                    if target else ""))
        lines.append(f"Latency in ONNX Runtime, student ({params['student']:,} parameters) vs teacher "
                     f"({params['teacher']:,}): " + "; ".join(parts) + ". At batch 1 a call is dominated by fixed "
                     "per-call overhead, so a model with far fewer operations gains less there than at batch 256.")
    return "\n".join(lines)


__all__ = ["BATCHES", "EPOCHS", "KD", "N_LABELS", "N_UNLABELED", "PAIRS", "SAME_DATA_GRID", "SAME_DATA_GRID_FAST", "SEEDS", "STUDENT", "TARGETS",
           "TEACHER", "distill_suite", "distilled_student", "latency_records", "mean_spread", "omitted_class_experiment", "reading",
           "same_data_experiment", "scratch_student", "shift_class_bias", "speedups", "summary", "teacher_model", "transfer_experiment"]
