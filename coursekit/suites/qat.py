"""The ``qat`` suite: post-training quantization vs quantization-aware training, accuracy against bit width.

For each model (the digits LeNet and the MNIST-1D CNN) and each bit configuration (``W8A8``, ``W4A8``, ``W2A8``,
``W4A4``: weight bits, activation bits, every layer):

* **PTQ**: chapter 02's ``quantize_model`` (static, symmetric per-channel weights, min/max-calibrated affine
  activations) on a few training batches;
* **QAT**: ``prepare_qat`` from the same pretrained FP32 model with the PTQ scales as the starting point
  (``init="ptq"``, LSQ step sizes), fine-tuned for a few epochs with SGD + momentum and a cosine schedule
  (Esser et al. 2020, sec. 3), then ``convert``-ed to the same QDQ model type and evaluated.

Each record holds the FP32, PTQ and QAT test accuracies, the fraction of the PTQ gap that QAT recovers,
``(qat - ptq) / (fp32 - ptq)``, and the wall time the QAT fine-tune cost (with the FP32 training time of the
cached checkpoint for scale). Accuracy is measured on the test split; in fast mode the training sets shrink
(``coursekit.data``) and QAT runs fewer epochs, so the numbers are noisier but the same checks apply.
"""
from __future__ import annotations

import math
import time

import torch

from coursekit._validate import check_choice, check_int
from coursekit.bench import make_record
from coursekit.quant.explore import step_size_explorer
from coursekit.suites import SuiteContext, register
from coursekit.train.finetuning import finetune

# The fine-tune loop lives in coursekit.train and the step-size widget in coursekit.quant.explore; both names
# stay importable from here (chapter 03 imports them from this module), as the same objects.
__all__ = ["BIT_CONFIGS", "MODELS", "finetune", "format_qat_table", "gap_recovered", "parse_bits",
           "plot_accuracy_vs_bits", "ptq_vs_qat", "qat_suite", "reading", "step_size_explorer"]

BIT_CONFIGS = {"W8A8": (8, 8), "W4A8": (4, 8), "W2A8": (2, 8), "W4A4": (4, 4)}
MODELS = (("lenet", "digits"), ("cnn1d", "mnist1d"))
EPOCHS = {"full": 10, "fast": 3}
TABLE_COLUMNS = ["model", "variant", "fp32_accuracy", "ptq_accuracy", "qat_accuracy", "recovered", "qat_seconds",
                 "epochs"]
NOISE_PT = 0.5  # accuracy differences below half a point are within run-to-run noise on these test sets


def parse_bits(label: str) -> tuple[int, int]:
    """``"W4A8"`` -> ``(4, 8)``; also accepts a ``(weight_bits, act_bits)`` pair."""
    if isinstance(label, (tuple, list)) and len(label) == 2:
        return int(label[0]), int(label[1])
    if isinstance(label, str) and label.upper().startswith("W") and "A" in label.upper():
        w, a = label.upper()[1:].split("A", 1)
        if w.isdigit() and a.isdigit():
            return int(w), int(a)
    raise ValueError(f"bit config {label!r} must look like 'W4A8' (weight bits, activation bits) or be a pair")


def gap_recovered(fp32: float, ptq: float, qat: float, noise: float = NOISE_PT / 100) -> float | None:
    """``(qat - ptq) / (fp32 - ptq)``: 1 = QAT closes the whole PTQ gap, 0 = no better than PTQ.

    None when PTQ is within ``noise`` (an accuracy fraction) of FP32: there is no gap worth a ratio.
    """
    gap = fp32 - ptq
    return None if gap <= noise else (qat - ptq) / gap


def _worst(result: dict) -> float:
    """Lowest per-class accuracy of an ``evaluate`` result (classes without test examples ignored)."""
    return min(a for a in result["per_class"] if not math.isnan(a))


