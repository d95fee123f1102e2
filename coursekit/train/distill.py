"""Knowledge-distillation training on the shared loop (``coursekit.train.fit``): ``distill``, ``TeacherCache``.

The losses live in ``coursekit.distill`` (Hinton et al. 2015; Romero et al. 2015); this module only adds what a
training run needs, which is why it sits in the ``train`` layer (it calls ``fit``):

* the teacher is *frozen*: ``eval()`` mode (BatchNorm uses its running statistics, dropout is off) and
  ``requires_grad_(False)``, and runs under ``torch.no_grad()``. A teacher passed in train mode is switched to
  eval mode with a ``UserWarning`` saying so, and the history records ``teacher_was_training=True``;
* the teacher's logits can be computed once for the whole transfer set (``TeacherCache``) instead of once per
  batch and epoch: with E epochs that is E times fewer teacher forward passes, the whole point when the teacher
  is the expensive model. Rows are looked up by their exact bytes, so shuffling and batching do not matter;
* the progress bar and the history are ``fit``'s; ``cached_student`` trains once and caches the checkpoint like
  ``coursekit.train.pretrained`` (same hashing, same file format).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

from coursekit import _env
from coursekit._validate import check_int, check_probability
from coursekit.distill import FeatureTap, HintLoss, kd_loss
from coursekit.distill.soft import _check_temperature
from coursekit.models import build_model
from coursekit.train.checkpoints import _load, _save, checkpoint_path
from coursekit.train.device import seed_everything, select_device
from coursekit.train.loop import fit, make_optimizer


def freeze_teacher(teacher: nn.Module) -> bool:
    """Put ``teacher`` in eval mode with no parameter gradients; return whether it was in train mode (and warn)."""
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
    was_training = teacher.training
    if was_training:
        warnings.warn("teacher was in train mode; switched it to eval mode (a distillation teacher must be frozen: "
                      "BatchNorm running statistics, no dropout)", UserWarning, stacklevel=3)
    teacher.eval()
    teacher.requires_grad_(False)
    return was_training


@torch.no_grad()
def teacher_logits(teacher: nn.Module, inputs: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The frozen teacher's logits for every row of ``inputs`` (CPU tensor), in batches, under no_grad."""
    freeze_teacher(teacher)
    device = next(teacher.parameters()).device
    outs = [teacher(inputs[i:i + batch_size].to(device)).cpu() for i in range(0, len(inputs), batch_size)]
    return torch.cat(outs)


def _inputs_of(data) -> torch.Tensor:
    """The input tensor of a tensor, an ``ArrayDataset`` (``.x``), a ``TensorDataset`` or any (x, y) dataset."""
    if isinstance(data, torch.Tensor):
        return data
    if isinstance(getattr(data, "x", None), torch.Tensor):
        return data.x
    if hasattr(data, "tensors"):
        return data.tensors[0]
    try:
        return torch.stack([data[i][0] for i in range(len(data))])
    except (TypeError, IndexError) as err:
        raise TypeError(f"inputs must be a tensor or a dataset of (x, y) pairs, got {type(data).__name__}") from err


class TeacherCache:
    """Teacher logits computed once for ``inputs`` (a tensor or an (x, y) dataset), looked up per batch.

    ``cache(x)`` returns the logits of each row of ``x``: from the cache when the row's bytes were seen,
    otherwise by running the teacher (counted in ``misses``). ``hits`` counts cache hits.
    """

    def __init__(self, teacher: nn.Module, inputs, batch_size: int = 1024):
        x = _inputs_of(inputs)
        self.teacher = teacher
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        self.logits = teacher_logits(teacher, x, batch_size)
        self._index = {key: i for i, key in enumerate(self._keys(x))}
        self.hits = self.misses = 0

    @staticmethod
    def _keys(x: torch.Tensor) -> list[bytes]:
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy().reshape(len(x), -1)
        return [row.tobytes() for row in arr]

    def __len__(self) -> int:
        return len(self.logits)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = [self._index.get(key) for key in self._keys(x)]
        out = torch.empty(len(x), self.logits.shape[1])
        known = [i for i, r in enumerate(rows) if r is not None]
        if known:
            out[known] = self.logits[[rows[i] for i in known]]
        missing = [i for i, r in enumerate(rows) if r is None]
        if missing:
            device = next(self.teacher.parameters()).device
            out[missing] = self.teacher(x[missing].to(device)).float().cpu()
        self.hits += len(known)
        self.misses += len(missing)
        return out.to(x.device)


class DistillLoss:
    """``loss_fn(outputs, targets, inputs)`` for ``fit``: ``kd_loss`` against the frozen teacher (or its cache),
    plus ``hint_weight`` times a FitNets hint loss when ``hint`` = (student tap, teacher tap, HintLoss) is set."""

    def __init__(self, teacher: nn.Module, T: float, alpha: float, cache: TeacherCache | None = None,
                 hint: tuple[FeatureTap, FeatureTap, HintLoss] | None = None, hint_weight: float = 1.0):
        self.teacher, self.T, self.alpha, self.cache = teacher, T, alpha, cache
        self.hint, self.hint_weight = hint, hint_weight

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        if self.cache is not None:
            t_logits = self.cache(inputs)
        else:
            with torch.no_grad():
                t_logits = self.teacher(inputs)
        loss = kd_loss(outputs, t_logits, targets, self.T, self.alpha)
        if self.hint is not None:
            s_tap, t_tap, hint_loss = self.hint
            loss = loss + self.hint_weight * hint_loss(s_tap.output, t_tap.output)
        return loss


