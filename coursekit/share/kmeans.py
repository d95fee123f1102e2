"""Weight sharing by k-means: every weight is replaced by one of k = 2^bits shared values (a codebook).

Han, Mao & Dally, "Deep Compression" (ICLR 2016), Sec. 3, Eq. 1: choose centroids C = {c_1..c_k} minimising the
within-cluster sum of squares (the *inertia*)

    argmin_C  sum_i sum_{w in cluster i} |w - c_i|^2                                           (Eq. 1)

solved by Lloyd's algorithm (Lloyd, IEEE Trans. Inf. Theory 1982): alternate

    assignment  label(w) = argmin_i |w - c_i|                                                  (Eq. 2a)
    update      c_i = mean of the weights labelled i                                           (Eq. 2b)

Initialisation: "linear" spaces the centroids evenly between min and max (Deep Compression Sec. 3.2, the best of
their three choices because it keeps the rare large weights); "kmeans++" picks each next centroid with
probability proportional to its squared distance to the nearest one already chosen (Arthur & Vassilvitskii, SODA
2007). Weights are scalars, so Eq. 2a is a search in the sorted centroids (bucketize on the midpoints) instead of
an n x k distance matrix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from coursekit._validate import check_choice, check_int


@dataclass
class Codebook:
    """k centroids and, for every weight, the index of its centroid (``labels`` has the tensor's shape)."""

    centroids: torch.Tensor
    labels: torch.Tensor
    inertia: float

    @property
    def k(self) -> int:
        return self.centroids.numel()

    def decode(self) -> torch.Tensor:
        """The shared weights: centroids[labels]."""
        return self.centroids[self.labels]


def check_values(tensor, name: str = "tensor") -> torch.Tensor:
    """A non-empty float tensor, flattened to float64."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)}); there are no weights to cluster")
    return tensor.detach().reshape(-1).to(torch.float64)


def check_bits(bits, n: int, name: str = "tensor") -> int:
    """bits >= 1 and k = 2^bits <= n (the number of weights)."""
    bits = check_int("bits", bits, min_value=1)
    if 2 ** bits > n:
        raise ValueError(f"bits={bits} asks for k={2 ** bits} clusters but {name} has only {n} weights; "
                         f"use bits <= {max(n.bit_length() - 1, 0)}")
    return bits


def assign(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Eq. 2a for scalars: the index of the nearest centroid for every entry of ``x`` (ties go to the lower one)."""
    order = torch.argsort(centroids)
    c = centroids[order]
    edges = (c[1:] + c[:-1]) / 2
    return order[torch.bucketize(x, edges, right=False)]


def update(x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Eq. 2b: each centroid becomes the mean of its cluster; an empty cluster keeps its old value."""
    k = centroids.numel()
    sums = torch.zeros(k, dtype=x.dtype).scatter_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=k).to(x.dtype)
    return torch.where(counts > 0, sums / counts.clamp(min=1), centroids)


def inertia(x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor) -> float:
    """Eq. 1: the sum of squared distances of every value to its centroid."""
    return float((x - centroids[labels]).pow(2).sum())


def linear_init(x: torch.Tensor, k: int) -> torch.Tensor:
    """k centroids evenly spaced over [min, max] (Deep Compression Sec. 3.2)."""
    return torch.linspace(float(x.min()), float(x.max()), k, dtype=torch.float64)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator, local_trials: int | None = None
                     ) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, Sec. 5; scikit-learn's default): each next centroid
    is the best of ``local_trials`` (default 2 + ln k) candidates drawn with probability proportional to D^2, the
    squared distance to the nearest centroid chosen so far."""
    trials = local_trials or 2 + int(math.log(k))
    chosen = [x[torch.randint(x.numel(), (1,), generator=generator)].item()]
    d2 = (x - chosen[0]).pow(2)
    for _ in range(1, k):
        if float(d2.sum()) == 0:  # fewer distinct values than k: repeat one (its cluster stays empty)
            chosen.append(chosen[-1])
            continue
        idx = torch.multinomial(d2 / d2.sum(), trials, replacement=True, generator=generator)
        cand = torch.minimum(d2[None, :], (x[None, :] - x[idx][:, None]).pow(2))
        best = int(cand.sum(1).argmin())
        chosen.append(x[idx[best]].item())
        d2 = cand[best]
    return torch.tensor(chosen, dtype=torch.float64)


def lloyd(x: torch.Tensor, centroids: torch.Tensor, n_iter: int = 100, tol: float = 0.0):
    """Lloyd iterations from ``centroids`` until the labels stop changing (or ``n_iter``); returns
    (centroids, labels, inertia)."""
    labels = assign(x, centroids)
    for _ in range(n_iter):
        new_centroids = update(x, labels, centroids)
        new_labels = assign(x, new_centroids)
        shift = float((new_centroids - centroids).abs().max())
        centroids = new_centroids
        if torch.equal(new_labels, labels) or shift <= tol:
            labels = new_labels
            break
        labels = new_labels
    return centroids, labels, inertia(x, labels, centroids)


def kmeans_quantize(tensor: torch.Tensor, bits: int, init: str = "linear", n_iter: int = 100, seed: int = 0,
                    n_init: int = 1) -> Codebook:
    """Cluster the entries of ``tensor`` into k = 2^bits shared values (Eq. 1-2); the best of ``n_init`` runs.

    ``init`` is "linear" (deterministic, Deep Compression) or "kmeans++" (seeded by ``seed``)."""
    x = check_values(tensor)
    bits = check_bits(bits, x.numel())
    check_choice("init", init, ("linear", "kmeans++"))
    n_iter, n_init = check_int("n_iter", n_iter, min_value=1), check_int("n_init", n_init, min_value=1)
    generator = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(1 if init == "linear" else n_init):
        start = linear_init(x, 2 ** bits) if init == "linear" else kmeans_plus_plus(x, 2 ** bits, generator)
        run = lloyd(x, start, n_iter)
        if best is None or run[2] < best[2]:
            best = run
    centroids, labels, sse = best
    return Codebook(centroids.to(tensor.dtype if tensor.is_floating_point() else torch.float32),
                    labels.reshape(tensor.shape), sse)
