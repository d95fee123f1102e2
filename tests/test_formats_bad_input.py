"""Bad input to coursekit.formats raises a ValueError/TypeError that names the argument and what is allowed."""
import math

import pytest
import torch

from coursekit import formats as F


def test_unknown_format_name_lists_the_known_names():
    with pytest.raises(ValueError, match=r"format='fp9'.*'fp32'.*'fp8_e4m3'.*'nf4'"):
        F.get_format("fp9")
    with pytest.raises(TypeError, match="format name must be a str"):
        F.get_format(8)
    with pytest.raises(ValueError, match="format='int3'"):
        F.memory_bytes(10, "int3")
    with pytest.raises(ValueError, match="format='fp64'"):
        F.quantization_error(torch.ones(3), "fp64")


@pytest.mark.parametrize("name,codes", [
    ("fp8_e4m3", torch.tensor([0, 256])),
    ("fp8_e5m2", torch.tensor([-1])),
    ("fp4_e2m1", torch.tensor([16], dtype=torch.uint8)),
    ("fp16", torch.tensor([65536])),
    ("int4", torch.tensor([8], dtype=torch.int8)),
    ("uint4", torch.tensor([-1], dtype=torch.int8)),
    ("int8", torch.tensor([200], dtype=torch.int16)),
    ("nf4", torch.tensor([16], dtype=torch.uint8)),
])
def test_codes_out_of_range(name, codes):
    with pytest.raises(ValueError, match=r"codes contains -?\d+, outside the valid range"):
        F.get_format(name).decode(codes)


def test_binary_codes_must_be_plus_or_minus_one():
    with pytest.raises(ValueError, match="binary codes must be -1 or \\+1"):
        F.get_format("binary").decode(torch.tensor([0, 1]))


@pytest.mark.parametrize("name", ["fp16", "fp8_e4m3", "int8", "binary", "nf4"])
def test_non_integer_codes(name):
    with pytest.raises(TypeError, match="codes must be an integer tensor"):
        F.get_format(name).decode(torch.tensor([1.0]))
    with pytest.raises(TypeError, match="codes must be an integer torch.Tensor"):
        F.get_format(name).decode([1, 2])


@pytest.mark.parametrize("name", ["fp16", "fp8_e4m3", "fp4_e2m1", "int8", "binary", "nf4"])
def test_encode_needs_a_float_tensor(name):
    with pytest.raises(TypeError, match="x must be a"):
        F.get_format(name).encode(torch.tensor([1, 2]))


@pytest.mark.parametrize("name", ["fp4_e2m1", "int8", "binary", "nf4"])
def test_nan_into_a_format_without_nan(name):
    with pytest.raises(ValueError, match="x contains NaN"):
        F.get_format(name).encode(torch.tensor([1.0, math.nan]))


def test_overflow_rule_must_exist_in_the_format():
    with pytest.raises(ValueError, match=r"overflow='inf'.*'saturate', 'nan'"):
        F.get_format("fp8_e4m3").encode(torch.ones(2), overflow="inf")
    with pytest.raises(ValueError, match=r"overflow='nan'.*'saturate'"):
        F.get_format("fp4_e2m1").cast(torch.ones(2), overflow="nan")
    with pytest.raises(ValueError, match="overflow='clip'"):
        F.get_format("fp16").encode(torch.ones(2), overflow="clip")


@pytest.mark.parametrize("group_size,error,match", [
    (96, ValueError, "group_size=96 does not divide num_params=1000"),
    (0, ValueError, "group_size=0 is too small"),
    (-64, ValueError, "group_size=-64 is too small"),
    (12.5, TypeError, "group_size must be an integer"),
])
def test_memory_group_size(group_size, error, match):
    with pytest.raises(error, match=match):
        F.memory_bytes(1000, "int4", group_size=group_size)


def test_memory_parameter_counts():
    with pytest.raises(ValueError, match="num_params=-1 is too small"):
        F.memory_bytes(-1, "int8")
    with pytest.raises(TypeError, match="num_params must be an integer"):
        F.memory_bytes(7e9, "int8")
    with pytest.raises(ValueError, match="zero_point=True needs a group_size"):
        F.memory_bytes(1024, "int4", zero_point=True)
    with pytest.raises(ValueError, match="seq_len=-5 is too small"):
        F.kv_cache_bytes(32, 8, 128, -5)
    with pytest.raises(ValueError, match="format='fp12'"):
        F.kv_cache_bytes(32, 8, 128, 16, fmt="fp12")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        F.model_memory_report({"w": torch.ones(3)})
    with pytest.raises(ValueError, match="group_size=0 is too small"):
        F.model_memory_report(torch.nn.Linear(2, 2), group_size=0)


def test_nf4_arguments():
    with pytest.raises(ValueError, match="block_size=0 is too small"):
        F.nf4_quantize(torch.randn(64), block_size=0)
    with pytest.raises(TypeError, match="w must be a floating-point"):
        F.nf4_quantize(torch.arange(64), block_size=64)
    with pytest.raises(ValueError, match="w contains inf or NaN"):
        F.nf4_quantize(torch.tensor([1.0, math.inf]))
    codes, absmax = F.nf4_quantize(torch.randn(128), 64)
    with pytest.raises(ValueError, match="absmax has 2 values but 128 codes in blocks of block_size=32 need 4"):
        F.nf4_dequantize(codes, absmax, 32)
    with pytest.raises(ValueError, match=r"shape=\(3, 40\) holds 120 values but there are 128 codes"):
        F.nf4_dequantize(codes, absmax, 64, (3, 40))
    with pytest.raises(TypeError, match="absmax must be a floating-point"):
        F.nf4_dequantize(codes, absmax.long(), 64)


def test_packing_arguments():
    with pytest.raises(ValueError, match="codes contains 16, outside the valid range \\[0, 15\\]"):
        F.pack_nibbles(torch.tensor([1, 16]))
    with pytest.raises(ValueError, match="codes contains -1"):
        F.pack_2bit(torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="bits=3 is not supported"):
        F.pack_bits(torch.tensor([1]), 3)
    with pytest.raises(TypeError, match="packed must be a uint8 tensor"):
        F.unpack_nibbles(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="count=5 is too large"):
        F.unpack_nibbles(torch.tensor([1, 2], dtype=torch.uint8), count=5)


def test_metrics_need_finite_float_input():
    with pytest.raises(ValueError, match="x contains inf or NaN"):
        F.quantization_error(torch.tensor([1.0, math.inf]), "int8")
    with pytest.raises(TypeError, match="x must be a floating-point"):
        F.error_table(torch.tensor([1, 2]))


@pytest.mark.parametrize("name", ["int8", "uint8", "int4", "uint4", "int2"])
def test_nan_and_inf_policy_is_the_same_in_formats_and_quant(name):
    """NaN: ValueError naming x in both the integer formats and coursekit.quant.quantize (never code 0);
    +-inf: saturation to the largest / smallest code in both."""
    from coursekit import quant

    fmt = F.get_format(name)
    with pytest.raises(ValueError, match="x contains NaN"):
        fmt.encode(torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match="x contains NaN"):
        quant.quantize(torch.tensor([1.0, math.nan]), 1.0, 0, fmt.qmin, fmt.qmax)
    inf = torch.tensor([math.inf, -math.inf, 1.0])
    assert fmt.encode(inf).tolist() == quant.quantize(inf, 1.0, 0, fmt.qmin, fmt.qmax).tolist() == \
        [fmt.qmax, fmt.qmin, 1]
