"""The ``ptq`` suite in fast mode: record sanity, file sizes, accuracy, speedup fields and the reading.

No timing thresholds (CONTRIBUTING: speed claims live in the benchmark output, not in unit tests).
"""
import math

import pytest

from coursekit.bench import RECORD_KEYS
from coursekit.suites import list_suites, run_suite
from coursekit.suites.ptq import BASELINE, VARIANTS, reading


@pytest.fixture(scope="module")
def records():
    return run_suite("ptq", fast=True, repeats=3, progress=False)["records"]


def _get(records, model, variant, batch=1):
    return next(r for r in records if (r["model"], r["variant"], r["batch"]) == (model, variant, batch))


def test_registered():
    assert "ptq" in list_suites()


def test_every_model_variant_and_batch_has_a_sane_record(records):
    models = ("linear_heavy", "conv_heavy", "lenet_digits")
    assert len(records) == len(models) * len(VARIANTS) * 2
    for r in records:
        assert set(RECORD_KEYS) <= set(r)
        assert r["model"] in models and r["variant"] in VARIANTS and r["batch"] in (1, 64)
        assert r["threads"] == 1 and r["device"] == "cpu"
        assert 0 < r["latency_ms_min"] <= r["latency_ms_median"] <= r["latency_ms_p90"]
        assert r["size_bytes"] > 0
        assert r["runtime"] == ("onnxruntime" if r["variant"].startswith("ort") else "torch")
        assert r["speedup"] == r["speedup_vs_ort_fp32"] > 0 and r["speedup_vs_torch_fp32"] > 0
        base = _get(records, r["model"], BASELINE, r["batch"])
        assert math.isclose(r["speedup_vs_ort_fp32"], base["latency_ms_median"] / r["latency_ms_median"])
    assert all(r["speedup_vs_ort_fp32"] == 1.0 for r in records if r["variant"] == BASELINE)


def test_int8_files_are_about_four_times_smaller(records):
    fp32 = _get(records, "linear_heavy", "ort_fp32")["size_bytes"]
    assert 60e6 < fp32 < 70e6, "4 x 2048 x 2048 float32 weights + head"
    for v in ("ort_int8_static", "ort_int8_dynamic", "torch_int8_dynamic"):
        assert 3.0 < fp32 / _get(records, "linear_heavy", v)["size_bytes"] < 4.5, v
    assert _get(records, "lenet_digits", "ort_int8_static")["size_bytes"] < _get(records, "lenet_digits",
                                                                                  "ort_fp32")["size_bytes"]


def test_accuracy_on_digits_and_agreement_on_untrained_models(records):
    fp32 = _get(records, "lenet_digits", "ort_fp32")["accuracy"]
    assert fp32 > 0.85
    assert math.isclose(_get(records, "lenet_digits", "torch_fp32")["accuracy"], fp32, abs_tol=1e-3)
    assert abs(_get(records, "lenet_digits", "ort_int8_static")["accuracy"] - fp32) <= 0.02
    for r in records:
        if r["model"] == "lenet_digits":
            assert 0 <= r["accuracy"] <= 1
        else:
            assert r["accuracy"] is None and 0.9 <= r["agreement_vs_ort_fp32"] <= 1.0


def test_reading_is_generated_from_the_numbers(records):
    text = reading(records)
    for model in ("linear_heavy", "conv_heavy", "lenet_digits"):
        assert f"{model}, batch 1: vs ORT FP32" in text
    static = _get(records, "linear_heavy", "ort_int8_static")
    assert f"ort_int8_static {static['speedup_vs_ort_fp32']:.2f}x" in text
    cnn = [r for r in records if r["model"] == "lenet_digits"]
    slower = any(r["speedup_vs_ort_fp32"] < 0.9 for r in cnn if r["variant"] == "ort_int8_dynamic") or any(
        r["speedup_vs_torch_fp32"] < 0.9 for r in cnn if r["variant"] == "torch_int8_dynamic")
    assert ("dynamic quantization of the CNN is slower" in text) == slower
    assert "smaller" in text and "accuracy: FP32" in text
    assert f"of {_get(records, 'lenet_digits', 'ort_fp32')['test_examples']} test images" in text


def test_rejects_other_devices():
    from coursekit.suites import SuiteContext
    from coursekit.suites.ptq import ptq_suite

    with pytest.raises(ValueError, match="cpu"):
        ptq_suite(SuiteContext(device="cuda"))
