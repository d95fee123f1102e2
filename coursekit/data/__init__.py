"""coursekit.data: offline datasets with deterministic train/val/test splits.

    >>> from coursekit.data import get_loaders, dataset_info
    >>> train, val, test = get_loaders("digits", batch_size=64, seed=0)
    >>> dataset_info("digits").input_shape
    (1, 8, 8)

Built in (nothing to download): ``digits`` (scikit-learn's real 8x8 handwritten digits) and ``mnist1d``
(Greydanus 2020, generated procedurally). Optional, read only when already on disk: ``mnist``,
``fashion_mnist``, ``cifar10`` (torchvision format; see ``coursekit.data.vision``).
"""
from coursekit.data.arrays import ArrayDataset, stratified_split, stratified_subset
from coursekit.data.datasets import (
    SPLITS,
    DatasetInfo,
    Loaders,
    dataset_info,
    get_loaders,
    list_datasets,
    load_dataset,
)
from coursekit.data.mnist1d import MNIST1D_DEFAULTS, make_mnist1d, mnist1d_templates
from coursekit.data.vision import data_root

__all__ = [
    "MNIST1D_DEFAULTS",
    "SPLITS",
    "ArrayDataset",
    "DatasetInfo",
    "Loaders",
    "data_root",
    "dataset_info",
    "get_loaders",
    "list_datasets",
    "load_dataset",
    "make_mnist1d",
    "mnist1d_templates",
    "stratified_split",
    "stratified_subset",
]
