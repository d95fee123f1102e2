"""``coursekit check NOTEBOOK``: the sealed grade of one notebook, without touching it."""
from __future__ import annotations

import json

from coursekit.cli.errors import positive_number
from coursekit.grading import check_notebook, format_result
from coursekit.grading.check import SELF_STUDY_NOTE
from coursekit.grading.config import SEALED_CELL_TIMEOUT_S


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "check", help="grade your notebook (hidden tests included, sealed)",
        description="Grade NOTEBOOK against the chapter's instructor notebook: points per exercise, the reason and a "
                    "hint for each loss. Your code runs in a fresh kernel; every verdict is decided outside it. "
                    "Your file is only read, never modified. Exit status 0 only at full marks, 1 otherwise. "
                    + SELF_STUDY_NOTE.removeprefix("note: ").capitalize(),
    )
    p.add_argument("notebook", metavar="NOTEBOOK", help="e.g. notebooks/00_measuring.ipynb")
    p.add_argument("--json", action="store_true",
                   help='print {"notebook", "score", "max_score", "exercises": [...], "messages", "flags", ...}')
    p.add_argument("--timeout", type=positive_number("seconds", "--timeout 300"), default=SEALED_CELL_TIMEOUT_S,
                   metavar="S",
                   help=f"time limit per cell in seconds (default {SEALED_CELL_TIMEOUT_S})")
    p.set_defaults(func=run)


def run(args) -> int:
    result = check_notebook(args.notebook, timeout=args.timeout)
    if args.json:
        print(json.dumps({**result.to_json(), "note": SELF_STUDY_NOTE}, indent=2))
    else:
        print(format_result(result))
    return 0 if result.full_marks else 1
