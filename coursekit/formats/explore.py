"""Pictures and an explorer for chapter 01: bit layouts, the grid of representable values, and one value's bits.

* ``plot_bit_layouts``: the sign / exponent / mantissa fields of each float format, one box per bit.
* ``plot_value_grid``: where each format's values lie (log axis) and the gap between neighbours.
* ``bit_fields`` / ``bits_html``: a code split into its named fields (coloured HTML for the widget).
* ``locate``: a value rounded to a format, with the representable neighbours around it.
* ``blockwise``: ``quantize_dequantize`` applied per block of ``block_size`` values (absmax per block).
* ``plot_levels``: a format's grid drawn over the histogram of a tensor.
* ``format_explorer``: the ipywidgets explorer built from the functions above.
"""
from __future__ import annotations

import math

import torch

from coursekit.formats.floats import FloatFormat
from coursekit.formats.metrics import quantize_dequantize
from coursekit.formats.nf4 import nf4_cast
from coursekit.formats.registry import get_format

FIELD_COLORS = {"sign": "#d62728", "exponent": "#1f77b4", "mantissa": "#2ca02c", "integer": "#9467bd",
                "index": "#ff7f0e"}
LAYOUT_FORMATS = ("fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1")
GRID_FORMATS = ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1")
EXPLORER_FORMATS = ("fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "int8", "int4", "int2", "nf4",
                    "binary")


def _unsigned(code: int, bits: int) -> int:
    code = int(code)
    if not -(1 << (bits - 1)) <= code < (1 << bits):
        raise ValueError(f"code={code} does not fit in {bits} bits")
    return code & ((1 << bits) - 1)


def bit_fields(fmt, code: int) -> list[tuple[str, str]]:
    """The bit string of ``code`` split into named fields, most significant first.

    Floats: ``[("sign", "0"), ("exponent", "01111"), ("mantissa", "0000000000")]``; integers: one ``"integer"``
    field in two's complement; NF4: one ``"index"`` field; binary: one ``"sign"`` bit (1 for +1).
    """
    fmt = get_format(fmt)
    if fmt.kind == "binary":
        code = int(code)
        if code not in (-1, 1):
            raise ValueError(f"code={code}; binary codes are -1 or +1")
        return [("sign", "1" if code > 0 else "0")]
    text = format(_unsigned(code, fmt.bits), f"0{fmt.bits}b")
    if isinstance(fmt, FloatFormat):
        e = fmt.exponent_bits
        return [("sign", text[0]), ("exponent", text[1:1 + e]), ("mantissa", text[1 + e:])]
    return [("integer" if fmt.kind == "int" else "index", text)]


def bits_html(fmt, code: int) -> str:
    """``bit_fields`` as coloured monospace HTML (sign red, exponent blue, mantissa green)."""
    spans = [f'<span style="color:{FIELD_COLORS[name]}" title="{name}">{bits}</span>'
             for name, bits in bit_fields(fmt, code)]
    return '<code style="font-size:1.2em">' + " ".join(spans) + "</code>"


