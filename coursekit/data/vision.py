"""Optional torchvision datasets (MNIST, Fashion-MNIST, CIFAR-10), used only when already on disk.

coursekit never downloads. Where it looks, first match wins: the ``root`` argument, the environment variable
``COURSEKIT_DATA_ROOT``, then ``<coursekit cache dir>/datasets`` (``~/.cache/coursekit/datasets`` on Linux).
The layout inside the root is torchvision's own (``MNIST/raw/...``, ``FashionMNIST/raw/...``,
``cifar-10-batches-py/...``), so a folder filled by torchvision anywhere else can be copied over as it is.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from coursekit import _env

# name -> (torchvision class name, folder torchvision creates under root)
TORCHVISION_SETS = {
    "mnist": ("MNIST", "MNIST"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
}


def data_root(root=None) -> Path:
    """The folder searched for torchvision datasets (see the module docstring for the order)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("COURSEKIT_DATA_ROOT")
    if env:
        return Path(env).expanduser()
    return _env.cache_dir() / "datasets"


def missing_message(name: str, root: Path) -> str:
    """How to get a missing dataset onto this machine, with the exact path coursekit searched."""
    cls, folder = TORCHVISION_SETS[name]
    return (
        f"dataset {name!r} is not on disk: looked for torchvision's {cls} files in {root / folder} "
        f"(root {root}). coursekit never downloads at run time. To get it, on a machine with network run:\n"
        f"    python -c \"import torchvision; "
        f"torchvision.datasets.{cls}(r'{root}', train=True, download=True); "
        f"torchvision.datasets.{cls}(r'{root}', train=False, download=True)\"\n"
        f"or copy an existing torchvision '{folder}' folder into {root}. "
        f"Pass root=... or set COURSEKIT_DATA_ROOT to use another folder."
    )


def load_torchvision(name: str, train: bool, root=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 (N, C, H, W) and labels as int64 (N,), read with ``download=False``."""
    import torchvision

    cls, _ = TORCHVISION_SETS[name]
    path = data_root(root)
    try:
        ds = getattr(torchvision.datasets, cls)(str(path), train=train, download=False)
    except RuntimeError as err:  # torchvision: "Dataset not found ..." / "... or corrupted"
        raise FileNotFoundError(missing_message(name, path)) from err
    x = torch.as_tensor(ds.data)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)   # MNIST (N,H,W); CIFAR (N,H,W,C)
    return x.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long)
