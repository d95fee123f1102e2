"""``coursekit quiz stats`` / ``coursekit quiz export``: inspect and export the question bank."""
from __future__ import annotations

import argparse
import json

from coursekit.cli.drill import add_bank_option
from coursekit.quiz import catalog, export

DESCRIPTION = "Inspect and export the question bank behind 'coursekit drill' and the notebook quizzes."
EXPORT_DESCRIPTION = """\
Write the question bank to PATH: Markdown grouped by chapter, or a tab-separated file (front, back, tags)
that Anki imports with File > Import (one note per question, tagged with chapter, topic, difficulty and id).
Parameterised questions are written as one instance (--seed). An existing PATH is kept unless --force.

examples:
  coursekit quiz export quiz.md
  coursekit quiz export --format anki --chapter 2 ch02_anki.txt
"""
_Formatter = argparse.RawDescriptionHelpFormatter


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("quiz", help="inspect or export the question bank", description=DESCRIPTION,
                              formatter_class=_Formatter)
    sub = p.add_subparsers(dest="quiz_command", metavar="{stats,export}", required=True)
    stats = sub.add_parser("stats", help="question counts by chapter, topic, type and difficulty",
                           description="Count the bank's questions by chapter, topic, type and difficulty.",
                           formatter_class=_Formatter)
    stats.add_argument("--json", action="store_true", help="print the counts as JSON")
    add_bank_option(stats)
    stats.set_defaults(func=run_stats)
    exp = sub.add_parser("export", help="write the bank as Markdown or an Anki import file",
                         description=EXPORT_DESCRIPTION, formatter_class=_Formatter)
    exp.add_argument("path", metavar="PATH", help="output file (e.g. quiz.md or quiz.txt)")
    exp.add_argument("--format", choices=export.FORMATS, default="markdown", help="output format (default: markdown)")
    exp.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    exp.add_argument("--chapter", metavar="C", help="only chapter C")
    exp.add_argument("--topic", metavar="T", help="only topic T")
    exp.add_argument("--seed", type=int, default=0, metavar="S",
                     help="seed of the generated question instances (default: 0)")
    add_bank_option(exp)
    exp.set_defaults(func=run_export)
    return p


def run_stats(args) -> int:
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


def run_export(args) -> int:
    count = export.export_bank(args.path, args.format, force=args.force, chapter=args.chapter, topic=args.topic,
                               seed=args.seed, bank_dir=args.bank)
    print(f"wrote {count} questions to {args.path} ({args.format})")
    return 0
