"""``coursekit grade COURSE_DIR ASSIGNMENT``: sealed grading of a class in an nbgrader course directory."""
from __future__ import annotations

from coursekit.cli.errors import int_at_least, positive_number
from coursekit.grading.config import SEALED_CELL_TIMEOUT_S


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "grade", help="instructors: sealed grading of every submission of an assignment",
        description="Grade COURSE_DIR/submitted/STUDENT/ASSIGNMENT/ASSIGNMENT.ipynb against "
                    "COURSE_DIR/source/ASSIGNMENT/ASSIGNMENT.ipynb with the sealed engine (verdicts and quiz keys "
                    "stay in this process; scores out of the source notebook's points). Writes "
                    "COURSE_DIR/sealed_grades.csv and COURSE_DIR/feedback_sealed/STUDENT/ASSIGNMENT/ASSIGNMENT.html "
                    "(scores and messages, never hidden tests). Run it instead of, or after, `nbgrader autograde`.",
    )
    p.add_argument("course_dir", metavar="COURSE_DIR", help="an nbgrader course (e.g. made by `coursekit course init`)")
    p.add_argument("assignment", metavar="ASSIGNMENT", help="e.g. 00_measuring")
    p.add_argument("--student", action="append", metavar="ID", help="grade only this student (repeatable)")
    p.add_argument("--timeout", type=positive_number("seconds", "--timeout 300"), default=SEALED_CELL_TIMEOUT_S,
                   metavar="S", help=f"time limit per cell in seconds (default {SEALED_CELL_TIMEOUT_S})")
    p.add_argument("--jobs", type=int_at_least(1, "--jobs 2"), default=1, metavar="N",
                   help="submissions graded at the same time (one kernel each; default 1)")
    p.add_argument("--write-gradebook", action="store_true",
                   help="also store the sealed scores in gradebook.db as manual scores (formgrader, nbgrader export)")
    p.set_defaults(func=run, interrupted="nothing was written")


def run(args) -> int:
    from coursekit.grading import grade_course

    def show(grade) -> None:
        r = grade.result
        flagged = f"  [{len(r.flags)} flag(s)]" if r.flags else ""
        print(f"{grade.student}: {r.score:g}/{r.max_score:g}{flagged}", flush=True)

    grades = grade_course(args.course_dir, args.assignment, students=args.student, timeout=args.timeout,
                          jobs=args.jobs, gradebook=args.write_gradebook, progress=show)
    print(f"graded {len(grades)} submission(s); wrote {args.course_dir}/sealed_grades.csv and "
          f"{args.course_dir}/feedback_sealed/" + (" and the gradebook" if args.write_gradebook else ""))
    return 0
