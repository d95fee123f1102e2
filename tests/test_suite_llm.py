"""The ``llm`` suite in fast mode: record structure and sanity, bytes against formats.memory, the reading.

No timing thresholds (CONTRIBUTING): the INT4 decode records are checked for structure and output error only.
The suite runs once per module (about a minute of CPU in fast mode: calibrations, MiniLM, ORT sessions), so the
tests that read its records are marked slow (they still run in CI).
"""
import pytest

from coursekit.bench import RECORD_KEYS
from coursekit.formats.memory import memory_bytes
from coursekit.llm import pretrained_gpt
from coursekit.llm.groupwise import int_format
from coursekit.suites import list_suites, run_suite
from coursekit.suites.llm import GPT_VARIANTS, MINILM_W8A8_VARIANTS, MINILM_WEIGHT_VARIANTS, reading


@pytest.fixture(scope="module")
def records():
    return run_suite("llm", fast=True, progress=False, repeats=3)["records"]


def _get(records, model, variant, batch=None):
    return next(r for r in records if r["model"] == model and r["variant"] == variant
                and (batch is None or r["batch"] == batch))


def test_registered():
    assert "llm" in list_suites() and "llm_decode" in list_suites()


@pytest.mark.slow
def test_llm_decode_is_the_speed_half():
    records = run_suite("llm_decode", fast=True, progress=False, repeats=3)["records"]
    assert {(r["model"], r["variant"], r["batch"]) for r in records} == {
        ("int4_decode", v, m) for v in ("fp32", "int4_acc4", "int4_acc0") for m in (1, 128)}
    assert "MatMulNBits, decode M=1" in reading(records) and "MiniLM" not in reading(records)


@pytest.mark.slow
def test_records_structure(records):
    for r in records:
        assert set(RECORD_KEYS) <= set(r)
    gpt = {r["variant"] for r in records if r["model"] == "tiny_gpt"}
    assert gpt == {"fp32"} | {v[0] for v in GPT_VARIANTS}
    minilm = {r["variant"] for r in records if r["model"] == "minilm"}
    assert minilm == {"fp32"} | {v[0] for v in MINILM_WEIGHT_VARIANTS} | {v[0] for v in MINILM_W8A8_VARIANTS}
    assert {(r["variant"], r["batch"]) for r in records if r["model"] == "int4_decode"} == {
        (v, m) for v in ("fp32", "int4_acc4", "int4_acc0") for m in (1, 128)}


@pytest.mark.slow
def test_tiny_gpt_sanity(records):
    fp32 = _get(records, "tiny_gpt", "fp32")
    assert 1.0 < fp32["bpc"] < 3.5 and fp32["sample"].startswith("JULIET:\nO Romeo, ")
    assert abs(_get(records, "tiny_gpt", "int8_rtn")["bpc"] - fp32["bpc"]) < 0.02
    assert _get(records, "tiny_gpt", "int2_g64_rtn")["bpc"] > _get(records, "tiny_gpt", "int4_g64_rtn")["bpc"] + 0.05
    for r in records:
        if r["model"] == "tiny_gpt" and r["method"] in ("gptq", "awq"):
            assert len(r["bpc_seeds"]) == 2 and r["bpc_min"] <= r["bpc"] <= r["bpc_max"]
            rtn = _get(records, "tiny_gpt", r["rtn_variant"])
            assert r["gap_recovered"] == pytest.approx((rtn["bpc"] - r["bpc"]) / (rtn["bpc"] - fp32["bpc"]))


@pytest.mark.slow
def test_bits_per_weight_match_formats_memory(records):
    model, _ = pretrained_gpt()
    shapes = [m.weight.shape for n, m in model.named_modules() if isinstance(m, __import__("torch").nn.Linear)
              and n != "lm_head"]
    n = sum(o * i for o, i in shapes)
    for variant, method, bits, group_size, _ in GPT_VARIANTS:
        if method == "nf4":
            continue
        fmt = int_format(bits)  # an IntFormat of any width (formats' registry names int8/int4/int2 only)
        want = sum(memory_bytes(o * i, fmt, group_size=group_size or i, zero_point=True) for o, i in shapes)
        r = _get(records, "tiny_gpt", variant)
        assert r["weight_bytes"] == want and r["bits_per_weight"] == pytest.approx(8 * want / n)
    assert _get(records, "tiny_gpt", "int4_g64_rtn")["bits_per_weight"] == pytest.approx(4 + 20 / 64)


