"""Classification metrics over a loader: ``evaluate`` (accuracy, loss, per-class accuracy) and
``top1_agreement`` (how often two models pick the same class).

One implementation of top-1 accuracy for the whole library: the suites, the checkpoint cache and the chapters
all call ``evaluate``. Per-class accuracy is the recall of each class (correct predictions of class c divided
by the examples of class c), the number that shows when quantization hurts a rare class while the mean hides
it; ``top1_agreement`` against the FP32 model is the label-free companion: 1 - agreement is the share of
"flips", the answers that change under compression even when accuracy does not (Dutta et al. 2024,
"Accuracy is Not All You Need", sec. 3).

This module sits below every layer of coursekit (it imports only torch), so quant's widgets, export's parity
check, the suites and the training loop all count the same way; ``coursekit.train`` re-exports ``evaluate``
and ``top1_agreement`` (the same objects).

``model`` may be a ``torch.nn.Module`` or any callable mapping an input batch to logits of shape
``(batch, classes, ...)`` (a torch tensor or a NumPy array, e.g. an ONNX Runtime session wrapped in a lambda).
"""
from __future__ import annotations

import torch
from torch import nn

from coursekit._validate import check_int


def _model_device(model) -> torch.device:
    param = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    return param.device if param is not None else torch.device("cpu")


def _resolve_device(model, device) -> torch.device:
    """``None``: where the model's parameters are (CPU for a plain callable); else ``torch.device(device)``."""
    if device is None:
        return _model_device(model)
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, a string or a torch.device, got {type(device).__name__} {device!r}")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device={device!r} is not a torch device name ('cpu', 'cuda', 'cuda:0', 'mps')") from err


def _split(batch):
    """``(inputs, targets)`` of a ``(x, y)`` batch, or ``(x, None)`` for a bare input tensor."""
    if isinstance(batch, (tuple, list)):
        if len(batch) < 2:
            raise ValueError(f"a batch must be an input tensor or an (inputs, targets) pair, got a {type(batch).__name__}"
                             f" of length {len(batch)}")
        return batch[0], batch[1]
    if isinstance(batch, dict):
        raise TypeError("batches must be tensors or (inputs, targets) tuples, got a dict")
    return batch, None


