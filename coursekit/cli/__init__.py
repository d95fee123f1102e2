"""The ``coursekit`` command. Parsing only: every subcommand calls library functions.

    coursekit doctor                     environment + hardware report, what is accelerated here
    coursekit bench --suite basics       a benchmark suite on this machine
    coursekit build [--check]            regenerate student notebooks from solutions/
    coursekit check NOTEBOOK             sealed autograde of one notebook, points per exercise
    coursekit course init DIR            a standard nbgrader course directory
    coursekit grade COURSE ASSIGNMENT    instructors: sealed grading of a class
    coursekit drill / coursekit quiz     interview practice
    coursekit export MODEL --out DIR     a course model as ONNX (FP32/INT8) + model card + parity report
    coursekit serve MODEL.onnx           HTTP inference server with dynamic batching (loopback)
    coursekit loadtest TARGET | --sweep  locust load test: requests/s, p50/p95/p99; FP32 vs INT8 sweep
    coursekit compress --recipe R --out D  run a compression recipe with validation after every step
    coursekit report DIR... --out OUT    Pareto plot (PNG + offline HTML) of compress runs and suites

Every command follows one error policy (``coursekit.cli.errors``): exit 2 and one line for a usage error, 1 and one
line for a runtime failure, 130 for Ctrl-C; a bug shows its traceback. Each command module has
``add_parser(subparsers)``, which sets ``func`` (taking the parsed arguments, returning an exit status).
"""
from __future__ import annotations

import sys

from coursekit import __version__
from coursekit.cli import (
    bench,
    build,
    check,
    compress,
    course,
    doctor,
    drill,
    export,
    grade,
    loadtest,
    quiz,
    report,
    serve,
)
from coursekit.cli.errors import Parser, run_command

COMMANDS = (doctor, bench, build, check, course, grade, drill, quiz, export, serve, loadtest, compress, report)


def make_parser() -> Parser:
    parser = Parser(
        prog="coursekit",
        description="Hands-on quantization and model compression: the course's command-line tools.",
        epilog="Run `coursekit COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"coursekit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command and return its exit status."""
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed by the parser
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    return run_command(f"coursekit {args.command}", args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
