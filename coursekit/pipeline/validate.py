"""Validation after every step: accuracy, per-class accuracy, robustness, size and latency of the artifact.

"Errors accumulate, so evaluate after each step": each step's result is exported to ONNX and *that file* is
measured, the thing that would ship, not the torch model it came from:

* accuracy and per-class accuracy (``coursekit.metrics.evaluate``) through ONNX Runtime, on the validation and
  test splits; the gate reads one of them (``[validate] split``). The worst class is the rare-case risk that
  the mean hides;
* robustness: accuracy on the gate split with Gaussian noise ``N(0, (noise_std * std(x))^2)`` added to every
  input (a fixed seed, so every step sees the same noise);
* size: the ONNX file in bytes; latency: ``coursekit.bench.measure_latency`` at ``latency_batch`` in ONNX
  Runtime (and torch eager when asked), interleaved with the baseline in the same call, so ``speedup`` is a
  side-by-side ratio measured on this machine, not a number from somewhere else.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch


def ort_runner(path):
    """A callable ``x -> logits`` running the ONNX file ``path`` in ONNX Runtime (one thread)."""
    from coursekit.export import ort_run, ort_session

    session = ort_session(path, threads=1)
    return lambda x: ort_run(session, x)


def noisy_batches(loader, noise_std: float, seed: int = 0) -> list:
    """The batches of ``loader`` with Gaussian noise of ``noise_std`` times the inputs' standard deviation."""
    batches = [(x, y) for x, y in loader]
    scale = noise_std * float(torch.cat([x.flatten() for x, _ in batches]).float().std())
    gen = torch.Generator().manual_seed(seed)
    return [(x + scale * torch.randn(x.shape, generator=gen), y) for x, y in batches]


def accuracy_metrics(runner, loaders, split: str = "val", noise_std: float = 0.1, seed: int = 0) -> dict:
    """Accuracy (gate split and test), per-class accuracy and the worst class, and accuracy under noise."""
    from coursekit.metrics import evaluate

    gate = loaders.val if split == "val" else loaders.test
    on_gate = evaluate(runner, gate)
    on_test = on_gate if split == "test" else evaluate(runner, loaders.test)
    per_class = [None if math.isnan(a) else a for a in on_gate["per_class"]]
    robust = evaluate(runner, noisy_batches(gate, noise_std, seed))["accuracy"] if noise_std > 0 else None
    return {"accuracy": on_gate["accuracy"], "test_accuracy": on_test["accuracy"], "per_class": per_class,
            "min_class_accuracy": min(a for a in per_class if a is not None),
            "robust_accuracy": robust, "noise_std": noise_std}


def model_counts(model) -> dict:
    """Parameters and non-zero parameters of a torch model (float tensors of its state dict)."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    return {"params": sum(t.numel() for t in tensors), "nonzero_params": sum(int((t != 0).sum()) for t in tensors)}


def measure_latencies(artifact: Path, baseline_artifact: Path, example: torch.Tensor, *, model=None,
                      baseline_model=None, backends=("ort",), repeats: int = 20, threads: int = 1) -> dict:
    """Median and minimum latency (ms) of the step's and the baseline's ONNX files (and torch models with
    ``"torch"`` in ``backends``), timed interleaved in one ``measure_latency`` call; ``speedup`` = baseline /
    step median in ORT, ``speedup_min`` the same for the minimum (steadier on a busy machine)."""
    from coursekit.bench import measure_latency
    from coursekit.export import ort_run, ort_session

    x = example.numpy()
    sessions = {"step": ort_session(artifact, threads=threads), "baseline": ort_session(baseline_artifact,
                                                                                       threads=threads)}
    candidates = {f"{who}/ort": (lambda s=s: ort_run(s, x)) for who, s in sessions.items()}
    if "torch" in backends:
        for who, m in (("step", model), ("baseline", baseline_model)):
            if m is not None:
                m.eval()
                candidates[f"{who}/torch"] = lambda m=m: m(example)
    stats = measure_latency(candidates, repeats=repeats, threads=threads, budget_s=2.0)
    out = {"batch": int(example.shape[0]), "threads": threads,
           "latency_ms": {k.split("/")[1]: v.median_ms for k, v in stats.items() if k.startswith("step/")},
           "baseline_latency_ms": {k.split("/")[1]: v.median_ms for k, v in stats.items()
                                   if k.startswith("baseline/")}}
    out["latency_ms_min"] = {k.split("/")[1]: v.min_ms for k, v in stats.items() if k.startswith("step/")}
    out["baseline_latency_ms_min"] = {k.split("/")[1]: v.min_ms for k, v in stats.items()
                                      if k.startswith("baseline/")}
    out["speedup"] = out["baseline_latency_ms"]["ort"] / out["latency_ms"]["ort"]
    out["speedup_min"] = out["baseline_latency_ms_min"]["ort"] / out["latency_ms_min"]["ort"]
    return out


def validate_stage(artifact: Path, loaders, example: torch.Tensor, *, baseline_artifact: Path, model=None,
                   baseline_model=None, split: str = "val", noise_std: float = 0.1, backends=("ort",),
                   repeats: int = 20, threads: int = 1, seed: int = 0) -> dict:
    """Every measurement of one step's ONNX ``artifact`` (accuracy through ONNX Runtime), with latency and size
    relative to ``baseline_artifact``."""
    from coursekit.export import file_size

    metrics = accuracy_metrics(ort_runner(artifact), loaders, split, noise_std, seed)
    metrics["size_bytes"] = file_size(artifact)
    metrics["size_ratio"] = file_size(baseline_artifact) / metrics["size_bytes"]
    metrics.update(measure_latencies(artifact, baseline_artifact, example, model=model,
                                     baseline_model=baseline_model, backends=backends, repeats=repeats,
                                     threads=threads))
    if model is not None:
        metrics.update(model_counts(model))
    return metrics


def accuracy_drop(baseline: dict, metrics: dict) -> float:
    """Accuracy lost on the gate split, in points (percentage points): ``100 * (baseline - step)``."""
    return 100.0 * (baseline["accuracy"] - metrics["accuracy"])


def within_budget(baseline: dict, metrics: dict, max_drop: float) -> bool:
    """The accuracy gate: the step loses at most ``max_drop`` points (a tiny tolerance for float rounding)."""
    return accuracy_drop(baseline, metrics) <= max_drop + 1e-9


__all__ = ["accuracy_drop", "accuracy_metrics", "measure_latencies", "model_counts", "noisy_batches", "ort_runner",
           "validate_stage", "within_budget"]
