"""coursekit.llm.explore: the LLM memory calculator against hand-computed bytes (7B weights, scales, KV cache)."""
import pytest

from coursekit.llm.explore import LLAMA2_7B, llm_memory, memory_calculator, memory_table


def test_7b_int4_g128_weights_scales_and_kv_cache_by_hand():
    r = llm_memory(7.0, "int4", group_size=128, scale_format="fp16", n_layers=32, n_kv_heads=32, head_dim=128,
                   context=4096, batch=1, kv_format="fp16")
    assert r["code_bytes"] == 7 * 10**9 // 2  # 4 bits per weight
    assert r["scale_bytes"] == 7 * 10**9 // 128 * 2  # one FP16 scale per 128 weights = 109,375,000 B
    assert r["kv_bytes"] == 2 * 32 * 32 * 128 * 4096 * 2  # K and V, 2 bytes each: 2 GiB
    assert r["total_bytes"] == r["code_bytes"] + r["scale_bytes"] + r["kv_bytes"]
    assert r["bits_per_weight"] == 4.125


def test_zero_points_gqa_batch_and_decode_bound():
    r = llm_memory(70.0, "int4", group_size=64, zero_point=True, n_layers=80, n_kv_heads=8, head_dim=128,
                   context=32768, batch=8, kv_format="int8", bandwidth=1e11)
    assert r["scale_bytes"] == 70 * 10**9 // 64 * (16 + 4) // 8
    assert r["bits_per_weight"] == 4 + 20 / 64
    assert r["kv_bytes"] == 2 * 80 * 8 * 128 * 32768 * 8
    assert r["max_tokens_per_s"] == pytest.approx(1e11 / (r["weight_bytes"] + r["kv_bytes"] / 8))


def test_fp16_has_no_scales_and_groups_round_up():
    fp16 = llm_memory(**LLAMA2_7B, fmt="fp16", group_size=None)
    assert fp16["params"] == 6_740_000_000 and fp16["weight_bytes"] == 2 * 6_740_000_000 and fp16["scale_bytes"] == 0
    odd = llm_memory(1e-9 * 1000, "int4", group_size=64)  # 1000 weights -> 16 groups, the last one padded
    assert odd["params"] == 1024 and odd["scale_bytes"] == 16 * 2


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="group_size"):
        llm_memory(7.0, "fp16", group_size=128)
    with pytest.raises(ValueError, match="params_billions"):
        llm_memory(-1.0)
    with pytest.raises(ValueError, match="context"):
        llm_memory(7.0, context=-5)


def test_table_and_widget_show_the_numbers():
    html = memory_table({"a": llm_memory(7.0, "int4", 128, context=0)})
    assert "3.500 GB" in html and "0.109 GB" in html and "4.125" in html
    text = memory_calculator(bandwidth=2e10, device_gb=8).children[1].value  # Llama-2-7B INT4 g128 + 2.1 GB of KV
    assert "total 5.62 GB: <b>fits</b> in 8 GB" in text
    assert "tokens/s" in text and "FP16 weights" in text
    assert "<b>does NOT fit</b> in 4 GB" in memory_calculator(device_gb=4).children[1].value
