"""The ``qat`` suite: PTQ vs QAT records in fast mode, the gap arithmetic, the reading and the plot."""
import math

import pytest

from coursekit.suites import list_suites, run_suite
from coursekit.suites.qat import (
    BIT_CONFIGS,
    MODELS,
    format_qat_table,
    gap_recovered,
    parse_bits,
    plot_accuracy_vs_bits,
    ptq_vs_qat,
    reading,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result():
    return run_suite("qat", fast=True, progress=False)


def test_suite_is_registered():
    assert "qat" in list_suites()


def test_records_are_complete_and_sane(result):
    records = result["records"]
    assert [(r["model"], r["variant"]) for r in records] == [
        (f"{m}/{d}", label) for m, d in MODELS for label in BIT_CONFIGS]
    for r in records:
        assert (r["weight_bits"], r["act_bits"]) == BIT_CONFIGS[r["variant"]]
        for key in ("fp32_accuracy", "ptq_accuracy", "qat_accuracy"):
            assert 0.1 <= r[key] <= 1.0, (r["model"], r["variant"], key, r[key])
        assert r["accuracy"] == r["qat_accuracy"]
        assert r["qat_seconds"] > 0 and r["epochs"] >= 1 and r["fast"] is True
        assert r["recovered"] == gap_recovered(r["fp32_accuracy"], r["ptq_accuracy"], r["qat_accuracy"])
        for key in ("ptq_agreement", "qat_agreement"):
            assert 0.1 <= r[key] <= 1.0
        assert r["fp32_worst_class"] <= r["fp32_accuracy"] and r["qat_worst_class"] <= r["qat_accuracy"]


def test_low_bits_open_a_ptq_gap_that_qat_closes(result):
    by_key = {(r["model"], r["variant"]): r for r in result["records"]}
    for model, dataset in MODELS:
        w8, w2 = by_key[(f"{model}/{dataset}", "W8A8")], by_key[(f"{model}/{dataset}", "W2A8")]
        assert w8["fp32_accuracy"] - w8["ptq_accuracy"] < 0.02, "8-bit PTQ is nearly lossless"
        assert w2["fp32_accuracy"] - w2["ptq_accuracy"] > 0.10, "2-bit weights: a visible PTQ gap"
        assert w2["qat_accuracy"] > w2["ptq_accuracy"] + 0.10 and w2["recovered"] > 0.3


def test_reading_quotes_the_measured_numbers(result):
    text = reading(result["records"])
    for r in result["records"]:
        assert f"{r['qat_accuracy']:.1%}" in text
    assert "skip it" in text and "recovers" in text
    assert "W2A8" in format_qat_table(result["records"])


def test_plot_has_one_panel_per_model(result):
    axes = plot_accuracy_vs_bits(result["records"])
    assert len(axes) == len(MODELS)
    assert len(axes[0].lines) == 3  # FP32, PTQ, QAT


def test_helpers_and_bad_input():
    assert parse_bits("W4A8") == (4, 8) and parse_bits((2, 8)) == (2, 8)
    assert gap_recovered(0.9, 0.5, 0.8) == pytest.approx(0.75)
    assert gap_recovered(0.9, 0.899, 0.9) is None
    assert math.isclose(gap_recovered(0.9, 0.5, 0.4), -0.25)
    with pytest.raises(ValueError, match="W4A8"):
        parse_bits("int4")
    with pytest.raises(ValueError, match="bit config"):
        ptq_vs_qat("lenet", "digits", bit_configs=("8bit",))
    with pytest.raises(ValueError, match="method"):
        ptq_vs_qat("lenet", "digits", method="pact")


def test_finetune_records_step_sizes_and_the_explorer_builds():
    from coursekit.data import get_loaders
    from coursekit.quant import QATConfig, prepare_qat
    from coursekit.suites.qat import finetune, step_size_explorer
    from coursekit.train import pretrained

    model = pretrained("lenet", "digits", progress=False)
    train, val, _ = get_loaders("digits", batch_size=64)
    qat = prepare_qat(model, QATConfig(weight_bits=4, act_bits=4), [b for _, b in zip(range(2), train)])
    history = finetune(qat, train, 2, val_loader=val)
    assert history["epoch"] == [0, 1, 2] and len(history["step_sizes"]) == 3 and len(history["val_accuracy"]) == 3
    assert set(history["step_sizes"][0]) == {"features.0", "features.4", "classifier.1", "classifier.3",
                                             "classifier.5"}
    assert history["lr"][1] == 0.01 and history["lr"][2] < 0.01  # cosine over epochs
    import coursekit.quant.explore
    import coursekit.train
    assert finetune is coursekit.train.finetune and step_size_explorer is coursekit.quant.explore.step_size_explorer
    box = step_size_explorer(history)
    assert len(box.children) == 2
    with pytest.raises(ValueError, match="finetune"):
        step_size_explorer({"step_sizes": []})
