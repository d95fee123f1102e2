"""Amdahl's law: the end-to-end speedup when only part of the work gets faster.

Amdahl, "Validity of the single processor approach to achieving large scale computing capabilities" (AFIPS 1967).
If a fraction ``p`` of the run time is accelerated ``s`` times and the rest is untouched, the new time is
``(1 - p) + p / s`` of the old one, so

    speedup = 1 / ((1 - p) + p / s)        and, even with s -> infinity,   speedup <= 1 / (1 - p).

Quantizing the Linear layers of a model whose time goes mostly to convolutions, or a kernel micro-benchmark that
shows 4x while the model around it barely moves: the part you did not accelerate caps the gain.
"""
from __future__ import annotations

import math

from coursekit._validate import check_positive, check_probability


def amdahl_speedup(fraction: float, speedup: float) -> float:
    """End-to-end speedup when ``fraction`` (0..1) of the time runs ``speedup`` times faster (``math.inf``: the
    limit ``1 / (1 - fraction)``, infinite when ``fraction`` is 1)."""
    p = check_probability("fraction", fraction)
    s = speedup if speedup == math.inf else check_positive("speedup", speedup)
    remaining = (1.0 - p) + p / s
    return math.inf if remaining == 0 else 1.0 / remaining


__all__ = ["amdahl_speedup"]
