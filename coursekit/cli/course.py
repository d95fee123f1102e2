"""``coursekit course init DIR``: a standard nbgrader course for instructors."""
from __future__ import annotations

from coursekit.grading import init_course

NEXT_STEPS = """
Next steps (standard nbgrader, run inside {dir}):
  nbgrader generate_assignment 00_measuring      # student version in release/
  nbgrader collect 00_measuring                  # or copy submissions to submitted/STUDENT/00_measuring/
  nbgrader autograde 00_measuring
  nbgrader generate_feedback 00_measuring        # hidden tests are cleared from feedback
  nbgrader export                                # grades.csv
  jupyter lab                                    # formgrader: the Nbgrader > Formgrader menu
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("course", help="instructor tools (nbgrader course set-up)",
                              description="Instructor tools.")
    sub = p.add_subparsers(dest="course_command", metavar="ACTION", required=True)
    init = sub.add_parser(
        "init", help="create a standard nbgrader course directory from solutions/",
        description="Create DIR with nbgrader_config.py and source/NN_topic/NN_topic.ipynb for every chapter. "
                    "DIR must be new or empty: nothing existing is ever overwritten.",
    )
    init.add_argument("dir", metavar="DIR", help="new course folder")
    init.set_defaults(func=run_init)


def run_init(args) -> int:
    created = init_course(args.dir)
    for path in created:
        print(f"created {path}")
    print(NEXT_STEPS.format(dir=args.dir))
    return 0
