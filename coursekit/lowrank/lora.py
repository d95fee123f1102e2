"""LoRA: a frozen base layer plus a trainable low-rank update.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (ICLR 2022), Eq. 3:

    h = W0 x + (alpha / r) B A x,    A (r x in) random (Kaiming-uniform), B (out x r) zeros,

so the layer starts exactly at the base model and trains r (in + out) weights. Merging folds the update into W0
(W = W0 + (alpha / r) B A) so inference costs nothing extra; unmerging subtracts it again.
The link with ``svd_factorize``: SVD factorizes the *weights* (assumes W itself has low rank); LoRA factorizes the
*update* Delta W (assumes fine-tuning moves W within a low-dimensional subspace, Aghajanyan et al., ACL 2021).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from coursekit._validate import check_positive
from coursekit.lowrank.svd import check_rank


class LoRALinear(nn.Module):
    """``base(x) + (alpha / rank) * B(A(x))`` with ``base`` frozen (Hu et al. 2022, Eq. 3)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float = 1.0, name: str = "base"):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"{name} is a {type(base).__name__}; LoRALinear wraps nn.Linear only")
        m, n = base.weight.shape
        self.rank = check_rank(rank, m, n, layer=name)
        self.alpha = check_positive("alpha", alpha)
        self.scaling = self.alpha / self.rank
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        kw = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_a = nn.Parameter(torch.empty(self.rank, n, **kw))
        self.lora_b = nn.Parameter(torch.zeros(m, self.rank, **kw))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A: the update this adapter adds to the base weight."""
        return self.scaling * (self.lora_b @ self.lora_a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        return out + self.scaling * ((x @ self.lora_a.T) @ self.lora_b.T)

    @torch.no_grad()
    def merge(self) -> LoRALinear:
        """Fold the update into the base weight (idempotent)."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True
        return self

    @torch.no_grad()
    def unmerge(self) -> LoRALinear:
        """Take the update back out of the base weight (idempotent)."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False
        return self

    def trainable_parameters(self) -> int:
        return self.lora_a.numel() + self.lora_b.numel()