@pytest.mark.slow
def test_kv_cache_records(records):
    fp32, per_head = _get(records, "tiny_gpt_kv", "fp32"), _get(records, "tiny_gpt_kv", "int8_per_head")
    assert fp32["cache_bytes"] == fp32["formula_bytes_fp32"]
    assert per_head["cache_bytes"] == per_head["formula_bytes_int8"] + 2 * 2 * 4 * 4 * 128  # K,V x layers x heads
    assert abs(per_head["delta_bpc"]) < 0.02 and fp32["bpc"] == pytest.approx(
        _get(records, "tiny_gpt", "fp32")["bpc"], abs=1e-6)


@pytest.mark.slow
def test_minilm_sanity(records):
    q = {r["variant"]: r for r in records if r["model"] == "minilm"}
    assert q["fp32"]["cosine"] == pytest.approx(1.0) and q["int8_rtn"]["cosine"] > 0.995
    assert q["int8_rtn"]["cosine"] > q["int4_g64_rtn"]["cosine"] > q["int3_g64_rtn"]["cosine"]
    assert q["llm_int8"]["cosine"] > q["w8a8_per_tensor"]["cosine"]
    tuned = q["smoothquant_w8a8_calibrated"]
    assert q["smoothquant_w8a8"]["alpha"] == 0.5 and tuned["alpha_grid"] == [0.5, 0.7, 0.9]
    assert tuned["alpha"] == tuned["alpha_grid"][tuned["calibration_errors"].index(min(tuned["calibration_errors"]))]
    assert tuned["calibration_sentences"] == 4 and q["fp32"]["cosine"] >= tuned["cosine"] > 0.9
    assert 0 < tuned["calibration_error_w8a8"] < 1 and all(0 < e < 1 for e in tuned["calibration_errors"])
    out = _get(records, "minilm_outliers", "fp32")
    assert out["outlier_dims"][0]["dim"] == 99 and out["median_error_ratio"] > 1


@pytest.mark.slow
def test_int4_decode_outputs_agree(records):
    for r in records:
        if r["model"] == "int4_decode":
            assert r["latency_ms_median"] > 0 and r["speedup"] > 0
            assert r["rel_error_vs_fp32"] < (1e-6 if r["variant"] == "fp32" else 0.2)
    assert _get(records, "int4_decode", "int4_acc0", 1)["size_bytes"] < _get(records, "int4_decode", "fp32", 1)[
        "size_bytes"] / 6


@pytest.mark.slow
def test_reading_comes_from_the_numbers(records):
    text = reading(records)
    fp32 = _get(records, "tiny_gpt", "fp32")
    assert f"{fp32['bpc']:.3f} bits/char" in text and "of the" in text and "MatMulNBits" in text
    slow = [dict(r, speedup=0.8, speedup_min=0.8) if r["model"] == "int4_decode" and r["variant"] != "fp32"
            else r for r in records]
    assert "did not make decode faster (0.80x at M=1, with" in reading(slow)
    fast = [dict(r, speedup=3.5, speedup_min=3.5) if r["model"] == "int4_decode" and r["variant"] != "fp32"
            else r for r in records]
    assert "decodes 3.5x faster at M=1: decode is memory-bound" in reading(fast)
    assert reading([]) == "no llm records"


@pytest.mark.slow
def test_reading_says_which_smoothquant_beats_plain_w8a8(records):
    def with_cosines(plain, sq, tuned, tuned_alpha=0.9):
        new = {"w8a8_per_tensor": {"cosine": plain}, "smoothquant_w8a8": {"cosine": sq},
               "smoothquant_w8a8_calibrated": {"cosine": tuned, "alpha": tuned_alpha}}
        return [dict(r, **new[r["variant"]]) if r["model"] == "minilm" and r["variant"] in new else r
                for r in records]
    text = reading(with_cosines(0.98, 0.95, 0.99))
    assert "SmoothQuant at alpha 0.5 does not beat plain per-tensor W8A8 on MiniLM in this run (0.9500 vs 0.9800)" \
        in text
    assert "SmoothQuant at alpha 0.9 (chosen on calibration) beats plain per-tensor W8A8 on MiniLM in this run " \
           "(0.9900 vs 0.9800)" in text
    text = reading(with_cosines(0.96, 0.97, 0.97, tuned_alpha=0.5))
    assert "SmoothQuant at alpha 0.5 beats plain" in text and "both SmoothQuant rows are the same model" in text
    assert "chosen on calibration) beats" not in text
    worse = [dict(r, calibration_errors=[0.5, 0.1, 0.2], calibration_error_w8a8=0.3)
             if r["variant"] == "smoothquant_w8a8_calibrated" else r for r in with_cosines(0.98, 0.95, 0.97)]
    assert "wins on the calibration speeches but not on the evaluation sentences" in reading(worse)
    assert "wins on the calibration speeches" not in reading(with_cosines(0.98, 0.95, 0.99))
