"""One function per recipe step kind, each a thin call into the library that teaches the technique.

Every step takes the current :class:`Stage` (a torch model, or an ONNX Runtime graph after INT8 PTQ in ORT),
the step's settings (``coursekit.pipeline.recipe.STEP_SETTINGS``) and a :class:`StepContext` (data, fast mode,
the baseline), and returns a new Stage; the input stage is never modified, so a step can be rolled back by
keeping the old one.

=========  ================================================================================================
distill    ``coursekit.train.distill.distill`` (Hinton et al. 2015, eq. 2: soft targets at temperature T)
prune      ``coursekit.prune``: magnitude / global masks (Han et al. 2015), the cubic schedule
           (Zhu & Gupta 2017, eq. 1), channel pruning (Li et al. 2017)
lowrank    ``coursekit.lowrank.factorize_model``: truncated SVD of Linear layers (Denton et al. 2014)
quantize   ``coursekit.quant.quantize_model`` (PTQ), ``prepare_qat``/``convert`` (LSQ, Esser et al. 2020),
           or ``coursekit.export.ort_quantize_static`` (ONNX Runtime INT8, QDQ)
finetune   ``coursekit.train.finetune`` (SGD + cosine)
=========  ================================================================================================
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from coursekit.share.pipeline import PruningMask


@dataclass
class Stage:
    """What a step hands to the next: the torch ``model`` and, after ORT INT8 PTQ, the ``onnx`` graph that is
    the deployed artifact (the torch model is then the float model it was made from). ``detail`` says what the
    step did (sparsity, ranks, bits ...)."""

    model: nn.Module
    onnx: Path | None = None
    detail: dict = field(default_factory=dict)


@dataclass
class StepContext:
    """What every step may use: data loaders, one example input batch, the baseline model, fast mode."""

    loaders: object
    example: torch.Tensor
    baseline: nn.Module
    dataset: str
    seed: int = 0
    fast: bool = False
    progress: bool = False
    work: Path | None = None
    base_dir: Path | None = None

    def epochs(self, n: int) -> int:
        """``n`` training epochs, or at most 1 in fast mode (sizes shrink, no step is skipped)."""
        return min(n, 1) if self.fast and n > 0 else n

    def calibration(self, n: int) -> list[torch.Tensor]:
        """The inputs of the first ``n`` training batches in data-set order (fewer in fast mode): the same
        calibration set whatever ran before, so a resumed run calibrates like an uninterrupted one."""
        from torch.utils.data import DataLoader

        n = min(n, 2) if self.fast else n
        ordered = DataLoader(self.loaders.train.dataset, batch_size=self.loaders.train.batch_size, shuffle=False)
        return [x for _, (x, _) in zip(range(n), ordered)]

    def reseed(self) -> None:
        """Seed torch and the training loader's shuffling: each training step starts from the same state."""
        from coursekit.train import seed_everything

        seed_everything(self.seed)
        generator = getattr(self.loaders.train, "generator", None)
        if generator is not None:
            generator.manual_seed(self.seed)


def _is_quantized(model: nn.Module) -> bool:
    """True if ``model`` has fake-quantized layers (``coursekit.quant`` wrappers with a weight quantizer)."""
    return any(hasattr(m, "weight_quantizer") for m in model.modules())


def _weight_targets(model: nn.Module) -> list[tuple[nn.Module, str]]:
    from coursekit.surgery import CONV_TYPES, LINEAR_TYPES, named_layers

    return [(layer, "weight") for _, layer in named_layers(model, (*LINEAR_TYPES, *CONV_TYPES))]


def _finetune(model: nn.Module, epochs: int, lr: float, ctx: StepContext, callbacks=()) -> dict | None:
    from coursekit.train import finetune

    epochs = ctx.epochs(epochs)
    if not epochs:
        return None
    ctx.reseed()
    history = finetune(model, ctx.loaders.train, epochs=epochs, lr=lr, progress=ctx.progress, callbacks=callbacks)
    model.eval()
    return {"epochs": epochs, "lr": lr, "train_seconds": round(history["train_seconds"], 3)}


