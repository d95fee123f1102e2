"""The ``deploy`` suite: one exported model, several runtimes and quantizers, measured side by side.

For the digits LeNet and the Linear-heavy model trained on digits (``coursekit.train.pretrained``), at batch 1
(latency-bound serving) and 64 (throughput-bound), with pinned threads:

* ``ort_fp32`` / ``ov_fp32``: the *same* FP32 ONNX file in ONNX Runtime and in OpenVINO (``precision="f32"``);
  ``ort_fp32`` is the baseline of every ``speedup``;
* ``ort_int8`` / ``ov_int8``: the *same* QDQ INT8 file, made by the course's own PTQ
  (``coursekit.export.ort_quantize_static``: MinMax, per-channel S8S8) on training batches;
* ``ov_nncf_int8``: NNCF's post-training quantization of the FP32 file (OpenVINO IR) in OpenVINO, and
  ``ort_nncf_int8``: NNCF on the ONNX graph (a QDQ file) in ONNX Runtime: another quantizer, same calibration data;
* ``ort_cuda_*``, ``ort_tensorrt_*``, ``ov_gpu_fp32``: run when the provider/device exists, otherwise one record
  each with ``skipped`` saying why (never silently absent);
* ``session sweep``: ONNX Runtime session options (intra-op threads x graph optimization level x execution mode,
  ``coursekit.export.session``) on each FP32 and INT8 file at batch 1; ``speedup`` there is against the default
  session (1 thread, ``"all"``, sequential).

Every record carries the test accuracy, the top-1 agreement and max |error| against the torch FP32 model
(``coursekit.export.parity_report``) and the file size. ``reading(records)`` explains the numbers.
Fast mode shrinks the Linear-heavy model to width 256 (its training takes seconds) and the sweep grid.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from coursekit.bench import make_record, measure_latency
from coursekit.suites import SuiteContext, register

BASELINE = "ort_fp32"
VARIANTS = ("ort_fp32", "ov_fp32", "ort_int8", "ov_int8", "ov_nncf_int8", "ort_nncf_int8")
MODELS = ("lenet", "linear_heavy")
# fast mode: a narrower Linear-heavy model (width 256; 10 epochs reach ~86 % on digits, 3 epochs only ~48 %)
FAST_PRETRAINED = {"linear_heavy": {"width": 256, "epochs": 10}}
CALIBRATION_BATCHES = {"full": 16, "fast": 4}
SAME = 0.1  # ratios within 10% of 1 read as "about the same"
PRECISIONS = ("fp32", "int8")


# ------------------------------------------------------------------------------------------ course models
def pretrained_kwargs(name: str, fast: bool) -> dict:
    """Keyword arguments of ``pretrained`` for the suite's version of ``name`` (fast mode: narrower)."""
    return dict(FAST_PRETRAINED.get(name, {})) if fast else {}