def plot_bit_layouts(names=LAYOUT_FORMATS, ax=None):
    """One row per float format: a box per bit, coloured by field, with the field widths written in."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fmts = [get_format(n) for n in names]
    for f in fmts:
        if not isinstance(f, FloatFormat):
            raise TypeError(f"plot_bit_layouts draws float formats; {f.name!r} is {f.kind}")
    widest = max(f.bits for f in fmts)
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 0.55 * len(fmts) + 0.8))
    for row, f in enumerate(fmts):
        y = len(fmts) - 1 - row
        fields = [("sign", 1), ("exponent", f.exponent_bits), ("mantissa", f.mantissa_bits)]
        x = 0
        for name, width in fields:
            for _ in range(width):
                ax.add_patch(Rectangle((x, y + 0.1), 0.92, 0.8, color=FIELD_COLORS[name], alpha=0.85))
                x += 1
            if width:
                ax.text(x - width / 2, y + 0.5, "s" if name == "sign" else f"{width}", ha="center", va="center",
                        color="white", fontsize=8, fontweight="bold")
        ax.text(-0.8, y + 0.5, f.name.upper(), ha="right", va="center", fontsize=9)
        ax.text(widest + 0.8, y + 0.5, f"max {f.max:.4g}, eps {f.eps:.3g}", va="center", fontsize=8)
    handles = [Rectangle((0, 0), 1, 1, color=FIELD_COLORS[k]) for k in ("sign", "exponent", "mantissa")]
    ax.legend(handles, ["sign", "exponent", "mantissa"], loc="upper center", ncol=3, fontsize=8,
              bbox_to_anchor=(0.45, 1.18), frameon=False)
    ax.set_xlim(-7, widest + 12)
    ax.set_ylim(-0.1, len(fmts) + 0.1)
    ax.axis("off")
    return ax


def positive_values(fmt) -> torch.Tensor:
    """Every positive finite value of a float format of at most 16 bits, sorted (float64)."""
    fmt = get_format(fmt)
    if not isinstance(fmt, FloatFormat):
        raise TypeError(f"positive_values needs a float format, got {fmt.name!r} ({fmt.kind})")
    values = fmt.values().double()
    return values[values > 0]


def plot_value_grid(names=GRID_FORMATS, axes=None):
    """Left: each format's range (subnormals hatched, normals solid). Right: gap to the next value vs the value."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    rows = ["fp32", *names]
    for row, name in enumerate(rows):
        f = get_format(name)
        y = len(rows) - 1 - row
        axes[0].barh(y, f.min_normal - f.min_subnormal, left=f.min_subnormal, color="#ccc", hatch="///",
                     edgecolor="#888")
        axes[0].barh(y, f.max - f.min_normal, left=f.min_normal, color=f"C{row}")
        axes[0].text(f.max * 3, y, f"{f.min_subnormal:.2g} .. {f.max:.4g}", va="center", fontsize=7)
        if name != "fp32":
            v = positive_values(name)
            axes[1].step(v[:-1].numpy(), (v[1:] - v[:-1]).numpy(), where="post", color=f"C{row}", label=name)
    fp32 = torch.logspace(-45, 38, 2000, dtype=torch.float64).float()
    fp32 = fp32[(fp32 > 0) & torch.isfinite(fp32)]
    gaps32 = (torch.nextafter(fp32, torch.tensor(math.inf)) - fp32).double()
    axes[1].plot(fp32.double().numpy(), gaps32.numpy(), ":", color="C0", lw=1.5, label="fp32")
    axes[0].set_yticks(range(len(rows)), list(reversed(rows)))
    axes[0].set_xscale("log")
    axes[0].set_xlim(1e-46, 1e52)
    axes[0].set_xlabel("positive magnitudes (log scale; hatched: subnormals)")
    axes[0].set_title("range: from the smallest subnormal to max")
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("value")
    axes[1].set_ylabel("gap to the next value")
    axes[1].set_title("precision: the gap grows with the value (relative gap ~ eps)")
    axes[1].set_xlim(1e-10, 1e6)
    axes[1].set_ylim(1e-13, 1e5)
    axes[1].legend(fontsize=8)
    return axes


def _grid(fmt, scale: float) -> torch.Tensor:
    """Sorted representable values of ``fmt`` times ``scale`` (float64), for formats that can be enumerated."""
    return torch.unique(fmt.values().double() * scale)


