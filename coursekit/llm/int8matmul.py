"""Symmetric absmax INT8 matrix multiplication, the W8A8 building block of LLM.int8() and SmoothQuant.

``y = x W^T`` with both operands quantized to INT8 codes ``[-127, 127]`` by absmax scaling
(Dettmers et al. 2022, "LLM.int8()", sec. 2 and 3.1):

    c_x = absmax(x) / 127,  q_x = round(x / c_x);    c_w = absmax(W) / 127,  q_w = round(W / c_w)
    y ~= (q_x q_w^T) * c_x c_w           (integer products accumulated exactly, as an INT32 accumulator)

Granularity of the scales:

* ``"per_tensor"``: one ``c`` for the whole matrix;
* activations ``"per_token"`` (one ``c_x`` per row of ``x``) with weights ``"per_channel"`` (one ``c_w`` per
  output channel, a row of ``W``) is LLM.int8()'s *vector-wise* quantization (eq. 4): every output element
  ``y_ij`` is rescaled by ``c_x[i] c_w[j]``.

Codes come from :mod:`coursekit.quant.primitives` (narrow symmetric range ``[-127, 127]``); the integer matmul
runs in float64, where every sum of INT8 products is exact.
"""
from __future__ import annotations

import torch

from coursekit._validate import check_choice
from coursekit.quant.primitives import calc_qparams, quantize

ACT_GRANULARITIES = ("per_tensor", "per_token")
WEIGHT_GRANULARITIES = ("per_tensor", "per_channel")
QMIN, QMAX = -127, 127


def absmax_int8(t: torch.Tensor, per_row: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """INT8 codes and scale(s) of a 2-D tensor: one scale per row (``per_row``) or one for all of it."""
    amax = t.abs().amax(dim=1) if per_row else t.abs().amax()
    scale, zero = calc_qparams(-amax, amax, QMIN, QMAX, symmetric=True)  # scale = absmax / 127, zero = 0
    codes = quantize(t, scale, zero, QMIN, QMAX, axis=0 if per_row else None)
    return codes, scale


def int8_matmul(x: torch.Tensor, w: torch.Tensor, act: str = "per_token", weight: str = "per_channel",
                act_scale: torch.Tensor | float | None = None) -> torch.Tensor:
    """``x W^T`` with INT8 activations and weights (``x``: ``[..., in]``, ``w``: ``[out, in]``), float32 out.

    ``act_scale``: a static per-tensor activation scale from calibration (values beyond ``127 * act_scale``
    clip); by default the scale is dynamic (the absmax of this ``x``).
    """
    check_choice("act", act, ACT_GRANULARITIES)
    check_choice("weight", weight, WEIGHT_GRANULARITIES)
    lead = x.shape[:-1]
    x2 = x.detach().reshape(-1, x.shape[-1]).float()
    if act_scale is not None:
        if act != "per_tensor":
            raise ValueError(f"act_scale (a static scale) needs act='per_tensor', got act={act!r}")
        cx = torch.as_tensor(act_scale, dtype=torch.float32).reshape(())
        qx = quantize(x2, cx, 0, QMIN, QMAX)
    else:
        qx, cx = absmax_int8(x2, per_row=act == "per_token")
    qw, cw = absmax_int8(w.detach().float(), per_row=weight == "per_channel")
    acc = qx.double() @ qw.double().T  # exact integer accumulation
    cx = cx.double().reshape(-1, 1) if cx.dim() else cx.double()
    y = acc * cx * cw.double().reshape(1, -1)
    return y.float().reshape(*lead, w.shape[0])


__all__ = ["ACT_GRANULARITIES", "WEIGHT_GRANULARITIES", "absmax_int8", "int8_matmul"]
