"""``coursekit course init DIR``: a standard nbgrader course for instructors."""
from __future__ import annotations

from coursekit.cli.errors import int_at_least, positive_number
from coursekit.grading import init_course
from coursekit.grading.config import SEALED_CELL_TIMEOUT_S

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
    auto = sub.add_parser(
        "autograde", help="sealed grading of a whole class in parallel, into nbgrader's gradebook",
        description="Grade every submitted/STUDENT/ASSIGNMENT/ASSIGNMENT.ipynb of the course with the sealed engine "
                    "(as `coursekit grade`) in N worker processes, and store the scores in nbgrader's gradebook "
                    "(formgrader and `nbgrader export` show them), sealed_grades.csv and feedback_sealed/. A "
                    "submission that cannot be graded (not a notebook, another chapter's notebook) never "
                    "overwrites the gradebook's earlier grades. Workers help only with free cores.",
    )
    auto.add_argument("assignment", metavar="ASSIGNMENT", help="e.g. 00_measuring")
    auto.add_argument("--course", default=".", metavar="DIR", help="the course folder (default: the current one)")
    auto.add_argument("--workers", type=int_at_least(1, "--workers 2"), default=1, metavar="N",
                      help="submissions graded at the same time, one process and kernel each (default 1)")
    auto.add_argument("--db", default=None, metavar="URL",
                      help="nbgrader's gradebook database URL (default sqlite:///DIR/gradebook.db; for several "
                           "graders e.g. postgresql://grader@dbhost:5432/gradebook)")
    auto.add_argument("--student", action="append", metavar="ID", help="grade only this student (repeatable)")
    auto.add_argument("--timeout", type=positive_number("seconds", "--timeout 300"), default=SEALED_CELL_TIMEOUT_S,
                      metavar="S", help=f"time limit per cell in seconds (default {SEALED_CELL_TIMEOUT_S})")
    auto.add_argument("--identity-secret-file", default=None, metavar="PATH",
                      help="the hub's identity secret (default: $COURSEKIT_IDENTITY_SECRET_FILE or "
                           "$COURSEKIT_IDENTITY_SECRET): reject submissions not proved to come from the student "
                           "they are filed under; without a secret identities are not checked")
    auto.set_defaults(func=run_autograde, interrupted="grades already stored in the gradebook stay there")


def run_init(args) -> int:
    created = init_course(args.dir)
    for path in created:
        print(f"created {path}")
    print(NEXT_STEPS.format(dir=args.dir))
    return 0


def run_autograde(args) -> int:
    from coursekit.grading.autograde import autograde
    from coursekit.grading.identity import load_secret

    def show(g) -> None:
        r = g.result
        why = next((e.error for e in r.exercises if e.error), "") or " | ".join(r.messages)
        if g.kept:
            note = f"  REJECTED, gradebook unchanged: {why}"
        elif g.rejected:
            note = f"  REJECTED (recorded as 0): {why}"
        else:
            note = f"  [{len(r.flags)} flag(s)]" if r.flags else ""
        print(f"{g.student}: {r.score:g}/{r.max_score:g} in {r.seconds:.1f} s{note}", flush=True)

    graded = autograde(args.course, args.assignment, workers=args.workers, db_url=args.db, students=args.student,
                       timeout=args.timeout, progress=show, identity_secret=load_secret(args.identity_secret_file))
    rejected = sum(g.rejected for g in graded)
    print(f"graded {len(graded) - rejected} submission(s), rejected {rejected}; scores are in the gradebook "
          f"(formgrader, nbgrader export), {args.course}/sealed_grades.csv and {args.course}/feedback_sealed/")
    return 1 if rejected else 0
