"""Run a recipe: step -> validate -> keep, fine-tune or roll back -> next step; export; log; report.

``compress(recipe, out)`` is what ``coursekit compress --recipe RECIPE --out DIR`` calls:

1. the baseline: the recipe's course model, trained once and cached (``coursekit.train.pretrained``), exported
   to ONNX and validated (``coursekit.pipeline.validate``);
2. every step runs on a copy of the current model (``coursekit.pipeline.steps``) and is validated right away.
   A step that loses more than ``budget.max_accuracy_drop`` points against the baseline is never silently
   kept: with ``on_fail = "finetune"`` it is fine-tuned and validated again, and if it still fails (or with
   ``on_fail = "rollback"``) the step is *rolled back* (the model before it goes on) and the log says so;
3. the final model is exported (``model.onnx`` plus its model card), and ``report.md`` / ``report.html`` say
   whether the budget (accuracy, size, latency) was met, with the numbers measured on this machine.

The output folder is resumable: after each step its model (``steps/NN-kind.pt``, or ``.onnx`` for an ONNX
Runtime INT8 graph) and ``log.json`` are written, and ``resume=True`` loads completed steps instead of running
them again. An existing folder is refused unless resuming, and nothing in it is ever deleted; resuming with a
changed recipe is refused too (the log would mix two recipes).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path

import torch

from coursekit import _env
from coursekit.pipeline.recipe import Recipe, check_feasible, load_recipe
from coursekit.pipeline.steps import Stage, StepContext, recover, resolve_path, run_step
from coursekit.pipeline.validate import accuracy_drop, validate_stage, within_budget

LOG = "log.json"
LOG_VERSION = 1


def prepare_output(out, resume: bool) -> Path:
    """The output folder, created if needed; an existing non-empty folder only when resuming.

    Raises FileExistsError (naming ``--out``) when ``out`` holds files and ``resume`` is False, NotADirectoryError
    when it is a file, FileNotFoundError when its parent folder does not exist. Never deletes anything.
    """
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--out {str(path)!r} is a file; give a folder for the compressed model and logs")
    if path.is_dir() and any(path.iterdir()) and not resume:
        hint = ("it holds a compress run (log.json): pass --resume (resume=True) to continue it"
                if (path / LOG).exists() else "it holds other files")
        raise FileExistsError(f"--out {str(path)!r} already exists and is not empty; {hint}, or choose a new "
                              "folder (nothing in it was deleted)")
    if not path.parent.exists():
        raise FileNotFoundError(f"--out {str(path)!r}: folder {str(path.parent)!r} does not exist; create it "
                                f"first (mkdir -p {path.parent})")
    (path / "steps").mkdir(parents=True, exist_ok=True)
    from coursekit._paths import check_output_file

    check_output_file("--out", path / LOG)   # writable, before minutes of work
    return path


def _write_json(path: Path, data: dict) -> None:
    """Atomic write (temporary file, then rename): an interrupted run never leaves half a log."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_plain))
    os.replace(tmp, path)


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _read_log(out: Path, recipe: Recipe) -> dict | None:
    path = out / LOG
    if not path.exists():
        return None
    log = json.loads(path.read_text())
    if log.get("fingerprint") != recipe.fingerprint():
        raise ValueError(f"--resume: {str(path)!r} was written by a different recipe (fingerprint "
                         f"{log.get('fingerprint')} vs {recipe.fingerprint()}); resume with the same recipe, or "
                         "use a new --out folder")
    return log


def _save_stage(stage: Stage, folder: Path, key: str) -> dict:
    """Files of a completed step: the torch model (pickled module; architecture changes with the steps) and,
    for an ORT INT8 graph, the ONNX file. Only files this function wrote are ever loaded back."""
    files = {"model": f"steps/{key}.pt"}
    torch.save(stage.model, folder / files["model"])
    if stage.onnx is not None:
        files["onnx"] = f"steps/{key}.int8.onnx"
        shutil.copyfile(stage.onnx, folder / files["onnx"])
    return files


