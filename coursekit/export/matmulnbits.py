"""Group-wise INT4 weights as ONNX Runtime's ``com.microsoft.MatMulNBits`` (weight-only 4-bit matmul).

``MatMulNBits`` computes ``Y = A @ dequant(B)^T`` for ``A`` ``[M, K]`` and a weight ``[N, K]`` (a Linear's
``weight``: ``N`` = out_features, ``K`` = in_features) stored block-wise along ``K``:

* attributes ``K``, ``N``, ``bits`` (4), ``block_size`` (a power of two >= 16), ``accuracy_level``;
* ``B``: uint8 ``[N, K / block_size, block_size / 2]``: two 4-bit codes per byte, the FIRST code in the LOW
  nibble (``byte = c0 | c1 << 4``);
* ``scales``: float32 ``[N * K / block_size]`` (row-major ``[N, n_blocks]``);
* ``zero_points`` (optional): uint8, each row's ``n_blocks`` 4-bit zero points packed the same way, low nibble
  first, a row padded to whole bytes: ``[N * ceil(n_blocks / 2)]``. Absent, every zero point is 8 (``2^(bits-1)``),
  which is exactly coursekit's symmetric scheme (``coursekit.llm.groupwise``).

The dequantized weight is ``(code - zero_point) * scale``, the same formula as ``coursekit.quant.primitives``.
NOTE the nibble order is the opposite of :mod:`coursekit.formats.packing` (bitsandbytes order, first code in the
HIGH nibble): ``ort_byte == swap_nibbles(pack_bits(codes, 4))``.

``accuracy_level`` chooses the compute type of the CPU kernel (ORT's MLAS "SQNBit" kernels): 0 (unset) and 1
dequantize to FP32 and multiply in FP32, so the result equals the dequantized matmul up to float summation order;
4 quantizes the activations ``A`` to INT8 (per block of ``block_size``, absmax) and runs INT8 dot products (AVX-512
VNNI / AVX2), which is the fast path on such CPUs and costs a small extra error (about 1e-3 to 1e-2 relative).

:func:`matmulnbits_model` builds a one-layer graph; :func:`linear_stack_models` builds a whole stack of Linear
layers (an MLP, or ``(d x 4d)`` GEMV layers for a decode benchmark) twice, as ``MatMulNBits`` and as FP32
``MatMul``, so a benchmark can time decode (``M = 1``) and prefill (``M = 128``) on the same weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from coursekit._validate import check_choice, check_int

ACCURACY_LEVELS = (0, 1, 2, 3, 4)
ACTIVATIONS = (None, "relu", "gelu")
OPSET = 21  # default domain (Gelu since opset 20)
MS_DOMAIN = "com.microsoft"


@dataclass
class Int4Weight:
    """A group-wise INT4 weight as MatMulNBits needs it: unsigned codes ``[N, K]`` in [0, 15], scales
    ``[N, K / block_size]``, zero points ``[N, K / block_size]`` or ``None`` (the default 8), and an optional
    input permutation ``perm`` (GPTQ act-order: stored column ``j`` is input column ``perm[j]``)."""

    codes: torch.Tensor
    scales: torch.Tensor
    zero_points: torch.Tensor | None
    block_size: int
    perm: torch.Tensor | None = None

    @classmethod
    def from_groupwise(cls, gq) -> Int4Weight:
        """From any object with ``codes``, ``scale``, ``zero_point``, ``group_size``, ``bits`` (and ``perm``),
        e.g. ``coursekit.llm.groupwise.GroupQuant`` (4-bit)."""
        if getattr(gq, "bits", None) != 4:
            raise ValueError(f"MatMulNBits export takes 4-bit weights, got bits={getattr(gq, 'bits', None)!r}")
        return cls(gq.codes, gq.scale, gq.zero_point, gq.group_size, getattr(gq, "perm", None))

    def dequantize(self) -> torch.Tensor:
        """``(code - zero) * scale`` as float32 ``[N, K]`` in the ORIGINAL input order (the reference)."""
        zp = 8.0 if self.zero_points is None else self.zero_points.float().repeat_interleave(self.block_size, 1)
        w = (self.codes.float() - zp) * self.scales.float().repeat_interleave(self.block_size, 1)
        if self.perm is None:
            return w
        out = torch.empty_like(w)
        out[:, self.perm] = w
        return out


def _check(weight: Int4Weight) -> tuple[int, int, int]:
    if not isinstance(weight, Int4Weight):
        raise TypeError(f"weight must be an Int4Weight, got {type(weight).__name__}")
    n, k = weight.codes.shape
    bs = check_int("block_size", weight.block_size, min_value=16)
    if bs & (bs - 1):
        raise ValueError(f"block_size={bs} must be a power of two >= 16 (MatMulNBits' kernels)")
    if k % bs:
        raise ValueError(f"block_size={bs} does not divide K={k} (the weight's in_features)")
    if weight.codes.numel() and (int(weight.codes.min()) < 0 or int(weight.codes.max()) > 15):
        raise ValueError("codes must be unsigned 4-bit values in [0, 15]")
    if tuple(weight.scales.shape) != (n, k // bs):
        raise ValueError(f"scales must have shape ({n}, {k // bs}), got {tuple(weight.scales.shape)}")
    return n, k, bs


# ----------------------------------------------------------------------------------------------- layout
def pack_low_first(codes: torch.Tensor) -> np.ndarray:
    """4-bit codes ``[..., 2m]`` -> uint8 ``[..., m]``, ``byte = codes[2j] | codes[2j+1] << 4`` (ORT order)."""
    c = codes.to(torch.int64)
    if c.shape[-1] % 2:
        c = torch.cat([c, c.new_zeros(*c.shape[:-1], 1)], dim=-1)
    pairs = c.reshape(*c.shape[:-1], -1, 2)
    return (pairs[..., 0] | (pairs[..., 1] << 4)).to(torch.uint8).numpy()


def unpack_low_first(packed: np.ndarray, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_low_first`: the first ``count`` codes along the last axis."""
    p = torch.from_numpy(np.asarray(packed, dtype=np.uint8)).to(torch.int64)
    codes = torch.stack([p & 0xF, p >> 4], dim=-1).reshape(*p.shape[:-1], -1)
    return codes[..., :count].to(torch.uint8)


