"""Model cards: the facts about an exported model, written beside it, computed from the file itself.

A deployed file without its facts invites mistakes: which precision is this, measured on which machine, with
which accuracy, and is it even the file that was validated? ``write_model_card`` writes ``<model>.card.json``
(for programs) and ``<model>.card.md`` (for people) next to ``model.onnx`` (Mitchell et al. 2019, "Model Cards
for Model Reporting", sec. 4: model details, metrics, evaluation data, quantitative analyses). Everything that can
be read from the graph is read from it (inputs, outputs, opset, precision per layer, size, SHA-256); what cannot
(accuracy, latency, calibration data, hardware) is passed in and stored as given. ``read_model_card`` checks
that the card still describes the file next to it (same SHA-256).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

from coursekit.export.inspect import check_onnx_file, file_sha256, graph_summary, io_signature

CARD_VERSION = 1


def card_paths(onnx_path) -> tuple[Path, Path]:
    """Where the card of ``onnx_path`` lives: ``model.onnx`` -> ``model.card.json`` and ``model.card.md``."""
    path = Path(onnx_path)
    stem = path.with_suffix("") if path.suffix else path
    return stem.with_name(stem.name + ".card.json"), stem.with_name(stem.name + ".card.md")


def software_versions() -> dict:
    """Versions of the libraries that produced and run the file (those not installed are None)."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for name in ("coursekit", "torch", "onnx", "onnxruntime", "openvino", "nncf"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return versions


def basic_hardware() -> dict:
    """What the standard library knows about this machine (pass ``coursekit.bench.hardware_report()`` to
    ``write_model_card(hardware=...)`` for CPU flags and GPUs)."""
    return {"machine": platform.machine(), "processor": platform.processor() or None, "logical_cpus": os.cpu_count(),
            "os": platform.platform(), "source": "platform module"}


def _precision(summary: dict) -> str:
    """One word for the file: ``"int8"``, ``"int4"``, ``"mixed"`` (some weight ops still float) or ``"fp32"``."""
    layers = summary["layers"]
    quantized = [layer for layer in layers if layer["format"] != "float"]
    if not quantized:
        return "fp32"
    if len(quantized) < len(layers):
        return "mixed"
    return "int4" if all(layer["weight"] == "int4" for layer in quantized) else "int8"


def build_model_card(onnx_path, *, model=None, accuracy=None, latency_ms=None, calibration=None, parity=None,
                     dataset=None, hardware=None, notes=None) -> dict:
    """The card of ``onnx_path`` as a dict (``write_model_card`` writes it). See ``write_model_card``."""
    path = Path(onnx_path)
    proto = check_onnx_file(path)
    summary = graph_summary(proto)
    card = {
        "card_version": CARD_VERSION,
        "file": path.name, "size_bytes": path.stat().st_size, "sha256": file_sha256(path),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **io_signature(proto),
        "opset": summary["opset"], "ir_version": proto.ir_version,
        "producer": f"{proto.producer_name} {proto.producer_version}".strip() or None,
        "precision": _precision(summary), "format": summary["format"],
        "quantized_ops": summary["quantized_ops"], "op_counts": summary["op_counts"],
        "initializer_bytes": summary["initializer_bytes"], "layers": summary["layers"],
        "dataset": dataset, "accuracy": accuracy, "latency_ms": latency_ms, "calibration": calibration,
        "parity": parity, "hardware": hardware if hardware is not None else basic_hardware(),
        "software": software_versions(), "notes": notes,
    }
    if model is not None:
        card["torch_model"] = {"class": type(model).__name__,
                               "parameters": sum(p.numel() for p in model.parameters())}
    return card