def _teacher(settings: dict, ctx: StepContext) -> nn.Module:
    from coursekit.models import build_model
    from coursekit.train import pretrained

    name = settings["teacher"]
    if name == "baseline":
        return copy.deepcopy(ctx.baseline).eval()
    if settings["teacher_checkpoint"]:
        path = resolve_path(settings["teacher_checkpoint"], ctx.base_dir)
        teacher = build_model(name, ctx.dataset, **settings["teacher_kwargs"])
        blob = torch.load(path, map_location="cpu", weights_only=True)
        teacher.load_state_dict(blob.get("state_dict", blob) if isinstance(blob, dict) else blob)
        return teacher.eval()
    return pretrained(name, ctx.dataset, seed=ctx.seed, fast=ctx.fast, progress=ctx.progress,
                      **settings["teacher_kwargs"]).eval()


def resolve_path(path, base_dir: Path | None) -> Path:
    """``path`` as given, or relative to the recipe's folder; FileNotFoundError naming it when missing."""
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None and not p.exists():
        p = Path(base_dir) / p
    if not p.exists():
        raise FileNotFoundError(f"teacher_checkpoint {str(path)!r} does not exist (looked in the current folder"
                                f"{' and ' + str(base_dir) if base_dir else ''}); train and save the teacher "
                                "first, or use teacher = 'baseline' or a course model name")
    return p


def run_distill(stage: Stage, s: dict, ctx: StepContext) -> Stage:
    """Train ``student`` (a new course model, or the current model) on the frozen teacher's soft targets."""
    from coursekit.models import build_model
    from coursekit.train.distill import distill

    teacher = _teacher(s, ctx)
    ctx.reseed()
    student = (build_model(s["student"], ctx.dataset, **s["student_kwargs"]) if s["student"]
               else copy.deepcopy(stage.model))
    epochs = ctx.epochs(s["epochs"])
    history = distill(student, teacher, ctx.loaders.train, T=s["T"], alpha=s["alpha"], epochs=epochs, lr=s["lr"],
                      device="cpu", progress=ctx.progress)
    return Stage(student.eval(), detail={"teacher": s["teacher"], "student": s["student"] or "current",
                                         "epochs": epochs, "train_seconds": round(history["train_seconds"], 3)})


