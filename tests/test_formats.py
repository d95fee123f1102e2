"""coursekit.formats against torch's own float dtypes, ml_dtypes, QLoRA's NF4 table and hand-computed cases."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coursekit import formats as F

# format name -> (torch dtype, integer dtype that .view gives for its bit patterns)
TORCH_FLOATS = {
    "fp16": (torch.float16, torch.int16),
    "bf16": (torch.bfloat16, torch.int16),
    "fp8_e4m3": (torch.float8_e4m3fn, torch.uint8),
    "fp8_e5m2": (torch.float8_e5m2, torch.uint8),
}


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equal float32 tensors (so -0.0 != 0.0), where any NaN equals any NaN."""
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    if not torch.equal(nan_a, nan_b):
        return False
    return torch.equal(a[~nan_a].view(torch.int32), b[~nan_b].view(torch.int32))


def same_codes(fmt, ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Equal bit patterns, where any NaN pattern equals any other NaN pattern."""
    return same_values(fmt.decode(ours), fmt.decode(theirs)) and torch.equal(
        ours[~torch.isnan(fmt.decode(ours))], theirs[~torch.isnan(fmt.decode(theirs))]
    )


def torch_encode(x: torch.Tensor, name: str) -> torch.Tensor:
    dtype, view = TORCH_FLOATS[name]
    return x.to(dtype).view(view)


def adversarial_inputs(fmt) -> torch.Tensor:
    """Every value of the format, every exact tie between neighbours and one float32 ulp either side of it,
    values around max and overflow, subnormals of float32, signed zeros, infinities and NaN."""
    v = fmt.values().double()
    v = v[torch.isfinite(v)]
    mids = ((v[:-1] + v[1:]) / 2).float()  # exact in float32 for every format here
    top = torch.tensor([fmt.max], dtype=torch.float64)
    above = torch.tensor([fmt.max * (1 + fmt.eps / 2), fmt.max * (1 + fmt.eps / 4), fmt.max * (1 + fmt.eps),
                          fmt.max * 2, 1e30]).clamp(max=3.4e38)
    half_sub = torch.tensor([fmt.min_subnormal / 2, fmt.min_subnormal / 4, fmt.min_subnormal * 0.75])
    specials = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-45, 1e-40, 1.1754942e-38, 3.4028235e38])
    pieces = [v.float(), mids, torch.nextafter(mids, torch.tensor(math.inf)),
              torch.nextafter(mids, torch.tensor(-math.inf)), top.float(), above.float(), half_sub.float(), specials]
    x = torch.cat([p.reshape(-1) for p in pieces])
    return torch.cat([x, -x])


def random_float32(n: int, seed: int) -> torch.Tensor:
    """Random bit patterns (every exponent, NaNs and subnormals included) plus log-uniform magnitudes."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randint(-(2**31), 2**31 - 1, (n,), generator=g, dtype=torch.int64).to(torch.int32)
    magnitudes = torch.exp2(torch.empty(n).uniform_(-30, 20, generator=g))
    signs = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    return torch.cat([patterns.view(torch.float32), magnitudes * signs])


# ---- decode: every code against torch's view --------------------------------------------------------------
@pytest.mark.parametrize("name", list(TORCH_FLOATS))
def test_every_code_decodes_like_torch(name):
    fmt = F.get_format(name)
    dtype, view = TORCH_FLOATS[name]
    codes = fmt.codes()
    assert codes.dtype == view and codes.numel() == 2**fmt.bits
    assert same_values(fmt.decode(codes), codes.view(dtype).float())
    # unsigned int64 patterns decode the same as the viewed integers
    unsigned = codes.to(torch.int64) & (2**fmt.bits - 1)
    assert same_values(fmt.decode(unsigned), codes.view(dtype).float())


def test_fp32_decode_and_encode_are_the_identity_on_bits():
    patterns = random_float32(50_000, seed=1).view(torch.int32)
    fp32 = F.get_format("fp32")
    x = patterns.view(torch.float32)
    assert same_values(fp32.decode(patterns), x)
    finite = ~torch.isnan(x)
    assert torch.equal(fp32.encode(x)[finite], patterns[finite])


# ---- encode: against torch's casts ----------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TORCH_FLOATS))
def test_encode_matches_torch_on_random_float32(name):
    fmt = F.get_format(name)
    x = random_float32(100_000, seed=list(TORCH_FLOATS).index(name))
    assert same_codes(fmt, fmt.encode(x), torch_encode(x, name))


@pytest.mark.parametrize("name", list(TORCH_FLOATS))
def test_encode_matches_torch_on_ties_boundaries_and_specials(name):
    fmt = F.get_format(name)
    x = adversarial_inputs(fmt)
    ours, theirs = fmt.encode(x), torch_encode(x, name)
    bad = ~(torch.isnan(fmt.decode(ours)) & torch.isnan(fmt.decode(theirs))) & (ours != theirs)
    assert not bad.any(), f"{name}: {x[bad][:5].tolist()} -> {ours[bad][:5].tolist()} vs torch {theirs[bad][:5].tolist()}"
    assert same_values(fmt.cast(x), x.to(TORCH_FLOATS[name][0]).float())


@pytest.mark.parametrize("name", list(TORCH_FLOATS))
@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=1, max_size=16))
def test_encode_matches_torch_hypothesis(name, values):
    fmt = F.get_format(name)
    x = torch.tensor(values, dtype=torch.float32)
    assert same_codes(fmt, fmt.encode(x), torch_encode(x, name))


