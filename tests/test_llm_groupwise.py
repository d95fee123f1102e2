"""Group-wise INT-b weights: values against a float64 hand-written reference and torch's per-channel
fake-quant, bit-exact packing with a hand-computed layout, bytes equal to formats.memory, bad input."""
import pytest
import torch

from coursekit.formats.memory import bits_per_param, memory_bytes
from coursekit.formats.packing import pack_bits
from coursekit.llm.groupwise import (
    GroupQuant,
    dequantize_groupwise,
    groupwise_bytes,
    int_format,
    pack_codes,
    pack_groupwise,
    quantize_groupwise,
    unpack_codes,
    unpack_groupwise,
)

BITS = (8, 4, 3, 2)


def _weight(out=16, inp=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g) * 0.05
    w[:, 7] *= 8  # an outlier column, as real LLM weights have
    return w


def _reference_params(w, bits, g, symmetric):
    """Float64 scale/zero point per (row, group), written out from the definitions in the module docstring."""
    out, inp = w.shape
    scale = torch.empty(out, inp // g, dtype=torch.float64)
    zero = torch.empty(out, inp // g, dtype=torch.float64)
    qmax = 2**bits - 1
    for i in range(out):
        for k in range(inp // g):
            grp = w[i, k * g:(k + 1) * g].double()
            if symmetric:
                scale[i, k] = grp.abs().max() / (2 ** (bits - 1) - 1)
                zero[i, k] = 2 ** (bits - 1)
            else:
                lo, hi = min(float(grp.min()), 0.0), max(float(grp.max()), 0.0)
                scale[i, k] = (hi - lo) / qmax
                zero[i, k] = min(max(-round(lo / float(scale[i, k])), 0), qmax)
    return scale, zero


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("symmetric", [False, True])
def test_groupwise_matches_float64_reference_and_torch_fake_quant(bits, symmetric):
    w, g = _weight(), 64
    gq = quantize_groupwise(w, bits, g, symmetric=symmetric)
    ref_scale, ref_zero = _reference_params(w, bits, g, symmetric)
    torch.testing.assert_close(gq.scale.double(), ref_scale, rtol=1e-6, atol=0)
    assert torch.equal(gq.zero_points().double(), ref_zero)
    # codes: torch's own per-channel fake-quant kernel on the (row, group) channels with the same parameters
    qmin = 1 if symmetric else 0
    rows = w.reshape(-1, g)
    ref = torch.fake_quantize_per_channel_affine(rows, gq.scale.reshape(-1), gq.zero_points().reshape(-1).int(),
                                                 0, qmin, 2**bits - 1)
    assert torch.equal(dequantize_groupwise(gq), ref.reshape(w.shape))
    assert int(gq.codes.min()) >= qmin and int(gq.codes.max()) <= 2**bits - 1
    # RTN error bound: at most half a step inside the range (asymmetric ranges contain every weight)
    err = (w - gq.dequantize()).abs().reshape(16, -1, g)
    assert bool((err <= gq.scale[..., None] / 2 * (1 + 1e-5)).all())


def test_error_falls_with_bits_and_with_smaller_groups():
    w = _weight()
    errs = {b: (w - quantize_groupwise(w, b, 64).dequantize()).pow(2).mean().item() for b in BITS}
    assert errs[8] < errs[4] < errs[3] < errs[2]
    by_group = [(w - quantize_groupwise(w, 3, g).dequantize()).pow(2).mean().item() for g in (32, 128, None)]
    assert by_group[0] < by_group[1] < by_group[2]


def test_symmetric_keeps_absmax_and_zero_exact():
    w = _weight()
    w[3, 10:20] = 0.0
    gq = quantize_groupwise(w, 4, 32, symmetric=True)
    w_hat = gq.dequantize()
    assert gq.zero_point is None and bool((w_hat[3, 10:20] == 0).all())
    amax_idx = w[:, :32].abs().argmax(dim=1)
    rows = torch.arange(16)
    torch.testing.assert_close(w_hat[rows, amax_idx], w[rows, amax_idx], rtol=1e-6, atol=0)


def test_int2_symmetric_is_ternary():
    gq = quantize_groupwise(_weight(), 2, 64, symmetric=True)
    w_hat = gq.dequantize() / gq.scale.repeat_interleave(64, dim=1)
    assert set(torch.round(w_hat).unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_pack_layout_hand_computed():
    # INT4: first code in the high nibble (bitsandbytes order, formats.packing)
    assert pack_codes(torch.tensor([1, 2, 3, 15]), 4).tolist() == [0x12, 0x3F]
    # INT2: four codes per byte, first in the two highest bits: 3,0,1,2 -> 11 00 01 10
    assert pack_codes(torch.tensor([3, 0, 1, 2]), 2).tolist() == [0b11000110]
    # INT3: one bit stream 001 010 011 100 101 110 111 000 -> 00101001 11001011 10111000
    assert pack_codes(torch.tensor([1, 2, 3, 4, 5, 6, 7, 0]), 3).tolist() == [0b00101001, 0b11001011, 0b10111000]
    codes = torch.randint(0, 16, (50,))
    assert torch.equal(pack_codes(codes, 4), pack_bits(codes, 4))
    for bits in BITS:
        codes = torch.randint(0, 2**bits, (37,))
        assert torch.equal(unpack_codes(pack_codes(codes, bits), bits, 37), codes.to(torch.uint8))


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("symmetric", [False, True])
def test_pack_unpack_round_trip_exact(bits, symmetric):
    gq = quantize_groupwise(_weight(8, 128), bits, 32, symmetric=symmetric)
    back = unpack_groupwise(pack_groupwise(gq, scale_format="fp32"))
    assert torch.equal(back.codes, gq.codes) and torch.equal(back.scale, gq.scale)
    assert (back.zero_point is None) == symmetric
    if not symmetric:
        assert torch.equal(back.zero_point, gq.zero_point)
    assert torch.equal(back.dequantize(), gq.dequantize())
    half = unpack_groupwise(pack_groupwise(gq))  # fp16 scales: codes exact, scales to 2^-11 relative
    assert torch.equal(half.codes, gq.codes)
    torch.testing.assert_close(half.scale, gq.scale, rtol=2**-11, atol=0)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("symmetric", [False, True])
def test_bytes_equal_memory_bytes_and_packed_size(bits, symmetric):
    gq = quantize_groupwise(_weight(16, 256), bits, 64, symmetric=symmetric)
    expected = memory_bytes(16 * 256, int_format(bits), 64, "fp16", zero_point=not symmetric)
    assert groupwise_bytes(gq) == expected == pack_groupwise(gq).nbytes
    assert gq.bits_per_weight() == bits_per_param(int_format(bits), 64, "fp16", zero_point=not symmetric)
    assert groupwise_bytes(gq, "fp32") == pack_groupwise(gq, "fp32").nbytes


def test_bytes_hand_computed_7b_layer():
    gq = GroupQuant(torch.zeros(1, 1, dtype=torch.uint8), torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.uint8),
                    4, 128, (4096, 4096))
    # 4096*4096 codes * 4 bits + 4096*32 groups * (16-bit scale + 4-bit zero point)
    assert groupwise_bytes(gq) == 4096 * 4096 // 2 + 4096 * 32 * 20 // 8 == 8716288
    assert gq.bits_per_weight() == 4 + 20 / 128


def test_bad_input_names_the_argument():
    w = _weight(4, 64)
    with pytest.raises(ValueError, match="bits=5"):
        quantize_groupwise(w, 5, 32)
    with pytest.raises(ValueError, match="group_size=48 does not divide in_features=64"):
        quantize_groupwise(w, 4, 48)
    with pytest.raises(ValueError, match="2-D"):
        quantize_groupwise(w[0], 4, 32)
    bad = w.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        quantize_groupwise(bad, 4, 32)
    with pytest.raises(TypeError, match="floating-point"):
        quantize_groupwise(w.int(), 4, 32)
    with pytest.raises(ValueError, match="scale_format"):
        pack_groupwise(quantize_groupwise(w, 4, 32), scale_format="fp8")


# ----------------------------------------------------------------------------------------------- NF4 + double quant
BNB_NF4 = [  # bitsandbytes functional.get_4bit_type("nf4") / the CUDA kernel dDequantizeNF4, as published
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]


def test_nf4_levels_are_bitsandbytes_table():
    from coursekit.formats.nf4 import NF4

    assert torch.equal(NF4.level_tensor(), torch.tensor(BNB_NF4, dtype=torch.float32))


def test_nf4_double_quant_against_float64_reference():
    from coursekit.formats.nf4 import nf4_quantize
    from coursekit.llm.nf4dq import nf4_double_quantize

    w = _weight(64, 512) * 0.5  # 32768 weights: 512 blocks of 64 -> 2 second-level blocks of 256
    dq = nf4_double_quantize(w)
    codes, absmax = nf4_quantize(w, 64)
    assert torch.equal(dq.codes, codes)  # first level: plain NF4
    assert dq.absmax_codes.dtype == torch.int8 and dq.absmax_scale.shape == (2,)
    c2 = absmax.double().mean()
    centred = (absmax.double() - c2).reshape(2, 256)
    s2 = centred.abs().amax(dim=1, keepdim=True) / 127
    ref_absmax = (torch.round(centred / s2) * s2 + c2).reshape(-1)
    torch.testing.assert_close(dq.absmax().double(), ref_absmax, rtol=1e-6, atol=1e-7)
    assert bool(((dq.absmax().double() - absmax.double()).abs().reshape(2, 256) <= s2 / 2 + 1e-7).all())
    levels = torch.tensor(BNB_NF4, dtype=torch.float64)
    ref = (levels[codes.long()].reshape(-1, 64) * ref_absmax[:, None]).reshape(w.shape)
    torch.testing.assert_close(dq.dequantize().double(), ref, rtol=1e-5, atol=1e-7)
    plain = (w.double() - levels[codes.long()].reshape(-1, 64).mul(absmax.double()[:, None]).reshape(w.shape))
    assert (w.double() - ref).pow(2).mean() < 1.05 * plain.pow(2).mean()  # the second level costs little


def test_nf4_double_quant_bytes_hand_computed():
    from coursekit.llm.nf4dq import nf4_double_quant_bytes

    n = 4096 * 4096  # 262144 blocks of 64 -> 1024 blocks of 256
    assert nf4_double_quant_bytes(n) == n // 2 + 262144 + 4 * (1024 + 1)
    assert abs(nf4_double_quant_bytes(n) * 8 / n - (4 + 8 / 64 + 32 / (64 * 256))) < 1e-5  # QLoRA's 4.127
    assert memory_bytes(n, "nf4", 64, "fp32") * 8 / n == 4.5  # without double quantization
