"""Factorizing a Conv2d: channel SVD (k x k conv with r outputs, then 1 x 1) and Tucker-2.

* Channel SVD (Zhang et al., "Accelerating Very Deep Convolutional Networks for Classification and Detection",
  TPAMI 2016, Sec. 3): reshape W (O, C, k, k) to the matrix W_(O) of shape O x (C k k), truncate its SVD at rank r
  (Eq. 1 of ``svd.py``). The first factor is r filters of shape (C, k, k), the second a 1 x 1 conv O x r.
* Tucker-2 (Kim et al., "Compression of Deep Convolutional Neural Networks for Fast and Low Power Mobile
  Applications", ICLR 2016, Eq. 3): W ~= G x_1 U_out x_2 U_in, with core G (R_out, R_in, k, k), U_out (O x R_out),
  U_in (C x R_in). As layers: 1 x 1 conv C -> R_in, k x k conv R_in -> R_out (the core), 1 x 1 conv R_out -> O.
  HOSVD (De Lathauwer et al., SIAM J. Matrix Anal. Appl. 2000) initialises U_out / U_in with the leading left
  singular vectors of the mode unfoldings; optional HOOI sweeps refine them (the same algorithm as
  ``tensorly.decomposition.partial_tucker``).
"""
from __future__ import annotations

import torch
from torch import nn

from coursekit._validate import check_int
from coursekit.lowrank.svd import check_rank, svd_factors


def _check_conv(conv, name: str) -> None:
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"{name} is a {type(conv).__name__}; conv factorization supports nn.Conv2d only")
    if conv.groups != 1:
        raise ValueError(f"{name} has groups={conv.groups}; only groups=1 convolutions can be factorized here")


def _conv_like(conv: nn.Conv2d, cin: int, cout: int, kernel, bias: bool, spatial: bool) -> nn.Conv2d:
    """A conv that keeps ``conv``'s stride/padding/dilation when ``spatial``, else a 1 x 1 conv."""
    kw = {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "padding_mode": conv.padding_mode} \
        if spatial else {}
    return nn.Conv2d(cin, cout, kernel, bias=bias, **kw).to(device=conv.weight.device, dtype=conv.weight.dtype)


def factorize_conv(conv: nn.Conv2d, rank: int, name: str = "conv") -> nn.Sequential:
    """Channel SVD: Sequential(Conv2d(C, r, k x k, same stride/padding), Conv2d(r, O, 1 x 1, bias))."""
    _check_conv(conv, name)
    o, c, kh, kw = conv.weight.shape
    rank = check_rank(rank, o, c * kh * kw, layer=name)
    a, b = svd_factors(conv.weight.reshape(o, -1), rank)
    first = _conv_like(conv, c, rank, (kh, kw), bias=False, spatial=True)
    second = _conv_like(conv, rank, o, 1, bias=conv.bias is not None, spatial=False)
    with torch.no_grad():
        first.weight.copy_(a.reshape(rank, c, kh, kw))
        second.weight.copy_(b.reshape(o, rank, 1, 1))
        if conv.bias is not None:
            second.bias.copy_(conv.bias)
    return nn.Sequential(first, second)


def _leading_vectors(unfolded: torch.Tensor, rank: int) -> torch.Tensor:
    u, _, _ = torch.linalg.svd(unfolded, full_matrices=False)
    return u[:, :rank]


def tucker2(weight: torch.Tensor, ranks: tuple[int, int], n_iter: int = 0):
    """Tucker-2 of a 4-D conv weight over its output and input channel modes.

    Returns (core (R_out, R_in, kh, kw), U_out (O x R_out), U_in (C x R_in)), all float64. ``n_iter=0`` is HOSVD;
    each further sweep is one HOOI update of U_out then U_in (each the leading singular vectors of the weight
    projected on the other factor)."""
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4 or weight.numel() == 0:
        raise ValueError("weight must be a non-empty 4-D conv weight (out, in, kh, kw), got "
                         f"{getattr(weight, 'shape', type(weight).__name__)}")
    w = weight.detach().to(torch.float64)
    o, c = w.shape[:2]
    r_out = check_rank(ranks[0], o, c * w.shape[2] * w.shape[3], name="ranks[0]", layer="the output-channel mode")
    r_in = check_rank(ranks[1], c, o * w.shape[2] * w.shape[3], name="ranks[1]", layer="the input-channel mode")
    n_iter = check_int("n_iter", n_iter, min_value=0)
    u_out = _leading_vectors(w.reshape(o, -1), r_out)
    u_in = _leading_vectors(w.transpose(0, 1).reshape(c, -1), r_in)
    for _ in range(n_iter):
        y = torch.einsum("ochw,ci->oihw", w, u_in)
        u_out = _leading_vectors(y.reshape(o, -1), r_out)
        y = torch.einsum("ochw,or->rchw", w, u_out)
        u_in = _leading_vectors(y.transpose(0, 1).reshape(c, -1), r_in)
    core = torch.einsum("ochw,or,ci->rihw", w, u_out, u_in)
    return core, u_out, u_in


def tucker2_reconstruct(core: torch.Tensor, u_out: torch.Tensor, u_in: torch.Tensor) -> torch.Tensor:
    """G x_1 U_out x_2 U_in: the (O, C, kh, kw) weight a Tucker-2 factorization stands for."""
    return torch.einsum("rihw,or,ci->ochw", core, u_out, u_in)


def tucker2_conv(conv: nn.Conv2d, ranks: tuple[int, int] | int, n_iter: int = 0, name: str = "conv") -> nn.Sequential:
    """Sequential(1x1 C->R_in, kxk R_in->R_out (stride/padding of ``conv``), 1x1 R_out->O with bias).

    ``ranks`` is (R_out, R_in) or one int for both."""
    _check_conv(conv, name)
    ranks = (ranks, ranks) if isinstance(ranks, int) else tuple(ranks)
    if len(ranks) != 2:
        raise ValueError(f"ranks={ranks!r} for {name}: give (R_out, R_in) or one int")
    core, u_out, u_in = tucker2(conv.weight, ranks, n_iter)
    o, c, kh, kw = conv.weight.shape
    r_out, r_in = core.shape[:2]
    first = _conv_like(conv, c, r_in, 1, bias=False, spatial=False)
    middle = _conv_like(conv, r_in, r_out, (kh, kw), bias=False, spatial=True)
    last = _conv_like(conv, r_out, o, 1, bias=conv.bias is not None, spatial=False)
    with torch.no_grad():
        first.weight.copy_(u_in.T.reshape(r_in, c, 1, 1))
        middle.weight.copy_(core)
        last.weight.copy_(u_out.reshape(o, r_out, 1, 1))
        if conv.bias is not None:
            last.bias.copy_(conv.bias)
    return nn.Sequential(first, middle, last)