def export_course_model(name: str, dataset: str = "digits", precision: str = "fp32", out_dir=".",
                        fast: bool | None = None, calibration_batches: int | None = None, threads: int = 1,
                        overwrite: bool = False, progress: bool = False, **kwargs) -> Path:
    """Train (or load from the cache) course model ``name`` on ``dataset``, export it to
    ``out_dir/<name>_<dataset>_<precision>.onnx`` and write its model card (accuracy on the test set, latency at
    batch 1 and 64 in ONNX Runtime, parity with torch, hardware) beside it; return the ONNX path.

    ``precision``: ``"fp32"`` (the plain export) or ``"int8"`` (the course's PTQ: ``ort_quantize_static``, QDQ,
    MinMax, per-channel S8S8, on ``calibration_batches`` training batches; default 16, 4 in fast mode).
    ``kwargs`` go to ``pretrained`` (``epochs``, ``seed``) and ``build_model`` (e.g. ``width=256`` for
    ``linear_heavy``). An existing file is replaced only with ``overwrite=True`` (FileExistsError otherwise,
    raised before any training).
    """
    from coursekit._env import fast_mode
    from coursekit._paths import check_output_file
    from coursekit._validate import check_choice, check_int
    from coursekit.bench import hardware_report
    from coursekit.data import get_loaders
    from coursekit.export import export_onnx, ort_quantize_static, write_model_card
    from coursekit.train import pretrained

    check_choice("precision", precision, PRECISIONS)
    fast = fast_mode() if fast is None else bool(fast)
    n_calib = check_int("calibration_batches", calibration_batches, min_value=1) if calibration_batches else \
        CALIBRATION_BATCHES["fast" if fast else "full"]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir {str(out_dir)!r} is a file; give a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = check_output_file("out_dir", out_dir / f"{name}_{dataset}_{precision}.onnx", overwrite=overwrite,
                             exists_hint="pass overwrite=True (CLI: --force) to replace it")
    model = pretrained(name, dataset, fast=fast, progress=progress, **kwargs).eval()
    train_loader, _, test_loader = get_loaders(dataset, fast=fast)
    example = next(iter(test_loader))[0][:1]
    if precision == "fp32":
        export_onnx(model, example, path)
        calibration = None
    else:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(model, example, Path(tmp) / "fp32.onnx")
            calib = [x for _, (x, _) in zip(range(n_calib), train_loader)]
            ort_quantize_static(fp32, path, calib, method="minmax", per_channel=True)
        calibration = (f"MinMax, per-channel S8S8 QDQ (onnxruntime quantize_static) on {n_calib} training batches "
                       f"of {dataset} ({sum(len(x) for x in calib)} images)")
    accuracy, parity, latency = _evaluate_file(model, path, test_loader, threads)
    write_model_card(path, model=model, accuracy={"test": accuracy}, latency_ms=latency, calibration=calibration,
                     parity=parity, dataset=dataset, hardware=hardware_report(),
                     notes=f"coursekit.train.pretrained({name!r}, {dataset!r}, fast={fast}, **{kwargs})")
    return path


def _evaluate_file(model, path, test_loader, threads: int):
    """Test accuracy of the ONNX file in ORT, its parity with ``model``, and ORT latency at batch 1 and 64."""
    from coursekit.export import ort_run, ort_session, parity_report
    from coursekit.metrics import evaluate

    session = ort_session(path, threads=threads)
    accuracy = evaluate(lambda x: torch.from_numpy(ort_run(session, x)), test_loader)["accuracy"]
    parity = parity_report(model, session, test_loader)
    x = next(iter(test_loader))[0][:1]
    calls = {f"batch {b}": _bind(session, x.repeat(b, *([1] * (x.dim() - 1)))) for b in (1, 64)}
    stats = measure_latency(calls, repeats=10, warmup=3, threads=threads, budget_s=2.0)
    return accuracy, parity, {k: round(s.median_ms, 4) for k, s in stats.items()}


def _bind(runner, x: torch.Tensor):
    """A zero-argument call on ``x`` (converted once): an ORT session, or an OpenVINO session whose request gets
    the input tensor once (sharing the array's memory), as a server that reuses its buffers would."""
    arr = np.ascontiguousarray(x.numpy(), dtype=np.float32)
    if hasattr(runner, "get_inputs"):
        feed = {runner.get_inputs()[0].name: arr}
        return lambda: runner.run(None, feed)
    import openvino as ov

    request = runner.request
    request.set_input_tensor(ov.Tensor(arr, shared_memory=True))
    return request.infer


# ------------------------------------------------------------------------------------------ variants
def build_files(model, example, calibration, folder) -> dict:
    """The FP32 export, the course's PTQ INT8 (QDQ) file and NNCF's two INT8 files: ``{name: path}``."""
    from coursekit.export import export_onnx, nncf_quantize, ort_quantize_static

    folder = Path(folder)
    fp32 = export_onnx(model, example, folder / "fp32.onnx")
    return {
        "fp32": fp32,
        "int8": ort_quantize_static(fp32, folder / "int8.onnx", calibration, method="minmax", per_channel=True),
        "nncf_ir": nncf_quantize(fp32, folder / "nncf.xml", calibration, backend="openvino"),
        "nncf_onnx": nncf_quantize(fp32, folder / "nncf.onnx", calibration, backend="onnx"),
    }


