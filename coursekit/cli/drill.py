"""``coursekit drill``: practise quiz questions in the terminal (spaced repetition, or a timed mock interview)."""
from __future__ import annotations

import argparse
from pathlib import Path

from coursekit._paths import check_output_file
from coursekit.cli.errors import int_at_least, positive_number
from coursekit.quiz import drill

HELP = "practise quiz questions in the terminal (spaced repetition, or a timed mock interview)"
DESCRIPTION = """\
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


def add_bank_option(parser) -> None:
    parser.add_argument("--bank", metavar="DIR", default=None,
                        help="read the question bank from DIR (chNN_*.json files) instead of the installed one; "
                             "for course authors")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("drill", help=HELP, description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chapter", metavar="C", help="only chapter C (e.g. 2, 02 or ch02)")
    p.add_argument("--topic", metavar="T", help="only topic T (a slug such as calibration; see 'quiz stats')")
    p.add_argument("--n", type=int_at_least(1, example="--n 5"), metavar="N", default=None,
                   help="number of questions (drill default: 10; mock default: until time is up)")
    p.add_argument("--mock", type=positive_number("minutes", "--mock 20"), metavar="MINUTES", default=None,
                   help="mock interview: MINUTES of mixed questions, no hints, a score report by topic at the end")
    p.add_argument("--db", metavar="PATH", default=None,
                   help="progress database (default: progress.sqlite in coursekit's user data folder, "
                        "or $COURSEKIT_DATA)")
    p.add_argument("--stats", action="store_true", help="show progress by chapter and the weakest topics, then exit")
    p.add_argument("--seed", type=int, metavar="S", default=None,
                   help="random seed: question order among equals and the numbers in generated questions")
    add_bank_option(p)
    p.set_defaults(func=run, interrupted="every answer given so far is saved")
    return p


def run(args) -> int:
    if args.db and (Path(args.db).expanduser().is_dir() or Path(args.db).expanduser().parent.is_dir()):
        check_output_file("--db", args.db)  # a folder or an unwritable place: a usage error, before any question
    common = {"chapter": args.chapter, "topic": args.topic, "db": args.db, "bank_dir": args.bank}
    if args.stats:
        drill.print_stats(db=args.db, chapter=args.chapter, bank_dir=args.bank)
    elif args.mock is not None:
        drill.run_mock(args.mock, n=args.n, seed=args.seed, **common)
    else:
        drill.run_drill(n=args.n or 10, seed=args.seed, **common)
    return 0
