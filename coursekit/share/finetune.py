"""Fine-tuning a shared-weight layer: train the centroids, keep the assignments.

Deep Compression (Han et al., ICLR 2016), Sec. 3.1, Eq. 3: the gradient of the loss with respect to centroid c_k is
the *sum* of the gradients of the weights that share it,

    dL/dc_k = sum_{i,j} dL/dW_ij * 1(I_ij = k)                                                  (Eq. 3)

``centroid_gradients`` writes Eq. 3 out; ``KMeansQuantizer`` gets it from autograd: each layer's weight is
re-parametrized as centroids[labels] (``torch.nn.utils.parametrize``), and the backward of that gather is exactly a
scatter-add of the weight gradients per cluster, so any optimizer and the shared ``coursekit.train.fit`` loop train
the codebook. (The MIT HAN lab's ``update_codebook`` instead trains the dense weights for a step and resets each
centroid to its cluster's mean, which with plain SGD moves it by the *mean* gradient, Eq. 3 divided by the cluster
size.) Pruned weights (a mask of zeros) stay exactly zero.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from coursekit._validate import check_int
from coursekit.share.kmeans import Codebook, check_bits, kmeans_quantize
from coursekit.surgery import WEIGHT_LAYER_TYPES, named_layers


def centroid_gradients(grad: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. 3: the k centroid gradients, each the sum of the weight gradients of its cluster."""
    if grad.shape != labels.shape:
        raise ValueError(f"grad has shape {tuple(grad.shape)} but labels has {tuple(labels.shape)}; they must match")
    k = check_int("k", k, min_value=1)
    return torch.zeros(k, dtype=grad.dtype, device=grad.device).scatter_add_(0, labels.reshape(-1), grad.reshape(-1))


class SharedWeight(nn.Module):
    """Parametrization weight = centroids[labels] (* mask): the centroids are the only trainable weights."""

    def __init__(self, codebook: Codebook, mask: torch.Tensor | None = None):
        super().__init__()
        self.centroids = nn.Parameter(codebook.centroids.detach().clone())
        self.register_buffer("labels", codebook.labels.detach().clone())
        self.register_buffer("mask", None if mask is None else mask.detach().to(self.centroids.dtype))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        w = self.centroids[self.labels]
        return w if self.mask is None else w * self.mask


class KMeansQuantizer:
    """Share the weights of ``layers`` (default: every Linear/Conv) of ``model`` in place with 2^bits centroids.

    Zero weights (already pruned) are left out of the clustering and kept at zero, as in Deep Compression. After
    ``fit``, call ``remove()`` to bake centroids[labels] into plain weights."""

    def __init__(self, model: nn.Module, bits: int, layers: list[str] | None = None, init: str = "linear",
                 seed: int = 0):
        self.model, self.bits = model, check_int("bits", bits, min_value=1)
        found = dict(named_layers(model, WEIGHT_LAYER_TYPES))
        names = list(found) if layers is None else layers
        self.layers: dict[str, nn.Module] = {}
        for name in names:
            if name not in found:
                raise ValueError(f"layer {name!r} is not a Linear/Conv of the model; choose from {sorted(found)}")
            layer = found[name]
            w = layer.weight.detach()
            mask = (w != 0) if bool((w == 0).any()) else None
            values = w[mask] if mask is not None else w.reshape(-1)
            check_bits(bits, values.numel(), name=f"layer {name!r} (nonzero weights)")
            book = kmeans_quantize(values, bits, init=init, seed=seed)
            labels = torch.zeros(w.shape, dtype=torch.long)
            if mask is not None:
                labels[mask] = book.labels
            else:
                labels = book.labels.reshape(w.shape)
            layer.weight.requires_grad_(False)
            parametrize.register_parametrization(layer, "weight", SharedWeight(
                Codebook(book.centroids, labels, book.inertia), mask), unsafe=True)
            self.layers[name] = layer

    def codebooks(self) -> dict[str, Codebook]:
        """The current (possibly fine-tuned) codebook of every shared layer."""
        out = {}
        for name, layer in self.layers.items():
            p = layer.parametrizations.weight[0]
            out[name] = Codebook(p.centroids.detach().clone(), p.labels.clone(), float("nan"))
        return out

    def remove(self) -> nn.Module:
        """Bake centroids[labels] into ordinary weights and drop the parametrizations."""
        for layer in self.layers.values():
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
            layer.weight.requires_grad_(True)
        self.layers = {}
        return self.model