def distill(student: nn.Module, teacher: nn.Module, train_loader, val_loader=None, *, T: float = 4.0,
            alpha: float = 0.9, epochs: int = 10, lr: float = 1e-3, optimizer: str = "adam",
            weight_decay: float = 0.0, schedule: str = "constant", cache_teacher: bool = True,
            hint: tuple[str, str, HintLoss] | None = None, hint_weight: float = 1.0, device="auto",
            progress: bool = True, desc: str = "distill", callbacks=()) -> dict:
    """Train ``student`` in place to match the frozen ``teacher`` on ``train_loader`` (Hinton et al. 2015).

    The loss is ``kd_loss(student, teacher, targets, T, alpha)``; targets equal to ``coursekit.distill.UNLABELED``
    (-1) mark transfer-set inputs without a label. ``cache_teacher=True`` computes the teacher's logits once for
    the loader's whole dataset (``TeacherCache``); it is ignored with ``hint`` (the teacher must run to expose its
    features). ``hint=(student_layer, teacher_layer, HintLoss(...))`` adds ``hint_weight`` times the FitNets hint
    loss between those layers (Romero et al. 2015); the regressor is trained with the student.

    Returns ``fit``'s history plus ``teacher_was_training``, ``teacher_forward_rows`` (rows the teacher ran on)
    and ``cache_hits``.
    """
    T = _check_temperature(T)
    alpha = check_probability("alpha", alpha)
    epochs = check_int("epochs", epochs, min_value=1)
    was_training = freeze_teacher(teacher)
    dev = select_device(device)
    teacher.to(dev)
    student.to(dev)
    params = list(student.parameters())
    taps: list[FeatureTap] = []
    hint_triplet = None
    if hint is not None:
        if not (isinstance(hint, tuple) and len(hint) == 3 and isinstance(hint[2], HintLoss)):
            raise TypeError("hint must be (student_layer_name, teacher_layer_name, HintLoss(...))")
        s_name, t_name, hint_loss = hint
        hint_loss.to(dev)
        taps = [FeatureTap(student, s_name), FeatureTap(teacher, t_name, detach=True)]
        hint_triplet = (taps[0], taps[1], hint_loss)
        params += list(hint_loss.parameters())
    cache = None
    if cache_teacher and hint is None:
        cache = TeacherCache(teacher, train_loader.dataset)
    opt = make_optimizer(nn.ParameterList(params), optimizer, lr, weight_decay)
    loss_fn = DistillLoss(teacher, T, alpha, cache, hint_triplet, hint_weight)
    try:
        history = fit(student, train_loader, val_loader, epochs=epochs, optimizer=opt, schedule=schedule,
                      loss_fn=loss_fn, device=dev, progress=progress, desc=desc, callbacks=callbacks)
    finally:
        for tap in taps:
            tap.remove()
    n_rows = len(train_loader.dataset) * epochs
    history["teacher_was_training"] = was_training
    history["cache_hits"] = cache.hits if cache else 0
    history["teacher_forward_rows"] = (len(cache) + cache.misses) if cache else n_rows
    return history


def cached_student(model_name: str, dataset_name: str, recipe: dict, train: Callable[[nn.Module], dict], *,
                   seed: int = 0, fast: bool | None = None, cache: bool = True, **model_kwargs) -> nn.Module:
    """Build ``model_name`` for ``dataset_name``, train it with ``train(model)`` once and cache the weights.

    ``recipe`` must describe everything ``train`` does (teacher checkpoint, T, alpha, data sizes, epochs...): it
    is hashed into the file name, like ``coursekit.train.pretrained``'s recipes. Returns the model in eval mode
    on CPU with ``checkpoint_info`` (path, cached, and what ``train`` returned under "history").
    """
    seed = check_int("seed", seed, min_value=0)
    fast = _env.fast_mode() if fast is None else bool(fast)
    path = checkpoint_path(model_name, dataset_name, seed, {"trainer": recipe}, model_kwargs, fast)
    seed_everything(seed)
    model = build_model(model_name, dataset_name, **model_kwargs)
    if cache and path.exists():
        try:
            meta = _load(path, model)
            model.eval()
            model.checkpoint_info = {**meta, "path": str(path), "cached": True}
            return model
        except Exception:  # noqa: BLE001 (unreadable or mismatched: retrain)
            path.rename(path.with_name(path.name + ".corrupt"))
            seed_everything(seed)
            model = build_model(model_name, dataset_name, **model_kwargs)
    history = train(model) or {}
    model.to("cpu").eval()
    meta = {"file": path.name, "model": model_name, "dataset": dataset_name, "seed": seed, "fast": fast,
            "recipe": recipe, "history": {k: v for k, v in history.items()
                                          if isinstance(v, (list, int, float, bool))}}
    if cache:
        _save(path, model, meta)
    model.checkpoint_info = {**meta, "path": str(path), "cached": False}
    return model


__all__ = ["DistillLoss", "TeacherCache", "cached_student", "distill", "freeze_teacher", "teacher_logits"]
