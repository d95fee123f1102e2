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

from coursekit._validate import check_choice, check_int, check_positive
from coursekit.bench import make_record
from coursekit.suites import SuiteContext, register

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


def finetune(qmodel, train_loader, epochs: int, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0,
             val_loader=None, progress: bool = False) -> dict:
    """Fine-tune a prepared QAT model in place: SGD (Nesterov momentum) with a cosine schedule over epochs.

    Returns ``{"epoch", "train_loss", "val_accuracy", "lr", "step_sizes", "seconds", "train_seconds"}``;
    ``step_sizes[e]`` is ``coursekit.quant.qat.step_sizes`` after epoch ``e`` (entry 0: before training), the
    record the chapter's step-size explorer plots.
    """
    from coursekit.quant.qat import step_sizes
    from coursekit.train import evaluate, fit

    epochs = check_int("epochs", epochs, min_value=1)
    lr = check_positive("lr", lr)
    opt = torch.optim.SGD([p for p in qmodel.parameters() if p.requires_grad], lr=lr, momentum=momentum,
                          nesterov=momentum > 0, weight_decay=weight_decay)
    history = {"epoch": [0], "train_loss": [None], "val_accuracy": [], "lr": [None], "seconds": [0.0],
               "step_sizes": [step_sizes(qmodel)]}
    if val_loader is not None:
        history["val_accuracy"].append(evaluate(qmodel, val_loader)["accuracy"])
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        epoch_lr = lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))  # cosine, per epoch
        for group in opt.param_groups:
            group["lr"] = epoch_lr
        t0 = time.perf_counter()
        h = fit(qmodel, train_loader, None, epochs=1, optimizer=opt, device="cpu", progress=progress,
                desc=f"QAT epoch {epoch}/{epochs}")
        history["seconds"].append(time.perf_counter() - t0)
        history["epoch"].append(epoch)
        history["train_loss"].append(h["train_loss"][0])
        history["lr"].append(epoch_lr)
        history["step_sizes"].append(step_sizes(qmodel))
        if val_loader is not None:
            history["val_accuracy"].append(evaluate(qmodel, val_loader)["accuracy"])
    history["train_seconds"] = time.perf_counter() - start
    return history


def ptq_vs_qat(model_name: str = "lenet", dataset: str = "digits", bit_configs=tuple(BIT_CONFIGS),
               epochs: int | None = None, lr: float = 0.01, method: str = "lsq", fast: bool | None = None,
               seed: int = 0, calibration_batches: int = 8, threads: int | None = None,
               progress: bool = False) -> list[dict]:
    """PTQ vs QAT accuracy for each bit configuration of ``model_name`` on ``dataset``: one record per config.

    ``epochs`` defaults to ``EPOCHS["fast"]`` in fast mode and ``EPOCHS["full"]`` otherwise; ``method`` is the
    QAT quantizer (``"lsq"`` or ``"ste"``); ``threads`` pins torch's thread count while training (None: leave it).
    Records (``coursekit.bench.make_record``): ``model`` ``"lenet/digits"``, ``variant`` ``"W4A8"``,
    ``accuracy`` (= ``qat_accuracy``), ``fp32_accuracy``, ``ptq_accuracy``, ``recovered``, ``qat_seconds``,
    ``ptq_seconds``, ``fp32_train_seconds``, ``epochs``, ``weight_bits``, ``act_bits``, ``method``.
    """
    from coursekit._env import fast_mode
    from coursekit.data import get_loaders
    from coursekit.quant import QuantConfig, quantize_model
    from coursekit.quant.qat import QATConfig, convert, prepare_qat
    from coursekit.train import evaluate, pretrained, seed_everything

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
        fp32 = evaluate(model, test)["accuracy"]
        records = []
        for label, (w_bits, a_bits) in configs:
            t0 = time.perf_counter()
            ptq_model = quantize_model(model, QuantConfig(weight_bits=w_bits, act_bits=a_bits), calibration)
            ptq_seconds = time.perf_counter() - t0
            ptq = evaluate(ptq_model, test)["accuracy"]
            seed_everything(seed)
            qmodel = prepare_qat(model, QATConfig(weight_bits=w_bits, act_bits=a_bits, method=method), calibration)
            history = finetune(qmodel, train, epochs, lr=lr, progress=progress)
            qat = evaluate(convert(qmodel), test)["accuracy"]
            records.append(make_record(
                f"{model_name}/{dataset}", label, device="cpu", batch=None, threads=torch.get_num_threads(),
                accuracy=qat, fp32_accuracy=fp32, ptq_accuracy=ptq, qat_accuracy=qat,
                recovered=gap_recovered(fp32, ptq, qat), qat_seconds=history["train_seconds"],
                ptq_seconds=ptq_seconds, fp32_train_seconds=model.checkpoint_info.get("train_seconds"),
                epochs=epochs, weight_bits=w_bits, act_bits=a_bits, method=method, fast=fast))
        return records
    finally:
        torch.set_num_threads(previous_threads)


