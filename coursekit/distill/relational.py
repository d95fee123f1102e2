"""Relational and attention transfer: match how the teacher relates examples or where it looks, not its values.

* Relational KD, distance-wise loss (Park et al. 2019, "Relational Knowledge Distillation", CVPR, eqs. 4-5): the
  pairwise Euclidean distances of a batch's embeddings, each divided by their mean over the batch
  (``psi_D(t_i, t_j) = ||t_i - t_j|| / mu``), are matched with the Huber (smooth L1) loss. Only distances are
  compared, so student and teacher embeddings may have different widths: no regressor needed.
* Attention transfer (Zagoruyko & Komodakis 2017, "Paying More Attention to Attention", ICLR, eq. 2): the
  spatial attention map of a (batch, C, ...) activation is ``Q = sum_c |A_c|^2`` flattened and L2-normalised;
  the loss is the mean over the batch of ``|| Q_s / ||Q_s|| - Q_t / ||Q_t|| ||_2`` (times beta/2 in the paper).
  Channels may differ; the spatial sizes must match (resize first otherwise).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _same_batch(student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    if not isinstance(student, torch.Tensor) or not isinstance(teacher, torch.Tensor):
        raise TypeError(f"{what}: student and teacher features must be torch.Tensors")
    if student.shape[0] != teacher.shape[0] or student.shape[0] < 2:
        raise ValueError(f"{what}: student and teacher features must come from the same batch of >= 2 examples, "
                         f"got batch sizes {student.shape[0]} and {teacher.shape[0]}")


def normalized_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """``||e_i - e_j|| / mean_{i != j} ||e_i - e_j||`` for all pairs of a (batch, ...) tensor: (batch, batch)."""
    e = embeddings.flatten(1)
    d = torch.cdist(e, e)
    off = ~torch.eye(len(e), dtype=torch.bool, device=e.device)
    return d / d[off].mean().clamp_min(1e-12)


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Park et al. (2019), eq. 5: smooth-L1 between normalised pairwise distances of student and teacher."""
    _same_batch(student, teacher, "rkd_distance_loss")
    s = normalized_distances(student)
    with torch.no_grad():
        t = normalized_distances(teacher.detach())
    off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
    return F.smooth_l1_loss(s[off], t[off])


def attention_map(activation: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Zagoruyko & Komodakis (2017), eq. 1-2: ``sum_c |A_c|^p`` over channels, flattened, L2-normalised."""
    if activation.dim() < 3:
        raise ValueError(f"attention_map needs (batch, channels, spatial...) activations, got {tuple(activation.shape)}")
    return F.normalize(activation.abs().pow(p).sum(dim=1).flatten(1), dim=1)


def attention_transfer_loss(student: torch.Tensor, teacher: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Mean over the batch of ``||Q_s - Q_t||_2`` between normalised attention maps (spatial sizes must match)."""
    _same_batch(student, teacher, "attention_transfer_loss")
    if student.shape[2:] != teacher.shape[2:]:
        raise ValueError(f"attention_transfer_loss: spatial sizes must match, got student {tuple(student.shape)} "
                         f"and teacher {tuple(teacher.shape)}; pool or interpolate one of them first")
    return (attention_map(student, p) - attention_map(teacher.detach(), p)).norm(dim=1).mean()


__all__ = ["attention_map", "attention_transfer_loss", "normalized_distances", "rkd_distance_loss"]
