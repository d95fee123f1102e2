"""A plain supervised training loop that compression techniques plug into: ``fit``, ``Callback``.

Nothing hidden: per epoch, for each batch, forward -> loss -> backward -> optimizer step (-> scheduler step)
-> callbacks, then an evaluation pass on the validation loader (``coursekit.metrics.evaluate``).

Two plug points serve the chapters after quantization:

* ``loss_fn(outputs, targets)`` replaces cross-entropy; a loss that takes a third argument gets the input batch,
  ``loss_fn(outputs, targets, inputs)``, so knowledge distillation can run its teacher on the same inputs
  (Hinton et al. 2015, eq. 2: ``alpha T^2 KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) CE``).
* ``callbacks``: objects with any of ``before_epoch(model, epoch, optimizer)``, ``after_step(model, step)``
  and ``after_epoch(model, epoch, history)``. ``after_step`` runs right after each optimizer (and scheduler)
  step, so a pruning mask re-applied there keeps pruned weights at exactly zero whatever the optimizer's
  momentum does (Han et al. 2015, sec. 3; Zhu & Gupta 2017), and a low-rank or QAT fine-tune can project or
  record its parameters.

The progress bar (tqdm) writes to stdout, never stderr; it shows only on a terminal or in Jupyter (tqdm's
``disable=None``), so logs and pipes get no carriage-return frames, and ``progress=False`` silences it always.
"""
from __future__ import annotations

import inspect
import time

import torch
from torch import nn

from coursekit._progress import progress_bar
from coursekit._validate import check_choice, check_int, check_positive
from coursekit.metrics import count_correct, evaluate
from coursekit.train.device import select_device

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


class Callback:
    """Base class of ``fit`` callbacks: override any hook; the defaults do nothing.

    * ``before_epoch(model, epoch, optimizer)``: before the first batch of ``epoch`` (1-based), e.g. to set the
      learning rate of every ``optimizer.param_groups`` entry;
    * ``after_step(model, step)``: after optimizer step number ``step`` (1-based, counted over all epochs),
      under ``torch.no_grad()``, e.g. ``weight.mul_(mask)`` to keep pruned weights at zero;
    * ``after_epoch(model, epoch, history)``: after the epoch's validation pass, with the history so far.

    Any object with some of these methods works as a callback; subclassing is optional.
    """

    def before_epoch(self, model: nn.Module, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        pass

    def after_step(self, model: nn.Module, step: int) -> None:
        pass

    def after_epoch(self, model: nn.Module, epoch: int, history: dict) -> None:
        pass


HOOKS = ("before_epoch", "after_step", "after_epoch")


def _check_callbacks(callbacks) -> list:
    callbacks = [callbacks] if any(hasattr(callbacks, h) for h in HOOKS) else list(callbacks)
    for cb in callbacks:
        if not any(callable(getattr(cb, h, None)) for h in HOOKS):
            raise TypeError(f"callbacks must be objects with any of {', '.join(HOOKS)} (see coursekit.train."
                            f"Callback), got {type(cb).__name__} {cb!r}")
    return callbacks


def _call(callbacks: list, hook: str, *args) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(*args)


def wants_inputs(loss_fn) -> bool:
    """Whether ``fit`` passes the input batch to ``loss_fn``: it has three or more positional parameters without
    defaults (``forward``'s, for an ``nn.Module`` loss). ``nn.CrossEntropyLoss()`` and
    ``torch.nn.functional.cross_entropy`` (two required, the rest optional) get ``(outputs, targets)``."""
    target = loss_fn.forward if isinstance(loss_fn, nn.Module) else loss_fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):   # builtins without a signature: the classic (outputs, targets)
        return False
    required = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    return len(required) >= 3


def fit(model: nn.Module, train_loader, val_loader=None, *, epochs: int = 10, lr: float = 1e-3,
        optimizer: str | torch.optim.Optimizer = "adam", weight_decay: float = 0.0,
        schedule: str = "constant", loss_fn=None, device="auto", progress: bool = True,
        desc: str = "train", callbacks=()) -> dict:
    """Train ``model`` in place with cross-entropy (or ``loss_fn``) and return the history.

    ``optimizer`` is "adam", "adamw", "sgd" or a ready ``torch.optim.Optimizer`` (then ``lr`` and
    ``weight_decay`` are ignored). ``schedule="cosine"`` anneals the learning rate to 0 over all steps.
    The model is moved to ``device`` and stays there, in eval mode when done. Call ``seed_everything``
    first for repeatable runs.

    ``loss_fn(outputs, targets)`` (default: mean cross-entropy) must return a scalar tensor; written with
    three parameters, ``loss_fn(outputs, targets, inputs)``, it also receives the input batch (on ``device``),
    e.g. a distillation loss that runs a teacher on ``inputs``. ``callbacks``: a :class:`Callback` or a list of
    them (``after_step`` keeps a pruning mask applied after every step). ``train_loss`` is the mean of
    ``loss_fn`` over the examples; ``train_accuracy`` compares the argmax of ``outputs`` with ``targets``.

    Returns ``{"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}``, one
    entry per epoch (the val lists stay empty without ``val_loader``), plus ``"train_seconds"``, the total
    wall time.
    """
    epochs = check_int("epochs", epochs, min_value=1)
    check_choice("schedule", schedule, SCHEDULES)
    callbacks = _check_callbacks(callbacks)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets[, inputs]), got "
                        f"{type(loss_fn).__name__}")
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
    with_inputs = wants_inputs(loss_fn)

    history = {k: [] for k in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                               "seconds")}
    start = time.perf_counter()
    step = 0
    bar = progress_bar(range(1, epochs + 1), desc=desc, enabled=progress, unit="epoch", leave=True)
    for epoch in bar:
        t0 = time.perf_counter()
        _call(callbacks, "before_epoch", model, epoch, opt)
        model.train()
        total_loss, correct, n = 0.0, 0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = loss_fn(logits, y, x) if with_inputs else loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            if callbacks:
                with torch.no_grad():
                    _call(callbacks, "after_step", model, step)
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
        _call(callbacks, "after_epoch", model, epoch, history)
        bar.set_postfix(shown)
    bar.close()
    history["train_seconds"] = time.perf_counter() - start
    model.eval()
    return history
