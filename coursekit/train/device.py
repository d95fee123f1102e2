"""Reproducibility and device selection."""
from __future__ import annotations

import random

import numpy as np
import torch

from coursekit._validate import check_int

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def seed_everything(seed: int = 0) -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device); make cuDNN deterministic.

    Training with coursekit's loaders (seeded generator, ``num_workers=0``) is then repeatable on one machine.
    """
    seed = check_int("seed", seed, min_value=0)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)   # also seeds CUDA
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return seed


def available_devices() -> list[str]:
    """Device types torch can use here, e.g. ``['cpu']`` or ``['cpu', 'cuda']``."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def select_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.

    Asking for a device this machine lacks raises ValueError naming what is available, instead of failing
    later inside a kernel.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__} {device!r}")
    kind, _, index = device.partition(":")
    if kind not in DEVICE_CHOICES or (index and (kind != "cuda" or not index.isdigit())):
        allowed = ", ".join(repr(d) for d in DEVICE_CHOICES)
        raise ValueError(f"device={device!r} is not supported; choose one of: {allowed} (or 'cuda:N')")
    have = available_devices()
    if kind == "auto":
        return torch.device("cuda" if "cuda" in have else "mps" if "mps" in have else "cpu")
    if kind not in have:
        why = {"cuda": f"torch.cuda.is_available() is False (torch {torch.__version__}, "
                       f"built with CUDA {torch.version.cuda or 'none'})",
               "mps": "torch.backends.mps.is_available() is False"}[kind]
        raise ValueError(f"device={device!r} was requested but {why}; available here: "
                         f"{', '.join(repr(d) for d in have)}. Use device='auto' to pick the best available.")
    if index:
        n = torch.cuda.device_count()
        check_int("cuda device index", int(index), min_value=0, max_value=n - 1)
    return torch.device(device)