def build_runners(files: dict, threads: int) -> dict:
    """``{variant: (session, file size in bytes, runtime, quantizer)}`` for the CPU variants."""
    from coursekit.export import file_size, openvino_session, ort_session
    from coursekit.export.openvino_rt import ir_size

    return {
        "ort_fp32": (ort_session(files["fp32"], threads=threads), file_size(files["fp32"]), "onnxruntime", None),
        "ov_fp32": (openvino_session(files["fp32"], threads=threads), file_size(files["fp32"]), "openvino", None),
        "ort_int8": (ort_session(files["int8"], threads=threads), file_size(files["int8"]), "onnxruntime",
                     "course_ptq"),
        "ov_int8": (openvino_session(files["int8"], threads=threads), file_size(files["int8"]), "openvino",
                    "course_ptq"),
        "ov_nncf_int8": (openvino_session(files["nncf_ir"], threads=threads), ir_size(files["nncf_ir"]),
                         "openvino", "nncf"),
        "ort_nncf_int8": (ort_session(files["nncf_onnx"], threads=threads), file_size(files["nncf_onnx"]),
                          "onnxruntime", "nncf"),
    }


def _as_callable(runner):
    from coursekit.export import ort_run

    if hasattr(runner, "get_inputs"):
        return lambda x: torch.from_numpy(ort_run(runner, x))
    return lambda x: torch.from_numpy(runner(x))


def _quality(model, runners: dict, test_loader) -> dict:
    """Per variant: test accuracy, and parity (top-1 agreement, max |error|) with the torch FP32 model."""
    from coursekit.export import parity_report
    from coursekit.metrics import evaluate

    quality = {}
    for v, (runner, *_rest) in runners.items():
        fn = _as_callable(runner)
        report = parity_report(model, fn, test_loader)
        quality[v] = {"accuracy": evaluate(fn, test_loader)["accuracy"],
                      "agreement_vs_torch": report["top1_agreement"], "max_abs_error_vs_torch": report["max_abs_error"],
                      "test_examples": report["n"]}
    return quality


def variant_records(name, model, files, test_loader, ctx: SuiteContext) -> list[dict]:
    """Records for the six CPU variants of ``model`` at batch 1 and 64 (interleaved per batch size)."""
    runners = build_runners(files, ctx.threads)
    quality = _quality(model, runners, test_loader)
    example = next(iter(test_loader))[0][:1]
    records = []
    for batch in ctx.batch_sizes:
        x = example.repeat(batch, *([1] * (example.dim() - 1))).contiguous()
        calls = {v: _bind(r, x) for v, (r, *_rest) in runners.items()}
        stats = measure_latency(calls, repeats=ctx.repeats, warmup=3, threads=ctx.threads)
        for v, (_, size, runtime, quantizer) in runners.items():
            records.append(make_record(
                name, v, device="cpu", batch=batch, threads=ctx.threads, stats=stats[v], size_bytes=size,
                runtime=runtime, precision="int8" if "int8" in v else "fp32", quantizer=quantizer, **quality[v]))
    return records


# ------------------------------------------------------------------------------------------ GPU rows
def gpu_status() -> dict:
    """Why each GPU row can or cannot run here: ``{row: None (runs) or the reason it is skipped}``."""
    import onnxruntime as ort

    providers = ort.get_available_providers()
    has_cuda = torch.cuda.is_available()
    status = {}
    for row, provider, package in (("ort_cuda", "CUDAExecutionProvider", "onnxruntime-gpu"),
                                   ("ort_tensorrt", "TensorrtExecutionProvider", "onnxruntime-gpu with TensorRT")):
        if not has_cuda:
            status[row] = "skipped: no CUDA device (torch.cuda.is_available() is False)"
        elif provider not in providers:
            status[row] = (f"skipped: a CUDA device is present but this onnxruntime build has no {provider} "
                           f"(available: {', '.join(providers)}); install {package}")
        else:
            status[row] = None
    try:
        import openvino as ov

        devices = ov.Core().available_devices
        status["ov_gpu"] = None if any(d.startswith("GPU") for d in devices) else \
            f"skipped: OpenVINO sees no GPU device (devices: {', '.join(devices)})"
    except ImportError:
        status["ov_gpu"] = "skipped: openvino is not installed"
    return status


