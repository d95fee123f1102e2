"""``coursekit grade COURSE_DIR ASSIGNMENT``: the sealed grader over a class, in nbgrader's course layout.

    COURSE_DIR/source/A/A.ipynb                       the instructor notebook (the grading key)
    COURSE_DIR/submitted/STUDENT/A/A.ipynb            each submission (as ``nbgrader collect`` leaves them)
    COURSE_DIR/sealed_grades.csv                      student, assignment, exercise, score, max, message, flags
    COURSE_DIR/feedback_sealed/STUDENT/A/A.html       per exercise: score and the learner-visible message

Run it instead of, or after, ``nbgrader autograde``. Verdicts are computed in this process (quiz keys from the
instructor's installed bank, never the student's), scores out of the source notebook's points. With
``write_gradebook`` the sealed scores go into nbgrader's gradebook as manual scores (extra credit on those cells
is cleared and their maximum restored from the source), so formgrader and ``nbgrader export`` show them.
Feedback never contains hidden-test source: only scores and the engine's messages.
"""
from __future__ import annotations

import csv
import html
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from coursekit._validate import check_int
from coursekit.grading import kernel as kernels
from coursekit.grading.config import COURSE_ID, SEALED_CELL_TIMEOUT_S
from coursekit.grading.engine import grade_sealed
from coursekit.grading.key import Key, load_key
from coursekit.grading.result import CheckResult, ExerciseScore

CSV_NAME = "sealed_grades.csv"
CSV_FIELDS = ["student", "assignment", "exercise", "score", "max", "message", "flags"]
TOTAL = "(total)"


@dataclass
class StudentGrade:
    student: str
    result: CheckResult


def _submissions(course: Path, assignment: str, students: list[str] | None) -> dict[str, Path]:
    root = course / "submitted"
    found = {p.name: p / assignment / f"{assignment}.ipynb"
             for p in sorted(root.iterdir()) if (p / assignment).is_dir()} if root.is_dir() else {}
    if students:
        unknown = [s for s in students if s not in found]
        if unknown:
            raise ValueError(f"--student {', '.join(unknown)}: no submitted/<student>/{assignment}/ folder; "
                             f"students with a submission: {', '.join(found) or 'none'}")
        found = {s: found[s] for s in students}
    if not found:
        raise FileNotFoundError(f"no submissions in {root}/<student>/{assignment}/: collect them first "
                                f"(nbgrader collect {assignment}, or copy them there)")
    return found


def _failed(path: Path, key: Key, message: str) -> CheckResult:
    return CheckResult(notebook=str(path), score=0.0, max_score=key.max_score,
                       exercises=[ExerciseScore(t.grade_id, 0.0, t.points, message) for t in key.tests],
                       messages=[message])


def _grade_one(path: Path, key: Key, timeout: float) -> CheckResult:
    if not path.exists():
        others = sorted(p.name for p in path.parent.glob("*.ipynb"))
        return _failed(path, key, f"no {path.name} in the submission" + (
            f" (found {', '.join(others)}: rename the notebook to {path.name})" if others else ""))
    try:
        return grade_sealed(path, key=key, timeout=timeout)
    except (ValueError, FileNotFoundError) as exc:  # an unreadable notebook still gets a row and a message
        return _failed(path, key, str(exc))


def read_csv(course: Path) -> list[dict]:
    """The rows of ``sealed_grades.csv`` (none if there is no such file yet)."""
    path = course / CSV_NAME
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if set(CSV_FIELDS) <= set(r)]


def write_csv(course: Path, assignment: str, grades: list[StudentGrade], previous: list[dict] | None = None) -> Path:
    """Write the rows of ``grades`` into ``sealed_grades.csv``, keeping the ``previous`` rows (read before grading
    started, so nothing a graded notebook wrote into the file survives) of other students and assignments."""
    path = course / CSV_NAME
    graded = {g.student for g in grades}
    rows = [r for r in (read_csv(course) if previous is None else previous)
            if not (r["assignment"] == assignment and r["student"] in graded)]
    for g in grades:
        r = g.result
        flags = " | ".join(r.flags)
        for e in r.exercises:
            rows.append({"student": g.student, "assignment": assignment, "exercise": e.grade_id, "score": f"{e.score:g}",
                         "max": f"{e.max_score:g}", "message": e.error or "", "flags": ""})
        rows.append({"student": g.student, "assignment": assignment, "exercise": TOTAL, "score": f"{r.score:g}",
                     "max": f"{r.max_score:g}", "message": " | ".join(r.messages + r.cell_errors), "flags": flags})
    rows.sort(key=lambda row: (row["assignment"], row["student"]))
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def feedback_html(student: str, assignment: str, result: CheckResult) -> str:
    """The student's feedback page: scores and learner-visible messages only (never test source, never flags)."""
    esc = html.escape
    rows = []
    for e in result.exercises:
        note = "".join(f"<div>{esc(text)}</div>" for text in (e.error, e.hint and f"hint: {e.hint}") if text)
        rows.append(f"<tr><td>{esc(e.grade_id)}</td><td>{e.score:g} / {e.max_score:g}</td><td>{note}</td></tr>")
    notes = "".join(f"<li>{esc(m)}</li>" for m in result.messages + result.cell_errors)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{esc(assignment)}: {esc(student)}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td{padding:.3em .8em;"
            "vertical-align:top;border-bottom:1px solid #ddd}</style></head><body>\n"
            f"<h1>{esc(assignment)}</h1><p>{esc(student)}: <b>{result.score:g} / {result.max_score:g}</b></p>\n"
            "<table><tr><th>exercise</th><th>score</th><th>notes</th></tr>\n" + "\n".join(rows) + "</table>\n"
            + (f"<h2>About your notebook</h2><ul>{notes}</ul>\n" if notes else "") + "</body></html>\n")


