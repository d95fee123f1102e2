"""Run-time settings read from the environment: fast mode, threads, and where coursekit keeps its caches."""
from __future__ import annotations

import os
from pathlib import Path


def fast_mode() -> bool:
    """True when notebooks and suites should shrink data and epochs.

    Set by ``COURSEKIT_FAST=1`` (CI, quick checks) and by nbgrader, which sets ``NBGRADER_EXECUTION``
    inside its grading kernel. Every assertion stays meaningful in fast mode; only sizes shrink.
    """
    flag = os.environ.get("COURSEKIT_FAST", "").strip().lower()
    return flag in {"1", "true", "yes", "on"} or bool(os.environ.get("NBGRADER_EXECUTION"))


def cache_dir() -> Path:
    """Directory for trained checkpoints and generated data (``COURSEKIT_CACHE`` overrides it)."""
    override = os.environ.get("COURSEKIT_CACHE")
    if override:
        path = Path(override).expanduser()
    else:
        from platformdirs import user_cache_dir

        path = Path(user_cache_dir("coursekit"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Directory for user data such as quiz progress (``COURSEKIT_DATA`` overrides it)."""
    override = os.environ.get("COURSEKIT_DATA")
    if override:
        path = Path(override).expanduser()
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir("coursekit"))
    path.mkdir(parents=True, exist_ok=True)
    return path