def locate(value: float, fmt, scale: float = 1.0) -> dict:
    """Round ``value`` into ``fmt`` (with ``scale``: the value is stored as ``code * scale``) and describe it.

    Returns ``code`` (the stored integer pattern, signed for integer formats), ``fields`` (``bit_fields``),
    ``stored`` (the value read back), ``error`` (stored - value), and the representable values ``below``
    (largest <= value) and ``above`` (smallest > below, i.e. the next one up); None where there is none.
    Floats use round to nearest even with the format's overflow rule; integers absmax-style rounding and clamping.
    """
    fmt = get_format(fmt)
    if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale={scale!r} must be a positive finite number")
    if not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"value={value!r} must be a number (not NaN)")
    x = torch.tensor([value / scale], dtype=torch.float32)
    code = int(fmt.encode(x)[0])
    stored = float(fmt.decode(torch.tensor([code], dtype=fmt.code_dtype))[0]) * scale
    if isinstance(fmt, FloatFormat) and fmt.bits > 16:
        v = torch.tensor([value], dtype=torch.float32)
        low = v if float(v) <= value else torch.nextafter(v, torch.tensor([-math.inf]))
        below = float(low[0])
        up = torch.nextafter(low, torch.tensor([math.inf]))
        above = float(up[0])
        below = None if math.isinf(below) else below
        above = None if math.isinf(above) else above
    else:
        grid = _grid(fmt, scale)
        index = int(torch.searchsorted(grid, torch.tensor([value], dtype=torch.float64), right=True)[0]) - 1
        below = float(grid[index]) if index >= 0 else None
        above = float(grid[index + 1]) if index + 1 < len(grid) else None
    return {"format": fmt.name, "value": float(value), "scale": float(scale), "code": code,
            "fields": bit_fields(fmt, code), "stored": stored, "error": stored - float(value),
            "below": below, "above": above}


def blockwise(x: torch.Tensor, fmt, block_size: int = 64) -> torch.Tensor:
    """``quantize_dequantize`` of ``x`` per block of ``block_size`` consecutive values (flattened order).

    Every block gets its own absmax scale, as in QLoRA's NF4 and group-wise INT4 (GPTQ/AWQ at group size 64-128).
    The last block may be shorter. Same shape as ``x``, float32.
    """
    fmt = get_format(fmt)
    if fmt.kind == "levels":
        return nf4_cast(x, block_size)
    flat = x.detach().float().reshape(-1)
    parts = [quantize_dequantize(flat[i:i + block_size], fmt, scale_floats=fmt.kind == "float")
             for i in range(0, flat.numel(), block_size)]
    return torch.cat(parts).reshape(x.shape)


def plot_levels(x: torch.Tensor, names=("int4", "nf4"), ax=None, bins: int = 80):
    """Histogram of ``x`` with each format's per-tensor absmax grid drawn as vertical lines."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3))
    flat = x.detach().float().reshape(-1)
    amax = float(flat.abs().max())
    ax.hist(flat.numpy(), bins=bins, color="#bbb", density=True)
    colors = ["#e377c2", "#17becf", "#bcbd22", "#8c564b"]
    for i, name in enumerate(names):
        fmt = get_format(name)
        if fmt.kind == "int":
            levels = fmt.values() * amax / ((1 << (fmt.bits - 1)) - 1)
            levels = levels[levels.abs() <= amax + 1e-12]
        else:
            levels = fmt.values() * amax / fmt.max
        top = ax.get_ylim()[1]
        ax.vlines(levels.numpy(), 0, top * (0.95 - 0.1 * i), colors=colors[i % 4], lw=1.2,
                  label=f"{name} ({len(levels)} levels)")
    ax.set_xlabel("value")
    ax.legend(fontsize=8)
    return ax


def _tensor_scale(t: torch.Tensor, fmt, scale_floats: bool) -> float:
    """The scale ``quantize_dequantize`` uses for the whole tensor (1 for unscaled floats)."""
    amax = float(t.abs().max()) or 1.0
    if fmt.kind == "float":
        return amax / fmt.max if scale_floats else 1.0
    if fmt.kind == "int":
        return amax / ((1 << (fmt.bits - 1)) - 1)
    if fmt.kind == "binary":
        return float(t.abs().mean()) or 1.0
    return amax  # nf4 levels live in [-1, 1]


def _fmt_number(v) -> str:
    return "none" if v is None else f"{v:.8g}"


def describe_html(info: dict) -> str:
    """The widget's text for one ``locate`` result."""
    gap = (info["above"] - info["below"]) if info["above"] is not None and info["below"] is not None else None
    rel = abs(info["error"]) / abs(info["value"]) if info["value"] else 0.0
    scale = "" if info["scale"] == 1.0 else f" (stored as code x scale {info['scale']:.4g})"
    return (f"<b>{info['format']}</b>: {bits_html(info['format'], info['code'])} &nbsp; code {info['code']}{scale}"
            f"<br>value {_fmt_number(info['value'])} &rarr; stored <b>{_fmt_number(info['stored'])}</b>, "
            f"error {info['error']:.3g} ({rel:.2%} relative)"
            f"<br>representable neighbours: below {_fmt_number(info['below'])}, above {_fmt_number(info['above'])}"
            f" (gap {_fmt_number(gap)})")


