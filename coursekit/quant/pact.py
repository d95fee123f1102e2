"""PACT: a learned clipping level for activations (Choi et al. 2018, "PACT: Parameterized Clipping Activation
for Quantized Neural Networks").

PACT replaces a ReLU by a clipped ReLU whose upper level ``alpha`` is a trainable parameter, and quantizes the
clipped value on ``k`` unsigned bits (eq. 1-2, ``Qp = 2^k - 1``)::

    y   = clamp(x, 0, alpha)                    (eq. 1: 0.5 (|x| - |x - alpha| + alpha))
    y_q = round(y * Qp / alpha) * alpha / Qp    (eq. 2)

Backward (eq. 3), with the straight-through estimator for the rounding (``dy_q/dy = 1``)::

    d y_q / d x     = 1 if 0 <= x < alpha else 0
    d y_q / d alpha = 1 if x >= alpha else 0

so only *clipped* values push ``alpha`` (upwards: a larger alpha would clip them less); the rounding error of
the values inside the range gives it no gradient at all. Something must pull ``alpha`` down: the task loss
(fewer clipped, larger values hurt the next layer) and an L2 penalty ``lambda * alpha^2`` on alpha, which the paper adds to the loss.

Relation to LSQ (Esser et al. 2020): for an unsigned range ``[0, Qp]`` the LSQ step is ``s = alpha / Qp``, and
LSQ's gradient in terms of ``alpha`` is ``(d x_hat / d s) / Qp``: ``1`` for clipped values, exactly PACT's, and
``(round(x/s) - x/s) / Qp`` inside the range, where PACT has 0. LSQ is PACT plus the rounding term (and the
gradient scale), which is why LSQ can find the clipping level from the quantization error alone.

Rounding is torch's (``round(y * (1/s))``, half to even) so the forward pass equals
``torch.fake_quantize_per_tensor_affine(clamp(x, 0, alpha), alpha/Qp, 0, 0, Qp)`` (tested).
"""
from __future__ import annotations

import torch
from torch import nn

from coursekit.quant.primitives import FLOAT32_EPS, check_bits, quant_range


class PACTFunction(torch.autograd.Function):
    """``PACTFunction.apply(x, alpha, qmax)``: the PACT forward pass with the eq. 3 gradients for ``x`` and
    ``alpha`` (a one-element tensor). Prefer :func:`pact_quantize`, which validates its arguments."""

    @staticmethod
    def forward(ctx, x, alpha, qmax):
        a = alpha.reshape(())
        y = torch.minimum(torch.clamp(x, min=0.0), a)
        scale = a / qmax
        y_q = torch.round(y * (1.0 / scale)) * scale
        ctx.save_for_backward(x, a)
        return y_q

    @staticmethod
    def backward(ctx, grad_out):
        x, a = ctx.saved_tensors
        clipped = x >= a
        grad_x = grad_out * ((x >= 0) & ~clipped)
        grad_alpha = (grad_out * clipped).sum().reshape(1)
        return grad_x, grad_alpha, None


def pact_quantize(x: torch.Tensor, alpha: torch.Tensor, bits: int = 4) -> torch.Tensor:
    """PACT activation quantization of ``x`` with clipping level ``alpha`` on ``bits`` unsigned bits (2..16).

    ``alpha``: a one-element tensor (an ``nn.Parameter`` to learn it), > 0. Gradients: Choi et al. 2018, eq. 3
    (see the module docstring).
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    if not isinstance(alpha, torch.Tensor) or alpha.numel() != 1:
        raise TypeError("alpha must be a one-element torch.Tensor (an nn.Parameter to learn it), got "
                        f"{type(alpha).__name__}" + (f" with {alpha.numel()} elements" if
                                                     isinstance(alpha, torch.Tensor) else ""))
    if not float(alpha.detach()) > 0:
        raise ValueError(f"alpha must be > 0, got {float(alpha.detach())}")
    _, qmax = quant_range(check_bits(bits), signed=False)
    return PACTFunction.apply(x, alpha.to(x.dtype), qmax)


def pact_alpha_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Element-wise ``d y_q / d alpha`` of PACT (eq. 3): 1 where ``x >= alpha``, else 0."""
    return (x >= alpha).to(x.dtype if x.is_floating_point() else torch.float32)


class PACTQuantizer(nn.Module):
    """A clipped-ReLU activation quantizer with a learned clipping level (use it in place of a ReLU).

    ``alpha`` starts at ``init_alpha`` (Choi et al. start at 10; a calibrated maximum is a better start for a
    pretrained model). :meth:`l2_penalty` gives the paper's ``lambda * alpha^2`` term to add to the loss.
    """

    def __init__(self, bits: int = 4, init_alpha: float = 10.0):
        super().__init__()
        self.bits = check_bits(bits)
        if not float(init_alpha) > 0:
            raise ValueError(f"init_alpha must be > 0, got {init_alpha}")
        self.alpha = nn.Parameter(torch.tensor([float(init_alpha)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.alpha.clamp_(min=FLOAT32_EPS)
        return pact_quantize(x, self.alpha, self.bits)

    def l2_penalty(self, weight: float) -> torch.Tensor:
        """``weight * alpha^2`` (Choi et al. 2018 regularise alpha like a weight)."""
        return weight * (self.alpha ** 2).sum()

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={float(self.alpha.detach()):.4g}"


__all__ = ["PACTFunction", "PACTQuantizer", "pact_alpha_grad", "pact_quantize"]