def ptq_vs_qat(model_name: str = "lenet", dataset: str = "digits", bit_configs=tuple(BIT_CONFIGS),
               epochs: int | None = None, lr: float = 0.01, method: str = "lsq", fast: bool | None = None,
               seed: int = 0, calibration_batches: int = 8, threads: int | None = None,
               progress: bool = False) -> list[dict]:
    """PTQ vs QAT accuracy for each bit configuration of ``model_name`` on ``dataset``: one record per config.

    ``epochs`` defaults to ``EPOCHS["fast"]`` in fast mode and ``EPOCHS["full"]`` otherwise; ``method`` is the
    QAT quantizer (``"lsq"`` or ``"ste"``); ``threads`` pins torch's thread count while training (None: leave it).
    Records (``coursekit.bench.make_record``): ``model`` ``"lenet/digits"``, ``variant`` ``"W4A8"``,
    ``accuracy`` (= ``qat_accuracy``), ``fp32_accuracy``, ``ptq_accuracy``, ``recovered``, the worst class's
    accuracy (``fp32_worst_class``, ``ptq_worst_class``, ``qat_worst_class``: the rare-class risk a mean
    hides), the top-1 agreement with the FP32 model on the test set (``ptq_agreement``, ``qat_agreement``),
    ``qat_seconds``,
    ``ptq_seconds``, ``fp32_train_seconds``, ``epochs``, ``weight_bits``, ``act_bits``, ``method``.
    """
    from coursekit._env import fast_mode
    from coursekit.data import get_loaders
    from coursekit.quant import QuantConfig, quantize_model
    from coursekit.quant.qat import QATConfig, convert, prepare_qat
    from coursekit.train import evaluate, pretrained, seed_everything, top1_agreement

    fast = fast_mode() if fast is None else bool(fast)
    epochs = EPOCHS["fast" if fast else "full"] if epochs is None else check_int("epochs", epochs, min_value=1)
    check_choice("method", method, ("lsq", "ste"))
    calibration_batches = check_int("calibration_batches", calibration_batches, min_value=1)
    configs = [(label if isinstance(label, str) else f"W{label[0]}A{label[1]}", parse_bits(label))
               for label in bit_configs]
    if not configs:
        raise ValueError("bit_configs is empty: give at least one configuration such as 'W4A8'")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_int("threads", threads, min_value=1))
    try:
        model = pretrained(model_name, dataset, seed=seed, fast=fast, progress=progress)
        train, _, test = get_loaders(dataset, batch_size=64, seed=seed, fast=fast)
        calibration = [batch for _, batch in zip(range(calibration_batches), train)]
        fp32_eval = evaluate(model, test)
        fp32 = fp32_eval["accuracy"]
        records = []
        for label, (w_bits, a_bits) in configs:
            t0 = time.perf_counter()
            ptq_model = quantize_model(model, QuantConfig(weight_bits=w_bits, act_bits=a_bits), calibration)
            ptq_seconds = time.perf_counter() - t0
            ptq_eval = evaluate(ptq_model, test)
            ptq = ptq_eval["accuracy"]
            seed_everything(seed)
            qmodel = prepare_qat(model, QATConfig(weight_bits=w_bits, act_bits=a_bits, method=method), calibration)
            history = finetune(qmodel, train, epochs, lr=lr, progress=progress)
            qat_model = convert(qmodel)
            qat_eval = evaluate(qat_model, test)
            qat = qat_eval["accuracy"]
            records.append(make_record(
                f"{model_name}/{dataset}", label, device="cpu", batch=None, threads=torch.get_num_threads(),
                accuracy=qat, fp32_accuracy=fp32, ptq_accuracy=ptq, qat_accuracy=qat,
                fp32_worst_class=_worst(fp32_eval), ptq_worst_class=_worst(ptq_eval),
                qat_worst_class=_worst(qat_eval), ptq_agreement=top1_agreement(ptq_model, model, test),
                qat_agreement=top1_agreement(qat_model, model, test),
                recovered=gap_recovered(fp32, ptq, qat), qat_seconds=history["train_seconds"],
                ptq_seconds=ptq_seconds, fp32_train_seconds=model.checkpoint_info.get("train_seconds"),
                epochs=epochs, weight_bits=w_bits, act_bits=a_bits, method=method, fast=fast))
        return records
    finally:
        torch.set_num_threads(previous_threads)


@register("qat", "PTQ vs QAT accuracy at W8A8/W4A8/W2A8/W4A4 on the digits CNN and MNIST-1D, with QAT's cost")
def qat_suite(ctx: SuiteContext) -> list[dict]:
    ctx.require_cpu("qat", "trains on CPU (the models are tiny)")
    records = []
    for model_name, dataset in MODELS:
        records += ptq_vs_qat(model_name, dataset, fast=ctx.fast, threads=ctx.threads, progress=ctx.progress)
    return records


def format_qat_table(records: list[dict]) -> str:
    """The suite's table: accuracies, recovered gap and QAT time per model and bit configuration."""
    from coursekit.bench import format_table

    return format_table(records, TABLE_COLUMNS)


def plot_accuracy_vs_bits(records: list[dict], axes=None):
    """One panel per model: FP32 (line), PTQ and QAT accuracy per bit configuration. Returns the axes."""
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in records))
    if axes is None:
        _, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.4), squeeze=False)
        axes = axes[0]
    for ax, model in zip(axes, models):
        rows = [r for r in records if r["model"] == model]
        labels = [r["variant"] for r in rows]
        ax.axhline(100 * rows[0]["fp32_accuracy"], color="k", ls="--", lw=1, label="FP32")
        ax.plot(labels, [100 * r["ptq_accuracy"] for r in rows], "o-", color="#e83", label="PTQ")
        ax.plot(labels, [100 * r["qat_accuracy"] for r in rows], "s-", color="#3a7", label="QAT")
        ax.set_title(model)
        ax.set_ylabel("test accuracy (%)")
        ax.set_xlabel("weight / activation bits")
        ax.legend()
    return axes


def reading(records: list[dict]) -> str:
    """Plain-language reading of a ``qat`` result, built only from the measured numbers."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in records):
        rows = [r for r in records if r["model"] == model]
        fp32 = rows[0]["fp32_accuracy"]
        train_s = rows[0].get("fp32_train_seconds")
        lines.append(f"{model}: FP32 {fp32:.1%}" + (f" (trained in {train_s:.1f} s)" if train_s else ""))
        for r in rows:
            gap_pt = 100 * (fp32 - r["ptq_accuracy"])
            qat_gap_pt = 100 * (fp32 - r["qat_accuracy"])
            cost = f"{r['qat_seconds']:.1f} s of QAT ({r['epochs']} epochs)"
            if gap_pt < NOISE_PT:
                verdict = (f"PTQ is already within {NOISE_PT} pt of FP32 ({gap_pt:+.1f} pt): QAT has nothing to "
                           f"recover, skip it (QAT {r['qat_accuracy']:.1%} after {cost})")
            else:
                share = r["recovered"]
                worth = "worth it" if share is not None and share >= 0.5 and gap_pt - qat_gap_pt >= NOISE_PT \
                    else "not enough"
                verdict = (f"PTQ loses {gap_pt:.1f} pt ({r['ptq_accuracy']:.1%}); QAT {r['qat_accuracy']:.1%} "
                           f"recovers {share:.0%} of the gap in {cost}: {worth}")
            lines.append(f"  {r['variant']}: {verdict}")
    return "\n".join(lines)