@register("qat", "PTQ vs QAT accuracy at W8A8/W4A8/W2A8/W4A4 on the digits CNN and MNIST-1D, with QAT's cost")
def qat_suite(ctx: SuiteContext) -> list[dict]:
    if ctx.device != "cpu":
        raise ValueError("the qat suite trains on CPU (the models are tiny); use --device cpu")
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


def _draw_steps(axes, history: dict, layer: str, epoch: int) -> None:
    import numpy as np

    for ax in axes:
        ax.clear()
    epochs = history["epoch"]
    weights = np.stack([h[layer]["weight"].numpy() for h in history["step_sizes"]])  # (epochs + 1, channels)
    axes[0].plot(epochs, weights / weights[0], color="#69c", lw=0.8, alpha=0.7)
    axes[0].axvline(epoch, color="k", ls="--", lw=0.8)
    axes[0].set_title(f"{layer}: weight step per output channel")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("step / initial step")
    values = weights[epoch]
    axes[1].bar(range(len(values)), values, color="#3a7")
    axes[1].bar(range(len(values)), weights[0], fill=False, edgecolor="#e83", label="epoch 0 (PTQ init)")
    axes[1].set_title(f"epoch {epoch}: weight steps (bars) vs the PTQ start (outline)")
    axes[1].set_xlabel("output channel")
    axes[1].legend(fontsize=8)
    layers = [n for n in history["step_sizes"][0] if "input" in history["step_sizes"][0][n]]
    for name in layers:
        acts = [h[name]["input"].item() for h in history["step_sizes"]]
        axes[2].plot(epochs, [a / acts[0] for a in acts], "o-" if name == layer else "-", ms=3, label=name)
    axes[2].axvline(epoch, color="k", ls="--", lw=0.8)
    axes[2].set_title("activation step of every layer")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("step / initial step")
    axes[2].legend(fontsize=7)


def step_size_explorer(history: dict):
    """Slider over epochs and a layer picker for the step sizes recorded by :func:`finetune`.

    Shows how LSQ moves each layer's weight steps (per channel) and the activation steps away from their PTQ
    initialisation. Returns the widget box.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if not history.get("step_sizes") or len(history["step_sizes"]) < 2:
        raise ValueError("history must come from finetune(...) with at least one epoch (it records step_sizes)")
    layers = list(history["step_sizes"][0])
    layer_box = widgets.Dropdown(options=layers, description="layer")
    epoch_box = widgets.IntSlider(value=history["epoch"][-1], min=0, max=history["epoch"][-1], description="epoch")
    output = widgets.Output()
    with output:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
        plt.close(fig)

    def refresh(*_):
        _draw_steps(axes, history, layer_box.value, epoch_box.value)
        fig.tight_layout()
        output.clear_output(wait=True)
        with output:
            from IPython.display import display

            display(fig)

    layer_box.observe(refresh, names="value")
    epoch_box.observe(refresh, names="value")
    refresh()
    return widgets.VBox([widgets.HBox([layer_box, epoch_box]), output])
