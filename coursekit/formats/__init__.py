"""coursekit.formats: number formats bit by bit, memory accounting, and error metrics.

The lowest layer of coursekit: it imports only torch, numpy and the standard library.

    >>> import torch
    >>> from coursekit import formats
    >>> fp8 = formats.get_format("fp8_e4m3")
    >>> fp8.max, fp8.encode(torch.tensor([1.0])), fp8.cast(torch.tensor([500.0]))
    (448.0, tensor([56], dtype=torch.uint8), tensor([448.]))

Modules, one concept each:

* ``floats``   sign/exponent/mantissa formats (FP32, FP16, BF16, FP8 E4M3/E5M2, FP4 E2M1): encode/decode
* ``integers`` INT8 ... INT2, UINT8/UINT4 and binary {-1, +1}
* ``nf4``      QLoRA's NormalFloat4 levels and block-wise absmax quantization
* ``packing``  two 4-bit or four 2-bit codes per byte
* ``registry`` ``get_format`` / ``list_formats`` / ``describe``
* ``memory``   bytes of weights (with group scales), of a whole model, of a KV cache
* ``metrics``  MSE, SQNR and max error of each format on a tensor
"""
from coursekit.formats.floats import (
    BF16,
    FP4_E2M1,
    FP8_E4M3,
    FP8_E5M2,
    FP16,
    FP32,
    OVERFLOW_RULES,
    SPECIALS,
    FloatFormat,
)
from coursekit.formats.integers import BINARY, INT2, INT4, INT8, UINT4, UINT8, BinaryFormat, IntFormat
from coursekit.formats.memory import (
    DEFAULT_REPORT_FORMATS,
    MemoryReport,
    bits_per_param,
    kv_cache_bytes,
    memory_bytes,
    model_memory_report,
)
from coursekit.formats.metrics import (
    QuantError,
    error_metrics,
    error_table,
    format_error_table,
    quantization_error,
    quantize_dequantize,
    sqnr_db,
)
from coursekit.formats.nf4 import (
    NF4,
    NF4_LEVELS,
    LevelFormat,
    nf4_cast,
    nf4_dequantize,
    nf4_levels_from_normal_quantiles,
    nf4_quantize,
    num_blocks,
)
from coursekit.formats.packing import (
    pack_2bit,
    pack_bits,
    pack_nibbles,
    unpack_bits,
    unpack_nibbles,
)
from coursekit.formats.registry import FORMATS, Format, describe, formats_table, get_format, list_formats

__all__ = [
    "BF16",
    "BINARY",
    "DEFAULT_REPORT_FORMATS",
    "FORMATS",
    "FP4_E2M1",
    "FP8_E4M3",
    "FP8_E5M2",
    "FP16",
    "FP32",
    "INT2",
    "INT4",
    "INT8",
    "NF4",
    "NF4_LEVELS",
    "OVERFLOW_RULES",
    "SPECIALS",
    "UINT4",
    "UINT8",
    "BinaryFormat",
    "FloatFormat",
    "Format",
    "IntFormat",
    "LevelFormat",
    "MemoryReport",
    "QuantError",
    "bits_per_param",
    "describe",
    "error_metrics",
    "error_table",
    "format_error_table",
    "formats_table",
    "get_format",
    "kv_cache_bytes",
    "list_formats",
    "memory_bytes",
    "model_memory_report",
    "nf4_cast",
    "nf4_dequantize",
    "nf4_levels_from_normal_quantiles",
    "nf4_quantize",
    "num_blocks",
    "pack_2bit",
    "pack_bits",
    "pack_nibbles",
    "quantization_error",
    "quantize_dequantize",
    "sqnr_db",
    "unpack_bits",
    "unpack_nibbles",
]