def _gpu_records(name, files, ctx: SuiteContext) -> list[dict]:
    """CUDA EP / TensorRT EP (FP32 and the INT8 QDQ file) and OpenVINO GPU rows: measured or skipped."""
    from coursekit.export import file_size, openvino_session, ort_session

    status = gpu_status()
    rows = [("ort_cuda", "fp32", "CUDAExecutionProvider"), ("ort_cuda", "int8", "CUDAExecutionProvider"),
            ("ort_tensorrt", "fp32", "TensorrtExecutionProvider"), ("ort_tensorrt", "int8", "TensorrtExecutionProvider"),
            ("ov_gpu", "fp32", "GPU")]
    records = []
    example = None
    for row, precision, provider in rows:
        variant, path = f"{row}_{precision}", files[precision]
        reason = status[row]
        if reason is not None:
            records.append(make_record(name, variant, device="cuda", batch=1, threads=ctx.threads,
                                       size_bytes=file_size(path), precision=precision, skipped=reason))
            continue
        if example is None:
            example = torch.randn(1, *_input_shape(path))
        runner = (openvino_session(path, device="GPU") if row == "ov_gpu" else
                  ort_session(path, providers=(provider, "CPUExecutionProvider")))
        for batch in ctx.batch_sizes:
            x = example.repeat(batch, *([1] * (example.dim() - 1)))
            stats = measure_latency({variant: _bind(runner, x)}, repeats=ctx.repeats, warmup=10, threads=None)
            records.append(make_record(name, variant, device="cuda", batch=batch, threads=ctx.threads,
                                       stats=stats[variant], size_bytes=file_size(path), precision=precision,
                                       runtime="openvino" if row == "ov_gpu" else "onnxruntime"))
    return records


def _input_shape(path) -> tuple:
    from coursekit.export import io_signature

    return tuple(io_signature(path)["inputs"][0]["shape"][1:])


# ------------------------------------------------------------------------------------------ session sweep
def sweep_session_options(path, x: torch.Tensor, grid: list[dict] | None = None, repeats: int = 10,
                          budget_s: float = 1.0) -> list[dict]:
    """Time ONNX Runtime on ``path`` and input ``x`` under each session configuration of ``grid`` (default:
    ``coursekit.export.session_grid()``), interleaved in one ``measure_latency`` call so every configuration sees
    the same machine load. The sessions are made with ``allow_spinning=False``: ORT's intra-op threads otherwise
    busy-wait after each run, and one session's idle pool would slow down the next session timed in turn.

    Returns one dict per configuration: ``threads``, ``optimization``, ``execution_mode``, ``latency_ms_median``,
    ``latency_ms_min`` and ``speedup`` against the default session (1 thread, ``"all"``, sequential) when the
    grid has it. The torch thread pool is left alone (``threads=None``): each session has its own threads.
    """
    from coursekit.export import ort_session, session_grid

    grid = session_grid() if grid is None else grid
    if not grid:
        raise ValueError("grid is empty: give at least one session configuration (see session_grid)")
    sessions = {_label(c): (c, ort_session(path, allow_spinning=False, **c)) for c in grid}
    calls = {label: _bind(session, x) for label, (_, session) in sessions.items()}
    stats = measure_latency(calls, repeats=repeats, warmup=3, threads=None, budget_s=budget_s)
    default = stats.get(_label({"threads": 1, "optimization": "all", "execution_mode": "sequential"}))
    out = []
    for label, (config, _) in sessions.items():
        s = stats[label]
        out.append({**config, "latency_ms_median": s.median_ms, "latency_ms_min": s.min_ms, "samples": s.samples,
                    "latency_ms_p90": s.p90_ms, "speedup": default.median_ms / s.median_ms if default else None})
    return out


def _label(config: dict) -> str:
    return f"{config['threads']}t/{config['optimization']}/{config['execution_mode']}"


def _sweep_grid(fast: bool) -> list[dict]:
    from coursekit.export import session_grid

    threads = sorted({1, min(2, os.cpu_count() or 1)})
    optimization = ("none", "basic", "all") if fast else ("none", "basic", "extended", "all")
    return session_grid(threads=threads, optimization=optimization, execution_mode=("sequential", "parallel"))


