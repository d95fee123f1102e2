"""Benchmark suites behind ``coursekit bench --suite NAME``.

Each chapter adds a module here (``coursekit/suites/NAME.py``, found automatically) that registers a suite with
``@register("name", "one-line description")``. A suite is a function
``suite(ctx: SuiteContext) -> list[dict]`` returning records made with ``coursekit.bench.make_record``;
``run_suite`` adds the hardware report so results never lose the machine they were measured on.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import torch

from coursekit._env import fast_mode
from coursekit._validate import check_choice, check_int


@dataclass
class SuiteContext:
    """How a suite should run: device, pinned thread count, fast mode, progress bars and repeat count."""

    device: str = "cpu"
    threads: int = 1
    fast: bool = False
    progress: bool = True
    repeats: int = 30

    def require_cpu(self, suite: str, measures: str) -> None:
        """Refuse a device other than the CPU for suite ``suite``, saying what it ``measures`` and how to run it."""
        if self.device != "cpu":
            raise ValueError(f"the {suite} suite {measures}; use --device cpu")

    @property
    def batch_sizes(self) -> tuple[int, int]:
        """Batch 1 (latency-bound serving) and a large batch (throughput-bound serving)."""
        return (1, 64)


@dataclass
class Suite:
    name: str
    description: str
    run: Callable[[SuiteContext], list[dict]]


_SUITES: dict[str, Suite] = {}


def register(name: str, description: str):
    """Decorator: make ``fn(ctx) -> records`` available as ``coursekit bench --suite name``."""
    def decorator(fn):
        _SUITES[name] = Suite(name, description, fn)
        return fn
    return decorator


def _load() -> dict[str, Suite]:
    """Import every module in this package once (each registers its suites); cheap after the first call."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return _SUITES


def list_suites() -> dict[str, str]:
    """Suite names and their one-line descriptions."""
    return {name: suite.description for name, suite in sorted(_load().items())}


def resolve_device(device: str) -> str:
    """Check that ``device`` is usable here; explain what to do when it is not."""
    check_choice("device", device, ("cpu", "cuda", "mps"))
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                         "use --device cpu, or install a CUDA build of torch on a machine with an NVIDIA GPU")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' but Apple's Metal backend is not available here; use --device cpu")
    return device


def run_suite(name: str, device: str = "cpu", threads: int = 1, fast: bool | None = None,
              progress: bool = True, repeats: int | None = None) -> dict:
    """Run suite ``name`` and return ``{"suite", "hardware", "records"}`` (the JSON that ``--json`` writes)."""
    from coursekit.bench import hardware_report

    suites = _load()
    check_choice("suite", name, sorted(suites))
    fast = fast_mode() if fast is None else fast
    ctx = SuiteContext(
        device=resolve_device(device), threads=check_int("threads", threads, min_value=1), fast=fast,
        progress=progress, repeats=check_int("repeats", repeats, min_value=3) if repeats else (10 if fast else 30),
    )
    records = suites[name].run(ctx)
    return {"suite": name, "hardware": hardware_report(), "records": records}