def write_model_card(onnx_path, *, model=None, accuracy=None, latency_ms=None, calibration=None, parity=None,
                     dataset=None, hardware=None, notes=None) -> Path:
    """Write ``<model>.card.json`` and ``<model>.card.md`` beside ``onnx_path``; return the JSON card's path.

    Read from the file: inputs/outputs (name, shape with symbolic dims, dtype), opset, IR version, producer,
    ``precision`` (``fp32``/``int8``/``int4``/``mixed``), ``format`` (QDQ/QOperator/float), precision per
    weight layer, op counts, size on disk, SHA-256. Given by the caller (stored as given, None when missing):
    ``accuracy`` (a fraction, or a dict such as ``{"test": 0.97}``), ``latency_ms`` (a number or a dict
    ``{"batch 1": ...}``), ``calibration`` (what the INT8 ranges were computed on), ``parity`` (a
    ``parity_report``), ``dataset``, ``hardware`` (default: ``basic_hardware()``) and ``notes``; ``model``
    (the torch module it came from) adds its class and parameter count. Software versions are recorded too.
    The JSON is strict (NaN, e.g. the agreement of a class never predicted, is written as null) so any JSON
    reader, Java's included, can load it.
    """
    card = build_model_card(onnx_path, model=model, accuracy=accuracy, latency_ms=latency_ms,
                            calibration=calibration, parity=parity, dataset=dataset, hardware=hardware, notes=notes)
    json_path, md_path = card_paths(onnx_path)
    card = json.loads(json.dumps(card, default=_json_default), parse_constant=lambda _: None)  # NaN -> null
    json_path.write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
    md_path.write_text(format_model_card(card))
    return json_path


def _json_default(value):
    """Numbers from numpy/torch (np.float32, 0-d tensors) as plain Python numbers."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"model card value of type {type(value).__name__} is not JSON-serialisable: {value!r}")


def read_model_card(path, verify: bool = True) -> dict:
    """Read the card of a model (give the ``.onnx`` path or the ``.card.json`` path).

    With ``verify`` (default), the SHA-256 of the model file beside the card must match the card's: a card
    that describes another file (the model was re-exported, the card copied) raises ValueError.
    """
    path = Path(path)
    if path.name.endswith(".card.json"):
        json_path = path
        model_path = path.with_name(path.name[: -len(".card.json")] + ".onnx")
    else:
        json_path, model_path = card_paths(path)[0], path
    if not json_path.is_file():
        raise FileNotFoundError(f"no model card {str(json_path)!r}; write one with "
                                "coursekit.export.write_model_card(model_path, ...)")
    card = json.loads(json_path.read_text())
    if verify and model_path.is_file():
        actual = file_sha256(model_path)
        if actual != card.get("sha256"):
            raise ValueError(f"model card {str(json_path)!r} does not describe {str(model_path)!r}: the card's "
                             f"sha256 is {card.get('sha256')}, the file's is {actual}; write the card again")
    return card


def _fmt(value) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_model_card(card: dict) -> str:
    """The human-readable (Markdown) version of a card."""
    def sig(items):
        return "; ".join(f"`{v['name']}` {v['dtype']} {v['shape']}" for v in items)

    lines = [f"# Model card: {card['file']}", "",
             f"- precision: **{card['precision']}** (format {card['format']}, {card['quantized_ops']} quantized ops)",
             f"- inputs: {sig(card['inputs'])}", f"- outputs: {sig(card['outputs'])}",
             f"- opset {card['opset']}, IR version {card['ir_version']}, producer {card['producer']}",
             f"- size: {card['size_bytes']:,} bytes; sha256 `{card['sha256']}`",
             f"- dataset: {_fmt(card['dataset'])}; accuracy: {_fmt(card['accuracy'])}",
             f"- latency (ms): {_fmt(card['latency_ms'])}",
             f"- calibration: {_fmt(card['calibration'])}"]
    if card.get("parity"):
        p = card["parity"]
        lines.append(f"- parity vs torch: max |error| {p['max_abs_error']:.3g}, top-1 agreement "
                     f"{p['top1_agreement']:.2%} over {p['n']} inputs")
    hw = card.get("hardware") or {}
    cpu = hw.get("cpu", {}).get("model") if isinstance(hw.get("cpu"), dict) else hw.get("processor")
    lines.append(f"- measured on: {cpu or hw.get('machine') or 'unknown'}")
    lines.append("- software: " + ", ".join(f"{k} {v}" for k, v in card["software"].items() if v))
    lines += ["", "| layer | op | format | weight | activation |", "|---|---|---|---|---|"]
    lines += [f"| {x['name']} | {x['op_type']} | {x['format']} | {x['weight']} | {x['activation']} |"
              for x in card["layers"]]
    if card.get("notes"):
        lines += ["", str(card["notes"])]
    return "\n".join(lines) + "\n"