def write_feedback(course: Path, assignment: str, grades: list[StudentGrade]) -> list[Path]:
    written = []
    for g in grades:
        path = course / "feedback_sealed" / g.student / assignment / f"{assignment}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(feedback_html(g.student, assignment, g.result), encoding="utf-8")
        written.append(path)
    return written


def write_gradebook(course: Path, assignment: str, key: Key, grades: list[StudentGrade],
                    db_url: str | None = None) -> None:
    """Store the sealed scores in ``COURSE_DIR/gradebook.db`` (or the database at nbgrader's ``db_url``, e.g.
    ``postgresql://...``) as manual scores (nbgrader's Gradebook API)."""
    from nbgrader.api import Gradebook, MissingEntry

    if db_url is None:
        db = course / "gradebook.db"
        if not db.exists():
            raise FileNotFoundError(f"{db} does not exist: run `nbgrader generate_assignment {assignment}` in {course} "
                                    "first")
        db_url = f"sqlite:///{db}"
    with Gradebook(db_url, course_id=COURSE_ID) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy chatter from inside nbgrader's add_submission
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise ValueError(f"the gradebook has no assignment {assignment!r}: run `nbgrader generate_assignment "
                             f"{assignment}` in {course} first") from None
        for tests in key.tests:  # the maximum of each cell is the source's, whatever a kernel wrote there
            try:
                gb.find_grade_cell(tests.grade_id, assignment, assignment).max_score = tests.points
            except MissingEntry:
                raise ValueError(f"the gradebook's {assignment!r} has no grade cell {tests.grade_id!r}: the source "
                                 f"notebook changed since `nbgrader generate_assignment`; run it again") from None
        for g in grades:
            gb.update_or_create_student(g.student)
            try:
                gb.find_submission(assignment, g.student)
            except MissingEntry:
                gb.add_submission(assignment, g.student)
            for e in g.result.exercises:
                grade = gb.find_grade(e.grade_id, assignment, assignment, g.student)
                grade.manual_score, grade.extra_credit, grade.needs_manual_grade = e.score, None, False
        gb.db.commit()


def assignment_source(course_dir, assignment: str) -> tuple[Path, Path]:
    """``(course folder, source/ASSIGNMENT/ASSIGNMENT.ipynb)``; an error naming what is missing otherwise."""
    course = Path(course_dir)
    if not course.is_dir():
        raise FileNotFoundError(f"COURSE_DIR {str(course)!r} is not a directory (make one with `coursekit course init`)")
    source = course / "source" / assignment / f"{assignment}.ipynb"
    if not source.exists():
        known = sorted(p.name for p in (course / "source").iterdir()) if (course / "source").is_dir() else []
        raise FileNotFoundError(f"ASSIGNMENT {assignment!r}: no {source}; assignments in this course: "
                                f"{', '.join(known) or 'none'}")
    return course, source


def grade_course(course_dir, assignment: str, students: list[str] | None = None,
                 timeout: float = SEALED_CELL_TIMEOUT_S, jobs: int = 1, gradebook: bool = False,
                 progress: Callable[[StudentGrade], None] | None = None) -> list[StudentGrade]:
    """Grade every submission of ``assignment`` (or only ``students``) with the sealed engine; write the CSV, the
    feedback pages and, with ``gradebook``, the gradebook. Returns the grades in student order."""
    course, source = assignment_source(course_dir, assignment)
    jobs = check_int("jobs", jobs, min_value=1)
    key = load_key(source)
    submissions = _submissions(course, assignment, students)
    previous = read_csv(course)
    lock, stopping = threading.Lock(), threading.Event()

    def one(student: str) -> StudentGrade:
        grade = StudentGrade(student, _grade_one(submissions[student], key, timeout))
        if progress and not stopping.is_set():  # a run cut short by Ctrl-C is not a grade
            with lock:
                progress(grade)
        return grade

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        grades = list(pool.map(one, submissions))
    except BaseException:
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        kernels.kill_all_kernels()
        raise
    pool.shutdown()
    write_csv(course, assignment, grades, previous)
    write_feedback(course, assignment, grades)
    if gradebook:
        write_gradebook(course, assignment, key, grades)
    return grades


__all__ = ["CSV_NAME", "StudentGrade", "feedback_html", "grade_course", "read_csv", "write_csv", "write_feedback",
           "write_gradebook"]
