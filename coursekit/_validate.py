"""Argument checks shared by every layer.

Each helper raises a ValueError or TypeError whose message names the argument, says what was given and
what is allowed, so a learner sees how to fix the call instead of a wrong number later on.
"""
from __future__ import annotations

import math
from collections.abc import Iterable


def check_choice(name: str, value, allowed: Iterable):
    """Return ``value`` if it is one of ``allowed``; otherwise raise ValueError listing the choices."""
    allowed = list(allowed)
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={value!r} is not supported; choose one of: {shown}")
    return value


def check_int(name: str, value, *, min_value: int | None = None, max_value: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer within [min_value, max_value]."""
    if isinstance(value, bool) or not isinstance(value, int):
        if hasattr(value, "__index__"):
            value = value.__index__()
        else:
            raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if min_value is not None and value < min_value:
        raise ValueError(f"{name}={value} is too small; it must be >= {min_value}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name}={value} is too large; it must be <= {max_value}")
    return value


def check_positive(name: str, value, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if it is a finite number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value} must be finite")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value} must be {bound}")
    return float(value)


def check_probability(name: str, value, *, low: float = 0.0, high: float = 1.0) -> float:
    """Return ``value`` if it is a number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise ValueError(f"{name}={value!r} must be a number in [{low}, {high}]")
    return float(value)
