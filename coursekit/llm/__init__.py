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
* ``apply``       every Linear of a model: rtn / nf4 / gptq / awq (sequential calibration), W8A8; a report
* ``smoothquant`` SmoothQuant (Xiao et al. 2022): s_j = max|X_j|^a / max|W_j|^(1-a), W8A8
* ``corpus``      the Shakespeare slice, CharTokenizer, train/held-out splits, bits per character
* ``gpt``         TinyGPT (nanoGPT-style, 825,856 parameters), generate with a KV cache
* ``kvcache``     FP32 and INT8 (per-token / per-head scales) key/value caches, their bytes
* ``train_gpt``   the recipe of the shipped TinyGPT weights; ``pretrained_gpt()`` loads them offline
* ``minilm``      all-MiniLM-L6-v2 offline: embeddings, cosine/Spearman quality, activation outliers
"""
from coursekit.llm.apply import (
    QuantReport,
    capture_inputs,
    int4_linear_stack,
    quantize_linears,
    smoothquant_alpha,
    w8a8_linears,
)
from coursekit.llm.awq import awq_channel_scales, awq_quantize, awq_scales, awq_search
from coursekit.llm.corpus import CharTokenizer, bits_per_char, corpus_splits, shakespeare_text
from coursekit.llm.gpt import GPTConfig, TinyGPT, generate
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
from coursekit.llm.kvcache import Int8KVCache, KVCache, cache_bytes
from coursekit.llm.minilm import (
    SENTENCES,
    activation_absmax,
    embed,
    embedding_quality,
    load_minilm,
    outlier_dimensions,
)
from coursekit.llm.nf4dq import (
    NF4DoubleQuant,
    nf4_double_dequantize,
    nf4_double_quant_bytes,
    nf4_double_quantize,
)
from coursekit.llm.outliers import Int8DecomposedLinear, int8_decomposed_matmul, outlier_channels
from coursekit.llm.scaling import InputScaledLinear, fold_input_scales, scaled_linear
from coursekit.llm.smoothquant import SmoothW8A8Linear, W8A8Linear, smooth_linear, smooth_scales
from coursekit.llm.train_gpt import pretrained_gpt, train_tiny_gpt

__all__ = [
    "SENTENCES",
    "SUPPORTED_BITS",
    "CharTokenizer",
    "GPTConfig",
    "GroupQuant",
    "HessianAccumulator",
    "InputScaledLinear",
    "Int8DecomposedLinear",
    "Int8KVCache",
    "KVCache",
    "NF4DoubleQuant",
    "PackedGroupQuant",
    "QuantReport",
    "SmoothW8A8Linear",
    "TinyGPT",
    "W8A8Linear",
    "activation_absmax",
    "awq_channel_scales",
    "awq_quantize",
    "awq_scales",
    "awq_search",
    "bits_per_char",
    "cache_bytes",
    "capture_inputs",
    "corpus_splits",
    "dequantize_groupwise",
    "embed",
    "embedding_quality",
    "fake_quantize_groupwise",
    "fold_input_scales",
    "generate",
    "gptq_quantize",
    "groupwise_bytes",
    "hessian",
    "int4_linear_stack",
    "int8_decomposed_matmul",
    "int8_matmul",
    "layer_error",
    "load_minilm",
    "nf4_double_dequantize",
    "nf4_double_quant_bytes",
    "nf4_double_quantize",
    "obq_update",
    "outlier_channels",
    "outlier_dimensions",
    "pack_groupwise",
    "pretrained_gpt",
    "quantize_groupwise",
    "quantize_linears",
    "scaled_linear",
    "shakespeare_text",
    "smooth_linear",
    "smooth_scales",
    "smoothquant_alpha",
    "train_tiny_gpt",
    "unpack_groupwise",
    "w8a8_linears",
]
