"""``coursekit doctor``: the environment and hardware report, and what runs fast here."""
from __future__ import annotations

import json

from coursekit.bench import accelerated_paths, format_hardware_report, hardware_report


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor", help="report this machine and which reduced-precision paths it accelerates",
        description="Print the CPU (model, cores, ISA flags such as AVX-512, VNNI, AMX), GPUs, library versions, "
                    "and for INT8 / BF16 / FP16 / FP8 whether this machine accelerates them, with advice.",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    p.set_defaults(func=run)


def run(args) -> int:
    report = hardware_report()
    paths = accelerated_paths(report)
    if args.json:
        print(json.dumps({**report, "accelerated": [vars(p) for p in paths]}, indent=2))
    else:
        print(format_hardware_report(report, paths))
    return 0
