"""The prune suite: variants, CSR break-even and the generated reading (synthetic records, no timing asserts)."""
import pytest
import torch

from coursekit import prune
from coursekit.models import build_model
from coursekit.suites import list_suites
from coursekit.suites import prune as suite


def test_suites_are_registered():
    assert "prune" in list_suites() and "prune_quick" in list_suites()


def test_variants_have_the_promised_structure():
    torch.manual_seed(0)
    model = build_model("lenet", input_shape=(1, 32, 32), channels=(32, 64)).eval()
    variants = suite.pruned_variants(model)
    assert set(variants) == {"dense", "unstructured50", "unstructured75", "unstructured90", "nm2:4", "channel30",
                             "channel50", "channel70", "channel50_odd"}
    assert prune.sparsity(variants["unstructured90"]) == pytest.approx(0.9, abs=1e-4)
    widths = lambda m: [l.weight.shape[0] for l in (m.features[0], m.features[4], m.classifier[1], m.classifier[3])]
    assert widths(variants["channel50"]) == [16, 32, 64, 40]
    assert all(w % 8 == 0 for w in widths(variants["channel50"]))
    assert widths(variants["channel50_odd"]) == [15, 31, 63, 39]
    nm = variants["nm2:4"]
    assert prune.is_nm_sparse(prune.effective(nm.features[4]), 2, 4)
    assert not prune.is_pruned(nm.features[0])  # 1 x 5 x 5 = 25 inputs per filter: not divisible by 4
    assert suite.pruned_variants(model, only=("dense", "channel50")).keys() == {"dense", "channel50"}


def test_semi_structured_row_is_skipped_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the row is timed instead")
    rows = suite.semi_structured_records(suite.SuiteContext())
    assert len(rows) == 1 and "refuse CPU tensors" in rows[0]["skipped"]


def _csr(batch, speedups):
    return [{"model": "csr_linear", "variant": f"csr{s:g}", "batch": batch, "sparsity": s, "speedup": v,
             "runtime": "torch"} for s, v in speedups.items()]


def test_break_even_and_reading_follow_the_numbers():
    records = _csr(1, {0.5: 0.1, 0.9: 0.8, 0.95: 1.3, 0.99: 3.0}) + _csr(64, {0.5: 0.2, 0.99: 0.9})
    assert suite.break_even(records, 1) == (0.9, 0.95)
    assert suite.break_even(records, 64) == (0.99, None)
    base = {"model": "conv_heavy", "batch": 1, "runtime": "ort", "macs": 4000, "csr_bytes": 1000,
            "dense_bytes": 1000, "onnx_bytes": 1000, "onnx_gzip_bytes": 900, "accuracy": None}
    records += [
        {**base, "variant": "dense", "speedup": 1.0, "latency_ms_median": 1.0},
        {**base, "variant": "unstructured90", "speedup": 0.98, "latency_ms_median": 1.02, "csr_bytes": 200,
         "onnx_gzip_bytes": 250},
        {**base, "variant": "channel50", "speedup": 3.5, "latency_ms_median": 1 / 3.5, "macs": 1000},
        {**base, "variant": "channel50_odd", "speedup": 3.0, "latency_ms_median": 1 / 3.0, "macs": 950},
        {"model": "semi_structured", "variant": "2:4", "batch": 1, "skipped": "no CUDA GPU"},
    ]
    text = suite.reading(records)
    assert "slower than dense up to 90% sparsity, faster from 95%" in text
    assert "at batch 64 CSR never wins" in text
    assert "channel50 does 4.0x fewer MACs and runs 3.50x faster" in text
    assert "run at 0.86x the speed" in text and "vector lanes left idle" in text
    assert "90% unstructured: 0.98x dense latency, within 5% of dense" in text
    assert "CSR 5.0x smaller than dense storage" in text and "gzip-compressed ONNX 4.0x smaller" in text
    assert "2:4 semi-structured kernels: skipped (no CUDA GPU)" in text


def test_reading_of_mnist1d_rows():
    rows = [{"model": "mnist1d_mlp", "variant": "one_shot95", "accuracy": 0.50, "seed": s, "batch": 0,
             "accuracy_before_finetune": 0.1} for s in (0, 1)]
    rows += [{"model": "mnist1d_mlp", "variant": "gradual95", "accuracy": a, "seed": s, "batch": 0}
             for s, a in ((0, 0.55), (1, 0.49))]
    rows += [{"model": "mnist1d_lottery", "variant": v, "accuracy": a, "seed": 0, "sparsity": 0.9, "batch": 0}
             for v, a in (("winning_ticket", 0.6), ("random_reinit", 0.4))]
    text = suite.reading(rows)
    assert "gradual minus one-shot = +5.0 (seed 0), -1.0 (seed 1) points" in text
    assert "no consistent winner" in text
    assert "lottery ticket at 90% sparsity minus random re-init = +20.0 (seed 0) points" in text
