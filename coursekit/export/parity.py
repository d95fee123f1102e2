"""Parity: does the exported model compute what you validated in torch?

Export can change a model silently (a dropped quantizer, a different rounding rule, an op the runtime implements
differently, an opset mismatch). Before deploying, run the reference (the torch model) and the candidate (the
ONNX file in ONNX Runtime, or another runtime) on the same inputs and compare:

* ``max_abs_error`` and ``mean_abs_error`` of the outputs: about 1e-6 for an FP32 export (float rounding), about
  one quantization step of the output for INT8;
* ``top1_agreement``: the fraction of rows whose argmax agrees (the decision a classifier ships);
* ``per_class_agreement``: the same fraction within each class the *reference* predicts: a mean of 99 % can hide a
  class where INT8 flips a third of the decisions. It is ``metrics.per_class_accuracy`` with the reference's
  predictions as the "targets".
"""
from __future__ import annotations

import math

import numpy as np
import torch

from coursekit._validate import check_int
from coursekit.metrics import count_agreeing, per_class_accuracy
from coursekit.surgery import batches as input_batches


def _as_array(out) -> np.ndarray:
    return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


def agreement_stats(reference, candidate, num_classes: int | None = None) -> dict:
    """Compare two stacked ``(rows, classes, ...)`` outputs (arrays or tensors) of the same inputs.

    Returns ``{"max_abs_error", "mean_abs_error", "top1_agreement", "per_class_agreement", "n"}``; the errors are
    computed in float64; ``per_class_agreement[c]`` is the agreement on the rows where the reference predicts
    ``c`` (NaN for a class the reference never predicts); ``num_classes`` defaults to the output width.
    """
    ref, out = _as_array(reference).astype(np.float64), _as_array(candidate).astype(np.float64)
    if ref.shape != out.shape or ref.ndim < 2 or ref.shape[0] == 0:
        raise ValueError(f"reference and candidate must be non-empty (rows, classes, ...) outputs of equal shape, "
                         f"got {ref.shape} and {out.shape}")
    diff = np.abs(ref - out)
    width = ref.shape[1] if num_classes is None else check_int("num_classes", num_classes, min_value=1)
    ref_pred, out_pred = torch.from_numpy(ref.argmax(axis=1)), torch.from_numpy(out.argmax(axis=1))
    return {"max_abs_error": float(diff.max()), "mean_abs_error": float(diff.mean()),
            "top1_agreement": count_agreeing(ref, out) / ref_pred.numel(),
            "per_class_agreement": per_class_accuracy(out_pred, ref_pred, width), "n": ref_pred.numel()}


def _as_callable(runner):
    """A torch module, an ``onnxruntime.InferenceSession`` or any callable, as ``f(tensor) -> array``."""
    if hasattr(runner, "run") and hasattr(runner, "get_inputs"):
        from coursekit.export.ort import ort_run

        return lambda x: ort_run(runner, x)
    if not callable(runner):
        raise TypeError(f"expected a torch module, an ONNX Runtime session or a callable, got {type(runner).__name__}")
    return lambda x: _as_array(runner(x))


def collect_outputs(runner, inputs) -> np.ndarray:
    """Run ``runner`` (module, ORT session or callable) over ``inputs`` (tensor, iterable of tensors or of
    ``(input, target)`` batches) and stack its outputs; torch modules run in eval mode without autograd."""
    batches = list(input_batches(inputs))
    if not batches or sum(len(x) for x in batches) == 0:
        raise ValueError("inputs is empty: give at least one non-empty batch")
    was_training = runner.training if isinstance(runner, torch.nn.Module) else None
    if was_training is not None:
        runner.eval()
    fn = _as_callable(runner)
    try:
        with torch.no_grad():
            outs = [fn(x) for x in batches if len(x)]
    finally:
        if was_training is not None:
            runner.train(was_training)
    return np.concatenate(outs)


def parity_report(reference, candidate, inputs, threads: int = 1, num_classes: int | None = None) -> dict:
    """Compare ``reference`` (a torch model, usually) with ``candidate`` on the same ``inputs``.

    ``candidate``: a path to an ONNX file (run in ONNX Runtime on CPU with ``threads`` intra-op threads), an
    ORT session, or any callable (e.g. ``coursekit.export.openvino_session(path)``). Returns the
    ``agreement_stats`` dict: ``max_abs_error``, ``mean_abs_error``, ``top1_agreement``, ``per_class_agreement``
    (within each class the reference predicts) and ``n`` rows.
    """
    if isinstance(candidate, (str, bytes)) or hasattr(candidate, "__fspath__"):
        from coursekit.export.inspect import check_onnx_file
        from coursekit.export.ort import ort_session

        check_onnx_file(candidate)
        candidate = ort_session(candidate, threads=threads)
    ref = collect_outputs(reference, inputs)
    out = collect_outputs(candidate, inputs)
    return agreement_stats(ref, out, num_classes=num_classes)


def parity(torch_model, onnx_path, inputs, threads: int = 1) -> dict:
    """Compare a torch model with an ONNX file in ONNX Runtime on the same inputs (``parity_report``).

    ``inputs``: a tensor or an iterable of tensors / (input, target) batches. Returns ``max_abs_error`` (largest
    absolute output difference), ``mean_abs_error``, ``top1_agreement`` (fraction of rows whose argmax over
    dimension 1 agrees), ``per_class_agreement`` and ``n`` rows compared.
    """
    return parity_report(torch_model, onnx_path, inputs, threads=threads)


def format_parity(report: dict, class_names=None) -> str:
    """A short text rendering of a parity report, worst classes first."""
    lines = [(f"parity over {report['n']} inputs: max |error| {report['max_abs_error']:.3g}, mean |error| "
             f"{report['mean_abs_error']:.3g}, top-1 agreement {report['top1_agreement']:.2%}")]
    per = [(c, a) for c, a in enumerate(report.get("per_class_agreement") or []) if not math.isnan(a)]
    worst = sorted(per, key=lambda ca: ca[1])[:3]
    if worst and worst[0][1] < 1:
        lines.append("  lowest per-class agreement: " + ", ".join(
            f"class {class_names[c] if class_names is not None else c} {a:.1%}" for c, a in worst))
    return "\n".join(lines)
