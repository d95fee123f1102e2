"""coursekit compress in fast mode on the digits LeNet: every step kind runs and is validated (numbers checked
against ONNX Runtime, scikit-learn and the files themselves), a step that breaks the budget is rolled back or
fine-tuned, the output folder resumes without redoing finished steps, and bad input is refused."""
import importlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from sklearn.metrics import recall_score

from coursekit import prune
from coursekit.data import get_loaders
from coursekit.export import export_onnx
from coursekit.pipeline import compress
from coursekit.train import pretrained

pytestmark = pytest.mark.slow
compress_module = importlib.import_module("coursekit.pipeline.compress")   # the module, not the function
MODEL = {"name": "lenet", "dataset": "digits"}
FAST_VALIDATE = {"repeats": 3, "noise_std": 0.2}


def recipe(steps, max_drop=100.0, **budget):
    return {"name": "t", "model": MODEL, "budget": {"max_accuracy_drop": max_drop, **budget},
            "validate": FAST_VALIDATE, "steps": steps}


def ort_predictions(path, loader):
    """Labels and ONNX Runtime predictions over ``loader``, computed without coursekit."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ys, ps = [], []
    for x, y in loader:
        logits = session.run(None, {session.get_inputs()[0].name: x.numpy().astype(np.float32)})[0]
        ys.append(y.numpy())
        ps.append(logits.argmax(1))
    return np.concatenate(ys), np.concatenate(ps)


@pytest.fixture(scope="module")
def every_step(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "every_step"
    steps = [{"kind": "distill", "teacher": "baseline", "epochs": 1},
             {"kind": "prune", "method": "global", "amount": 0.5, "schedule": "gradual", "epochs": 1},
             {"kind": "lowrank", "rank": 8},
             {"kind": "finetune", "epochs": 1},
             {"kind": "prune", "method": "channel", "amount": 0.25, "epochs": 1},
             {"kind": "quantize", "method": "qat", "backend": "torch", "epochs": 1}]
    r = recipe(steps)
    r["validate"] = {**FAST_VALIDATE, "backends": ["ort", "torch"]}   # torch eager timed too
    return out, compress(r, out, fast=True, progress=False)


def test_every_step_kind_runs_and_is_kept(every_step):
    out, log = every_step
    assert [r["kind"] for r in log["steps"]] == ["distill", "prune", "lowrank", "finetune", "prune", "quantize"]
    assert all(r["status"] == "kept" for r in log["steps"])   # budget of 100 points: nothing rolled back
    distill, gradual, lowrank, finetune, channel, qat = log["steps"]
    assert (distill["detail"]["teacher"], distill["detail"]["epochs"]) == ("baseline", 1)   # fast: one epoch
    assert gradual["detail"]["sparsity"] >= 0.5 - 1e-6          # the cubic schedule ends at the final sparsity
    factorized = torch.load(out / lowrank["files"]["model"], weights_only=False)
    assert finetune["detail"]["sparsity"] == pytest.approx(prune.sparsity(factorized))   # zeros kept
    assert lowrank["detail"]["factorized"] >= 1 and set(lowrank["detail"]["ranks"].values()) == {8}
    model = torch.load(out / channel["files"]["model"], weights_only=False)
    base = pretrained("lenet", "digits", progress=False)
    assert model.features[0].out_channels < base.features[0].out_channels   # channels physically removed
    graph = onnx.load(out / "model.onnx").graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}   # QAT exported as QDQ
    assert any(i.data_type == onnx.TensorProto.INT8 for i in graph.initializer)       # weights stored as INT8
    qmodel = torch.load(out / qat["files"]["model"], weights_only=False)
    raw = export_onnx(qmodel, torch.zeros(1, 1, 8, 8), out.parent / "raw-qdq.onnx")   # float weights + Q/DQ
    assert qat["metrics"]["size_bytes"] < 0.75 * raw.stat().st_size      # small model: graph overhead stays
    x = torch.cat([x for x, _ in get_loaders("digits", fast=True).test])
    folded, unfolded = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                        for p in (out / "model.onnx", raw))
    np.testing.assert_array_equal(folded.run(None, {"input": x.numpy()})[0], unfolded.run(None, {"input": x.numpy()})[0])


def test_validation_numbers_match_independent_references(every_step):
    out, log = every_step
    loaders = get_loaders("digits", fast=True)
    final = log["final"]["metrics"]
    y, pred = ort_predictions(out / "model.onnx", loaders.val)         # gate split: val
    assert final["accuracy"] == pytest.approx((y == pred).mean())
    assert final["per_class"] == pytest.approx(list(recall_score(y, pred, average=None)))
    assert final["min_class_accuracy"] == pytest.approx(min(recall_score(y, pred, average=None)))
    y, pred = ort_predictions(out / "model.onnx", loaders.test)
    assert final["test_accuracy"] == pytest.approx((y == pred).mean())
    assert final["size_bytes"] == (out / "model.onnx").stat().st_size
    base = log["baseline"]["metrics"]
    assert final["size_ratio"] == pytest.approx(base["size_bytes"] / final["size_bytes"])
    assert final["speedup"] == pytest.approx(final["baseline_latency_ms"]["ort"] / final["latency_ms"]["ort"])
    assert 0 <= final["robust_accuracy"] <= 1 and final["latency_ms"]["ort"] > 0
    assert set(final["latency_ms"]) == set(final["baseline_latency_ms"]) == {"ort", "torch"}
    for r in log["steps"]:
        assert r["drop_points"] == pytest.approx(100 * (base["accuracy"] - r["metrics"]["accuracy"]))
    on_disk = json.loads((out / "log.json").read_text())
    assert on_disk["final"]["metrics"]["accuracy"] == final["accuracy"]
    card = json.loads((out / "model.card.json").read_text())
    assert card["size_bytes"] == final["size_bytes"] and card["accuracy"]["val"] == final["accuracy"]
    report = (out / "report.md").read_text()
    assert "06-quantize" in report and "Budget **met**" in report


def test_resume_skips_finished_steps(every_step, monkeypatch):
    out, log = every_step
    before = {p.name: p.stat().st_mtime_ns for p in (out / "steps").glob("*.pt")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished step ran again")

    monkeypatch.setattr(compress_module, "run_step", no_training)
    again = compress(_every_step_recipe(log), out, resume=True, fast=True, progress=False)
    assert again["resumed_steps"] == [1, 2, 3, 4, 5, 6]
    assert all(r["resumed"] for r in again["steps"])
    assert {p.name: p.stat().st_mtime_ns for p in (out / "steps").glob("*.pt")} == before
    assert again["final"]["metrics"]["size_bytes"] == log["final"]["metrics"]["size_bytes"]


def _every_step_recipe(log):
    """The recipe a log was written by (it is stored in the log with every default filled in)."""
    r = log["recipe"]
    steps = [{"kind": s["kind"], **s["settings"]} for s in r["steps"]]
    return {"name": r["name"], "model": r["model"], "budget": r["budget"], "validate": r["validate"],
            "data": r["data"], "steps": steps}


def test_interrupted_run_resumes_at_the_next_step(tmp_path, monkeypatch):
    steps = [{"kind": "prune", "method": "channel", "amount": 0.5, "epochs": 1},
             {"kind": "finetune", "epochs": 1},
             {"kind": "quantize", "backend": "ort"}]
    real, calls = compress_module.run_step, []

    def crash_on_finetune(kind, *args):
        calls.append(kind)
        if kind == "finetune":
            raise KeyboardInterrupt
        return real(kind, *args)

    monkeypatch.setattr(compress_module, "run_step", crash_on_finetune)
    with pytest.raises(KeyboardInterrupt):
        compress(recipe(steps), tmp_path / "run", fast=True, progress=False)
    partial = json.loads((tmp_path / "run" / "log.json").read_text())
    assert [r["label"] for r in partial["steps"]] == ["01-prune"]
    calls.clear()
    monkeypatch.setattr(compress_module, "run_step", lambda kind, *a: calls.append(kind) or real(kind, *a))
    log = compress(recipe(steps), tmp_path / "run", resume=True, fast=True, progress=False)
    assert calls == ["finetune", "quantize"]                  # the channel pruning was not redone
    assert log["resumed_steps"] == [1] and log["steps"][0]["resumed"]
    assert [r["status"] for r in log["steps"]] == ["kept"] * 3


def test_step_over_budget_is_rolled_back(tmp_path):
    steps = [{"kind": "prune", "method": "global", "amount": 0.98},
             {"kind": "quantize", "backend": "ort"}]
    log = compress(recipe(steps, max_drop=1.0), tmp_path / "rb", fast=True, progress=False)
    pruned, quantized = log["steps"]
    assert pruned["status"] == "rolled_back" and pruned["drop_points"] > 1.0
    assert "budget 1" in pruned["reason"]
    assert pruned["detail"]["sparsity"] >= 0.98 - 1e-6          # it really was pruned, and measured
    kept = torch.load(tmp_path / "rb" / pruned["files"]["model"], weights_only=False)
    base = pretrained("lenet", "digits", progress=False)
    for a, b in zip(kept.state_dict().values(), base.state_dict().values()):
        assert torch.equal(a, b)                                 # the model before the step went on
    assert quantized["status"] == "kept" and log["final"]["rolled_back_steps"] == ["01-prune"]
    assert log["final"]["kept_steps"] == ["02-quantize"]
    assert "Rolled back (never kept): 01-prune" in (tmp_path / "rb" / "report.md").read_text()


def test_on_fail_finetune_tries_recovery_first(tmp_path):
    steps = [{"kind": "prune", "method": "magnitude", "amount": 0.9, "on_fail": "finetune", "recovery_epochs": 2}]
    log = compress(recipe(steps, max_drop=1.0), tmp_path / "ft", fast=True, progress=False)
    (step,) = log["steps"]
    failed = 100 * (log["baseline"]["metrics"]["accuracy"] - step["failed_metrics"]["accuracy"])
    assert failed > 1.0                                          # the first attempt broke the budget
    assert step["detail"]["recovery"]["finetune"]["epochs"] == 1   # fast mode: one epoch
    if step["status"] == "kept_after_finetune":
        assert step["drop_points"] <= 1.0
    else:
        assert step["status"] == "rolled_back" and step["drop_points"] > 1.0


def test_bad_output_folders_and_budgets(tmp_path, every_step):
    out, log = every_step
    names = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match="pass --resume"):
        compress(_every_step_recipe(log), out, fast=True, progress=False)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("learner's file")
    with pytest.raises(FileExistsError, match="holds other files"):
        compress(_every_step_recipe(log), other, fast=True, progress=False)
    assert sorted(p.name for p in out.rglob("*")) == names                    # nothing deleted
    assert (other / "notes.txt").read_text() == "learner's file"
    changed = _every_step_recipe(log)
    changed["steps"][0]["epochs"] = 2
    with pytest.raises(ValueError, match="written by a different recipe"):
        compress(changed, out, resume=True, fast=True, progress=False)
    with pytest.raises(ValueError, match="was run with fast=True, now fast=False"):
        compress(_every_step_recipe(log), out, resume=True, fast=False, progress=False)
    with pytest.raises(ValueError, match="target_size_bytes=10 is impossible by construction"):
        compress(recipe([{"kind": "finetune"}], target_size_bytes=10), tmp_path / "x", fast=True)
    missing = recipe([{"kind": "distill", "teacher": "lenet", "teacher_checkpoint": "nowhere/teacher.pt"}])
    with pytest.raises(FileNotFoundError, match="teacher_checkpoint 'nowhere/teacher.pt' does not exist"):
        compress(missing, tmp_path / "y", fast=True)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()   # refused before any work