def _logits(model, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if isinstance(out, (tuple, list)):   # ORT's session.run returns a list of outputs
        out = out[0]
    out = torch.as_tensor(out)
    if out.dim() < 2:
        raise ValueError(f"model must return logits of shape (batch, classes, ...), got shape {tuple(out.shape)}")
    return out


class _EvalMode:
    """Eval mode and no autograd while inside; the module's previous mode is restored on exit."""

    def __init__(self, *models):
        self.modules = [m for m in models if isinstance(m, nn.Module)]

    def __enter__(self):
        self.modes = [m.training for m in self.modules]
        for m in self.modules:
            m.eval()
        self.grad = torch.no_grad()
        self.grad.__enter__()

    def __exit__(self, *exc):
        self.grad.__exit__(*exc)
        for m, mode in zip(self.modules, self.modes):
            m.train(mode)


def count_correct(logits: torch.Tensor, targets: torch.Tensor) -> int:
    """How many rows of ``logits`` (batch, classes, ...) have their argmax over dim 1 equal to ``targets``."""
    return int((logits.argmax(dim=1) == targets).sum())


def count_agreeing(logits_a, logits_b) -> int:
    """How many rows of two ``(batch, classes, ...)`` outputs (tensors or arrays) have the same argmax over dim 1."""
    a, b = torch.as_tensor(logits_a), torch.as_tensor(logits_b)
    if a.dim() < 2 or a.shape[:2] != b.shape[:2]:
        raise ValueError(f"outputs must both be (batch, classes, ...) with equal batch and classes, got shapes "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    return int((a.argmax(dim=1) == b.argmax(dim=1).to(a.device)).sum())


def per_class_accuracy(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> list[float]:
    """Accuracy within each class (= recall): ``correct[c] / count[c]``; NaN for a class with no examples."""
    num_classes = check_int("num_classes", num_classes, min_value=1)
    predictions, targets = torch.as_tensor(predictions).reshape(-1), torch.as_tensor(targets).reshape(-1)
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions and targets differ in size: {predictions.numel()} vs {targets.numel()}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise ValueError(f"targets must be class indices in [0, {num_classes - 1}] (num_classes={num_classes}), "
                         f"got values in [{int(targets.min())}, {int(targets.max())}]")
    count = torch.bincount(targets, minlength=num_classes).double()
    correct = torch.bincount(targets[predictions == targets], minlength=num_classes).double()
    return [float(c / n) if n > 0 else float("nan") for c, n in zip(correct.tolist(), count.tolist())]


def evaluate(model, loader, device=None, loss_fn=None, num_classes: int | None = None,
             return_predictions: bool = False) -> dict:
    """Top-1 accuracy, mean loss and per-class accuracy of ``model`` over ``loader`` of ``(inputs, targets)``.

    Returns ``{"accuracy": 0..1, "loss": float, "n": int, "per_class": [accuracy of class 0, 1, ...]}`` (a
    class with no test example gets NaN), plus ``"predictions"`` (the argmax over dim 1, a CPU int64 tensor in
    loader order) when ``return_predictions``. ``accuracy`` is a fraction, not a percentage.

    ``loss_fn(logits, targets)`` defaults to cross-entropy; a loss with ``reduction="mean"`` is weighted by the
    batch size so ``loss`` is always the mean over examples. ``num_classes`` defaults to the logits' width.
    Runs without autograd in eval mode (BatchNorm uses running statistics) and restores the model's mode.
    ``device=None`` uses the device of the model's parameters (CPU for a callable that is not a module); else
    a ``torch.device`` or its name ("cpu", "cuda:0"; resolve "auto" with ``coursekit.train.select_device``).
    """
    device = _resolve_device(model, device)
    loss_fn = nn.CrossEntropyLoss(reduction="sum") if loss_fn is None else loss_fn
    summed = getattr(loss_fn, "reduction", "sum") == "sum"
    total_loss, preds, targets, width = 0.0, [], [], None
    with _EvalMode(model):
        for batch in loader:
            x, y = _split(batch)
            if y is None:
                raise ValueError("evaluate needs (inputs, targets) batches; the loader yielded bare inputs")
            x, y = x.to(device), torch.as_tensor(y).to(device)
            logits = _logits(model, x).to(device)
            loss = loss_fn(logits, y)
            total_loss += loss.item() if summed else loss.item() * len(y)
            preds.append(logits.argmax(dim=1).cpu())
            targets.append(y.cpu())
            width = logits.shape[1]
    if not preds or sum(len(p) for p in preds) == 0:
        raise ValueError("evaluate: the loader yielded no examples")
    preds, targets = torch.cat(preds), torch.cat(targets)
    n = targets.numel()
    result = {"accuracy": int((preds == targets).sum()) / n, "loss": total_loss / n, "n": n,
              "per_class": per_class_accuracy(preds, targets, width if num_classes is None else num_classes)}
    if return_predictions:
        result["predictions"] = preds
    return result


def top1_agreement(model_a, model_b, loader, device=None) -> float:
    """Fraction of inputs on which ``model_a`` and ``model_b`` predict the same class (argmax over dim 1).

    ``loader`` yields input tensors or ``(inputs, targets)`` batches (targets are ignored: no labels needed).
    Both models run in eval mode without autograd, on ``device`` (default: ``model_a``'s device).
    """
    device = _resolve_device(model_a, device)
    agree, n = 0, 0
    with _EvalMode(model_a, model_b):
        for batch in loader:
            x = _split(batch)[0].to(device)
            a = _logits(model_a, x)
            agree += count_agreeing(a, _logits(model_b, x))
            n += a[:, 0].numel()
    if n == 0:
        raise ValueError("top1_agreement: the loader yielded no examples")
    return agree / n


__all__ = ["count_agreeing", "count_correct", "evaluate", "per_class_accuracy", "top1_agreement"]
