"""A rank slider: factorize one Linear of a model at the chosen rank and see weight error, accuracy, size and
latency side by side (the trade-off of Eq. 1-2 in ``svd.py``, measured instead of assumed)."""
from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn

from coursekit.lowrank.svd import (
    break_even_rank,
    check_rank,
    factorized_params,
    svd_factorize,
    truncation_error,
)
from coursekit.metrics import evaluate
from coursekit.surgery import get_layer, replace_layer


def rank_point(model: nn.Module, layer: str, rank: int, loader=None,
               latency_fn: Callable[[nn.Module], float] | None = None) -> dict:
    """Factorize ``layer`` of a copy of ``model`` at ``rank``; return error, parameters, accuracy, latency."""
    dense = get_layer(model, layer)
    if not isinstance(dense, nn.Linear):
        raise TypeError(f"layer {layer!r} is a {type(dense).__name__}; the rank explorer takes an nn.Linear")
    m, n = dense.weight.shape
    rank = check_rank(rank, m, n, layer=layer)
    small = copy.deepcopy(model)
    replace_layer(small, layer, svd_factorize(dense, rank, name=layer))
    small.eval()
    w_norm = float(dense.weight.detach().double().norm())
    point = {"rank": rank, "relative_error": truncation_error(dense.weight, rank) / w_norm,
             "params": factorized_params(m, n, rank, dense.bias is not None), "dense_params": m * n + m,
             "break_even_rank": break_even_rank(m, n)}
    if loader is not None:
        point["accuracy"] = evaluate(small, loader)["accuracy"]
    if latency_fn is not None:
        point["latency_ms"] = latency_fn(small)
    return point


def rank_explorer(model: nn.Module, layer: str, loader=None, latency_fn=None, ranks=None):
    """An ipywidgets slider over ``ranks`` (default 1..min(m, n)) showing ``rank_point`` for each choice."""
    import ipywidgets as widgets

    m, n = get_layer(model, layer).weight.shape
    ranks = list(ranks) if ranks is not None else list(range(1, min(m, n) + 1))
    slider = widgets.SelectionSlider(options=ranks, value=ranks[len(ranks) // 2], description="rank",
                                     continuous_update=False)
    out = widgets.HTML()
    base = {"accuracy": evaluate(model, loader)["accuracy"] if loader is not None else None,
            "latency_ms": latency_fn(model) if latency_fn is not None else None}

    def refresh(_=None):
        p = rank_point(model, layer, slider.value, loader, latency_fn)
        rows = [("weight error ||W - W_r||_F / ||W||_F", f"{p['relative_error']:.1%}"),
                ("parameters of the layer", (f"{p['params']:,} (dense {p['dense_params']:,}; break-even rank "
                                             f"{p['break_even_rank']})"))]
        if "accuracy" in p:
            rows.append(("test accuracy", f"{p['accuracy']:.1%} (dense {base['accuracy']:.1%})"))
        if "latency_ms" in p:
            rows.append(("latency", f"{p['latency_ms']:.3f} ms (dense {base['latency_ms']:.3f} ms)"))
        out.value = "<table>" + "".join(f"<tr><td>{k}</td><td><b>{v}</b></td></tr>" for k, v in rows) + "</table>"

    slider.observe(refresh, names="value")
    refresh()
    return widgets.VBox([slider, out])