def test_ties_round_to_even_by_hand():
    fp16 = F.get_format("fp16")
    one_ulp = 2.0**-10
    # 1 + ulp/2 lies between 1 (even mantissa) and 1 + ulp (odd): goes down; 1 + 3 ulp/2 goes up to 1 + 2 ulp
    x = torch.tensor([1 + one_ulp / 2, 1 + 3 * one_ulp / 2, 2.0**-25, 3 * 2.0**-25, 65519.0, 65520.0])
    assert fp16.cast(x).tolist() == [1.0, 1 + 2 * one_ulp, 0.0, 2.0**-23, 65504.0, math.inf]


# ---- overflow rules ------------------------------------------------------------------------------------------
def test_torch_e4m3fn_cast_saturates_and_so_does_our_default():
    """The fact behind FP8_E4M3's default: torch 2.14 CPU casts saturate to +-448, infinities included."""
    x = torch.tensor([448.0, 464.0, 465.0, 480.0, 1e4, math.inf, -1e4, -math.inf])
    torch_values = x.to(torch.float8_e4m3fn).float()
    assert torch_values.tolist() == [448.0] * 6 + [-448.0] * 2
    e4m3 = F.get_format("fp8_e4m3")
    assert e4m3.overflow == "saturate"
    assert torch.equal(e4m3.encode(x), torch_encode(x, "fp8_e4m3"))
    assert torch.isnan(x.new_tensor([math.nan]).to(torch.float8_e4m3fn).float()).all()


def test_e4m3_nan_overflow_matches_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    import numpy as np

    e4m3 = F.get_format("fp8_e4m3")
    x = torch.cat([adversarial_inputs(e4m3), random_float32(20_000, seed=7)])
    with np.errstate(invalid="ignore"):  # numpy warns about the NaN it produces on overflow
        theirs = torch.from_numpy(x.numpy().astype(ml_dtypes.float8_e4m3fn).view(np.uint8).copy())
    assert same_codes(e4m3, e4m3.encode(x, overflow="nan"), theirs)
    assert e4m3.cast(torch.tensor([464.0, 465.0, math.inf]), overflow="nan")[0] == 448.0
    assert torch.isnan(e4m3.cast(torch.tensor([465.0, math.inf]), overflow="nan")).all()


def test_e5m2_and_fp16_overflow_to_inf_unless_saturating():
    e5m2, fp16 = F.get_format("fp8_e5m2"), F.get_format("fp16")
    x = torch.tensor([57344.0, 61439.0, 61440.0, 1e6, -1e6])
    assert e5m2.cast(x).tolist() == [57344.0, 57344.0, math.inf, math.inf, -math.inf]
    assert e5m2.cast(x, overflow="saturate").tolist() == [57344.0] * 4 + [-57344.0]
    assert fp16.cast(torch.tensor([1e6, -math.inf]), overflow="saturate").tolist() == [65504.0, -65504.0]


def test_format_constants_match_torch_finfo():
    for name, (dtype, _) in TORCH_FLOATS.items():
        fmt, info = F.get_format(name), torch.finfo(dtype)
        assert (fmt.max, fmt.min_normal, fmt.eps, fmt.bits) == (info.max, info.smallest_normal, info.eps, info.bits)
        assert fmt.min_subnormal == fmt.min_normal * fmt.eps
        assert fmt.decode(torch.tensor([1])).item() == fmt.min_subnormal
    fp32 = F.get_format("fp32")
    assert (fp32.max, fp32.min_normal, fp32.eps) == (torch.finfo().max, torch.finfo().tiny, torch.finfo().eps)
    assert F.get_format("fp16").min_subnormal == 2.0**-24
    assert F.get_format("fp8_e4m3").min_subnormal == 2.0**-9


