"""The ``deploy`` suite in fast mode, ``export_course_model`` and ``coursekit export``.

Records are checked against independent references (parameter counts for file sizes, ONNX Runtime run directly
for accuracy, the model card against the file); no timing thresholds (speed claims live in the suite's output).
"""
import math
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch

from coursekit.bench import RECORD_KEYS
from coursekit.suites import list_suites, run_suite
from coursekit.suites.deploy import (
    BASELINE,
    MODELS,
    VARIANTS,
    export_course_model,
    gpu_status,
    pretrained_kwargs,
    reading,
    sweep_session_options,
)

GPU_ROWS = ("ort_cuda_fp32", "ort_cuda_int8", "ort_tensorrt_fp32", "ort_tensorrt_int8", "ov_gpu_fp32")


@pytest.fixture(scope="module")
def records():
    return run_suite("deploy", fast=True, repeats=3, progress=False)["records"]


def _get(records, model, variant, batch=1):
    return next(r for r in records if (r["model"], r["variant"], r["batch"]) == (model, variant, batch))


def test_registered():
    assert "deploy" in list_suites()


@pytest.mark.slow  # trains the fast digits models once (cached), exports, quantizes twice, times
def test_cpu_variants_are_all_there_and_sane(records):
    names = [f"{m}_digits" for m in MODELS]
    cpu = [r for r in records if r["variant"] in VARIANTS]
    assert len(cpu) == len(names) * len(VARIANTS) * 2
    for r in cpu:
        assert set(RECORD_KEYS) <= set(r) and r["model"] in names and r["batch"] in (1, 64)
        assert 0 < r["latency_ms_min"] <= r["latency_ms_median"] <= r["latency_ms_p90"]
        assert r["runtime"] == ("openvino" if r["variant"].startswith("ov") else "onnxruntime")
        base = _get(records, r["model"], BASELINE, r["batch"])
        assert math.isclose(r["speedup"], base["latency_ms_median"] / r["latency_ms_median"])


@pytest.mark.slow
def test_fp32_sizes_follow_the_parameter_count_and_int8_is_smaller(records):
    from coursekit.models import count_parameters
    from coursekit.train import pretrained

    for name in MODELS:
        params = count_parameters(pretrained(name, "digits", fast=True, progress=False,
                                             **pretrained_kwargs(name, True)))
        fp32 = _get(records, f"{name}_digits", "ort_fp32")["size_bytes"]
        assert 4 * params <= fp32 <= 4 * params + 20_000, (name, params, fp32)   # float32 weights + graph
        assert _get(records, f"{name}_digits", "ov_fp32")["size_bytes"] == fp32   # the same file
        for v in ("ort_int8", "ort_nncf_int8", "ov_nncf_int8"):
            assert _get(records, f"{name}_digits", v)["size_bytes"] < fp32, (name, v)
    lh = "linear_heavy_digits"
    assert _get(records, lh, "ort_fp32")["size_bytes"] / _get(records, lh, "ort_int8")["size_bytes"] > 3


@pytest.mark.slow
def test_accuracy_and_parity_per_variant(records):
    for name in (f"{m}_digits" for m in MODELS):
        ort32, ov32 = _get(records, name, "ort_fp32"), _get(records, name, "ov_fp32")
        n = ort32["test_examples"]
        assert ort32["accuracy"] > 0.8 and n > 100
        # the same FP32 file in two engines: float rounding only, same decisions (a near-tie may flip one)
        assert ort32["max_abs_error_vs_torch"] < 1e-4 and ov32["max_abs_error_vs_torch"] < 1e-4
        assert abs(ov32["accuracy"] - ort32["accuracy"]) <= 1 / n
        for v in ("ort_int8", "ov_int8", "ov_nncf_int8", "ort_nncf_int8"):
            r = _get(records, name, v)
            assert abs(r["accuracy"] - ort32["accuracy"]) <= 0.03, (name, v, r["accuracy"], ort32["accuracy"])
            assert r["agreement_vs_torch"] >= 0.95 and r["max_abs_error_vs_torch"] > 1e-4, (name, v)


@pytest.mark.slow
def test_gpu_rows_are_reported_never_silently_absent(records):
    status = gpu_status()
    for name in (f"{m}_digits" for m in MODELS):
        for variant in GPU_ROWS:
            rows = [r for r in records if (r["model"], r["variant"]) == (name, variant)]
            assert rows, (name, variant)
            reason = status[variant.rsplit("_", 1)[0]]
            if reason is None:
                assert all(r["latency_ms_median"] > 0 for r in rows)
            else:
                assert rows[0]["skipped"] == reason and rows[0]["latency_ms_median"] is None
    if not torch.cuda.is_available():
        assert status["ort_cuda"] == status["ort_tensorrt"] == \
            "skipped: no CUDA device (torch.cuda.is_available() is False)"
        assert "skipped: no CUDA device" in reading(records)


