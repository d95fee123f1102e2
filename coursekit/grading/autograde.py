"""``coursekit course autograde ASSIGNMENT --workers N [--db URL]``: a class graded in parallel into nbgrader's gradebook.

Every ``submitted/STUDENT/ASSIGNMENT/ASSIGNMENT.ipynb`` of a course made by ``coursekit course init`` is graded by
the sealed engine (:func:`coursekit.grading.engine.grade_sealed`, exactly what ``coursekit grade`` runs) in a pool
of ``workers`` processes, one grading kernel each. As each submission finishes, its scores go into nbgrader's
gradebook (``COURSE_DIR/gradebook.db``, or any SQLAlchemy URL nbgrader accepts, e.g.
``postgresql://user@host/db`` shared by several graders) as manual scores, so formgrader and ``nbgrader export``
show them; ``sealed_grades.csv`` and the feedback pages are written as by ``coursekit grade``, and for
submissions collected from nbgrader's exchange the pages are staged for ``nbgrader release_feedback``.

A submission that cannot be graded at all (not a notebook, a notebook of another chapter, no notebook) is
*rejected*: its message is reported, and it never overwrites what the gradebook already holds for that student
(a first submission that is rejected is recorded as 0 with the message, so formgrader lists the student).

With the hub's identity secret (``identity_secret``; see :mod:`coursekit.grading.identity`), a submission whose
``coursekit_identity.json`` is missing or does not prove the student id it is filed under (e.g. "submitted from
alice's server under bob's id") is rejected the same way, without being graded. Without a secret nothing is checked.

Worker processes help only with spare cores: each submission runs one kernel at a time, so ``workers`` beyond the
number of free cores adds waiting, not speed.
"""
from __future__ import annotations

import multiprocessing
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from coursekit._validate import check_int
from coursekit.grading import kernel as kernels
from coursekit.grading.classgrade import (
    StudentGrade,
    _failed,
    _grade_one,
    _submissions,
    assignment_source,
    read_csv,
    write_csv,
    write_feedback,
    write_gradebook,
)
from coursekit.grading.config import COURSE_ID, SEALED_CELL_TIMEOUT_S
from coursekit.grading.course import ensure_scripts_on_path
from coursekit.grading.engine import grade_sealed
from coursekit.grading.identity import verify
from coursekit.grading.key import load_key
from coursekit.grading.result import CheckResult

_KEYS: dict[str, object] = {}  # one parsed key per worker process and source notebook


@dataclass
class Graded:
    """One student's grade, whether the submission was rejected, and whether the gradebook got it."""

    student: str
    result: CheckResult
    rejected: bool = False
    written: bool = False
    kept: bool = False  # rejected, and the gradebook's earlier grades were kept

    @property
    def grade(self) -> StudentGrade:
        return StudentGrade(self.student, self.result)


def grade_submission(path: str, source: str, timeout: float) -> tuple[CheckResult, bool]:
    """Grade one submission in a worker process: the result, and whether it was rejected (nothing gradable)."""
    key = _KEYS.get(source)
    if key is None:
        key = _KEYS[source] = load_key(source)
    notebook = Path(path)
    if not notebook.is_file():
        return _grade_one(notebook, key, timeout), True
    try:
        result = grade_sealed(notebook, key=key, timeout=timeout)
    except (ValueError, FileNotFoundError) as exc:
        return _failed(notebook, key, str(exc)), True
    except BaseException:
        kernels.kill_all_kernels()
        raise
    return result, result.wrong_chapter


def gradebook_url(course: Path, db_url: str | None) -> str:
    """``db_url``, or the course's SQLite gradebook (which must exist: ``nbgrader generate_assignment`` makes it)."""
    if db_url is not None:
        if not isinstance(db_url, str) or "://" not in db_url:
            raise ValueError(f"--db must be a database URL such as sqlite:////abs/path/gradebook.db or "
                             f"postgresql://user@host:5432/dbname, got {db_url!r}")
        return db_url
    db = course / "gradebook.db"
    if not db.exists():
        raise FileNotFoundError(f"{db} does not exist: run `nbgrader generate_assignment ASSIGNMENT` in {course} "
                                "first (or give --db URL of the course's gradebook)")
    return f"sqlite:///{db}"