# ---- FP4 E2M1 (OCP MX) ------------------------------------------------------------------------------------------
FP4_TABLE = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def test_fp4_decodes_the_ocp_table():
    fp4 = F.get_format("fp4_e2m1")
    values = fp4.decode(fp4.codes())
    assert values.tolist() == FP4_TABLE + [-v for v in FP4_TABLE]
    assert values[8].view(torch.int32) == torch.tensor(-0.0).view(torch.int32)
    assert (fp4.max, fp4.min_normal, fp4.min_subnormal, fp4.eps, fp4.bits) == (6.0, 1.0, 0.5, 0.5, 4)


def test_fp4_encode_rounds_ties_to_even_and_saturates():
    fp4 = F.get_format("fp4_e2m1")
    x = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 5.01, 7.0, 100.0, math.inf, -0.0, -0.24, -2.6])
    assert fp4.cast(x).tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, 6.0, 6.0, 6.0, -0.0, -0.0, -3.0]
    assert fp4.encode(torch.tensor([-0.0, 6.0, -6.0])).tolist() == [8, 7, 15]


def test_fp4_matches_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    import numpy as np

    fp4 = F.get_format("fp4_e2m1")
    x = torch.cat([adversarial_inputs(fp4), random_float32(20_000, seed=3)])
    x = x[~torch.isnan(x)]
    theirs = torch.from_numpy(x.numpy().astype(ml_dtypes.float4_e2m1fn).view(np.uint8).copy())
    assert torch.equal(fp4.encode(x), theirs)


# ---- integers and binary ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,bits,qmin,qmax", [
    ("int8", 8, -128, 127), ("uint8", 8, 0, 255), ("int4", 4, -8, 7), ("uint4", 4, 0, 15), ("int2", 2, -2, 1),
])
def test_integer_ranges(name, bits, qmin, qmax):
    fmt = F.get_format(name)
    assert (fmt.bits, fmt.qmin, fmt.qmax, fmt.signed) == (bits, qmin, qmax, qmin < 0)
    assert fmt.codes().tolist() == list(range(qmin, qmax + 1))
    assert torch.equal(fmt.from_bits(fmt.to_bits(fmt.codes())), fmt.codes())
    assert sorted(fmt.to_bits(fmt.codes()).tolist()) == list(range(2**bits))


def test_integer_encode_rounds_half_to_even_and_clamps_like_torch():
    int4 = F.get_format("int4")
    x = torch.tensor([-9.0, -8.5, -2.5, -0.5, 0.5, 1.5, 2.5, 6.5, 7.5, 100.0])
    assert int4.encode(x).tolist() == [-8, -8, -2, 0, 0, 2, 2, 6, 7, 7]
    assert torch.equal(int4.encode(x), torch.clamp(torch.round(x), -8, 7).to(torch.int8))
    assert F.get_format("int4").to_bits(torch.tensor([-1, -8, 7])).tolist() == [15, 8, 7]


def test_binary_is_the_sign_with_zero_going_up():
    binary = F.get_format("binary")
    assert binary.cast(torch.tensor([-3.0, -0.0, 0.0, 2.0])).tolist() == [-1.0, 1.0, 1.0, 1.0]
    assert binary.to_bits(torch.tensor([-1, 1], dtype=torch.int8)).tolist() == [0, 1]
    assert binary.bits == 1 and binary.values().tolist() == [-1.0, 1.0]


# ---- NF4 ---------------------------------------------------------------------------------------------------------
NOTES_NF4 = [-1.0, -0.6961928, -0.5250731, -0.3949175, -0.2844414, -0.1847734, -0.0910500, 0.0,
             0.0795803, 0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.5626170, 0.7229568, 1.0]


def test_nf4_levels_match_qlora():
    levels = F.get_format("nf4").values()
    assert levels.dtype == torch.float32 and levels.numel() == 16
    assert torch.allclose(levels, torch.tensor(NOTES_NF4), rtol=0, atol=6e-8)
    # rebuilt from normal quantiles the way QLoRA's create_normal_map does: bit for bit
    assert torch.equal(F.nf4_levels_from_normal_quantiles(), levels)
    assert F.get_format("nf4").bits == 4