def test_gpu_status_names_the_missing_provider(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    status = gpu_status()
    assert "no CUDAExecutionProvider" in status["ort_cuda"] and "onnxruntime-gpu" in status["ort_cuda"]
    assert "no TensorrtExecutionProvider" in status["ort_tensorrt"]


@pytest.mark.slow
def test_session_sweep_covers_the_grid(records):
    for name in (f"{m}_digits" for m in MODELS):
        for precision in ("fp32", "int8"):
            rows = [r for r in records if (r["model"], r["variant"]) == (name, f"sweep_{precision}")]
            configs = {(r["threads"], r["optimization"], r["execution_mode"]) for r in rows}
            threads = sorted({1, min(2, os.cpu_count() or 1)})
            assert configs == {(t, o, m) for t in threads for o in ("none", "basic", "all")
                               for m in ("sequential", "parallel")}
            default = next(r for r in rows if (r["threads"], r["optimization"], r["execution_mode"])
                           == (1, "all", "sequential"))
            assert default["speedup"] == 1.0
            for r in rows:
                assert math.isclose(r["speedup"], default["latency_ms_median"] / r["latency_ms_median"])


@pytest.mark.slow
def test_reading_is_generated_from_the_numbers(records):
    text = reading(records)
    for name in (f"{m}_digits" for m in MODELS):
        base = _get(records, name, BASELINE)
        assert f"{name}, batch 1: ORT FP32 {base['latency_ms_median']:.3g} ms" in text
        assert f"accuracy: FP32 {base['accuracy']:.2%}" in text
    assert "session sweep, INT8 batch 1" in text


def _record(model, variant, ms, batch=1, **extra):
    return {"model": model, "variant": variant, "batch": batch, "device": "cpu", "latency_ms_median": ms, **extra}


def test_reading_words_on_hand_made_records():
    recs = [_record("m", "ort_fp32", 2.0, accuracy=0.9, test_examples=200, size_bytes=4000,
                    max_abs_error_vs_torch=1e-6, agreement_vs_torch=1.0),
            _record("m", "ov_fp32", 2.1, accuracy=0.9, max_abs_error_vs_torch=2e-6, agreement_vs_torch=1.0,
                    size_bytes=4000),
            _record("m", "ort_int8", 0.5, accuracy=0.885, agreement_vs_torch=0.97, size_bytes=1000),
            _record("m", "ov_int8", 4.2, accuracy=0.89, agreement_vs_torch=0.98, size_bytes=1000)]
    text = reading(recs)
    assert "same FP32 file in OpenVINO vs ORT: about the same (0.95x)" in text
    assert "course INT8 (one QDQ file) vs FP32: ORT 4.00x faster, OpenVINO 0.50x (slower)" in text
    assert "ort_int8 88.50% (-1.50 pts = 3 of 200)" in text
    assert "fastest variant: ort_int8 (0.5 ms)" in text


def test_sweep_rejects_an_empty_grid(tmp_path):
    with pytest.raises(ValueError, match="grid is empty"):
        sweep_session_options(tmp_path / "m.onnx", torch.zeros(1, 4), grid=[])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("course")
    return folder, {p: export_course_model("lenet", "digits", p, folder, fast=True) for p in ("fp32", "int8")}


def _test_size():
    from coursekit.data import get_loaders

    return len(get_loaders("digits", fast=True)[2].dataset)


def _ort_accuracy(path):
    from coursekit.data import get_loaders

    _, _, test = get_loaders("digits", fast=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    correct = n = 0
    for x, y in test:
        out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        correct += int((out.argmax(1) == y.numpy()).sum())
        n += len(y)
    return correct / n


def test_export_course_model_writes_files_and_cards(exported):
    from coursekit.export import graph_summary, read_model_card

    folder, paths = exported
    assert paths["fp32"] == folder / "lenet_digits_fp32.onnx" and paths["int8"] == folder / "lenet_digits_int8.onnx"
    for precision, path in paths.items():
        card = read_model_card(path)
        assert card["precision"] == precision and card["format"] == graph_summary(path)["format"]
        assert card["accuracy"]["test"] == pytest.approx(_ort_accuracy(path))
        assert set(card["latency_ms"]) == {"batch 1", "batch 64"} and all(v > 0 for v in card["latency_ms"].values())
        assert card["parity"]["n"] == _test_size() and card["hardware"]["cpu"]["logical_cores"] > 0
        assert (card["calibration"] is None) == (precision == "fp32")
    assert read_model_card(paths["fp32"])["parity"]["max_abs_error"] < 1e-4
    assert np.isclose(read_model_card(paths["int8"])["parity"]["top1_agreement"], 1.0, atol=0.05)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_course_model("lenet", "digits", "fp32", folder, fast=True)
    with pytest.raises(ValueError, match="precision"):
        export_course_model("lenet", "digits", "fp16", folder, fast=True)


def test_cli_export(exported, capsys):
    from coursekit.cli import main

    folder, _ = exported
    assert main(["export", "lenet", "--precision", "both", "--out", str(folder), "--fast", "--quiet",
                 "--force"]) == 0
    out = capsys.readouterr().out
    assert "lenet_digits_fp32.onnx" in out and "lenet_digits_int8.onnx" in out and "top-1 agreement" in out
    assert main(["export", "lenet", "--out", str(folder), "--fast", "--quiet"]) == 2   # exists, no --force
    assert "--force" in capsys.readouterr().err
    assert main(["export", "--help"]) == 0
    assert "coursekit export linear_heavy --precision int8" in capsys.readouterr().out
