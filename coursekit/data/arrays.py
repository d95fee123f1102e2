"""In-memory datasets and deterministic, stratified splits.

Every dataset in coursekit is small enough to live in memory as two tensors: inputs ``x`` and integer
labels ``y``. :class:`ArrayDataset` wraps them for a ``torch.utils.data.DataLoader`` and remembers which rows
of the source data it holds (``indices``), so a split can always be traced back to the original arrays.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset


class ArrayDataset(Dataset):
    """Inputs ``x`` (N, ...) and labels ``y`` (N,) held in memory.

    ``uint8`` images (MNIST, CIFAR-10) are stored as bytes and scaled to float in [0, 1] per sample, so a
    60 000-image training set costs 47 MB instead of 188 MB. Float inputs are returned as they are.

    Attributes: ``x``, ``y``, ``indices`` (rows of the source arrays), ``info`` (a ``DatasetInfo``) and
    ``split`` ("train", "val" or "test").
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, indices=None, info=None, split: str = ""):
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        self.x, self.y = x, y.long()
        self.indices = np.arange(len(y)) if indices is None else np.asarray(indices)
        self.info, self.split = info, split

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        x = self.x[i]
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return x, self.y[i]

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole split as float32 numpy ``(X, y)``, X flattened to (N, features): ready for sklearn."""
        x = self.x.float() / 255.0 if self.x.dtype == torch.uint8 else self.x
        return x.reshape(len(x), -1).numpy().astype(np.float32), self.y.numpy()

    def __repr__(self) -> str:
        name = self.info.name if self.info is not None else "?"
        return f"ArrayDataset({name!r}, split={self.split!r}, n={len(self)}, x={tuple(self.x.shape[1:])})"


def stratified_split(labels, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> list[np.ndarray]:
    """Split ``range(len(labels))`` into disjoint index sets with the given fractions, stratified by label.

    Deterministic for a given ``seed`` (scikit-learn's ``train_test_split`` with ``stratify``, once
    per split). Each returned index array is sorted. ``fractions`` must sum to 1.
    """
    labels = np.asarray(labels)
    fractions = [float(f) for f in fractions]
    if len(fractions) < 2 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions={fractions} must be >= 2 positive numbers that sum to 1")
    rest = np.arange(len(labels))
    parts, remaining = [], 1.0
    for k, frac in enumerate(fractions[:-1]):
        take, rest = train_test_split(rest, train_size=frac / remaining, stratify=labels[rest],
                                      random_state=seed + k)
        parts.append(np.sort(take))
        remaining -= frac
    parts.append(np.sort(rest))
    return parts


def stratified_subset(indices, labels, size: int, seed: int = 0) -> np.ndarray:
    """A stratified, deterministic subset of ``indices`` with ``size`` elements (all of them if fewer)."""
    indices = np.asarray(indices)
    if size >= len(indices):
        return indices
    take, _ = train_test_split(indices, train_size=size, stratify=np.asarray(labels)[indices],
                               random_state=seed)
    return np.sort(take)
