"""``coursekit build``: regenerate solutions/ and notebooks/ from the chapter sources."""
from __future__ import annotations

from coursekit.cli.errors import CommandError
from coursekit.grading import build


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "build", help="regenerate notebooks/ from solutions/ (nbgrader generate_assignment)",
        description="Compile solutions/src/NN_topic.py into solutions/NN_topic.ipynb, then generate the "
                    "student notebooks/NN_topic.ipynb with nbgrader. Deterministic. A student notebook holding "
                    "your work is backed up to .coursekit/backups/ before it is replaced.",
    )
    p.add_argument("chapters", nargs="*", help="only these chapters (e.g. 00 02); default all")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 and name each notebook that is out of date")
    p.set_defaults(func=run)


def run(args) -> int:
    stale = build(chapters=args.chapters or None, check=args.check)
    if args.check:
        if stale:
            names = "\n  ".join(str(item.path) for item in stale)
            raise CommandError(f"out of date (run `coursekit build`):\n  {names}", code=1)
        print("notebooks are up to date")
        return 0
    for item in stale:
        print(f"wrote {item.path}" + (f" (your previous version saved as {item.backup})" if item.backup else ""))
    if not stale:
        print("notebooks are up to date")
    return 0