def _sweep_records(name, files, example, ctx: SuiteContext) -> list[dict]:
    from coursekit.export import file_size

    records = []
    for precision in PRECISIONS:
        for row in sweep_session_options(files[precision], example, _sweep_grid(ctx.fast), repeats=ctx.repeats,
                                         budget_s=1.0 if ctx.fast else 3.0):
            records.append({**make_record(name, f"sweep_{precision}", device="cpu", batch=1, threads=row["threads"],
                                          size_bytes=file_size(files[precision]), precision=precision),
                            "latency_ms_median": row["latency_ms_median"], "latency_ms_min": row["latency_ms_min"],
                            "latency_ms_p90": row["latency_ms_p90"],
                            "throughput_per_s": 1e3 / row["latency_ms_median"], "samples": row["samples"],
                            "optimization": row["optimization"], "execution_mode": row["execution_mode"],
                            "speedup": row["speedup"], "runtime": "onnxruntime"})
    return records


# ------------------------------------------------------------------------------------------ the suite
def _suite_models(ctx: SuiteContext):
    """``(record name, torch model, calibration batches, test loader)`` for each model of the suite."""
    from coursekit.data import get_loaders
    from coursekit.train import pretrained

    n_calib = CALIBRATION_BATCHES["fast" if ctx.fast else "full"]
    train_loader, _, test_loader = get_loaders("digits", fast=ctx.fast)
    calib = [x for _, (x, _) in zip(range(n_calib), train_loader)]
    for name in MODELS:
        model = pretrained(name, "digits", fast=ctx.fast, progress=ctx.progress, **pretrained_kwargs(name, ctx.fast))
        yield f"{name}_digits", model.eval(), calib, test_loader


@register("deploy", "ONNX Runtime vs OpenVINO on the same FP32 and INT8 ONNX files, the course's PTQ vs NNCF, "
                    "ORT session options swept, CUDA/TensorRT rows when a GPU is present (digits LeNet, Linear-heavy)")
def deploy_suite(ctx: SuiteContext) -> list[dict]:
    from coursekit.bench import add_speedups
    from coursekit.bench.progress import progress_bar

    ctx.require_cpu("deploy", "measures CPU runtimes and adds GPU rows itself when a GPU is present")
    records, sweeps = [], []
    models = list(_suite_models(ctx))
    for name, model, calib, test_loader in progress_bar(models, desc="deploy", enabled=ctx.progress):
        with tempfile.TemporaryDirectory() as tmp:
            files = build_files(model, next(iter(test_loader))[0][:1], calib, tmp)
            records += variant_records(name, model, files, test_loader, ctx)
            records += _gpu_records(name, files, ctx)
            sweeps += _sweep_records(name, files, next(iter(test_loader))[0][:1], ctx)
    return add_speedups(records, BASELINE) + sweeps


# ----------------------------------------------------------------------------------------------- reading
def _find(records, model, variant, batch=1):
    return next((r for r in records if (r["model"], r["variant"], r["batch"]) == (model, variant, batch)
                 and r.get("latency_ms_median")), None)


def _ratio_words(ratio: float, faster: str = "faster", slower: str = "slower") -> str:
    """``ratio`` = old time / new time: "1.8x faster", "0.6x (slower)", "about the same (1.04x)"."""
    if abs(ratio - 1) <= SAME:
        return f"about the same ({ratio:.2f}x)"
    return f"{ratio:.2f}x {faster}" if ratio > 1 else f"{ratio:.2f}x ({slower})"


def _vs(rows: dict, new: str, old: str) -> str:
    """How ``new`` compares with ``old`` (old median / new median) in words, or "-" when one is missing; the ratio
    of the minimums follows when it tells another story (a loaded machine delays one runtime more than the other)."""
    if not rows.get(new) or not rows.get(old):
        return "-"
    ratio = rows[old]["latency_ms_median"] / rows[new]["latency_ms_median"]
    text = _ratio_words(ratio)
    if rows[old].get("latency_ms_min") and rows[new].get("latency_ms_min"):
        best = rows[old]["latency_ms_min"] / rows[new]["latency_ms_min"]
        if abs(best / ratio - 1) > 0.5:
            text += f" [by min latency {best:.2f}x]"
    return text


