"""An LLM memory calculator: weights, their scales and the KV cache of a decoder, in bytes you can check.

Every number comes from ``coursekit.formats.memory`` (the formulas of that module, to the byte):

* codes: ``params * bits / 8`` (``memory_bytes(params, fmt)``);
* scales (and zero points) of group-wise formats: ``params / group_size * (scale bits + zero-point bits) / 8``
  (``memory_bytes(params, fmt, group_size, scale_format, zero_point)`` minus the codes);
* KV cache: ``2 * layers * kv_heads * head_dim * context * batch * bits / 8`` (``kv_cache_bytes``).

With a memory bandwidth (measured on your machine by ``coursekit.bench.roofline.measure_bandwidth``), it adds the
roofline's upper bound on decoding speed: every generated token reads all the weights and the whole KV cache once,
so ``tokens/s <= bandwidth / (weight bytes + KV bytes)`` (batch 1; Williams et al. 2009, applied to a GEMV).
"""
from __future__ import annotations

from coursekit._validate import check_int, check_positive
from coursekit.formats.memory import bits_per_param, kv_cache_bytes, memory_bytes
from coursekit.formats.registry import get_format

WEIGHT_FORMATS = ("fp32", "fp16", "bf16", "fp8_e4m3", "int8", "int4", "nf4", "int2")
KV_FORMATS = ("fp32", "fp16", "bf16", "fp8_e4m3", "int8", "int4")
LLAMA2_7B = {"params_billions": 6.74, "n_layers": 32, "n_kv_heads": 32, "head_dim": 128}  # Touvron et al. 2023


def llm_memory(params_billions: float = 7.0, fmt="int4", group_size: int | None = 128, scale_format="fp16",
               zero_point: bool = False, n_layers: int = 32, n_kv_heads: int = 32, head_dim: int = 128,
               context: int = 4096, batch: int = 1, kv_format="fp16", bandwidth: float | None = None) -> dict:
    """Bytes of an LLM's weights (codes + group scales) and KV cache, and the decode bound at ``bandwidth``.

    ``group_size=None`` stores no scales (FP formats, or per-tensor scales too few to count). The parameter count
    is rounded up to a whole number of groups (the last group padded). Returns a dict with ``params``,
    ``code_bytes``, ``scale_bytes``, ``weight_bytes``, ``kv_bytes``, ``total_bytes``, ``bits_per_weight`` and,
    with a bandwidth in bytes/s, ``max_tokens_per_s`` (per sequence, batch 1 reads the weights once per token).
    """
    params = round(check_positive("params_billions", params_billions) * 1e9)
    fmt = get_format(fmt).name
    if group_size is not None:
        group_size = check_int("group_size", group_size, min_value=1)
        if get_format(fmt).kind == "float":
            raise ValueError(f"group_size={group_size} with fmt={fmt!r}: float formats carry no group scales; "
                             "pass group_size=None")
        params = -(-params // group_size) * group_size
    code_bytes = memory_bytes(params, fmt)
    weight_bytes = (memory_bytes(params, fmt, group_size=group_size, scale_format=scale_format,
                                 zero_point=zero_point) if group_size else code_bytes)
    kv = kv_cache_bytes(n_layers, n_kv_heads, head_dim, check_int("context", context, min_value=0),
                        batch=batch, fmt=kv_format)
    out = {"params": params, "code_bytes": code_bytes, "scale_bytes": weight_bytes - code_bytes,
           "weight_bytes": weight_bytes, "kv_bytes": kv, "total_bytes": weight_bytes + kv,
           "bits_per_weight": bits_per_param(fmt, group_size, scale_format=scale_format, zero_point=zero_point)
           if group_size else float(get_format(fmt).bits)}
    if bandwidth is not None:
        per_token = weight_bytes + kv // max(batch, 1)  # one sequence's share of the cache
        out["max_tokens_per_s"] = check_positive("bandwidth", bandwidth) / per_token
    return out


def memory_table(rows: dict[str, dict]) -> str:
    """An HTML table of several :func:`llm_memory` results (one column per configuration), in GB (1e9 bytes)."""
    keys = [("code_bytes", "weight codes"), ("scale_bytes", "scales / zero points"), ("weight_bytes", "weights"),
            ("kv_bytes", "KV cache"), ("total_bytes", "total")]
    head = "".join(f"<th>{name}</th>" for name in rows)
    lines = [[label] + [f"{r[k] / 1e9:.3f} GB" for r in rows.values()] for k, label in keys]
    lines.append(["bits per weight"] + [f"{r['bits_per_weight']:.3f}" for r in rows.values()])
    if all("max_tokens_per_s" in r for r in rows.values()):
        lines.append(["decode bound (batch 1)"] + [f"{r['max_tokens_per_s']:.2f} tokens/s" for r in rows.values()])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in line) + "</tr>" for line in lines)
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


