"""Fine-tuning a compressed model: ``finetune`` (SGD with Nesterov momentum, cosine learning rate per epoch).

The recipe of LSQ's fine-tune (Esser et al. 2020, sec. 3: SGD with momentum 0.9 and a cosine learning-rate
decay, starting from the pretrained FP32 weights) written on top of :func:`coursekit.train.fit`, so the same
loop serves a QAT model, a pruned model (pass a mask-keeping callback) and a low-rank model, and accepts the
same ``loss_fn`` (e.g. a distillation loss that sees the inputs) and ``callbacks``.

For a QAT model (``coursekit.quant.prepare_qat``) the history records every quantizer's step size after each
epoch (``coursekit.quant.step_sizes``), which ``coursekit.quant.explore.step_size_explorer`` plots.
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from coursekit._validate import check_int, check_positive
from coursekit.metrics import evaluate
from coursekit.quant.qat import step_sizes
from coursekit.train.loop import Callback, _check_callbacks, fit


def cosine_lr(lr: float, epoch: int, epochs: int) -> float:
    """Learning rate of 1-based ``epoch`` of ``epochs``: ``lr (1 + cos(pi (epoch - 1) / epochs)) / 2``
    (SGDR without restarts, Loshchilov & Hutter 2017, eq. 5, stepped once per epoch)."""
    return lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))


class _EpochRecorder(Callback):
    """Sets each epoch's cosine learning rate and appends the per-epoch records of ``finetune``."""

    def __init__(self, history: dict, lr: float, epochs: int, val_loader):
        self.history, self.lr, self.epochs, self.val_loader = history, lr, epochs, val_loader

    def before_epoch(self, model, epoch, optimizer):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(self.lr, epoch, self.epochs)

    def after_epoch(self, model, epoch, fit_history):
        h = self.history
        h["epoch"].append(epoch)
        h["train_loss"].append(fit_history["train_loss"][-1])
        h["lr"].append(fit_history["lr"][-1])
        h["seconds"].append(fit_history["seconds"][-1])
        h["step_sizes"].append(step_sizes(model))
        if self.val_loader is not None:
            h["val_accuracy"].append(evaluate(model, self.val_loader)["accuracy"])


def finetune(model: nn.Module, train_loader, epochs: int, lr: float = 0.01, momentum: float = 0.9,
             weight_decay: float = 0.0, val_loader=None, progress: bool = False, loss_fn=None,
             callbacks=(), device="cpu") -> dict:
    """Fine-tune ``model`` in place with SGD (Nesterov momentum when ``momentum > 0``) and a per-epoch cosine
    learning rate (:func:`cosine_lr`), through :func:`coursekit.train.fit`.

    ``loss_fn`` and ``callbacks`` are passed to ``fit`` (a distillation loss, a pruning mask). Returns
    ``{"epoch", "train_loss", "val_accuracy", "lr", "step_sizes", "seconds", "train_seconds"}``; entry 0 of
    each list describes the model before training (``train_loss`` and ``lr`` None, ``seconds`` 0);
    ``step_sizes[e]`` is ``coursekit.quant.step_sizes`` after epoch ``e`` (empty dicts for a model without QAT
    layers); ``val_accuracy`` stays empty without ``val_loader``.
    """
    epochs = check_int("epochs", epochs, min_value=1)
    lr = check_positive("lr", lr)
    momentum = check_positive("momentum", momentum, allow_zero=True)
    callbacks = _check_callbacks(callbacks)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum,
                          nesterov=momentum > 0, weight_decay=check_positive("weight_decay", weight_decay,
                                                                             allow_zero=True))
    history = {"epoch": [0], "train_loss": [None], "val_accuracy": [], "lr": [None], "seconds": [0.0],
               "step_sizes": [step_sizes(model)]}
    if val_loader is not None:
        history["val_accuracy"].append(evaluate(model, val_loader)["accuracy"])
    start = time.perf_counter()
    fit(model, train_loader, None, epochs=epochs, optimizer=opt, device=device, progress=progress,
        desc="fine-tune", loss_fn=loss_fn, callbacks=[_EpochRecorder(history, lr, epochs, val_loader), *callbacks])
    history["train_seconds"] = time.perf_counter() - start
    return history


__all__ = ["cosine_lr", "finetune"]
