"""The ``coursekit`` command. Parsing only: every subcommand calls library functions.

    coursekit doctor                     environment + hardware report, what is accelerated here
    coursekit bench --suite basics       a benchmark suite on this machine
    coursekit build [--check]            regenerate student notebooks from solutions/
    coursekit check NOTEBOOK             autograde one notebook (nbgrader), points per exercise
    coursekit course init DIR            a standard nbgrader course directory
    coursekit drill / coursekit quiz     interview practice
"""
from __future__ import annotations

import argparse
import sys

from coursekit import __version__
from coursekit.cli import bench, build, check, course, doctor
from coursekit.cli.errors import CommandError

COMMANDS = (doctor, bench, build, check, course)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coursekit",
        description="Hands-on quantization and model compression: the course's command-line tools.",
        epilog="Run `coursekit COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"coursekit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(subparsers)
    try:
        from coursekit.quiz.commands import add_subcommands
    except ImportError:  # the quiz layer is optional while it is being written
        pass
    else:
        add_subcommands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, CommandError) as exc:
        print(f"coursekit {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "code", 2)
    except KeyboardInterrupt:
        print(f"coursekit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