def _speed_lines(records, model) -> list[str]:
    lines = []
    for batch in sorted({r["batch"] for r in records if r["model"] == model and r["variant"] in VARIANTS}):
        rows = {v: _find(records, model, v, batch) for v in VARIANTS}
        if not rows[BASELINE]:
            continue
        fastest = min((v for v in VARIANTS if rows[v]), key=lambda v: rows[v]["latency_ms_median"])
        lines.append(f"{model}, batch {batch}: ORT FP32 {rows[BASELINE]['latency_ms_median']:.3g} ms; same FP32 file "
                     f"in OpenVINO vs ORT: {_vs(rows, 'ov_fp32', 'ort_fp32')}; course INT8 (one QDQ file) vs FP32: "
                     f"ORT {_vs(rows, 'ort_int8', 'ort_fp32')}, OpenVINO {_vs(rows, 'ov_int8', 'ov_fp32')}")
        lines.append(f"  NNCF INT8 vs the course's INT8: OpenVINO {_vs(rows, 'ov_nncf_int8', 'ov_int8')}, ORT "
                     f"{_vs(rows, 'ort_nncf_int8', 'ort_int8')}; fastest variant: {fastest} "
                     f"({rows[fastest]['latency_ms_median']:.3g} ms)")
    return lines


def _overhead_line(records, model) -> list[str]:
    """When OpenVINO loses to ORT on the same FP32 file more at batch 1 than at the large batch: a per-call cost."""
    small, large = _find(records, model, "ov_fp32", 1), _find(records, model, "ov_fp32", 64)
    base_small, base_large = _find(records, model, BASELINE, 1), _find(records, model, BASELINE, 64)
    if not (small and large and base_small and base_large):
        return []
    r1 = base_small["latency_ms_median"] / small["latency_ms_median"]
    r64 = base_large["latency_ms_median"] / large["latency_ms_median"]
    if r1 >= 1 - SAME or r1 >= r64:
        return []
    if r64 < 0.75:
        return [(f"  OpenVINO is slower than ORT on this FP32 file at both batch sizes ({r1:.2f}x at batch 1, "
                f"{r64:.2f}x at batch 64): a per-call cost and slower kernels for this model here")]
    extra_us = 1e3 * (small["latency_ms_median"] - base_small["latency_ms_median"])
    return [(f"  OpenVINO spends {extra_us:.0f} us more than ORT per batch-1 call on the same file but is "
            f"{r64:.2f}x ORT's speed at batch 64: a fixed per-call cost (Python binding, request handling) that a "
            "model this small cannot hide; batch requests, or call OpenVINO from C++, to amortise it")]


def _noise_line(records) -> list[str]:
    """Say so when the machine was busy: a median far above the min means other work shared the cores."""
    timed = [r for r in records if r.get("latency_ms_min") and r.get("latency_ms_median")]
    noisy = [r for r in timed if r["latency_ms_median"] > 1.5 * r["latency_ms_min"]]
    if not timed or len(noisy) < len(timed) / 10:
        return []
    worst = max(noisy, key=lambda r: r["latency_ms_median"] / r["latency_ms_min"])
    return [(f"timing noise: {len(noisy)} of {len(timed)} rows have a median over 1.5x their min (worst "
            f"{worst['latency_ms_median'] / worst['latency_ms_min']:.1f}x, {worst['model']} {worst['variant']}): "
            "other work shared the cores, so small differences above are not meaningful; rerun on a quiet machine "
            "with more --repeats")]


def _quality_lines(records, model) -> list[str]:
    rows = {v: _find(records, model, v) for v in VARIANTS}
    base = rows[BASELINE]
    if not base or base.get("accuracy") is None:
        return []
    n = base.get("test_examples") or 0

    def acc(v):
        r = rows[v]
        if not r or r.get("accuracy") is None:
            return f"{v} -"
        delta = 100 * (r["accuracy"] - base["accuracy"])
        return f"{v} {r['accuracy']:.2%} ({delta:+.2f} pts = {round(abs(delta) * n / 100)} of {n})"

    lines = [f"  accuracy: FP32 {base['accuracy']:.2%}; " + ", ".join(acc(v) for v in VARIANTS[1:])]
    ov = rows["ov_fp32"]
    if ov and ov.get("max_abs_error_vs_torch") is not None:
        lines.append(f"  parity with torch FP32: ORT FP32 max |error| {base['max_abs_error_vs_torch']:.2g}, OpenVINO "
                     f"FP32 {ov['max_abs_error_vs_torch']:.2g} (float rounding only); INT8 top-1 agreement: "
                     + ", ".join(f"{v} {rows[v]['agreement_vs_torch']:.1%}" for v in VARIANTS
                                 if "int8" in v and rows[v]))
    sizes = {v: rows[v]["size_bytes"] for v in ("ort_fp32", "ort_int8", "ov_nncf_int8", "ort_nncf_int8") if rows[v]}
    if len(sizes) == 4:
        lines.append(f"  size: FP32 {sizes['ort_fp32'] / 1e6:.3g} MB, course INT8 {sizes['ort_int8'] / 1e6:.3g} MB "
                     f"({sizes['ort_fp32'] / sizes['ort_int8']:.1f}x smaller), NNCF IR {sizes['ov_nncf_int8'] / 1e6:.3g}"
                     f" MB, NNCF ONNX {sizes['ort_nncf_int8'] / 1e6:.3g} MB")
    return lines