def test_nf4_encode_is_nearest_level_with_ties_to_the_lower_code():
    nf4 = F.get_format("nf4")
    levels = nf4.values()
    assert torch.equal(nf4.encode(levels), torch.arange(16, dtype=torch.uint8))
    mids = nf4.midpoints()
    assert torch.equal(nf4.encode(mids), torch.arange(15, dtype=torch.uint8))
    assert torch.equal(nf4.encode(torch.nextafter(mids, torch.tensor(2.0))), torch.arange(1, 16, dtype=torch.uint8))
    # brute force: argmin |x - level| picks the first (lower) index on a tie
    x = torch.empty(5000).uniform_(-1.2, 1.2, generator=torch.Generator().manual_seed(0))
    brute = (x[:, None] - levels[None, :]).abs().argmin(dim=1)
    assert torch.equal(nf4.encode(x).long(), brute)


def test_nf4_block_quantization_round_trip():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(48, 40, generator=g)  # 1920 values: 30 blocks of 64
    codes, absmax = F.nf4_quantize(w, block_size=64)
    assert codes.shape == (1920,) and codes.dtype == torch.uint8 and absmax.shape == (30,)
    assert torch.equal(absmax, w.reshape(30, 64).abs().amax(dim=1))
    w_hat = F.nf4_dequantize(codes, absmax, 64, w.shape)
    assert w_hat.shape == w.shape
    # each value moves at most half the widest gap between levels, times its block's absmax
    half_gap = (F.NF4.values().diff().max() / 2).item()
    bound = absmax.repeat_interleave(64).reshape(w.shape) * half_gap
    assert ((w - w_hat).abs() <= bound * (1 + 1e-6)).all()
    # each block's largest magnitude is stored exactly (it maps to level +-1)
    assert torch.equal(w_hat.reshape(30, 64).abs().amax(dim=1), absmax)
    # quantizing the dequantized weights gives the same codes again
    codes2, absmax2 = F.nf4_quantize(w_hat, 64)
    assert torch.equal(codes2, codes) and torch.equal(absmax2, absmax)
    # by hand: the block is [0.5, -1, 0.2, 0]: absmax 1; 0.5 -> 0.4407 (code 12), 0.2 -> 0.1609 (code 9; the
    # midpoint to 0.2461 is 0.2035)
    c, a = F.nf4_quantize(torch.tensor([0.5, -1.0, 0.2, 0.0]), block_size=4)
    assert c.tolist() == [12, 0, 9, 7] and a.tolist() == [1.0]


def test_nf4_partial_last_block_and_zero_block():
    w = torch.cat([torch.zeros(64), torch.tensor([1.0, -2.0, 0.5])])
    codes, absmax = F.nf4_quantize(w, 64)
    assert absmax.tolist() == [0.0, 2.0] and codes[:64].eq(7).all()
    assert F.nf4_dequantize(codes, absmax, 64).tolist()[64:] == pytest.approx([0.4407098 * 2, -2.0, 0.2461123 * 2])
    assert torch.equal(F.nf4_cast(torch.zeros(3, 5)), torch.zeros(3, 5))


# ---- packing -----------------------------------------------------------------------------------------------------
def test_packing_puts_the_first_code_in_the_high_bits():
    assert F.pack_nibbles(torch.tensor([0x1, 0x2, 0xF, 0x0])).tolist() == [0x12, 0xF0]
    assert F.pack_2bit(torch.tensor([1, 2, 3, 0])).tolist() == [0b01_10_11_00]
    assert F.pack_bits(torch.tensor([1, 0, 1, 1, 0, 0, 0, 1]), 1).tolist() == [0b10110001]
    assert F.pack_nibbles(torch.tensor([0xA, 0xB, 0xC])).tolist() == [0xAB, 0xC0]  # odd: padded with 0


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("n", [0, 1, 7, 64, 1001])
def test_packing_round_trips(bits, n):
    codes = torch.randint(0, 2**bits, (n,), generator=torch.Generator().manual_seed(n), dtype=torch.int64)
    packed = F.pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(n * bits / 8)
    assert torch.equal(F.unpack_bits(packed, bits, count=n).long(), codes)


def test_nf4_codes_pack_and_unpack():
    codes, _ = F.nf4_quantize(torch.randn(256), 64)
    assert torch.equal(F.unpack_nibbles(F.pack_nibbles(codes), count=256), codes)


