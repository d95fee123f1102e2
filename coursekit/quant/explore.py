"""Pictures and an explorer for chapter 02 (linear quantization and PTQ).

* ``plot_affine_map``: the affine map ``q = clamp(round(r / S) + Z)`` drawn as a real axis above an integer
  grid, with the scale, the zero point and the clipped regions.
* ``granularity_errors`` / ``plot_granularity_errors``: per-tensor vs per-channel vs per-group weight error.
* ``calibration_errors`` / ``plot_calibration``: the clipping range each observer picks on a set of activations,
  and the error it gives.
* ``weight_sqnr``: SQNR of every quantized layer's weights in a fake-quantized model.
* ``ptq_explorer``: bits, granularity and calibration method -> per-layer error and test accuracy, live.

The quantization math itself lives in :mod:`coursekit.quant.primitives`; this module only calls it.
"""
from __future__ import annotations

import torch

from coursekit._validate import check_choice, check_int
from coursekit.formats.metrics import error_metrics
from coursekit.metrics import evaluate
from coursekit.quant.observers import make_observer
from coursekit.quant.primitives import calc_qparams, fake_quantize, quant_range
from coursekit.surgery import CONV_TYPES, LINEAR_TYPES, named_layers

GRANULARITIES = ("per_tensor", "per_channel", "per_group")
CALIBRATION_METHODS = ("minmax", "percentile", "mse", "entropy")
METHOD_COLORS = {"minmax": "#d62728", "percentile": "#1f77b4", "mse": "#2ca02c", "entropy": "#ff7f0e"}


def plot_affine_map(min_val: float, max_val: float, bits: int = 3, symmetric: bool = False, signed: bool = True,
                    ax=None, convention: str = "torch"):
    """Draw how ``[min_val, max_val]`` maps onto the ``bits``-bit integer grid (few bits keep it legible).

    Top line: the real axis with every representable value ``S (q - Z)``; bottom line: the integer codes; each
    code is joined to its real value. Values beyond the outermost codes are clipped (shaded).
    Returns the matplotlib axes.
    """
    import matplotlib.pyplot as plt

    qmin, qmax = quant_range(bits, signed)
    scale, zp = calc_qparams(min_val, max_val, qmin, qmax, symmetric=symmetric, convention=convention)
    s, z = float(scale), int(zp)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 2.8))
    codes = torch.arange(qmin, qmax + 1)
    reals = (s * (codes - z)).tolist()
    lo, hi = min(reals[0], min_val), max(reals[-1], max_val)
    pad = 0.25 * (hi - lo)
    left, right = lo - pad, hi + pad
    q_left, q_right = qmin - 0.25 * (qmax - qmin), qmax + 0.25 * (qmax - qmin)

    def to_x(q):  # integer grid drawn on the same horizontal extent as the real axis
        return left + (q - q_left) / (q_right - q_left) * (right - left)

    ax.hlines([1, 0], left, right, color="k", lw=1)
    ax.axvspan(left, reals[0] - s / 2, ymin=0.55, color="#f4c7c3", alpha=0.7, lw=0)
    ax.axvspan(reals[-1] + s / 2, right, ymin=0.55, color="#f4c7c3", alpha=0.7, lw=0)
    for q, r in zip(codes.tolist(), reals):
        is_zero = q == z
        ax.plot([r, to_x(q)], [1, 0], color="#d62728" if is_zero else "#1f77b4", lw=1.6 if is_zero else 0.8)
        ax.plot(r, 1, "o", color="#1f77b4", ms=4)
        ax.plot(to_x(q), 0, "s", color="#d62728" if is_zero else "#555", ms=4)
        ax.text(to_x(q), -0.17, str(q), ha="center", va="top", fontsize=8)
    ax.axvspan(min_val, max_val, ymin=0.72, ymax=0.78, color="#2ca02c", alpha=0.6)
    ax.text(min_val, 1.2, f"min {min_val:g}", ha="center", fontsize=8, color="#2ca02c")
    ax.text(max_val, 1.2, f"max {max_val:g}", ha="center", fontsize=8, color="#2ca02c")
    ax.text(right, 1.08, "real r", ha="right", fontsize=9)
    ax.text(right, -0.45, "integer q", ha="right", fontsize=9)
    ax.text(left, 0.5, "clipped", fontsize=8, color="#b22")
    kind = "symmetric" if symmetric else "affine"
    ax.set_title(f"{kind} {bits}-bit [{qmin}, {qmax}]: S = {s:.4g}, Z = {z}  (r = S (q - Z); red: real 0 <-> Z)",
                 fontsize=10)
    ax.set_ylim(-0.6, 1.35)
    ax.set_xlim(left, right)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return ax