def _load_stage(folder: Path, record: dict) -> Stage:
    files = record["files"]
    model = torch.load(folder / files["model"], map_location="cpu", weights_only=False)
    onnx = folder / files["onnx"] if "onnx" in files else None
    return Stage(model.eval(), onnx=onnx, detail=record.get("detail", {}))


def fold_quantized_weights(onnx_in: Path, onnx_out: Path) -> Path:
    """``onnx_in`` with its constant subgraphs folded by ONNX Runtime's *basic* (provider-independent)
    optimizations, saved to ``onnx_out``.

    A fake-quantized torch model exports each weight as float + ``QuantizeLinear`` + ``DequantizeLinear``: the
    file holds FP32 weights and is no smaller. Folding ``QuantizeLinear(constant weight)`` stores the INT8 codes
    instead, the file a deployment would ship (measured on the digits LeNet: 97 KB -> 35 KB).
    """
    import onnxruntime as ort

    from coursekit.export.session import session_options

    options = session_options(optimization="basic", optimized_model_path=onnx_out)
    ort.InferenceSession(str(onnx_in), sess_options=options, providers=["CPUExecutionProvider"])
    return Path(onnx_out)


def _artifact(stage: Stage, example: torch.Tensor, path: Path) -> Path:
    """The ONNX file of ``stage``: its INT8 graph, or the torch model exported to ``path`` (weights of a
    fake-quantized model folded to their integer codes, ``fold_quantized_weights``)."""
    from coursekit.export import export_onnx

    if stage.onnx is not None:
        shutil.copyfile(stage.onnx, path)
        return path
    if not any(hasattr(m, "weight_quantizer") for m in stage.model.modules()):
        return export_onnx(stage.model, example[:1], path)
    raw = export_onnx(stage.model, example[:1], path.with_name(path.stem + ".qdq.onnx"))
    fold_quantized_weights(raw, path)
    raw.unlink()
    return path


class _Runner:
    """State of one run: recipe, data, baseline, and the validation settings."""

    def __init__(self, recipe: Recipe, out: Path, fast: bool, progress: bool):
        from coursekit.data import get_loaders
        from coursekit.train import pretrained

        self.recipe, self.out, self.fast, self.progress = recipe, out, fast, progress
        m, v = recipe.model, recipe.validate
        self.loaders = get_loaders(m["dataset"], batch_size=recipe.data["batch_size"], seed=m["seed"], fast=fast)
        self.example = next(iter(self.loaders.test))[0][: v["latency_batch"]]
        self.baseline = pretrained(m["name"], m["dataset"], seed=m["seed"], fast=fast, progress=progress,
                                   **m["kwargs"]).eval()
        self.base_onnx = _artifact(Stage(self.baseline), self.example, out / "steps" / "00-baseline.onnx")
        self.work = out / "steps" / "work"
        self.work.mkdir(exist_ok=True)
        base_dir = Path(recipe.source).parent if recipe.source else None
        self.ctx = StepContext(self.loaders, self.example, self.baseline, m["dataset"], m["seed"], fast, progress,
                               self.work, base_dir)

    def validate(self, stage: Stage, name: str) -> dict:
        v = self.recipe.validate
        artifact = _artifact(stage, self.example, self.work / f"{name}.onnx")
        metrics = validate_stage(artifact, self.loaders, self.example, baseline_artifact=self.base_onnx,
                                 model=stage.model if stage.onnx is None else None,
                                 baseline_model=self.baseline, split=v["split"], noise_std=v["noise_std"],
                                 backends=v["backends"], repeats=min(v["repeats"], 5) if self.fast else v["repeats"],
                                 threads=v["threads"], seed=self.recipe.model["seed"])
        artifact.unlink()
        return metrics


