"""Feature (hint) distillation in the FitNets style: match an intermediate layer of the teacher.

Romero et al. (2015), "FitNets: Hints for Thin Deep Nets", ICLR, eq. 3: the student's "guided" layer output
``u_s`` passes through a learned regressor ``r`` so its shape matches the teacher's "hint" layer ``u_t``, and

    L_hint = 1/2 || u_t(x) - r(u_s(x)) ||^2

is minimised (here averaged over the elements: ``F.mse_loss``, the 1/2 folded into the weight). The regressor is
needed whenever the two layers differ in width; without it a thinner student cannot be compared with the teacher
at all. It is trained together with the student and thrown away afterwards.

``FeatureTap`` records a layer's output with a forward hook (the layer is found with ``coursekit.surgery``), so
the loss can read the features of the forward pass the training loop already runs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coursekit.surgery import get_layer


class FeatureTap:
    """Keep the output of ``model``'s layer ``layer_name`` from the latest forward pass in ``.output``.

    ``detach=True`` (use it for a teacher) stores a tensor without gradient history. ``remove()`` (or leaving a
    ``with`` block) takes the hook off again.
    """

    def __init__(self, model: nn.Module, layer_name: str, detach: bool = False):
        self.layer_name = layer_name
        self.layer = get_layer(model, layer_name)
        self.detach = detach
        self.output: torch.Tensor | None = None
        self._handle = self.layer.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.output = output.detach() if self.detach else output

    def remove(self) -> None:
        self._handle.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class HintLoss(nn.Module):
    """FitNets hint loss with a learned regressor (Romero et al. 2015, eq. 3).

    ``student_channels`` -> ``teacher_channels`` with a ``Linear`` for (batch, features) outputs or a 1x1
    convolution for (batch, channels, length) / (batch, channels, H, W) ones (``dims`` = 0, 1 or 2 spatial
    dimensions). If the spatial sizes differ, the student's map is resized to the teacher's (adaptive average
    pooling or linear interpolation) before the regressor. ``forward(student_features, teacher_features)``
    returns the mean squared error; the teacher side is detached.
    """

    def __init__(self, student_channels: int, teacher_channels: int, dims: int = 0):
        super().__init__()
        for name, value in (("student_channels", student_channels), ("teacher_channels", teacher_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int (the feature width of the tapped layer), "
                                 f"got {value!r}")
        if dims not in (0, 1, 2):
            raise ValueError(f"dims={dims!r} must be 0 (Linear features), 1 (Conv1d maps) or 2 (Conv2d maps)")
        self.dims = dims
        self.regressor = (nn.Linear(student_channels, teacher_channels) if dims == 0 else
                          (nn.Conv1d if dims == 1 else nn.Conv2d)(student_channels, teacher_channels, 1))

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        s, t = student_features, teacher_features.detach()
        if s.dim() != self.dims + 2 or t.dim() != self.dims + 2:
            raise ValueError(f"HintLoss(dims={self.dims}) expects features of {self.dims + 2} dimensions "
                             f"(batch, channels{', spatial' * self.dims}); got student {tuple(s.shape)}, "
                             f"teacher {tuple(t.shape)}")
        if s.shape[0] != t.shape[0]:
            raise ValueError(f"student and teacher features must come from the same batch, got batch sizes "
                             f"{s.shape[0]} and {t.shape[0]}")
        if self.dims and s.shape[2:] != t.shape[2:]:
            s = F.interpolate(s, size=t.shape[2:], mode="linear" if self.dims == 1 else "bilinear",
                              align_corners=False)
        return F.mse_loss(self.regressor(s), t)


__all__ = ["FeatureTap", "HintLoss"]
