"""Command-line commands of the quiz layer: ``drill`` and ``quiz stats`` / ``quiz export``.

The top-level CLI (``coursekit.cli``) calls :func:`add_subcommands` with its ``subparsers``; each parser sets
``func``, a callable taking the parsed ``argparse.Namespace`` and returning an exit status (0 success, 1 a
user error such as an unknown chapter, a locked database or an existing export file; the message goes to
stderr). ``python -m coursekit.quiz.drill`` runs :func:`drill_main` with the same flags as ``coursekit drill``.
"""
from __future__ import annotations

import argparse
import json
import sys

from coursekit.quiz import catalog, drill, export
from coursekit.quiz.schema import BankError
from coursekit.quiz.store import ProgressStoreError

DRILL_HELP = "practise quiz questions in the terminal (spaced repetition, or a timed mock interview)"
DRILL_DESCRIPTION = """\
Ask quiz questions in the terminal and remember how you did.

A normal drill asks the questions that are due (Leitner spaced repetition: a right answer moves a question
to a later review, a wrong one brings it back tomorrow), weakest topics first. Choices are lettered A, B, C;
numeric answers take a unit (3.5 GB). Type 'skip' to skip a question and 'quit' (or Ctrl-D) to stop: every
answer given so far is already saved.

examples:
  coursekit drill                        10 due questions from every chapter
  coursekit drill --chapter 2 --n 5      5 due questions from chapter 02
  coursekit drill --mock 20              a 20-minute mock interview, mixed chapters, scored at the end
  coursekit drill --stats                progress by chapter and your weakest topics
"""
EXPORT_DESCRIPTION = """\
Write the question bank to PATH: Markdown grouped by chapter, or a tab-separated file (front, back, tags)
that Anki imports with File > Import (one note per question, tagged with chapter, topic, difficulty and id).
Parameterised questions are written as one instance (--seed). An existing PATH is kept unless --force.

examples:
  coursekit quiz export quiz.md
  coursekit quiz export --format anki --chapter 2 ch02_anki.txt
"""
QUIZ_DESCRIPTION = "Inspect and export the question bank behind 'coursekit drill' and the notebook quizzes."


_Formatter = argparse.RawDescriptionHelpFormatter


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _add_bank_option(parser) -> None:
    parser.add_argument("--bank", metavar="DIR", default=None,
                        help="read the question bank from DIR (chNN_*.json files) instead of the installed one; "
                             "for course authors")


def _report_errors(func):
    """Turn the expected user errors into a one-line message on stderr and exit status 1."""
    def wrapper(args) -> int:
        try:
            return func(args)
        except (BankError, ValueError, ProgressStoreError, FileExistsError, IsADirectoryError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted; every answer given so far is saved", file=sys.stderr)
            return 130
    wrapper.__doc__ = func.__doc__
    return wrapper


@_report_errors
def cmd_drill(args) -> int:
    """``coursekit drill``: a drill, a mock interview or the progress report."""
    common = {"chapter": args.chapter, "topic": args.topic, "db": args.db, "bank_dir": args.bank}
    if args.stats:
        drill.print_stats(db=args.db, chapter=args.chapter, bank_dir=args.bank)
    elif args.mock is not None:
        drill.run_mock(args.mock, n=args.n, seed=args.seed, **common)
    else:
        drill.run_drill(n=args.n or 10, seed=args.seed, **common)
    return 0


@_report_errors
def cmd_stats(args) -> int:
    """``coursekit quiz stats``: question counts of the bank."""
    stats = catalog.bank_stats(args.bank)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"{stats['total']} questions in {len(stats['files'])} files "
          f"({stats['parameterised']} parameterised)")
    for key in ("by_chapter", "by_type", "by_difficulty", "by_topic"):
        print(f"{key.removeprefix('by_')}:")
        for name, count in stats[key].items():
            title = f"  {stats['titles'].get(name, '')}" if key == "by_chapter" else ""
            print(f"  {name:<32} {count:>4}{title}")
    return 0


@_report_errors
def cmd_export(args) -> int:
    """``coursekit quiz export``: write the bank as Markdown or an Anki TSV."""
    count = export.export_bank(args.path, args.format, force=args.force, chapter=args.chapter, topic=args.topic,
                               seed=args.seed, bank_dir=args.bank)
    print(f"wrote {count} questions to {args.path} ({args.format})")
    return 0


def add_drill_parser(subparsers) -> argparse.ArgumentParser:
    """The ``drill`` subcommand."""
    p = subparsers.add_parser("drill", help=DRILL_HELP, description=DRILL_DESCRIPTION, formatter_class=_Formatter)
    p.add_argument("--chapter", metavar="C", help="only chapter C (e.g. 2, 02 or ch02)")
    p.add_argument("--topic", metavar="T", help="only topic T (a slug such as calibration; see 'quiz stats')")
    p.add_argument("--n", type=_positive_int, metavar="N", default=None,
                   help="number of questions (drill default: 10; mock default: until time is up)")
    p.add_argument("--mock", type=_positive_float, metavar="MINUTES", default=None,
                   help="mock interview: MINUTES of mixed questions, no hints, a score report by topic at the end")
    p.add_argument("--db", metavar="PATH", default=None,
                   help="progress database (default: progress.sqlite in coursekit's user data folder, "
                        "or $COURSEKIT_DATA)")
    p.add_argument("--stats", action="store_true", help="show progress by chapter and the weakest topics, then exit")
    p.add_argument("--seed", type=int, metavar="S", default=None,
                   help="random seed: question order among equals and the numbers in generated questions")
    _add_bank_option(p)
    p.set_defaults(func=cmd_drill)
    return p


def add_quiz_parser(subparsers) -> argparse.ArgumentParser:
    """The ``quiz`` subcommand with ``stats`` and ``export``."""
    p = subparsers.add_parser("quiz", help="inspect or export the question bank", description=QUIZ_DESCRIPTION,
                              formatter_class=_Formatter)
    sub = p.add_subparsers(dest="quiz_command", metavar="{stats,export}", required=True)
    stats = sub.add_parser("stats", help="question counts by chapter, topic, type and difficulty",
                           description="Count the bank's questions by chapter, topic, type and difficulty.",
                           formatter_class=_Formatter)
    stats.add_argument("--json", action="store_true", help="print the counts as JSON")
    _add_bank_option(stats)
    stats.set_defaults(func=cmd_stats)
    exp = sub.add_parser("export", help="write the bank as Markdown or an Anki import file",
                         description=EXPORT_DESCRIPTION,
                         formatter_class=_Formatter)
    exp.add_argument("path", metavar="PATH", help="output file (e.g. quiz.md or quiz.txt)")
    exp.add_argument("--format", choices=export.FORMATS, default="markdown", help="output format (default: markdown)")
    exp.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    exp.add_argument("--chapter", metavar="C", help="only chapter C")
    exp.add_argument("--topic", metavar="T", help="only topic T")
    exp.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the generated question instances (default: 0)")
    _add_bank_option(exp)
    exp.set_defaults(func=cmd_export)
    return p


def add_subcommands(subparsers) -> None:
    """Add ``drill`` and ``quiz`` (``stats``, ``export``) to a top-level ``add_subparsers()`` object."""
    add_drill_parser(subparsers)
    add_quiz_parser(subparsers)


def drill_main(argv=None) -> int:
    """``python -m coursekit.quiz.drill [flags]``: the ``drill`` command on its own."""
    parser = argparse.ArgumentParser(prog="python -m coursekit.quiz.drill")
    sub = parser.add_subparsers(dest="command")
    add_drill_parser(sub)
    args = parser.parse_args(["drill", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