def _run_one(runner: _Runner, step, stage: Stage, base_metrics: dict) -> tuple[Stage, dict]:
    """Run, validate and judge one step; returns the stage that goes on and the step's log record."""
    max_drop = runner.recipe.budget["max_accuracy_drop"]
    start = time.perf_counter()
    new = run_step(step.kind, stage, step.settings, runner.ctx)
    metrics = runner.validate(new, step.key)
    record = {"index": step.index, "kind": step.kind, "label": step.label, "settings": step.settings,
              "detail": new.detail, "metrics": metrics, "drop_points": accuracy_drop(base_metrics, metrics)}
    status = "kept"
    if not within_budget(base_metrics, metrics, max_drop) and step.settings["on_fail"] == "finetune":
        s = step.settings
        fixed = recover(new, s["recovery_epochs"], s["recovery_lr"], runner.ctx)
        fixed.detail = {**new.detail, "recovery": fixed.detail}
        record["failed_metrics"] = metrics
        metrics = runner.validate(fixed, step.key + "-recovered")
        record.update(metrics=metrics, drop_points=accuracy_drop(base_metrics, metrics), detail=fixed.detail)
        new, status = fixed, "kept_after_finetune"
    if not within_budget(base_metrics, metrics, max_drop):
        status = "rolled_back"
        record["reason"] = (f"lost {record['drop_points']:.2f} accuracy points, budget {max_drop:g}: the model "
                            f"before this step goes on")
        new = stage
    record.update(status=status, seconds=round(time.perf_counter() - start, 3))
    return new, record


def budget_verdict(recipe: Recipe, final: dict) -> dict:
    """Each budget item of ``recipe`` against the final measurements: target, measured, met.

    ``min_speedup`` reads ``speedup_min`` (baseline / final, minimum latencies of the interleaved timing): on a
    busy machine the minimum is the least disturbed sample; the median ratio is in the log too."""
    b, m = recipe.budget, final["metrics"]
    items = {"max_accuracy_drop": (b["max_accuracy_drop"], final["drop_points"], final["drop_points"]
                                   <= b["max_accuracy_drop"] + 1e-9)}
    if b["min_size_ratio"] is not None:
        items["min_size_ratio"] = (b["min_size_ratio"], m["size_ratio"], m["size_ratio"] >= b["min_size_ratio"])
    if b["min_speedup"] is not None:   # ratio of minimum latencies: the steadiest on a shared, busy machine
        items["min_speedup"] = (b["min_speedup"], m["speedup_min"], m["speedup_min"] >= b["min_speedup"])
    if b["target_size_bytes"] is not None:
        items["target_size_bytes"] = (b["target_size_bytes"], m["size_bytes"],
                                      m["size_bytes"] <= b["target_size_bytes"])
    if b["target_latency_ms"] is not None:
        lat = m["latency_ms"]["ort"]
        items["target_latency_ms"] = (b["target_latency_ms"], lat, lat <= b["target_latency_ms"])
    verdict = {k: {"target": t, "measured": v, "met": bool(ok)} for k, (t, v, ok) in items.items()}
    return {"items": verdict, "met": all(i["met"] for i in verdict.values())}


def _write_card(onnx_path: Path, runner: _Runner, final_model, final: dict) -> str:
    """``model.card.json``/``.md`` beside the final ONNX file (``coursekit.export.model_card``)."""
    from coursekit.export.model_card import write_model_card

    m = final["metrics"]
    path = write_model_card(onnx_path, model=final_model, dataset=runner.recipe.model["dataset"],
                            accuracy={runner.recipe.validate["split"]: m["accuracy"], "test": m["test_accuracy"]},
                            latency_ms={f"batch {m['batch']}, ORT, {m['threads']} thread(s)": m["latency_ms"]["ort"]},
                            notes=f"Produced by coursekit compress, recipe {runner.recipe.name!r}; every step and its "
                                  "validation are in log.json.")
    return path.name


