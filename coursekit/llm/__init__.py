"""coursekit.llm: quantizing language models (chapter 07).

Weight quantization (group-wise INT-b with packing, NF4 with double quantization, GPTQ, AWQ), activation
outliers (LLM.int8() decomposition, SmoothQuant), applying them to every Linear of a model, plus the tiny
Shakespeare GPT, MiniLM and the KV cache. The quantization math itself lives in :mod:`coursekit.quant.primitives`
and :mod:`coursekit.formats`; this package composes it.

Modules, one concept each:

* ``groupwise``   group-wise INT8/4/3/2 weights, bit-packing, bytes that match ``formats.memory``
* ``gptq``        GPTQ (Frantar et al. 2022): Hessian, damped inverse Cholesky, lazy batches, act-order
"""
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

__all__ = [
    "SUPPORTED_BITS",
    "GroupQuant",
    "HessianAccumulator",
    "PackedGroupQuant",
    "dequantize_groupwise",
    "fake_quantize_groupwise",
    "gptq_quantize",
    "groupwise_bytes",
    "hessian",
    "layer_error",
    "obq_update",
    "pack_groupwise",
    "quantize_groupwise",
    "unpack_groupwise",
]
