"""Reference models trained once and cached: ``pretrained(model_name, dataset_name, seed=0)``.

The first call trains with the recipe in ``RECIPES`` (on CPU, seconds for digits) and saves
``{"state_dict", "meta"}`` under ``coursekit._env.cache_dir() / "checkpoints"``; later calls load it with
``torch.load(..., weights_only=True)``. The file name carries a hash of everything that changes the weights:
model, dataset, seed, hyperparameters, model keyword arguments, fast mode and ``CODE_VERSION`` (bump it when
a model, a dataset or the training loop changes). A file that cannot be read or does not match is moved aside
to ``<name>.corrupt`` and the model is retrained, so a broken cache never stops a notebook.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from coursekit import _env
from coursekit._validate import check_choice, check_int
from coursekit.data import get_loaders
from coursekit.models import DEFAULT_DATASET, build_model
from coursekit.models.registry import MODELS
from coursekit.train.device import seed_everything
from coursekit.train.loop import evaluate, fit

CODE_VERSION = 1

# Training recipes; fast_epochs is used in fast mode. Measured with seed 0 on 2 CPU cores (torch 2.14 CPU),
# test accuracy and training time, full mode | fast mode:
_DEFAULT_RECIPE = {"epochs": 10, "fast_epochs": 3, "lr": 1e-3, "batch_size": 64, "optimizer": "adam",
                   "weight_decay": 0.0, "schedule": "cosine"}
RECIPES = {
    # 96.9 %, 1.5 s | 93.3 %, 0.4 s
    ("mlp", "digits"): {"epochs": 50, "fast_epochs": 30, "lr": 1e-3, "batch_size": 32},
    # 98.6 %, 2.7 s | 95.6 %, 0.5 s
    ("lenet", "digits"): {"epochs": 40, "fast_epochs": 15, "lr": 3e-3, "batch_size": 32},
    # 98.9 %, 2.0 s | 96.7 %, 0.4 s
    ("resnet", "digits"): {"epochs": 15, "fast_epochs": 6, "lr": 3e-3, "batch_size": 64},
    # 64.5 %, 3.5 s | 52.4 %, 0.5 s  (paper's MLP: ~68 %)
    ("mlp1d", "mnist1d"): {"epochs": 100, "fast_epochs": 30, "lr": 1e-2, "batch_size": 100,
                          "schedule": "constant"},
    # 89.8 %, 7.8 s | 76.3 %, 1.1 s  (paper's CNN: ~94 %, trained on all 4000 examples)
    ("cnn1d", "mnist1d"): {"epochs": 100, "fast_epochs": 30, "lr": 1e-2, "batch_size": 100,
                          "schedule": "constant"},
}


def recipe(model_name: str, dataset_name: str, fast: bool = False, epochs: int | None = None) -> dict:
    """The training hyperparameters ``pretrained`` uses for this model/dataset pair."""
    r = {**_DEFAULT_RECIPE, **RECIPES.get((model_name, dataset_name), {})}
    r["epochs"] = epochs if epochs is not None else r["fast_epochs"] if fast else r["epochs"]
    del r["fast_epochs"]
    return r


def checkpoint_path(model_name: str, dataset_name: str, seed: int, hparams: dict, model_kwargs: dict,
                    fast: bool) -> Path:
    """Where the checkpoint for this exact configuration lives (the file need not exist)."""
    key = {"model": model_name, "dataset": dataset_name, "seed": seed, "hparams": hparams,
           "model_kwargs": model_kwargs, "fast": fast, "version": CODE_VERSION,
           "torch": torch.__version__.split("+")[0]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=repr).encode()).hexdigest()[:16]
    name = f"{model_name}-{dataset_name}-seed{seed}{'-fast' if fast else ''}-{digest}.pt"
    return _env.cache_dir() / "checkpoints" / name


def _load(path: Path, model: nn.Module) -> dict:
    """Load a checkpoint into ``model``; any problem raises (the caller moves the file aside)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    meta = blob.get("meta", {}) if isinstance(blob, dict) else {}
    if "state_dict" not in blob or meta.get("file") != path.name:
        raise ValueError(f"{path} is not a coursekit checkpoint for this configuration")
    model.load_state_dict(blob["state_dict"])   # strict: every key and shape must match
    return blob["meta"]


def _save(path: Path, model: nn.Module, meta: dict) -> None:
    """Write atomically (temporary file, then rename) so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
    os.replace(tmp, path)


def pretrained(model_name: str, dataset_name: str | None = None, *, seed: int = 0,
               epochs: int | None = None, progress: bool = True, fast: bool | None = None, cache: bool = True,
               **model_kwargs) -> nn.Module:
    """A trained ``model_name`` for ``dataset_name`` (default: the model's own dataset), in eval mode on CPU.

    Trains once per configuration (see ``RECIPES``) and caches the weights; ``cache=False`` always retrains
    and writes nothing. ``epochs`` overrides the recipe. ``model_kwargs`` go to ``build_model``.
    The returned model has a ``checkpoint_info`` dict: path, whether it came from the cache, the recipe,
    final validation accuracy, test accuracy and training time in seconds.
    """
    check_choice("model_name", model_name, MODELS)
    dataset_name = dataset_name or DEFAULT_DATASET[model_name]
    if dataset_name is None:
        raise ValueError(f"model_name={model_name!r} has no default dataset; pass dataset_name=")
    seed = check_int("seed", seed, min_value=0)
    if epochs is not None:
        epochs = check_int("epochs", epochs, min_value=1)
    fast = _env.fast_mode() if fast is None else bool(fast)
    hparams = recipe(model_name, dataset_name, fast, epochs)
    path = checkpoint_path(model_name, dataset_name, seed, hparams, model_kwargs, fast)

    seed_everything(seed)
    model = build_model(model_name, dataset_name, **model_kwargs)
    info = {"path": str(path), "cached": False, "recovered_from": None}
    if cache and path.exists():
        try:
            meta = _load(path, model)
            model.eval()
            model.checkpoint_info = {**meta, **info, "cached": True}
            return model
        except Exception as err:  # noqa: BLE001 (unreadable, truncated, wrong config: all mean retrain)
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            info["recovered_from"] = f"{aside} ({type(err).__name__})"
            if progress:
                print(f"coursekit: checkpoint {path.name} could not be loaded ({type(err).__name__}); "
                      f"moved it to {aside.name} and retraining.")
            seed_everything(seed)
            model = build_model(model_name, dataset_name, **model_kwargs)

    loaders = get_loaders(dataset_name, batch_size=hparams["batch_size"], seed=seed, fast=fast)
    history = fit(model, loaders.train, loaders.val, epochs=hparams["epochs"], lr=hparams["lr"],
                  optimizer=hparams["optimizer"], weight_decay=hparams["weight_decay"],
                  schedule=hparams["schedule"], device="cpu", progress=progress,
                  desc=f"{model_name}/{dataset_name}")
    meta = {"file": path.name, "model": model_name, "dataset": dataset_name, "seed": seed, "fast": fast,
            "version": CODE_VERSION, "hparams": hparams,
            "model_kwargs": {k: repr(v) for k, v in model_kwargs.items()},
            "val_accuracy": history["val_accuracy"][-1],
            "test_accuracy": evaluate(model, loaders.test)["accuracy"],
            "train_seconds": history["train_seconds"], "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "history": {k: v for k, v in history.items() if isinstance(v, list)}}
    if cache:
        _save(path, model, meta)
    model.eval()
    model.checkpoint_info = {**meta, **info}
    return model


__all__ = ["CODE_VERSION", "RECIPES", "checkpoint_path", "pretrained", "recipe"]