def _sweep_lines(records, model) -> list[str]:
    lines = []
    for precision in PRECISIONS:
        rows = [r for r in records if r["model"] == model and r["variant"] == f"sweep_{precision}"]
        if not rows:
            continue
        best = min(rows, key=lambda r: r["latency_ms_median"])
        worst = max(rows, key=lambda r: r["latency_ms_median"])
        default = next((r for r in rows if (r["threads"], r["optimization"], r["execution_mode"])
                        == (1, "all", "sequential")), None)
        ref = f"{default['latency_ms_median']:.3g} ms" if default else "-"
        lines.append(f"  session sweep, {precision.upper()} batch 1 (default 1 thread/all/sequential {ref}): best "
                     f"{_cfg(best)} {best['latency_ms_median']:.3g} ms, worst {_cfg(worst)} "
                     f"{worst['latency_ms_median']:.3g} ms ({worst['latency_ms_median'] / best['latency_ms_median']:.1f}x"
                     " apart)")
        effects = []
        for key, a, b in (("threads", 1, 2), ("execution_mode", "sequential", "parallel"),
                          ("optimization", "none", "all")):
            ratio = _median_ratio(rows, key, a, b)
            if ratio is not None:
                effects.append(f"{key} {a} -> {b}: {_ratio_words(ratio)}")
        if effects:
            lines.append("    effect of one knob, others fixed (median over the grid): " + "; ".join(effects))
    return lines


def _cfg(r) -> str:
    return f"{r['threads']}t/{r['optimization']}/{r['execution_mode']}"


def _median_ratio(rows, key, a, b):
    """Median over matching configurations of latency(key=a) / latency(key=b)."""
    import statistics

    index = {tuple((k, r[k]) for k in ("threads", "optimization", "execution_mode") if k != key): r
             for r in rows if r[key] == a}
    ratios = []
    for r in rows:
        if r[key] == b:
            other = index.get(tuple((k, r[k]) for k in ("threads", "optimization", "execution_mode") if k != key))
            if other:
                ratios.append(other["latency_ms_median"] / r["latency_ms_median"])
    return statistics.median(ratios) if ratios else None


def _gpu_lines(records) -> list[str]:
    skipped = {}
    measured = []
    for r in records:
        if r.get("skipped"):
            skipped.setdefault(r["skipped"], []).append(r["variant"])
        elif r["device"] == "cuda" and r.get("latency_ms_median"):
            cpu = _find(records, r["model"], BASELINE, r["batch"])
            measured.append(f"{r['model']} {r['variant']} batch {r['batch']}: {r['latency_ms_median']:.3g} ms"
                            + (f" ({_ratio_words(cpu['latency_ms_median'] / r['latency_ms_median'])} than ORT "
                               "FP32 on the CPU)" if cpu else ""))
    lines = ["GPU rows: " + line for line in measured]
    for reason, variants in skipped.items():
        lines.append(f"GPU rows {', '.join(sorted(set(variants)))}: {reason}")
    return lines


def reading(records: list[dict]) -> str:
    """Plain-language reading of a ``deploy`` result, generated only from the measured numbers."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in records):
        lines += _speed_lines(records, model)
        lines += _overhead_line(records, model)
        lines += _quality_lines(records, model)
        lines += _sweep_lines(records, model)
    return "\n".join(lines + _gpu_lines(records) + _noise_line(records))
