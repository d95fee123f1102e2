"""``coursekit check NOTEBOOK``: autograde one learner notebook with nbgrader, without touching it."""
from __future__ import annotations

import json

from coursekit.cli.errors import CommandError
from coursekit.grading import check_notebook, format_result


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "check", help="autograde your notebook (real nbgrader, hidden tests included)",
        description="Grade NOTEBOOK against the instructor version in a temporary nbgrader course: points per "
                    "exercise and a hint for each failure. Your file is only read, never modified. "
                    "Exit status 0 only at full marks.",
    )
    p.add_argument("notebook", metavar="NOTEBOOK", help="e.g. notebooks/00_measuring.ipynb")
    p.add_argument("--json", action="store_true",
                   help='print {"notebook", "score", "max_score", "exercises": [...]} as JSON')
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        result = check_notebook(args.notebook)
    except RuntimeError as exc:
        raise CommandError(str(exc), code=3) from exc
    print(json.dumps(result.to_json(), indent=2) if args.json else format_result(result))
    return 0 if result.full_marks else 1
