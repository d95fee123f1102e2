"""Exact byte counts of sparse storage formats, and where they break even with dense storage.

For a weight viewed as a rows x cols matrix with nnz non-zeros and b-byte values (4 for fp32):

* dense:            rows*cols*b
* CSR (Saad 2003, "Iterative methods for sparse linear systems", section 3.4): values nnz*b, column indices
  nnz*i, row pointers (rows+1)*i, with i = 4 (int32) or 2 (int16: column indices and row pointers must fit,
  so cols and nnz below 2**15). Break-even with dense storage at density ~ b / (b + i).
* bitmask + values: ceil(rows*cols/8) + nnz*b (one bit per position; Han et al. 2016 use relative indices).
* N:M (Mishra et al. 2021): rows*cols*n/m values and as many ceil(log2 m)-bit indices (2 bits at 2:4).
"""
from __future__ import annotations

import math

import torch

FORMATS = ("dense", "csr_int32", "csr_int16", "bitmask", "nm")


def _matrix_shape(tensor: torch.Tensor) -> tuple[int, int]:
    if tensor.dim() == 0:
        return 1, 1
    return tensor.shape[0], tensor.numel() // max(tensor.shape[0], 1)


def storage_bytes(tensor: torch.Tensor, format: str = "dense", value_bytes: int | None = None,
                  n: int = 2, m: int = 4) -> int:
    """Bytes needed to store ``tensor`` (viewed as (dim 0, rest)) in ``format`` (one of ``FORMATS``).

    ``value_bytes`` defaults to the tensor's element size. For ``"nm"`` the tensor must be n:m sparse
    (at most ``n`` non-zeros in each group of ``m`` consecutive entries of a row).
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not supported; choose one of {FORMATS}")
    b = tensor.element_size() if value_bytes is None else int(value_bytes)
    rows, cols = _matrix_shape(tensor)
    nnz = int((tensor != 0).sum())
    if format == "dense":
        return rows * cols * b
    if format.startswith("csr"):
        index = 4 if format == "csr_int32" else 2
        if index == 2 and max(cols, nnz) >= 2 ** 15:
            raise ValueError(f"format='csr_int16' needs cols and nnz below 32768 (got cols={cols}, nnz={nnz}); "
                             f"use 'csr_int32'")
        return nnz * b + nnz * index + (rows + 1) * index
    if format == "bitmask":
        return math.ceil(rows * cols / 8) + nnz * b
    from coursekit.prune.nm import is_nm_sparse
    if n > m or cols % m:
        raise ValueError(f"format='nm' needs n <= m and m dividing the row length {cols} (got n={n}, m={m})")
    if not is_nm_sparse(tensor, n, m):
        raise ValueError(f"tensor is not {n}:{m} sparse (some group of {m} has more than {n} non-zeros); "
                         f"apply nm_prune first or use another format")
    kept = rows * cols * n // m
    return kept * b + math.ceil(kept * max(1, math.ceil(math.log2(m))) / 8)


def model_storage_bytes(model, format: str = "dense", value_bytes: int | None = None) -> int:
    """Sum of ``storage_bytes`` over every parameter and buffer of ``model`` in the model's state dict;
    conv/linear weights (dim >= 2) in ``format``, the small 1-d tensors (biases, BN) dense."""
    total = 0
    for tensor in model.state_dict().values():
        if not tensor.is_floating_point():
            continue
        fmt = format if tensor.dim() >= 2 else "dense"
        total += storage_bytes(tensor, fmt, value_bytes)
    return total


def csr_break_even(value_bytes: int = 4, index_bytes: int = 4) -> float:
    """Sparsity above which CSR is smaller than dense, ignoring the row pointers: 1 - b / (b + i)
    (0.5 for fp32 values with int32 indices)."""
    return 1 - value_bytes / (value_bytes + index_bytes)