def matmulnbits_tensors(weight: Int4Weight) -> dict[str, np.ndarray]:
    """The ``B``, ``scales`` (and ``zero_points``) arrays of one MatMulNBits node."""
    n, k, bs = _check(weight)
    out = {"B": pack_low_first(weight.codes.reshape(n, k // bs, bs)),
           "scales": weight.scales.detach().float().reshape(-1).numpy().copy()}
    if weight.zero_points is not None:
        out["zero_points"] = pack_low_first(weight.zero_points).reshape(-1)
    return out


# ----------------------------------------------------------------------------------------------- graphs
def _linear_nodes(prefix: str, x: str, y: str, weight, bias, accuracy_level: int):
    """Nodes and initializers of one Linear: MatMulNBits (``Int4Weight``) or MatMul (float ``[N, K]`` tensor)."""
    from onnx import helper, numpy_helper

    inits, nodes = [], []
    mm_out = y if bias is None else f"{prefix}_mm"
    if isinstance(weight, Int4Weight):
        n, k, bs = _check(weight)
        if weight.perm is not None:  # act-order: gather the inputs into the stored column order
            inits.append(numpy_helper.from_array(weight.perm.to(torch.int64).numpy(), f"{prefix}_perm"))
            nodes.append(helper.make_node("Gather", [x, f"{prefix}_perm"], [f"{prefix}_xp"], axis=-1))
            x = f"{prefix}_xp"
        arrays = matmulnbits_tensors(weight)
        names = [x]
        for key in ("B", "scales", "zero_points"):
            if key in arrays:
                inits.append(numpy_helper.from_array(arrays[key], f"{prefix}_{key}"))
                names.append(f"{prefix}_{key}")
        nodes.append(helper.make_node("MatMulNBits", names, [mm_out], domain=MS_DOMAIN, K=k, N=n, bits=4,
                                      block_size=bs, accuracy_level=accuracy_level))
    else:
        w = torch.as_tensor(weight).detach().float()
        inits.append(numpy_helper.from_array(w.T.contiguous().numpy(), f"{prefix}_wT"))
        nodes.append(helper.make_node("MatMul", [x, f"{prefix}_wT"], [mm_out]))
    if bias is not None:
        inits.append(numpy_helper.from_array(torch.as_tensor(bias).detach().float().numpy(), f"{prefix}_bias"))
        nodes.append(helper.make_node("Add", [mm_out, f"{prefix}_bias"], [y]))
    return nodes, inits


def linear_stack_model(weights, biases=None, activation: str | None = None, accuracy_level: int = 0,
                       name: str = "linear_stack"):
    """An ONNX model ``x [M, K0] -> y`` applying ``weights[0]``, activation, ``weights[1]``, ... in turn.

    Each weight is an :class:`Int4Weight` (-> ``MatMulNBits``) or a float ``[N, K]`` tensor (-> ``MatMul``);
    ``activation`` ("relu", "gelu" or None) goes between layers, not after the last one. ``M`` is dynamic.
    """
    from onnx import TensorProto, checker, helper

    weights = list(weights)
    if not weights:
        raise ValueError("weights is empty: give at least one layer")
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("accuracy_level", accuracy_level, ACCURACY_LEVELS)
    biases = [None] * len(weights) if biases is None else list(biases)
    if len(biases) != len(weights):
        raise ValueError(f"biases has {len(biases)} entries for {len(weights)} weights")
    shapes = [tuple(w.codes.shape) if isinstance(w, Int4Weight) else tuple(w.shape) for w in weights]
    for i in range(1, len(shapes)):
        if shapes[i][1] != shapes[i - 1][0]:
            raise ValueError(f"layer {i} expects {shapes[i][1]} inputs but layer {i - 1} gives {shapes[i - 1][0]}")
    nodes, inits, x = [], [], "x"
    for i, (w, b) in enumerate(zip(weights, biases)):
        last = i == len(weights) - 1
        y = "y" if last else f"h{i}"
        more_nodes, more_inits = _linear_nodes(f"l{i}", x, y, w, b, accuracy_level)
        nodes += more_nodes
        inits += more_inits
        if activation and not last:
            nodes.append(helper.make_node("Relu" if activation == "relu" else "Gelu", [y], [f"{y}_act"]))
            y = f"{y}_act"
        x = y
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", shapes[0][1]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", shapes[-1][0]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid(MS_DOMAIN, 1)])
    model.ir_version = 10
    checker.check_model(model)
    return model