def _has_grades(url: str, assignment: str, student: str) -> bool:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(url, course_id=COURSE_ID) as gb:
        try:
            gb.find_submission(assignment, student)
        except MissingEntry:
            return False
        return True


def _check_gradebook(url: str, assignment: str) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    try:
        with Gradebook(url, course_id=COURSE_ID) as gb:
            gb.find_assignment(assignment)
    except MissingEntry:
        raise ValueError(f"the gradebook at {url} has no assignment {assignment!r}: run `nbgrader generate_assignment "
                         f"{assignment}` (with the same database URL) first") from None
    except Exception as exc:
        if type(exc).__name__ in ("OperationalError", "ArgumentError", "NoSuchModuleError", "InvalidRequestError"):
            raise ValueError(f"--db {url}: cannot open the gradebook ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0]})") from None
        raise


def autograde(course_dir, assignment: str, workers: int = 1, db_url: str | None = None,
              students: list[str] | None = None, timeout: float = SEALED_CELL_TIMEOUT_S,
              progress: Callable[[Graded], None] | None = None, identity_secret: bytes | None = None) -> list[Graded]:
    """Grade every submission of ``assignment`` in ``workers`` processes into the gradebook; see the module doc."""
    course, source = assignment_source(course_dir, assignment)
    workers = check_int("workers", workers, min_value=1)
    url = gradebook_url(course, db_url)
    ensure_scripts_on_path()  # nbgrader's Gradebook runs `alembic` on a new database
    _check_gradebook(url, assignment)
    key = load_key(source)
    submissions = _submissions(course, assignment, students)
    previous = read_csv(course)
    done: dict[str, Graded] = {}
    lock = threading.Lock()

    def record(graded: Graded) -> None:
        with lock:
            if graded.rejected and _has_grades(url, assignment, graded.student):
                graded.kept = True
            else:
                write_gradebook(course, assignment, key, [graded.grade], db_url=url)
                graded.written = True
            done[graded.student] = graded
            if progress:
                progress(graded)

    pool = ProcessPoolExecutor(max_workers=min(workers, len(submissions)),
                               mp_context=multiprocessing.get_context("spawn"))
    try:
        impostors = {student: reason for student, path in submissions.items() if identity_secret is not None
                     and (reason := verify(path.parent, COURSE_ID, assignment, student, identity_secret))}
        for student, reason in impostors.items():  # never graded: nothing of theirs is run
            record(Graded(student, _failed(submissions[student], key, reason), rejected=True))
        futures = {pool.submit(grade_submission, str(path), str(source), float(timeout)): student
                   for student, path in submissions.items() if student not in impostors}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                result, rejected = future.result()
                record(Graded(futures[future], result, rejected))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    graded = [done[s] for s in submissions]
    fresh = [g.grade for g in graded if not g.kept]  # a kept student's rows and feedback stay as they were
    write_csv(course, assignment, fresh, previous)
    stage_feedback(course, assignment, write_feedback(course, assignment, fresh))
    return graded


def stage_feedback(course: Path, assignment: str, pages: list[Path]) -> list[Path]:
    """Put each sealed feedback page where ``nbgrader release_feedback`` looks (``feedback/STUDENT/A/A.html``,
    beside the submission's ``timestamp.txt`` and ``submission_secret.txt``), for submissions collected from the
    exchange; nbgrader's own page there (which can quote hidden tests in tracebacks) is replaced."""
    staged = []
    for page in pages:
        student = page.parent.parent.name
        submitted = course / "submitted" / student / assignment
        if not (submitted / "submission_secret.txt").is_file():
            continue  # not from an exchange: nothing to release
        target = course / "feedback" / student / assignment
        target.mkdir(parents=True, exist_ok=True)
        for name in ("timestamp.txt", "submission_secret.txt"):
            shutil.copyfile(submitted / name, target / name)
        shutil.copyfile(page, target / page.name)
        staged.append(target / page.name)
    return staged


__all__ = ["Graded", "autograde", "grade_submission", "gradebook_url", "stage_feedback"]