def memory_calculator(bandwidth: float | None = None, device_gb: float = 16.0, **defaults):
    """ipywidgets calculator over :func:`llm_memory` (a Llama-2-7B shape by default): weight format, group size,
    scale format, zero points, layers, KV heads, head dimension, context, batch and KV-cache format. Shows the
    bytes, whether they fit in ``device_gb``, and (with a measured ``bandwidth`` in bytes/s) the decode bound."""
    import ipywidgets as widgets

    d = {**LLAMA2_7B, "context": 4096, "batch": 1, **defaults}
    w = {
        "params_billions": widgets.FloatLogSlider(value=d["params_billions"], base=10, min=-1, max=2.3, step=0.01,
                                                  description="params (B)", continuous_update=False),
        "fmt": widgets.Dropdown(options=WEIGHT_FORMATS, value="int4", description="weights"),
        "group_size": widgets.Dropdown(options=[("none", None), 32, 64, 128, 256], value=128, description="group"),
        "scale_format": widgets.Dropdown(options=["fp16", "fp32", "fp8_e4m3", "int8"], value="fp16",
                                         description="scales"),
        "zero_point": widgets.Checkbox(value=False, description="zero points"),
        "n_layers": widgets.IntSlider(value=d["n_layers"], min=1, max=128, description="layers",
                                      continuous_update=False),
        "n_kv_heads": widgets.IntSlider(value=d["n_kv_heads"], min=1, max=64, description="KV heads",
                                        continuous_update=False),
        "head_dim": widgets.Dropdown(options=[64, 80, 96, 128, 256], value=d["head_dim"], description="head dim"),
        "context": widgets.IntSlider(value=d["context"], min=0, max=131072, step=1024, description="context",
                                     continuous_update=False),
        "batch": widgets.IntSlider(value=d["batch"], min=1, max=64, description="batch", continuous_update=False),
        "kv_format": widgets.Dropdown(options=KV_FORMATS, value="fp16", description="KV cache"),
    }
    out = widgets.HTML()

    def refresh(_=None):
        values = {k: v.value for k, v in w.items()}
        if get_format(values["fmt"]).kind == "float":
            values["group_size"] = None
        r = llm_memory(**values, bandwidth=bandwidth)
        fp16 = llm_memory(**{**values, "fmt": "fp16", "group_size": None}, bandwidth=bandwidth)
        fits = "fits" if r["total_bytes"] <= device_gb * 1e9 else "does NOT fit"
        out.value = (memory_table({"FP16 weights": fp16, "your choice": r})
                     + f"<p>total {r['total_bytes'] / 1e9:.2f} GB: <b>{fits}</b> in {device_gb:g} GB "
                     f"(weights {fp16['weight_bytes'] / r['weight_bytes']:.2f}x smaller than FP16)</p>")

    for widget in w.values():
        widget.observe(refresh, names="value")
    refresh()
    return widgets.VBox([widgets.HBox([widgets.VBox(list(w.values())[:5]), widgets.VBox(list(w.values())[5:])]),
                         out])


__all__ = ["KV_FORMATS", "LLAMA2_7B", "WEIGHT_FORMATS", "llm_memory", "memory_calculator", "memory_table"]
