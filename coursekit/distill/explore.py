"""Pictures and an explorer for chapter 05: what a teacher's soft targets say at each temperature.

* ``plot_soft_targets``: the teacher's class distribution for one input at several temperatures (Hinton et al.
  2015, eq. 1), the label's one-hot beside it: the "dark knowledge" is the shape of the small bars.
* ``class_similarity``: the average soft target of each true class, a (classes x classes) matrix whose
  off-diagonal mass says which classes the teacher confuses (which it thinks are similar).
* ``temperature_explorer``: an ipywidgets slider over T and a picker over examples, redrawing the distribution and
  its entropy live.
The loss math lives in :mod:`coursekit.distill.soft`; this module only calls it.
"""
from __future__ import annotations

import math

import torch

from coursekit.distill.soft import softmax_t


def entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits of each row of probabilities (0 for one-hot, log2(classes) for uniform)."""
    return -(p * torch.log2(p.clamp_min(1e-30))).sum(-1)


def plot_soft_targets(logits: torch.Tensor, label: int | None = None, temperatures=(1.0, 4.0, 10.0), ax=None,
                      class_names=None):
    """Bars of ``softmax_t(logits, T)`` for each T (one input's logits, shape (classes,)). Returns the axes."""
    import matplotlib.pyplot as plt

    logits = torch.as_tensor(logits, dtype=torch.float32).flatten()
    c = len(logits)
    names = class_names or [str(i) for i in range(c)]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 2.8))
    width = 0.8 / (len(temperatures) + (label is not None))
    offset = 0
    if label is not None:
        ax.bar([i - 0.4 + width / 2 for i in range(c)], [1.0 if i == label else 0.0 for i in range(c)], width,
               color="#999", label="label (one-hot)")
        offset = 1
    for k, T in enumerate(temperatures):
        p = softmax_t(logits, T)
        ax.bar([i - 0.4 + width * (k + offset + 0.5) for i in range(c)], p.tolist(), width,
               label=f"T = {T:g}  ({entropy_bits(p):.2f} bits)")
    ax.set_xticks(range(c), names)
    ax.set_ylabel("probability")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.2)
    ax.legend(fontsize=8, ncol=2)
    return ax


@torch.no_grad()
def class_similarity(logits: torch.Tensor, labels: torch.Tensor, T: float = 4.0) -> torch.Tensor:
    """Mean ``softmax_t(logits, T)`` over the examples of each true class: row c = what the teacher says about c."""
    p = softmax_t(torch.as_tensor(logits, dtype=torch.float32), T)
    labels = torch.as_tensor(labels)
    c = p.shape[1]
    return torch.stack([p[labels == k].mean(0) if bool((labels == k).any()) else torch.full((c,), math.nan)
                        for k in range(c)])


def temperature_explorer(logits: torch.Tensor, labels: torch.Tensor, class_names=None):
    """ipywidgets: a T slider and an example picker -> the teacher's distribution at T and the most similar classes.

    ``logits``: the teacher's (N, classes) logits for N examples; ``labels``: their true classes.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt

    logits = torch.as_tensor(logits, dtype=torch.float32)
    labels = torch.as_tensor(labels)
    names = class_names or [str(i) for i in range(logits.shape[1])]
    temp = w.FloatLogSlider(value=1.0, base=10, min=-0.5, max=1.5, step=0.05, description="T",
                            continuous_update=False)
    pick = w.IntSlider(value=0, min=0, max=len(logits) - 1, description="example", continuous_update=False)
    out = w.Output()

    def update(*_):
        z, y, T = logits[pick.value], int(labels[pick.value]), temp.value
        p = softmax_t(z, T)
        order = [int(i) for i in torch.argsort(p, descending=True) if int(i) != y][:3]
        with out:
            out.clear_output(wait=True)
            _, ax = plt.subplots(figsize=(7, 2.6))
            ax.bar(names, p.tolist(), color=["#2ca02c" if i == y else "#1f77b4" for i in range(len(names))])
            ax.set_ylim(0, 1)
            ax.set_ylabel("teacher probability")
            ax.set_title(f"true class {names[y]}, T = {T:.2f}: entropy {entropy_bits(p):.2f} bits; most similar "
                         f"wrong classes: " + ", ".join(f"{names[i]} ({p[i]:.2f})" for i in order), fontsize=9)
            plt.tight_layout()
            plt.show()

    for control in (temp, pick):
        control.observe(update, names="value")
    update()
    return w.VBox([w.HBox([temp, pick]), out])


__all__ = ["class_similarity", "entropy_bits", "plot_soft_targets", "temperature_explorer"]
