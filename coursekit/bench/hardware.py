"""What this machine is, and which reduced-precision paths it runs fast.

A speedup number means nothing without the hardware it was measured on, so every benchmark result carries
``hardware_report()``. ``accelerated_paths()`` turns the report into plain advice: INT8 is fast on x86 only with
VNNI (AVX512-VNNI / AVX-VNNI) or AMX-INT8; BF16 needs AVX512-BF16 or AMX-BF16 on CPU, or an Ampere+ GPU;
FP16 arithmetic on x86 needs AVX512-FP16 / AMX-FP16; FP8 tensor cores start at compute capability 8.9 (Ada, Hopper).
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass

import torch

# Instruction-set extensions that matter for reduced precision, as Linux's /proc/cpuinfo spells them.
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16", "asimd", "asimddp", "sve",
    "i8mm", "bf16",
)


def _linux_cpu() -> tuple[str, set[str]]:
    model, flags = "", set()
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "Hardware") and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    return model, flags


def _macos_cpu() -> tuple[str, set[str]]:
    def sysctl(name: str) -> str:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, check=False)
        return out.stdout.strip()

    model = sysctl("machdep.cpu.brand_string")
    flags = {f.lower() for f in sysctl("machdep.cpu.features").split() + sysctl("machdep.cpu.leaf7_features").split()}
    if platform.machine() == "arm64":
        flags |= {"asimd", "asimddp"}
        if sysctl("hw.optional.arm.FEAT_BF16") == "1":
            flags.add("bf16")
        if sysctl("hw.optional.arm.FEAT_I8MM") == "1":
            flags.add("i8mm")
    return model, flags


def cpu_info() -> dict:
    """CPU model, core counts and the reduced-precision ISA flags this CPU reports."""
    model, flags = "", set()
    try:
        if sys.platform.startswith("linux"):
            model, flags = _linux_cpu()
        elif sys.platform == "darwin":
            model, flags = _macos_cpu()
    except OSError:
        pass
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a dependency
        physical = None
    return {
        "model": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "isa": sorted(f for f in ISA_FLAGS if f in flags),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def cuda_info() -> list[dict]:
    """One entry per visible CUDA device: name, compute capability and memory."""
    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append({
            "index": index, "name": props.name, "capability": f"{props.major}.{props.minor}",
            "memory_gb": round(props.total_memory / 1e9, 1),
        })
    return devices


def software_info() -> dict:
    """Versions of the libraries whose kernels we measure."""
    info = {
        "python": platform.python_version(), "os": platform.platform(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "quantized_engines": [e for e in torch.backends.quantized.supported_engines if e != "none"],
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cuda_runtime": torch.version.cuda,
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    return info


def hardware_report() -> dict:
    """The full report attached to every benchmark result (plain JSON-serialisable data)."""
    return {"cpu": cpu_info(), "cuda": cuda_info(), "software": software_info()}


@dataclass
class PathStatus:
    """One reduced-precision execution path: is it accelerated here, why, and what to do about it."""

    path: str
    accelerated: bool
    reason: str
    advice: str


def _capability(device: dict) -> tuple[int, int]:
    major, minor = device["capability"].split(".")
    return int(major), int(minor)


def accelerated_paths(report: dict | None = None) -> list[PathStatus]:
    """Which of INT8 / BF16 / FP16 / FP8 run on dedicated hardware on this machine."""
    report = report or hardware_report()
    isa = set(report["cpu"]["isa"])
    arm = report["cpu"]["arch"].lower() in ("arm64", "aarch64")
    paths = []

    vnni = isa & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"}
    paths.append(PathStatus(
        "CPU INT8", bool(vnni),
        f"has {', '.join(sorted(vnni))}" if vnni else "no VNNI/AMX-INT8 (or Arm dot-product) instructions found",
        "INT8 through ONNX Runtime or torch should give 2-4x over FP32 on Linear-heavy models (chapters 02, 08)"
        if vnni else "INT8 still saves 4x memory, but expect little or no speedup; measure before you deploy",
    ))

    bf16 = isa & {"avx512_bf16", "amx_bf16", "bf16"}
    paths.append(PathStatus(
        "CPU BF16", bool(bf16),
        f"has {', '.join(sorted(bf16))}" if bf16 else "no AVX512-BF16 / AMX-BF16 instructions",
        "BF16 matmuls can beat FP32 here; compare them in chapter 01"
        if bf16 else "BF16 is emulated: it halves memory but matmuls usually run slower than FP32",
    ))

    fp16 = isa & {"avx512_fp16", "amx_fp16"} or (arm and "asimd" in isa)
    paths.append(PathStatus(
        "CPU FP16", bool(fp16),
        f"has {', '.join(sorted(isa & {'avx512_fp16', 'amx_fp16', 'asimd'}))}" if fp16
        else "no native FP16 arithmetic (F16C only converts)",
        "FP16 may be fast here, but torch's CPU kernels do not always use it: measure"
        if fp16 else "keep FP16 for storage on this CPU; compute in FP32 or BF16",
    ))

    for device in report["cuda"]:
        cap = _capability(device)
        name = f"GPU {device['index']} ({device['name']}, sm_{cap[0]}{cap[1]})"
        paths.append(PathStatus(f"{name} FP16", cap >= (7, 0), "tensor cores from Volta (7.0)",
                                "use torch.autocast(device_type='cuda', dtype=torch.float16) for inference"))
        paths.append(PathStatus(f"{name} BF16", cap >= (8, 0), "BF16 tensor cores from Ampere (8.0)",
                                "prefer BF16 for training: same range as FP32, no loss scaling"))
        paths.append(PathStatus(f"{name} INT8", cap >= (7, 5), "INT8 tensor cores from Turing (7.5)",
                                "INT8 inference through TensorRT or ORT's CUDA/TensorRT providers"))
        paths.append(PathStatus(f"{name} FP8", cap >= (8, 9), "FP8 tensor cores from Ada/Hopper (8.9/9.0)",
                                "FP8 (E4M3 weights/activations, E5M2 gradients) via torch._scaled_mm or TensorRT"))
    if not report["cuda"]:
        paths.append(PathStatus("GPU", False, "no CUDA device visible to torch",
                                "everything in the course runs on CPU; GPU sections are skipped, not faked"))
    return paths


def format_hardware_report(report: dict | None = None, paths: list[PathStatus] | None = None) -> str:
    """The report as ``coursekit doctor`` prints it: hardware, software, then each reduced-precision path."""
    report = report or hardware_report()
    paths = accelerated_paths(report) if paths is None else paths
    cpu, sw = report["cpu"], report["software"]
    lines = [
        "Hardware",
        f"  CPU          {cpu['model']} ({cpu['arch']})",
        f"  cores        {cpu['physical_cores']} physical, {cpu['logical_cores']} logical",
        f"  ISA flags    {' '.join(cpu['isa']) or '(none detected)'}",
        f"  torch uses   {cpu['torch_cpu_capability']} kernels",
    ]
    for gpu in report["cuda"]:
        lines.append(f"  GPU {gpu['index']}        {gpu['name']}, compute capability {gpu['capability']}, "
                     f"{gpu['memory_gb']} GB")
    if not report["cuda"]:
        mps = " (Apple MPS available)" if sw["mps"] else ""
        lines.append(f"  GPU          none visible to torch{mps}")
    lines += [
        "Software",
        (f"  python {sw['python']}   torch {sw['torch']} ({sw['torch_threads']} threads)   "
         f"onnxruntime {sw.get('onnxruntime') or 'not installed'}"),
        f"  torch quantized engines: {', '.join(sw['quantized_engines'])}",
        f"  onnxruntime providers:   {', '.join(sw.get('onnxruntime_providers') or [])}",
        "Reduced precision on this machine",
    ]
    for p in paths:
        lines.append(f"  [{'yes' if p.accelerated else ' no'}] {p.path}: {p.reason}")
        lines.append(f"        -> {p.advice}")
    return "\n".join(lines)
