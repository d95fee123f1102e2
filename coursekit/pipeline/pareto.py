"""The Pareto front of compressed variants: accuracy (higher is better) against latency and size (lower).

Variant a *dominates* b when a is at least as good on every objective and strictly better on one (Deb 2001,
"Multi-objective optimization using evolutionary algorithms", def. 2.5); the Pareto front is the set of
variants no other variant dominates, the only ones worth deploying. Equal points do not dominate each other,
so ties all stay on the front.

``pareto_front`` sorts the points lexicographically (best first on every objective, in order) and keeps a
running front: a point can only be dominated by a point sorted before it, and if it is dominated at all, some
front member dominates it (dominance is transitive), so comparing with the front is enough: O(n log n + n f)
for a front of f points instead of the O(n^2) pairwise check (Kung, Luccio & Preparata 1975 give the
O(n log n) algorithms for 2 and 3 objectives).
"""
from __future__ import annotations

import math

OBJECTIVES = {"accuracy": "max", "latency_ms": "min", "size_bytes": "min"}
"""The report's objectives and their direction."""


def _check_objectives(objectives: dict) -> dict:
    if not isinstance(objectives, dict) or not objectives:
        raise ValueError(f"objectives must be a non-empty dict {{key: 'max' or 'min'}}, got {objectives!r}")
    for key, sense in objectives.items():
        if sense not in ("max", "min"):
            raise ValueError(f"objectives[{key!r}]={sense!r} is not supported; choose 'max' or 'min'")
    return objectives


def _costs(points, objectives: dict) -> list[tuple[float, ...]]:
    """Each point as a tuple of costs (lower is better): maximised objectives negated."""
    costs = []
    for i, p in enumerate(points):
        row = []
        for key, sense in objectives.items():
            try:
                value = p[key]
            except (KeyError, IndexError, TypeError) as err:
                raise ValueError(f"points[{i}] has no {key!r}; every point needs {', '.join(objectives)}") from err
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"points[{i}][{key!r}]={value!r} must be a finite number")
            row.append(-float(value) if sense == "max" else float(value))
        costs.append(tuple(row))
    return costs


def dominates(a, b, objectives: dict = OBJECTIVES) -> bool:
    """True if point ``a`` is at least as good as ``b`` on every objective and strictly better on one."""
    ca, cb = _costs([a, b], _check_objectives(objectives))
    return all(x <= y for x, y in zip(ca, cb)) and any(x < y for x, y in zip(ca, cb))


def pareto_front(points, objectives: dict = OBJECTIVES) -> list[bool]:
    """For each of ``points`` (mappings with the ``objectives`` keys), True if no other point dominates it."""
    costs = _costs(list(points), _check_objectives(objectives))
    order = sorted(range(len(costs)), key=lambda i: costs[i])
    front: list[tuple[float, ...]] = []
    on_front = [False] * len(costs)
    for i in order:
        c = costs[i]
        if not any(all(f <= x for f, x in zip(fc, c)) and fc != c for fc in front):
            front.append(c)
            on_front[i] = True
    return on_front


def dominated(points, objectives: dict = OBJECTIVES) -> list[bool]:
    """The complement of :func:`pareto_front`: True for every dominated point."""
    return [not f for f in pareto_front(points, objectives)]


__all__ = ["OBJECTIVES", "dominated", "dominates", "pareto_front"]
