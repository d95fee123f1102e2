"""Gradual pruning: the cubic sparsity schedule of Zhu & Gupta 2017 and a ``fit`` callback that follows it.

Zhu & Gupta 2017 ("To prune, or not to prune", eq. 1): from step t0 to t0 + n*dt the sparsity rises as

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n*dt))**3

fast at first, when many redundant weights exist, slowly near the end; before t0 it is s_i, after the end s_f.
Masks are recomputed every ``every`` optimizer steps and the network keeps training in between, which
recovers more accuracy at high sparsity than pruning once and fine-tuning.
"""
from __future__ import annotations

from torch import nn

from coursekit._validate import check_int, check_probability
from coursekit.prune.magnitude import global_magnitude_prune, magnitude_prune


def cubic_schedule(step: int, initial: float, final: float, begin: int, end: int) -> float:
    """Target sparsity at ``step`` (Zhu & Gupta 2017, eq. 1): ``initial`` until ``begin``, ``final`` from
    ``end`` on, and ``final + (initial - final) * (1 - (step - begin) / (end - begin))**3`` in between."""
    step = check_int("step", step, min_value=0)
    initial = check_probability("initial", initial)
    final = check_probability("final", final)
    begin = check_int("begin", begin, min_value=0)
    end = check_int("end", end, min_value=begin + 1)
    if step <= begin:
        return initial
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - begin) / (end - begin)) ** 3


class GradualPruning:
    """``coursekit.train.fit`` callback: after optimizer step t, prune ``targets`` to ``cubic_schedule(t, ...)``.

    ``targets``: ``[(module, name), ...]``. ``scope="global"`` uses one threshold over all targets, ``"layer"``
    gives each the same sparsity. Masks are updated every ``every`` steps (Zhu & Gupta prune every 100-1000
    steps) and on the last scheduled step; in between the reparametrisation keeps the zeros. ``history``
    records ``(step, sparsity)`` at every update.
    """

    def __init__(self, targets, final: float, begin: int, end: int, initial: float = 0.0, every: int = 1,
                 scope: str = "global"):
        self.targets = list(targets)
        self.final, self.initial = check_probability("final", final), check_probability("initial", initial)
        self.begin = check_int("begin", begin, min_value=0)
        self.end = check_int("end", end, min_value=self.begin + 1)
        self.every = check_int("every", every, min_value=1)
        if scope not in ("global", "layer"):
            raise ValueError(f"scope={scope!r} is not supported; choose 'global' or 'layer'")
        self.scope = scope
        self.history: list[tuple[int, float]] = []

    def prune_to(self, target: float, step: int = 0) -> None:
        """Prune every target to sparsity ``target`` now (and record it at ``step``)."""
        if self.scope == "global":
            global_magnitude_prune(self.targets, target)
        else:
            for module, name in self.targets:
                magnitude_prune(module, name, target)
        self.history.append((step, target))

    def after_step(self, model: nn.Module, step: int) -> None:
        if step < self.begin or (step > self.end and self.history):
            return
        if (step - self.begin) % self.every == 0 or step == self.end:
            target = cubic_schedule(step, self.initial, self.final, self.begin, self.end)
            self.prune_to(target, step)