# ---- memory ------------------------------------------------------------------------------------------------------
def test_memory_of_a_7b_model_matches_the_notes():
    n = 7_000_000_000
    assert F.memory_bytes(n, "fp32") == 28_000_000_000
    assert F.memory_bytes(n, "fp16") == 14_000_000_000
    assert F.memory_bytes(n, "int8") == 7_000_000_000
    assert F.memory_bytes(n, "int4") == 3_500_000_000
    scales = F.memory_bytes(n, "int4", group_size=128) - 3_500_000_000
    assert scales == 109_375_000  # 7e9 / 128 groups * 2 bytes
    assert F.memory_bytes(n, "int4", group_size=128, zero_point=True) == 3_500_000_000 + 109_375_000 + 27_343_750
    assert F.memory_bytes(n, "nf4", group_size=64, scale_format="fp32") == 3_500_000_000 + 437_500_000
    assert F.bits_per_param("int4", group_size=128) == 4.125
    assert F.memory_bytes(3, "int4") == 2  # 12 bits round up to 2 bytes


def test_kv_cache_bytes():
    # Llama-2-7B: 32 layers, 32 KV heads of 128, 4096 tokens in FP16: 2 GiB
    assert F.kv_cache_bytes(32, 32, 128, 4096) == 2 * 32 * 32 * 128 * 4096 * 2 == 2**31
    assert F.kv_cache_bytes(32, 8, 128, 4096, batch=4, fmt="fp8_e4m3") == 2 * 32 * 8 * 128 * 4096 * 4


def test_model_memory_report():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 64), torch.nn.Linear(64, 10).to(torch.float16))
    report = F.model_memory_report(model, formats=("fp32", "fp16", "int4"))
    assert report.params_by_dtype == {"float32": 128 * 64 + 64, "float16": 64 * 10 + 10}
    assert report.num_params == 8906
    assert report.bytes_now == (128 * 64 + 64) * 4 + 650 * 2
    assert report.bytes_by_format == {"fp32": 8906 * 4, "fp16": 8906 * 2, "int4": 8906 // 2}
    grouped = F.model_memory_report(model, formats=("int4",), group_size=64)
    groups = 128 + 1 + 10 + 1  # per tensor, a shorter last group still needs a scale
    assert grouped.bytes_by_format["int4"] == 8906 // 2 + groups * 2
    assert "int4" in str(grouped) and [r["format"] for r in grouped.rows()] == ["int4"]


# ---- error metrics -----------------------------------------------------------------------------------------------
def test_sqnr_by_hand():
    x = torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert F.sqnr_db(x, x * 0.9) == pytest.approx(20.0)
    # int2, symmetric absmax: scale = 3 / 1; round([1, -1/3, 1/6, 2/3]) = [1, 0, 0, 1] -> [3, 0, 0, 3]
    err = F.quantization_error(torch.tensor([3.0, -1.0, 0.5, 2.0]), "int2")
    assert err.mse == pytest.approx(0.5625)
    assert err.sqnr_db == pytest.approx(10 * math.log10(3.5625 / 0.5625))
    assert err.max_abs_error == 1.0 and err.format == "int2" and err.bits == 2
    assert F.quantization_error(x, "fp16").sqnr_db == math.inf


def test_error_table_orders_formats_sensibly():
    x = torch.empty(4096).uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
    table = {r.format: r for r in F.error_table(x)}
    assert list(table) == F.list_formats()
    assert table["fp32"].mse == 0.0
    # a uniform quantizer gains about 6 dB per bit on a uniform signal: int8 vs int4 is 4 bits apart
    assert table["int8"].sqnr_db - table["int4"].sqnr_db == pytest.approx(24.1, abs=1.0)
    assert table["uint8"].mse == table["int8"].mse
    assert table["fp16"].sqnr_db > table["bf16"].sqnr_db > table["fp8_e4m3"].sqnr_db > table["fp8_e5m2"].sqnr_db
    assert table["int8"].max_abs_error <= x.abs().max() / 127 / 2 * (1 + 1e-5)
    assert "SQNR" in F.format_error_table(list(table.values()))


def test_scaled_float_cast_uses_the_whole_range():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 1e-4
    plain = F.quantization_error(x, "fp8_e4m3")
    scaled = F.quantization_error(x, "fp8_e4m3", scale_floats=True)
    assert scaled.sqnr_db > plain.sqnr_db + 10  # tiny values fall into E4M3's subnormals without a scale


# ---- registry -----------------------------------------------------------------------------------------------------
def test_registry_lists_every_format():
    names = ["fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "int8", "uint8", "int4", "uint4",
             "int2", "binary", "nf4"]
    assert F.list_formats() == names
    assert [F.get_format(n).name for n in names] == names
    assert F.get_format(F.FP16) is F.FP16
    rows = F.formats_table()
    assert [r["bits"] for r in rows] == [32, 16, 16, 8, 8, 4, 8, 8, 4, 4, 2, 1, 4]
    assert F.describe("fp8_e4m3")["max"] == 448.0 and F.describe("fp8_e4m3")["has_inf"] is False