def compress(recipe, out, *, resume: bool = False, fast: bool | None = None, progress: bool = True) -> dict:
    """Run ``recipe`` (a path, a bundled recipe name, a dict or a :class:`Recipe`) into folder ``out``.

    Returns the log (also written to ``out/log.json``): the recipe, the baseline's and every step's
    measurements and status (``kept``, ``kept_after_finetune``, ``rolled_back``), the final model's
    measurements and the budget verdict. ``resume=True`` continues a run in an existing folder: steps already in
    its log are loaded, not run again (their records get ``"resumed": true``). ``fast`` (default: fast mode)
    caps training at one epoch and shrinks calibration and timing.
    """
    recipe = load_recipe(recipe)
    check_feasible(recipe)
    for step in recipe.steps:   # a missing teacher file is an error before anything trains
        if step.kind == "distill" and step.settings["teacher_checkpoint"]:
            resolve_path(step.settings["teacher_checkpoint"], Path(recipe.source).parent if recipe.source else None)
    fast = _env.fast_mode() if fast is None else bool(fast)
    out = prepare_output(out, resume)
    previous = _read_log(out, recipe) if resume else None
    if previous is not None and previous.get("fast") != fast:
        raise ValueError(f"--resume: {str(out)!r} was run with fast={previous.get('fast')}, now fast={fast}; resume "
                         "in the same mode (--fast or not), or use a new --out folder")
    done = {r["index"]: r for r in (previous or {}).get("steps", []) if r.get("status")}
    runner = _Runner(recipe, out, fast, progress)
    stage = Stage(runner.baseline)
    log = {"version": LOG_VERSION, "recipe": recipe.to_dict(), "recipe_source": recipe.source,
           "fingerprint": recipe.fingerprint(), "fast": fast, "steps": [], "resumed_steps": []}
    if previous and "baseline" in previous:
        log["baseline"] = previous["baseline"]
    else:
        metrics = runner.validate(stage, "00-baseline")
        log["baseline"] = {"index": 0, "kind": "baseline", "label": "baseline", "status": "baseline",
                           "metrics": metrics, "drop_points": 0.0,
                           "detail": {"model": recipe.model, "checkpoint": runner.baseline.checkpoint_info.get("path")}}
    _write_json(out / LOG, log)
    base_metrics = log["baseline"]["metrics"]
    for step in recipe.steps:
        record = done.get(step.index)
        if record is not None and (out / record["files"]["model"]).exists():
            stage = _load_stage(out, record)   # the model that went on after this step (before it if rolled back)
            log["steps"].append({**record, "resumed": True})
            log["resumed_steps"].append(step.index)
            continue
        stage, record = _run_one(runner, step, stage, base_metrics)
        record["files"] = _save_stage(stage, out, step.key)
        log["steps"].append(record)
        _write_json(out / LOG, log)
    final = _finish(runner, stage, log)
    log["final"] = final
    log["budget"] = budget_verdict(recipe, final)
    _write_json(out / LOG, log)
    from coursekit.pipeline.report import write_run_report

    write_run_report(out, log)
    return log


def _finish(runner: _Runner, stage: Stage, log: dict) -> dict:
    """Export the final model to ``model.onnx`` (+ card) and measure it once more against the baseline."""
    kept = [r for r in log["steps"] if r["status"] != "rolled_back"]
    final_path = _artifact(stage, runner.example, runner.out / "model.onnx")
    metrics = runner.validate(stage, "final")
    final = {"file": final_path.name, "label": kept[-1]["label"] if kept else "baseline",
             "metrics": metrics, "drop_points": accuracy_drop(log["baseline"]["metrics"], metrics),
             "kept_steps": [r["label"] for r in kept],
             "rolled_back_steps": [r["label"] for r in log["steps"] if r["status"] == "rolled_back"]}
    final["model_card"] = _write_card(final_path, runner, copy.deepcopy(stage.model), final)
    return final


__all__ = ["budget_verdict", "compress", "fold_quantized_weights", "prepare_output"]
