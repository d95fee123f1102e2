"""coursekit.llm: quantizing language models (chapter 07).

Weight quantization (group-wise INT-b with packing, NF4 with double quantization, GPTQ, AWQ), activation
outliers (LLM.int8() decomposition, SmoothQuant), applying them to every Linear of a model, plus the tiny
Shakespeare GPT, MiniLM and the KV cache. The quantization math itself lives in :mod:`coursekit.quant.primitives`
and :mod:`coursekit.formats`; this package composes it.

Modules, one concept each:

* ``groupwise``   group-wise INT8/4/3/2 weights, bit-packing, bytes that match ``formats.memory``
* ``nf4dq``       NF4 with QLoRA's double quantization of the block scales (4.127 bits/weight)
* ``gptq``        GPTQ (Frantar et al. 2022): Hessian, damped inverse Cholesky, lazy batches, act-order
* ``scaling``     per-input-channel scale migration y = (x/s)(W diag s)^T, folded or explicit
* ``awq``         AWQ (Lin et al. 2023): activation-aware scales, grid search over alpha
* ``int8matmul``  absmax INT8 x INT8 matmul, per-tensor / vector-wise
* ``outliers``    LLM.int8() (Dettmers et al. 2022): outlier columns in FP32, the rest INT8
* ``smoothquant`` SmoothQuant (Xiao et al. 2022): s_j = max|X_j|^a / max|W_j|^(1-a), W8A8
"""
from coursekit.llm.awq import awq_channel_scales, awq_quantize, awq_scales, awq_search
from coursekit.llm.gptq import HessianAccumulator, gptq_quantize, hessian, layer_error, obq_update
from coursekit.llm.groupwise import (
    SUPPORTED_BITS,
    GroupQuant,
    PackedGroupQuant,
    dequantize_groupwise,
    fake_quantize_groupwise,
    groupwise_bytes,
    pack_groupwise,
    quantize_groupwise,
    unpack_groupwise,
)
from coursekit.llm.int8matmul import int8_matmul
from coursekit.llm.nf4dq import (
    NF4DoubleQuant,
    nf4_double_dequantize,
    nf4_double_quant_bytes,
    nf4_double_quantize,
)
from coursekit.llm.outliers import Int8DecomposedLinear, int8_decomposed_matmul, outlier_channels
from coursekit.llm.scaling import InputScaledLinear, fold_input_scales, scaled_linear
from coursekit.llm.smoothquant import SmoothW8A8Linear, W8A8Linear, smooth_linear, smooth_scales

__all__ = [
    "SUPPORTED_BITS",
    "GroupQuant",
    "HessianAccumulator",
    "InputScaledLinear",
    "Int8DecomposedLinear",
    "NF4DoubleQuant",
    "PackedGroupQuant",
    "SmoothW8A8Linear",
    "W8A8Linear",
    "awq_channel_scales",
    "awq_quantize",
    "awq_scales",
    "awq_search",
    "dequantize_groupwise",
    "fake_quantize_groupwise",
    "fold_input_scales",
    "gptq_quantize",
    "groupwise_bytes",
    "hessian",
    "int8_decomposed_matmul",
    "int8_matmul",
    "layer_error",
    "nf4_double_dequantize",
    "nf4_double_quant_bytes",
    "nf4_double_quantize",
    "obq_update",
    "outlier_channels",
    "pack_groupwise",
    "quantize_groupwise",
    "scaled_linear",
    "smooth_linear",
    "smooth_scales",
    "unpack_groupwise",
]
