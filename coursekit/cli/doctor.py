"""``coursekit doctor``: the environment and hardware report, and what runs fast here."""
from __future__ import annotations

import json

from coursekit.bench import accelerated_paths, hardware_report


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor", help="report this machine and which reduced-precision paths it accelerates",
        description="Print the CPU (model, cores, ISA flags such as AVX-512, VNNI, AMX), GPUs, library versions, "
                    "and for INT8 / BF16 / FP16 / FP8 whether this machine accelerates them, with advice.",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    p.set_defaults(func=run)


def format_report(report: dict, paths) -> str:
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


def run(args) -> int:
    report = hardware_report()
    paths = accelerated_paths(report)
    if args.json:
        print(json.dumps({**report, "accelerated": [vars(p) for p in paths]}, indent=2))
    else:
        print(format_report(report, paths))
    return 0
