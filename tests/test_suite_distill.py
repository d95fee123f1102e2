"""The distill suite: readings from hand-made records, the bias shift, and one transfer-set run (fast mode)."""
import statistics

import pytest
import torch

from coursekit.suites.distill import (
    mean_spread,
    reading,
    shift_class_bias,
    speedups,
    summary,
    transfer_experiment,
)


def _acc(setting, variant, values):
    return [{"model": setting, "variant": variant, "accuracy": v, "seed": i, "kind": "accuracy"}
            for i, v in enumerate(values)]


def _lat(model, batch, median, minimum, params):
    return {"model": model, "variant": "ort_fp32", "batch": batch, "latency_ms_median": median,
            "latency_ms_min": minimum, "parameters": params, "kind": "latency"}


def test_mean_spread_matches_statistics():
    assert mean_spread([0.5, 0.6, 0.7]) == (statistics.fmean([0.5, 0.6, 0.7]), statistics.stdev([0.5, 0.6, 0.7]))
    assert mean_spread([0.4]) == (0.4, 0.0)


def test_reading_judges_gain_against_spread_and_targets():
    records = (_acc("transfer", "teacher", [0.9, 0.9, 0.9]) + _acc("transfer", "scratch", [0.40, 0.41, 0.39])
               + _acc("transfer", "distilled", [0.55, 0.56, 0.57]) + _acc("same_data", "teacher", [0.9] * 3)
               + _acc("same_data", "scratch", [0.50, 0.52, 0.54]) + _acc("same_data", "T=4,alpha=0.9", [0.49, 0.55, 0.52])
               + [_lat("teacher", 1, 0.03, 0.02, 1000), _lat("student", 1, 0.02, 0.01, 100),
                  _lat("teacher", 256, 2.0, 1.5, 1000), _lat("student", 256, 0.5, 0.3, 100)])
    rows = {(r["model"], r["variant"]): r for r in summary(records)}
    assert rows[("transfer", "distilled")]["accuracy"] == pytest.approx(0.56)
    assert rows[("transfer", "scratch")]["spread"] == pytest.approx(0.01)
    assert speedups(records) == {1: pytest.approx(1.5), 256: pytest.approx(4.0)}
    text = reading(records)
    assert "+16.0 pt, helped, beyond the seed-to-seed spread (target +8 pt: met)" in text
    assert "T=4,alpha=0.9: 52.0%" in text and "no difference beyond the seed-to-seed spread" in text
    assert "batch 1: 1.50x by the median, 2.00x by the minimum (target 1.5x: met)" in text
    assert "batch 256: 4.00x by the median, 5.00x by the minimum (target 5x: NOT met)" in text


def test_shift_class_bias_changes_one_logit_only():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    x = torch.randn(5, 4)
    shifted = shift_class_bias(model, 2, 1.5)
    with torch.no_grad():
        diff = shifted(x) - model(x)
    assert torch.allclose(diff, torch.tensor([0.0, 0.0, 1.5]).expand(5, 3), atol=1e-6)


@pytest.mark.slow
def test_transfer_set_student_beats_labels_alone():
    """Setting (a), seed 0, fast mode: the distilled student beats the same student trained on the labels alone."""
    r = transfer_experiment(seed=0, fast=True)
    assert r["teacher"] > r["distilled"] > r["scratch"] + 0.05
