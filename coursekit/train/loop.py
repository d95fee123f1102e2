"""A plain supervised training loop: ``fit`` and ``evaluate``.

Nothing hidden: per epoch, for each batch, forward -> cross-entropy -> backward -> optimizer step, then an
evaluation pass on the validation loader. The progress bar (tqdm) writes to stdout, never stderr, and
``progress=False`` silences it completely.
"""
from __future__ import annotations

import sys
import time

import torch
from torch import nn
from tqdm.auto import tqdm

from coursekit._validate import check_choice, check_int, check_positive
from coursekit.train.device import select_device
from coursekit.metrics import count_correct, evaluate

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


def make_optimizer(model: nn.Module, optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0):
    """Adam / AdamW / SGD (momentum 0.9, Nesterov) over all trainable parameters."""
    check_choice("optimizer", optimizer, OPTIMIZERS)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def fit(model: nn.Module, train_loader, val_loader=None, *, epochs: int = 10, lr: float = 1e-3,
        optimizer: str | torch.optim.Optimizer = "adam", weight_decay: float = 0.0,
        schedule: str = "constant", loss_fn=None, device="auto", progress: bool = True,
        desc: str = "train") -> dict:
    """Train ``model`` in place with cross-entropy (or ``loss_fn``) and return the history.

    ``optimizer`` is "adam", "adamw", "sgd" or a ready ``torch.optim.Optimizer`` (then ``lr`` and
    ``weight_decay`` are ignored). ``schedule="cosine"`` anneals the learning rate to 0 over all steps.
    The model is moved to ``device`` and stays there, in eval mode when done. Call ``seed_everything``
    first for repeatable runs.

    Returns ``{"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}``, one
    entry per epoch (the val lists stay empty without ``val_loader``), plus ``"train_seconds"``, the total
    wall time.
    """
    epochs = check_int("epochs", epochs, min_value=1)
    check_choice("schedule", schedule, SCHEDULES)
    device = select_device(device)
    model.to(device)
    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    else:
        opt = make_optimizer(model, optimizer, check_positive("lr", lr), check_positive(
            "weight_decay", weight_decay, allow_zero=True))
    total_steps = epochs * len(train_loader)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total_steps) if schedule == "cosine" else None
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn

    history = {k: [] for k in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                               "seconds")}
    start = time.perf_counter()
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress, file=sys.stdout, unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        total_loss, correct, n = 0.0, 0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total_loss += loss.item() * len(y)
            correct += count_correct(logits.detach(), y)
            n += len(y)
        history["epoch"].append(epoch)
        history["train_loss"].append(total_loss / n)
        history["train_accuracy"].append(correct / n)
        history["lr"].append(opt.param_groups[0]["lr"])
        shown = {"loss": f"{total_loss / n:.3f}", "acc": f"{correct / n:.3f}"}
        if val_loader is not None:
            val = evaluate(model, val_loader, device=device)
            history["val_loss"].append(val["loss"])
            history["val_accuracy"].append(val["accuracy"])
            shown["val_acc"] = f"{val['accuracy']:.3f}"
        history["seconds"].append(time.perf_counter() - t0)
        bar.set_postfix(shown)
    bar.close()
    history["train_seconds"] = time.perf_counter() - start
    model.eval()
    return history