def format_explorer(tensors: dict[str, torch.Tensor], formats=EXPLORER_FORMATS, value: float = 0.1):
    """Pick a format, a value and a tensor: see the value's bits, its neighbours and the tensor's error histogram.

    The value is stored with the tensor's per-tensor scale for integer / NF4 / binary formats (and for floats
    when *scale floats* is ticked, which maps max|x| to the format's max); the histogram shows
    ``quantize_dequantize(tensor, fmt) - tensor`` (NF4 block-wise, 64 per block). Returns the widget box;
    ``box.update()`` redraws without an event (for tests and headless runs).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if not tensors:
        raise ValueError("tensors must name at least one tensor, e.g. {'weights': w}")
    for name, t in tensors.items():
        if not (isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()):
            raise TypeError(f"tensors[{name!r}] must be a non-empty floating-point torch.Tensor")
    formats = [get_format(f).name for f in formats]
    fmt_box = widgets.Dropdown(options=formats, value=formats[1] if len(formats) > 1 else formats[0],
                               description="format")
    value_box = widgets.FloatText(value=value, description="value")
    tensor_box = widgets.Dropdown(options=list(tensors), description="tensor")
    scale_box = widgets.Checkbox(value=False, description="scale floats to max|x|")
    pick = widgets.Button(description="pick a weight")
    text = widgets.HTML()
    output = widgets.Output()
    with output:
        fig, ax = plt.subplots(figsize=(7, 2.8))
        plt.close(fig)
    generator = torch.Generator().manual_seed(0)
    state = {}

    def update(_=None):
        fmt = get_format(fmt_box.value)
        t = tensors[tensor_box.value].detach().float()
        info = locate(float(value_box.value), fmt, _tensor_scale(t, fmt, scale_box.value))
        err = (quantize_dequantize(t, fmt, scale_floats=scale_box.value) - t).reshape(-1)
        mse = float(err.pow(2).mean())
        sqnr = 10 * math.log10(float(t.pow(2).mean()) / mse) if mse > 0 else math.inf
        text.value = describe_html(info) + (f"<br>tensor <i>{tensor_box.value}</i> ({t.numel():,} values) in "
                                            f"{fmt.name}: SQNR {sqnr:.1f} dB, max |error| {float(err.abs().max()):.3g}")
        ax.clear()
        ax.hist(err.numpy(), bins=60, color=FIELD_COLORS["exponent"])
        ax.set_xlabel(f"error of {fmt.name} (stored - original)")
        ax.set_ylabel("count")
        ax.set_title(tensor_box.value, fontsize=9)
        fig.tight_layout()
        state.update(info=info, sqnr=sqnr)
        output.clear_output(wait=True)
        with output:
            from IPython.display import display

            display(fig)

    def on_pick(_=None):
        t = tensors[tensor_box.value].reshape(-1)
        value_box.value = float(t[int(torch.randint(t.numel(), (1,), generator=generator))])

    for box in (fmt_box, value_box, tensor_box, scale_box):
        box.observe(update, names="value")
    pick.on_click(on_pick)
    update()
    ui = widgets.VBox([widgets.HBox([fmt_box, value_box, pick]), widgets.HBox([tensor_box, scale_box]), text,
                       output])
    ui.update = update
    ui.state = state
    ui.controls = {"format": fmt_box, "value": value_box, "tensor": tensor_box, "scale_floats": scale_box,
                   "pick": pick}
    return ui
