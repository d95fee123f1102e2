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


def _user_dir(env_var: str, kind: str) -> Path:
    """``$env_var`` if set, else the platform's user cache/data folder for coursekit; created if missing."""
    override = os.environ.get(env_var)
    if override:
        path = Path(override).expanduser()
    else:
        import platformdirs

        path = Path(getattr(platformdirs, f"user_{kind}_dir")("coursekit"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Directory for trained checkpoints and generated data (``COURSEKIT_CACHE`` overrides it)."""
    return _user_dir("COURSEKIT_CACHE", "cache")


def data_dir() -> Path:
    """Directory for user data such as quiz progress (``COURSEKIT_DATA`` overrides it)."""
    return _user_dir("COURSEKIT_DATA", "data")
