"""coursekit.distill: knowledge-distillation losses (chapter 05).

    >>> from coursekit.distill import softmax_t, kd_loss, HintLoss, FeatureTap, rkd_distance_loss

* ``soft``: ``softmax_t`` and ``kd_loss`` (Hinton, Vinyals & Dean 2015): response distillation with temperature
  and the ``T^2`` factor; ``soft_gradient_norm`` shows why the factor is there.
* ``features``: FitNets hint loss with a learned regressor (Romero et al. 2015) and ``FeatureTap`` (forward hook).
* ``relational``: relational KD distances (Park et al. 2019) and attention transfer (Zagoruyko & Komodakis 2017).

The trainer, which needs ``coursekit.train.fit`` (a higher layer), lives in ``coursekit.train.distill``.
"""
from coursekit.distill.features import FeatureTap, HintLoss
from coursekit.distill.relational import (
    attention_map,
    attention_transfer_loss,
    normalized_distances,
    rkd_distance_loss,
)
from coursekit.distill.soft import (
    UNLABELED,
    kd_loss,
    log_softmax_t,
    soft_gradient_norm,
    soft_loss,
    softmax_t,
)

__all__ = [
    "UNLABELED", "FeatureTap", "HintLoss", "attention_map", "attention_transfer_loss", "kd_loss", "log_softmax_t",
    "normalized_distances", "rkd_distance_loss", "soft_gradient_norm", "soft_loss", "softmax_t",
]
