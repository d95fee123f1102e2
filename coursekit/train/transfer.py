"""The transfer-set setting of distillation: a few labels plus many unlabelled inputs the teacher labels softly.

Hinton et al. (2015), sec. 3: the student can be trained on a *transfer set* that need not be the teacher's
training data, and need not be labelled: the teacher's soft targets are the labels. This is where distillation
pays most (the teacher's knowledge reaches inputs nobody labelled), and the setting chapter 05 measures.

``transfer_set`` builds it on MNIST-1D (Greydanus & Kobak 2020): ``n_labels`` labelled examples drawn, stratified,
from the training split; ``n_unlabeled`` fresh inputs from the same generator with another seed (new draws of the
same distribution, disjoint from train/val/test), their labels set to ``coursekit.distill.UNLABELED``.
``omit_class`` drops one class from the *unlabelled* inputs and the labelled ones (Hinton's omitted-digit-3
experiment, sec. 3: the student never sees the class, only the teacher's soft targets mention it).
"""
from __future__ import annotations

import numpy as np
import torch

from coursekit._validate import check_int
from coursekit.data import ArrayDataset, dataset_info, load_dataset, make_mnist1d, stratified_subset
from coursekit.distill import UNLABELED


def unlabeled_inputs(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` new MNIST-1D inputs (1, 40), balanced over the classes, from generator seed ``10_000 + seed``."""
    n = check_int("n", n, min_value=10)
    d = make_mnist1d(num_samples=n, train_split=1.0, seed=10_000 + seed)
    return torch.from_numpy(d["x"]).unsqueeze(1), torch.from_numpy(d["y"])


def transfer_set(n_labels: int = 800, n_unlabeled: int = 8000, *, seed: int = 0,
                 omit_class: int | None = None) -> dict:
    """``{"labeled", "unlabeled", "combined", "val", "test"}`` ArrayDatasets for the transfer-set experiment.

    ``combined`` = labelled rows (true labels) + unlabelled rows (label ``UNLABELED``): what a distilled student
    trains on. ``unlabeled.y`` holds ``UNLABELED`` too; the generator's true classes of the unlabelled inputs are
    kept in ``unlabeled.true_y`` for analysis only. val/test are MNIST-1D's own splits (never fast-shrunk here).
    """
    n_labels = check_int("n_labels", n_labels, min_value=10, max_value=3200)
    n_unlabeled = check_int("n_unlabeled", n_unlabeled, min_value=0)
    info = dataset_info("mnist1d")
    if omit_class is not None:
        omit_class = check_int("omit_class", omit_class, min_value=0, max_value=info.num_classes - 1)
    train = load_dataset("mnist1d", "train", seed=seed, fast=False)
    keep = stratified_subset(np.arange(len(train)), train.y.numpy(), n_labels, seed)
    lx, ly = train.x[keep], train.y[keep]
    if n_unlabeled:
        ux, uy_true = unlabeled_inputs(n_unlabeled, seed)
    else:
        ux, uy_true = torch.empty(0, *lx.shape[1:]), torch.empty(0, dtype=torch.long)
    if omit_class is not None:
        lmask, umask = ly != omit_class, uy_true != omit_class
        lx, ly, ux, uy_true = lx[lmask], ly[lmask], ux[umask], uy_true[umask]
    labeled = ArrayDataset(lx, ly, info=info, split="train")
    unlabeled = ArrayDataset(ux, torch.full((len(ux),), UNLABELED), info=info, split="transfer")
    unlabeled.true_y = uy_true
    combined = ArrayDataset(torch.cat([lx, ux]), torch.cat([ly, unlabeled.y]), info=info, split="transfer")
    return {"labeled": labeled, "unlabeled": unlabeled, "combined": combined,
            "val": load_dataset("mnist1d", "val", seed=seed, fast=False),
            "test": load_dataset("mnist1d", "test", seed=seed, fast=False)}


__all__ = ["transfer_set", "unlabeled_inputs"]