def matmulnbits_model(weight: Int4Weight, bias=None, accuracy_level: int = 0):
    """A one-node graph ``y = x @ dequant(B)^T (+ bias)`` with ``com.microsoft.MatMulNBits``."""
    return linear_stack_model([weight], None if bias is None else [bias], accuracy_level=accuracy_level,
                              name="matmulnbits")


def linear_stack_models(float_weights, int4_weights, biases=None, activation: str | None = None,
                        accuracy_level: int = 4):
    """The same stack twice: ``(fp32 MatMul model, MatMulNBits model)``, for timing decode vs prefill.

    ``float_weights``: float ``[N, K]`` tensors; ``int4_weights``: their :class:`Int4Weight` versions.
    """
    float_weights, int4_weights = list(float_weights), list(int4_weights)
    if len(float_weights) != len(int4_weights):
        raise ValueError(f"float_weights ({len(float_weights)}) and int4_weights ({len(int4_weights)}) must "
                         "hold the same layers")
    return (linear_stack_model(float_weights, biases, activation, name="fp32_stack"),
            linear_stack_model(int4_weights, biases, activation, accuracy_level, name="int4_stack"))


def save_model(model, path) -> str:
    """Write an ONNX model to ``path`` (returns the path as str)."""
    import onnx

    onnx.save(model, str(path))
    return str(path)


__all__ = ["ACCURACY_LEVELS", "Int4Weight", "linear_stack_model", "linear_stack_models", "matmulnbits_model",
           "matmulnbits_tensors", "pack_low_first", "save_model", "unpack_low_first"]
