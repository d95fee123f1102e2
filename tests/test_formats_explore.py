"""coursekit.formats.explore (chapter 01's figures and widget) against torch's own casts."""
import math

import pytest
import torch

from coursekit.formats import get_format, nf4_cast, quantize_dequantize
from coursekit.formats.explore import bit_fields, blockwise, format_explorer, locate


def test_bit_fields_split_the_ieee_layout():
    one = int(torch.tensor([1.0], dtype=torch.float16).view(torch.int16)[0])
    assert bit_fields("fp16", one) == [("sign", "0"), ("exponent", "01111"), ("mantissa", "0" * 10)]
    minus_two = int(torch.tensor([-2.0], dtype=torch.bfloat16).view(torch.int16)[0])
    assert bit_fields("bf16", minus_two) == [("sign", "1"), ("exponent", "10000000"), ("mantissa", "0" * 7)]
    assert bit_fields("int4", -1) == [("integer", "1111")]
    with pytest.raises(ValueError, match="does not fit"):
        bit_fields("int4", 40)


@pytest.mark.parametrize("value", [0.1, -3.3, 1e-6, 1000.7])
@pytest.mark.parametrize("name, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_locate_matches_torch_and_brackets_the_value(name, dtype, value):
    info = locate(value, name)
    assert info["stored"] == float(torch.tensor([value]).to(dtype).float()[0])
    assert info["below"] <= value < info["above"]
    grid = get_format(name).values().double()
    assert info["below"] in grid and info["above"] in grid
    inside = grid[(grid > info["below"]) & (grid < info["above"])]
    assert inside.numel() == 0  # they are neighbours
    assert info["error"] == pytest.approx(info["stored"] - value)


def test_locate_integer_with_a_scale():
    info = locate(0.26, "int8", scale=0.1)
    assert info["code"] == 3 and info["stored"] == pytest.approx(0.3)
    assert info["below"] == pytest.approx(0.2) and info["above"] == pytest.approx(0.3)


def test_blockwise_is_per_block_quantize_dequantize():
    x = torch.randn(300, generator=torch.Generator().manual_seed(0))
    assert torch.equal(blockwise(x, "nf4", 64), nf4_cast(x, 64))
    expected = torch.cat([quantize_dequantize(x[i:i + 64], "int4") for i in range(0, 300, 64)])
    assert torch.equal(blockwise(x, "int4", 64), expected)


def test_format_explorer_updates_headless():
    w = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    ui = format_explorer({"gaussian": w}, value=0.1)
    ui.controls["format"].value = "int8"
    sqnr_int8 = ui.state["sqnr"]
    ui.controls["format"].value = "int2"
    assert sqnr_int8 > ui.state["sqnr"] + 20  # ~6 dB per bit
    ui.controls["pick"].click()
    assert ui.state["info"]["value"] in w.tolist()
    assert math.isfinite(ui.state["sqnr"])
    with pytest.raises(TypeError, match="tensors"):
        format_explorer({"bad": [1, 2]})
