"""The dataset registry: ``list_datasets``, ``dataset_info``, ``load_dataset`` and ``get_loaders``.

Every dataset has three disjoint, deterministic splits ("train", "val", "test"):

=============  ==========================================================  ===========================
name           source                                                      train / val / test
=============  ==========================================================  ===========================
digits         scikit-learn's bundled UCI handwritten digits, 8x8, pixel/16  60/20/20 % stratified by seed
mnist1d        generated procedurally (Greydanus 2020), length 40            official 4000 -> 80/20 by
                                                                             seed, official 1000 test
mnist          torchvision, on disk only                                     60000 -> 90/10 by seed, 10000
fashion_mnist  torchvision, on disk only                                     as mnist
cifar10        torchvision, on disk only                                     50000 -> 90/10 by seed, 10000
=============  ==========================================================  ===========================

Fast mode (``coursekit._env.fast_mode()``) keeps the validation and test sets of digits and MNIST-1D whole and
takes a stratified subset of the training set (``DatasetInfo.fast_train_size``); for the torchvision sets it
also caps validation at 1000 and test at 2000 examples.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from coursekit import _env
from coursekit._validate import check_choice, check_int
from coursekit.data.arrays import ArrayDataset, stratified_split, stratified_subset
from coursekit.data.mnist1d import make_mnist1d
from coursekit.data.vision import load_torchvision

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset: ``input_shape`` is (C, H, W) for images, (C, L) for 1D."""

    name: str
    num_classes: int
    input_shape: tuple
    description: str
    citation: str
    fast_train_size: int
    on_disk: bool = False   # True: optional torchvision data that must already be on disk

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    @property
    def num_features(self) -> int:
        return int(np.prod(self.input_shape))


_INFOS = {
    "digits": DatasetInfo(
        "digits", 10, (1, 8, 8),
        "1797 real 8x8 handwritten digits bundled with scikit-learn (UCI optdigits test set), pixels / 16.",
        "Alpaydin & Kaynak (1998), UCI Optical Recognition of Handwritten Digits", fast_train_size=500),
    "mnist1d": DatasetInfo(
        "mnist1d", 10, (1, 40),
        "MNIST-1D: 5000 procedurally generated 1D digit signals of length 40 (published default arguments).",
        "Greydanus & Kobak, Scaling down deep learning with MNIST-1D (2020), arXiv:2011.14439",
        fast_train_size=1500),
    "mnist": DatasetInfo(
        "mnist", 10, (1, 28, 28), "MNIST 28x28 handwritten digits (torchvision, must be on disk).",
        "LeCun et al., Gradient-based learning applied to document recognition (1998)",
        fast_train_size=5000, on_disk=True),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", 10, (1, 28, 28),
        "Fashion-MNIST 28x28 clothing images (torchvision, must be on disk).",
        "Xiao, Rasul & Vollgraf, Fashion-MNIST (2017), arXiv:1708.07747", fast_train_size=5000, on_disk=True),
    "cifar10": DatasetInfo(
        "cifar10", 10, (3, 32, 32), "CIFAR-10 32x32 colour images (torchvision, must be on disk).",
        "Krizhevsky, Learning multiple layers of features from tiny images (2009)",
        fast_train_size=5000, on_disk=True),
}
_FAST_EVAL_CAP = {"val": 1000, "test": 2000}   # torchvision sets only


def list_datasets() -> list[str]:
    """Names accepted by ``load_dataset`` and ``get_loaders``; the first three need nothing on disk."""
    return list(_INFOS)


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (ValueError listing the known names otherwise)."""
    check_choice("name", name, _INFOS)
    return _INFOS[name]


@lru_cache(maxsize=2)
def _digits_arrays():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)   # (1797, 1, 8, 8) in [0, 1]
    return x, torch.tensor(bunch.target, dtype=torch.long)


def _source(name: str, split: str, seed: int, root) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Inputs, labels and the source-row indices of one split, before any fast-mode shrinking."""
    if name == "digits":
        x, y = _digits_arrays()
        idx = stratified_split(y.numpy(), (0.6, 0.2, 0.2), seed)[SPLITS.index(split)]
        return x[idx], y[idx], idx
    if name == "mnist1d":
        d = make_mnist1d()
        if split == "test":
            return torch.from_numpy(d["x_test"]).unsqueeze(1), torch.from_numpy(d["y_test"]), \
                np.arange(len(d["y_test"]))
        idx = stratified_split(d["y"], (0.8, 0.2), seed)[0 if split == "train" else 1]
        return torch.from_numpy(d["x"][idx]).unsqueeze(1), torch.from_numpy(d["y"][idx]), idx
    x, y = load_torchvision(name, train=split != "test", root=root)
    if split == "test":
        return x, y, np.arange(len(y))
    idx = stratified_split(y.numpy(), (0.9, 0.1), seed)[0 if split == "train" else 1]
    return x[idx], y[idx], idx


def load_dataset(name: str = "digits", split: str = "train", *, seed: int = 0, fast: bool | None = None,
                 root=None) -> ArrayDataset:
    """One split of a dataset as an in-memory :class:`ArrayDataset` (``.x``, ``.y``, ``.indices``, ``.info``).

    ``seed`` picks the train/val partition (the test set never depends on it). ``fast=None`` follows
    ``coursekit._env.fast_mode()``. ``root`` is only used by the on-disk torchvision sets.
    """
    info = dataset_info(name)
    check_choice("split", split, SPLITS)
    seed = check_int("seed", seed, min_value=0)
    fast = _env.fast_mode() if fast is None else bool(fast)
    x, y, idx = _source(name, split, seed, root)
    if fast:
        size = info.fast_train_size if split == "train" else _FAST_EVAL_CAP[split] if info.on_disk else len(y)
        keep = stratified_subset(np.arange(len(y)), y.numpy(), size, seed)
        x, y, idx = x[keep], y[keep], idx[keep]
    return ArrayDataset(x, y, indices=idx, info=info, split=split)


class Loaders(NamedTuple):
    """``train, val, test = get_loaders(...)``; each loader's ``.dataset.info`` is the DatasetInfo."""

    train: DataLoader
    val: DataLoader
    test: DataLoader


def get_loaders(name: str = "digits", *, batch_size: int = 64, seed: int = 0, fast: bool | None = None,
                eval_batch_size: int = 512, root=None) -> Loaders:
    """Train/val/test DataLoaders. Only the training loader shuffles, with a ``torch.Generator`` seeded by
    ``seed``, and ``num_workers=0``: two calls with the same arguments yield the same batches in order."""
    batch_size = check_int("batch_size", batch_size, min_value=1)
    eval_batch_size = check_int("eval_batch_size", eval_batch_size, min_value=1)
    parts = [load_dataset(name, s, seed=seed, fast=fast, root=root) for s in SPLITS]
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(parts[0], batch_size=batch_size, shuffle=True, generator=generator, num_workers=0)
    val, test = (DataLoader(p, batch_size=eval_batch_size, shuffle=False, num_workers=0) for p in parts[1:])
    return Loaders(train, val, test)