def run_prune(stage: Stage, s: dict, ctx: StepContext) -> Stage:
    """Unstructured masks (one-shot or on the cubic schedule while fine-tuning) or channel removal."""
    from coursekit import prune

    model = copy.deepcopy(stage.model)
    prune.remove_all(model)
    detail = {"method": s["method"], "amount": s["amount"], "schedule": s["schedule"]}
    if s["method"] == "channel":
        before = sum(p.numel() for p in model.parameters())
        model = prune.channel_prune(model, s["amount"], importance=s["importance"], multiple_of=s["multiple_of"])
        detail["params_kept"] = sum(p.numel() for p in model.parameters()) / before
        detail["finetune"] = _finetune(model, s["epochs"], s["lr"], ctx)
    else:
        targets = _weight_targets(model)
        if s["schedule"] == "gradual":
            if _is_quantized(model):
                raise ValueError("schedule='gradual' needs a float model (its masks act in the layers' forward, "
                                 "which a fake-quantized layer bypasses); prune before quantizing, or use "
                                 "schedule='oneshot'")
            total = ctx.epochs(s["epochs"]) * len(ctx.loaders.train)
            schedule = prune.GradualPruning(targets, final=s["amount"], begin=0, end=max(1, total - 1),
                                            every=max(1, total // 20),
                                            scope="global" if s["method"] == "global" else "layer")
            detail["finetune"] = _finetune(model, s["epochs"], s["lr"], ctx, callbacks=[schedule])
            schedule.prune_to(s["amount"], total)   # the final sparsity exactly, whatever the step count
            prune.remove_all(model)
        else:
            if s["method"] == "global":
                prune.global_magnitude_prune(targets, s["amount"])
            else:
                for layer, name in targets:
                    prune.magnitude_prune(layer, name, s["amount"])
            prune.remove_all(model)   # zeros made permanent; PruningMask keeps them at zero while fine-tuning
            detail["finetune"] = _finetune(model, s["epochs"], s["lr"], ctx, callbacks=[PruningMask(model)])
    detail["sparsity"] = prune.sparsity(model)
    return Stage(model.eval(), detail=detail)


def run_lowrank(stage: Stage, s: dict, ctx: StepContext) -> Stage:
    """Truncated SVD of every Linear layer, at a kept energy or a fixed rank (unprofitable layers stay dense)."""
    from coursekit.lowrank import factorize_model
    from coursekit.surgery import named_layers

    model = copy.deepcopy(stage.model)
    if s["energy"] is not None:
        ranks = factorize_model(model, energy=s["energy"])
    else:
        linear = [name for name, _ in named_layers(model, (nn.Linear,))]
        ranks = factorize_model(model, ranks={name: s["rank"] for name in linear})
    detail = {"ranks": ranks, "factorized": len(ranks)}
    detail["finetune"] = _finetune(model, s["epochs"], s["lr"], ctx)
    return Stage(model.eval(), detail=detail)


def run_quantize(stage: Stage, s: dict, ctx: StepContext) -> Stage:
    """PTQ in torch (fake-quant, exported as QDQ), PTQ by ONNX Runtime (real INT8 graph), or QAT."""
    from coursekit import quant

    calib = ctx.calibration(s["calibration_batches"])
    detail = {"method": s["method"], "backend": s["backend"], "bits": s["bits"], "act_bits": s["act_bits"],
              "granularity": s["granularity"]}
    if s["method"] == "qat":
        config = quant.QATConfig(weight_bits=s["bits"], act_bits=s["act_bits"],
                                 per_channel=s["granularity"] == "per_channel")
        qmodel = quant.prepare_qat(stage.model, config, calibration_data=calib)
        detail["finetune"] = _finetune(qmodel, max(1, s["epochs"]), s["lr"], ctx)
        return Stage(quant.convert(qmodel), detail=detail)
    if s["backend"] == "torch":
        observer = {"minmax": "minmax", "entropy": "entropy", "percentile": "percentile"}[s["calibration"]]
        config = quant.QuantConfig(weight_bits=s["bits"], act_bits=s["act_bits"], granularity=s["granularity"],
                                   observer=observer)
        return Stage(quant.quantize_model(stage.model, config, calibration_data=calib).eval(), detail=detail)
    from coursekit.export import export_onnx, ort_quantize_static

    float_path = export_onnx(stage.model, ctx.example[:1], ctx.work / "quantize-float.onnx")
    int8 = ort_quantize_static(float_path, ctx.work / "quantize-int8.onnx", calib, method=s["calibration"],
                               per_channel=s["granularity"] == "per_channel")
    float_path.unlink()
    return Stage(copy.deepcopy(stage.model).eval(), onnx=int8, detail=detail)


def run_finetune(stage: Stage, s: dict, ctx: StepContext) -> Stage:
    """Fine-tune the current model; with ``keep_zeros`` pruned weights stay exactly zero
    (``coursekit.share.pipeline.PruningMask`` re-zeroes them after every optimizer step)."""
    from coursekit import prune

    model = copy.deepcopy(stage.model)
    prune.remove_all(model)
    callbacks = [PruningMask(model)] if s["keep_zeros"] else []
    detail = {"finetune": _finetune(model, s["epochs"], s["lr"], ctx, callbacks=callbacks),
              "sparsity": prune.sparsity(model)}
    return Stage(model.eval(), detail=detail)


def recover(stage: Stage, epochs: int, lr: float, ctx: StepContext) -> Stage:
    """``on_fail = "finetune"``: fine-tune a step's result that broke the accuracy budget (zeros kept)."""
    return run_finetune(stage, {"epochs": epochs, "lr": lr, "keep_zeros": True}, ctx)


STEPS = {"distill": run_distill, "prune": run_prune, "lowrank": run_lowrank, "quantize": run_quantize,
         "finetune": run_finetune}


def run_step(kind: str, stage: Stage, settings: dict, ctx: StepContext) -> Stage:
    """Run step ``kind`` on ``stage`` (unchanged) and return the new Stage."""
    if stage.onnx is not None:
        raise ValueError(f"step {kind!r} cannot change an ONNX Runtime INT8 graph; quantize with backend='ort' "
                         "must be the last step")
    return STEPS[kind](stage, settings, ctx)


__all__ = ["STEPS", "Stage", "StepContext", "recover", "resolve_path", "run_distill", "run_finetune",
           "run_lowrank", "run_prune", "run_quantize", "run_step"]