def fake_quantize_weight(weight: torch.Tensor, bits: int = 8, granularity: str = "per_channel",
                         group_size: int = 32, symmetric: bool = True) -> torch.Tensor:
    """``weight`` (out channels first) fake-quantized with min/max ranges, torch's signed convention.

    ``per_channel``: one scale per output channel (dim 0); ``per_group``: one scale per ``group_size``
    consecutive values of each row (the weight is viewed as ``(out, -1)``).
    """
    check_choice("granularity", granularity, GRANULARITIES)
    qmin, qmax = quant_range(bits)
    w = weight.detach().float()
    if granularity == "per_tensor":
        s, z = calc_qparams(w.min(), w.max(), qmin, qmax, symmetric)
        return fake_quantize(w, s, z, qmin, qmax)
    rows = w.reshape(w.shape[0], -1)
    if granularity == "per_channel":
        s, z = calc_qparams(rows.min(1).values, rows.max(1).values, qmin, qmax, symmetric)
        return fake_quantize(w, s, z, qmin, qmax, axis=0)
    group_size = check_int("group_size", group_size, min_value=1)
    if rows.shape[1] % group_size:
        raise ValueError(f"group_size={group_size} does not divide the {rows.shape[1]} inputs of each row")
    groups = rows.reshape(rows.shape[0], -1, group_size)
    s, z = calc_qparams(groups.amin(-1), groups.amax(-1), qmin, qmax, symmetric)
    return fake_quantize(rows, s, z, qmin, qmax, group_size=group_size).reshape(w.shape)


def granularity_errors(weight: torch.Tensor, bits: int = 8, group_size: int = 32) -> dict[str, dict]:
    """``{granularity: {"mse", "sqnr_db", "max_abs"}}`` of ``weight`` at ``bits`` bits (symmetric, min/max).

    ``per_group`` entries are NaN when ``group_size`` does not divide the inputs of a row (no bar is drawn).
    """
    out = {}
    for g in GRANULARITIES:
        if g == "per_group" and (weight[0].numel() % group_size):
            out[g] = {"mse": float("nan"), "sqnr_db": float("nan"), "max_abs": float("nan")}  # does not apply
            continue
        mse, sqnr, max_abs = error_metrics(weight.detach(), fake_quantize_weight(weight, bits, g, group_size))
        out[g] = {"mse": mse, "sqnr_db": sqnr, "max_abs": max_abs}
    return out


