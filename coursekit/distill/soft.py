"""Response distillation: temperature softmax and the Hinton knowledge-distillation loss.

Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network", arXiv:1503.02531.

* eq. 1, the softmax at temperature ``T``: ``q_i = exp(z_i / T) / sum_j exp(z_j / T)``. ``T = 1`` is the ordinary
  softmax; a larger ``T`` flattens the distribution so the small probabilities of the wrong classes (the
  "dark knowledge": which classes the teacher finds similar) become visible to the loss.
* sec. 2, the objective: a weighted sum of the soft loss on the teacher's temperature-``T`` distribution and the
  hard cross-entropy at ``T = 1``. The soft term's gradients scale as ``1 / T^2`` (sec. 2.1: for large ``T``,
  ``dC/dz_i ~ (z_i - v_i) / (N T^2)``), so it is multiplied by ``T^2`` to keep both terms' contribution
  roughly unchanged when ``T`` changes:

      L = alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE(q_1, y),   p_T = softmax(z_t / T), q_T = softmax(z_s / T)

  KL(p || q) = sum_i p_i (log p_i - log q_i) differs from the soft cross-entropy ``-sum p_i log q_i`` by the
  teacher's entropy, a constant for the student: same gradients, but KL is 0 when the student matches.

The classic bugs this module avoids: ``F.kl_div`` takes the student's *log*-probabilities as its first argument and
the teacher's probabilities as its second (``KL(target || input)``), needs ``reduction="batchmean"`` (the default
``"mean"`` also divides by the number of classes), and the ``T^2`` factor is easy to forget.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from coursekit._validate import check_positive, check_probability

UNLABELED = -1   # target value of a transfer-set example without a label: it gets the soft loss only


def _check_temperature(T) -> float:
    if isinstance(T, bool) or not isinstance(T, (int, float)):
        raise TypeError(f"T (the temperature) must be a number > 0, got {type(T).__name__} {T!r}")
    if not T > 0:
        raise ValueError(f"T={T} (the temperature) must be > 0; T=1 is the ordinary softmax, larger T softens it")
    return check_positive("T", T)


def _check_logits(name: str, logits) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, classes), got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"{name} must have shape (batch, classes) with classes >= 2, got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {logits.dtype}")
    return logits


def softmax_t(logits: torch.Tensor, T: float = 1.0, dim: int = -1) -> torch.Tensor:
    """Softmax at temperature ``T`` (Hinton et al. 2015, eq. 1): ``softmax(logits / T)`` along ``dim``."""
    T = _check_temperature(T)
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point torch.Tensor, got {type(logits).__name__}")
    return torch.softmax(logits / T, dim=dim)


def log_softmax_t(logits: torch.Tensor, T: float = 1.0, dim: int = -1) -> torch.Tensor:
    """``log softmax(logits / T)``, computed stably (never ``softmax(...).log()``, which underflows to -inf)."""
    T = _check_temperature(T)
    return torch.log_softmax(logits / T, dim=dim)


def soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """``KL(p_T || q_T)`` averaged over the batch (no ``T^2``): the teacher's distribution is the target."""
    T = _check_temperature(T)
    s = _check_logits("student_logits", student_logits)
    t = _check_logits("teacher_logits", teacher_logits)
    if s.shape != t.shape:
        raise ValueError(f"student_logits {tuple(s.shape)} and teacher_logits {tuple(t.shape)} must have the same "
                         f"shape (batch, classes): same examples, same class order")
    log_q = torch.log_softmax(s / T, dim=1)
    log_p = torch.log_softmax(t.detach() / T, dim=1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None,
            T: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton et al. (2015) distillation loss: ``alpha T^2 KL(p_T || q_T) + (1 - alpha) CE(student, targets)``.

    ``student_logits`` and ``teacher_logits``: (batch, classes), same shape; the teacher side is detached.
    ``targets``: (batch,) class indices; entries equal to ``UNLABELED`` (-1) are transfer-set inputs with no
    label and count in the soft term only (the CE term averages over the labelled rows; 0 if there are none).
    ``targets=None`` is allowed with ``alpha=1`` (pure distillation, no labels). ``T > 0``, ``alpha`` in [0, 1].
    """
    T = _check_temperature(T)
    alpha = check_probability("alpha", alpha)
    soft = soft_loss(student_logits, teacher_logits, T)
    if targets is None:
        if alpha != 1.0:
            raise ValueError(f"targets=None (no labels) needs alpha=1 (soft loss only), got alpha={alpha}")
        return T * T * soft
    if not isinstance(targets, torch.Tensor) or targets.shape != student_logits.shape[:1]:
        raise ValueError(f"targets must be a tensor of shape ({student_logits.shape[0]},) of class indices "
                         f"(or {UNLABELED} for unlabelled rows), got "
                         f"{tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__}")
    labelled = targets != UNLABELED
    if bool(labelled.any()):
        hard = F.cross_entropy(student_logits[labelled], targets[labelled])
    else:
        hard = student_logits.sum() * 0.0
    return alpha * T * T * soft + (1.0 - alpha) * hard


def soft_gradient_norm(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float,
                       scaled: bool = True) -> float:
    """Norm of the gradient of the soft term w.r.t. the student logits, with (``scaled``) or without the ``T^2``.

    Demonstrates Hinton et al. (2015), sec. 2.1: unscaled, the gradient shrinks like ``1 / T^2`` as ``T`` grows;
    with ``T^2`` it stays roughly constant, so changing ``T`` does not silently re-weight soft vs hard loss.
    """
    s = student_logits.detach().clone().requires_grad_(True)
    loss = soft_loss(s, teacher_logits, T) * (T * T if scaled else 1.0)
    (grad,) = torch.autograd.grad(loss, s)
    return float(grad.norm())


__all__ = ["UNLABELED", "kd_loss", "log_softmax_t", "soft_gradient_norm", "soft_loss", "softmax_t"]