def plot_granularity_errors(weights: dict[str, torch.Tensor], bits: int = 8, group_size: int = 32, ax=None):
    """Grouped bars of SQNR (dB, higher is better) per layer and granularity. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3))
    names = list(weights)
    errors = {n: granularity_errors(w, bits, group_size) for n, w in weights.items()}
    width = 0.8 / len(GRANULARITIES)
    for j, g in enumerate(GRANULARITIES):
        label = f"per_group ({group_size})" if g == "per_group" else g
        ax.bar([i + j * width for i in range(len(names))], [errors[n][g]["sqnr_db"] for n in names], width,
               label=label)
    ax.set_xticks([i + width for i in range(len(names))], names, fontsize=8)
    ax.set_ylabel(f"weight SQNR at {bits} bits (dB)")
    ax.legend(fontsize=8)
    return ax


def calibration_errors(x: torch.Tensor, bits: int = 8, methods=CALIBRATION_METHODS, symmetric: bool = False,
                       signed: bool = False, **observer_kwargs) -> dict[str, dict]:
    """Calibrate one observer per method on ``x`` and measure the error of quantizing ``x`` with its range.

    Returns ``{method: {"range": (lo, hi), "scale", "zero_point", "mse", "sqnr_db", "clipped"}}`` where
    ``clipped`` is the fraction of values outside the chosen range. ``observer_kwargs`` go to every observer
    that accepts them (e.g. ``percentile=99.9``).
    """
    results = {}
    x = x.detach().float()
    for method in methods:
        kwargs = {k: v for k, v in observer_kwargs.items() if k in _OBSERVER_OPTIONS.get(method, ())}
        obs = make_observer(method, bits=bits, symmetric=symmetric, signed=signed, **kwargs)
        obs.update(x)
        lo, hi = (float(v) for v in obs.range())
        scale, zp = obs.qparams()
        xq = fake_quantize(x, scale, zp, obs.qmin, obs.qmax)
        mse, sqnr, _ = error_metrics(x, xq)
        results[method] = {"range": (lo, hi), "scale": float(scale), "zero_point": int(zp), "mse": mse,
                           "sqnr_db": sqnr, "clipped": float(((x < lo) | (x > hi)).float().mean())}
    return results


_OBSERVER_OPTIONS = {"percentile": ("percentile", "num_bins"), "entropy": ("num_bins", "stride"),
                     "mse": ("num_candidates", "num_bins")}


def plot_calibration(x: torch.Tensor, results: dict[str, dict], ax=None, title: str | None = None):
    """Histogram of ``x`` (log counts) with the upper clipping threshold each method chose. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    ax.hist(x.detach().flatten().numpy(), bins=200, color="#bbb", log=True)
    for method, r in results.items():
        ax.axvline(r["range"][1], color=METHOD_COLORS.get(method, "k"), lw=1.5,
                   label=f"{method}: max {r['range'][1]:.3g}, SQNR {r['sqnr_db']:.1f} dB")
    ax.legend(fontsize=7)
    ax.set_xlabel("activation value")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def quantized_layers(model: torch.nn.Module) -> dict:
    """``{name: module}`` of the fake-quant layers (QuantLinear/QuantConv) in ``model``."""
    from coursekit.quant.modules import _QuantLayer

    return dict(named_layers(model, types=_QuantLayer))


def weight_sqnr(qmodel: torch.nn.Module) -> dict[str, float]:
    """SQNR (dB) of each quantized layer's fake-quantized weight against its float weight."""
    with torch.no_grad():
        return {n: error_metrics(m.weight, m.quantized_weight())[1] for n, m in quantized_layers(qmodel).items()}


def accuracy(model: torch.nn.Module, loader) -> float:
    """Top-1 accuracy (0..1) of ``model`` over ``(input, label)`` batches: ``coursekit.metrics.evaluate``'s."""
    return evaluate(model, loader)["accuracy"]


def ptq_explorer(model: torch.nn.Module, calibration, test_loader, group_size: int = 8):
    """An ipywidgets explorer: weight bits, activation bits, granularity and calibration method -> per-layer
    weight SQNR and test accuracy of ``quantize_model(model, ...)``, recomputed on every change.

    ``calibration``: a few input batches; ``test_loader``: labelled batches (kept small: every change
    re-calibrates and re-evaluates). ``per_group`` applies to Linear layers whose inputs ``group_size`` divides;
    convolutions then stay per channel.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from coursekit.quant.ptq import QuantConfig, quantize_model

    calibration = list(calibration)
    test = list(test_loader)
    fp32 = accuracy(model.eval(), test)
    wbits = w.IntSlider(value=8, min=2, max=8, description="weight bits", continuous_update=False)
    abits = w.Dropdown(options=[("float (weight-only)", 0)] + [(str(b), b) for b in (8, 6, 4, 3, 2)], value=8,
                       description="act. bits")
    gran = w.ToggleButtons(options=["per_tensor", "per_channel", "per_group"], value="per_channel",
                           description="granularity")
    method = w.Dropdown(options=list(CALIBRATION_METHODS), value="minmax", description="calibration")
    out = w.Output()

    def update(*_):
        cfg = {"weight_bits": wbits.value, "act_bits": abits.value or 8, "observer": method.value,
               "mode": "static" if abits.value else "weight_only"}
        if gran.value == "per_group":
            linears = named_layers(model, types=LINEAR_TYPES)
            linear = [n for n, m in linears if m.in_features % group_size == 0]
            per_group = quantize_model(model, QuantConfig(**cfg, granularity="per_group", group_size=group_size,
                                                          skip=tuple(n for n, _ in linears if n not in linear)
                                                          + _convs(model)), calibration)
            rest = quantize_model(per_group, QuantConfig(**cfg, granularity="per_channel", fold_bn=False,
                                                         skip=tuple(linear)), calibration)
            qmodel = rest
        else:
            qmodel = quantize_model(model, QuantConfig(**cfg, granularity=gran.value), calibration)
        acc = accuracy(qmodel, test)
        sqnr = weight_sqnr(qmodel)
        with out:
            out.clear_output(wait=True)
            _, ax = plt.subplots(figsize=(7, 2.6))
            ax.barh(list(sqnr), list(sqnr.values()), color="#1f77b4")
            ax.invert_yaxis()
            ax.set_xlabel("weight SQNR (dB)")
            ax.set_title(f"test accuracy {acc:.2%}  (FP32 {fp32:.2%}, {100 * (acc - fp32):+.2f} points)")
            plt.tight_layout()
            plt.show()

    for control in (wbits, abits, gran, method):
        control.observe(update, names="value")
    update()
    return w.VBox([w.HBox([wbits, abits]), gran, method, out])


def _convs(model) -> tuple:
    return tuple(n for n, _ in named_layers(model, types=CONV_TYPES))


# ------------------------------------------------------------------------- QAT: learned step sizes
def _draw_steps(axes, history: dict, layer: str, epoch: int) -> None:
    import numpy as np

    for ax in axes:
        ax.clear()
    epochs = history["epoch"]
    weights = np.stack([h[layer]["weight"].numpy() for h in history["step_sizes"]])  # (epochs + 1, channels)
    axes[0].plot(epochs, weights / weights[0], color="#69c", lw=0.8, alpha=0.7)
    axes[0].axvline(epoch, color="k", ls="--", lw=0.8)
    axes[0].set_title(f"{layer}: weight step per output channel")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("step / initial step")
    values = weights[epoch]
    axes[1].bar(range(len(values)), values, color="#3a7")
    axes[1].bar(range(len(values)), weights[0], fill=False, edgecolor="#e83", label="epoch 0 (PTQ init)")
    axes[1].set_title(f"epoch {epoch}: weight steps (bars) vs the PTQ start (outline)")
    axes[1].set_xlabel("output channel")
    axes[1].legend(fontsize=8)
    layers = [n for n in history["step_sizes"][0] if "input" in history["step_sizes"][0][n]]
    for name in layers:
        acts = [h[name]["input"].item() for h in history["step_sizes"]]
        axes[2].plot(epochs, [a / acts[0] for a in acts], "o-" if name == layer else "-", ms=3, label=name)
    axes[2].axvline(epoch, color="k", ls="--", lw=0.8)
    axes[2].set_title("activation step of every layer")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("step / initial step")
    axes[2].legend(fontsize=7)


def step_size_explorer(history: dict):
    """Slider over epochs and a layer picker for the step sizes recorded by ``coursekit.train.finetune``.

    Shows how LSQ moves each layer's weight steps (per channel) and the activation steps away from their PTQ
    initialisation. Returns the widget box.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if not history.get("step_sizes") or len(history["step_sizes"]) < 2:
        raise ValueError("history must come from coursekit.train.finetune(...) with at least one epoch (it records step_sizes)")
    layers = list(history["step_sizes"][0])
    layer_box = widgets.Dropdown(options=layers, description="layer")
    epoch_box = widgets.IntSlider(value=history["epoch"][-1], min=0, max=history["epoch"][-1], description="epoch")
    output = widgets.Output()
    with output:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
        plt.close(fig)

    def refresh(*_):
        _draw_steps(axes, history, layer_box.value, epoch_box.value)
        fig.tight_layout()
        output.clear_output(wait=True)
        with output:
            from IPython.display import display

            display(fig)

    layer_box.observe(refresh, names="value")
    epoch_box.observe(refresh, names="value")
    refresh()
    return widgets.VBox([widgets.HBox([layer_box, epoch_box]), output])


__all__ = [
    "CALIBRATION_METHODS", "GRANULARITIES", "accuracy", "calibration_errors", "fake_quantize_weight",
    "granularity_errors", "plot_affine_map", "plot_calibration", "plot_granularity_errors", "ptq_explorer",
    "quantized_layers", "step_size_explorer", "weight_sqnr",
]
