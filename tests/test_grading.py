"""The grading pipeline on a tiny fixture chapter: authoring, build, check robustness, instructor workflow.

Every score here comes from a real nbgrader autograde (the reference), never from our own parsing.
"""
import csv
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from coursekit.grading import SourceError, build, check_notebook, compile_source, init_course, parse_source

FIXTURE = Path(__file__).parent / "fixtures" / "99_demo.py"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def course_repo(tmp_path_factory):
    """A miniature course repository: solutions/src/99_demo.py built into solutions/ and notebooks/."""
    root = tmp_path_factory.mktemp("repo")
    (root / "solutions" / "src").mkdir(parents=True)
    shutil.copy(FIXTURE, root / "solutions" / "src" / FIXTURE.name)
    build(root)
    return root


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- authoring -------------------------------------------------------------------------------------------

def test_compiled_cells_carry_nbgrader_metadata():
    nb = compile_source(FIXTURE.read_text())
    meta = {c.id: c.metadata.get("nbgrader") for c in nb.cells}
    assert meta["ex1_double"] == {"grade_id": "ex1_double", "schema_version": 3, "task": False,
                                  "grade": False, "solution": True, "locked": False}
    assert meta["ex1_double_tests"]["points"] == 2 and meta["ex1_double_tests"]["locked"]
    assert meta["setup"]["locked"] and not meta["setup"]["grade"]
    assert nb.metadata.kernelspec.name == "python3"
    assert nbformat.writes(nb) == nbformat.writes(compile_source(FIXTURE.read_text()))  # deterministic


@pytest.mark.parametrize("text, message", [
    ('# %% tests="t"\nassert 1', "points"),
    ('# %% solution="bad id!"\nx = 1', "must be 1-64"),
    ('# %% [markdown] solution="s"\nx', "must be a code cell"),
    ('# %% id="a"\nx = 1\n\n# %% id="a"\ny = 2', "duplicate"),
    ('# %% shiny="x"\nx = 1', "unknown cell header"),
    ('# %% locked="a" tests="b" points=1\nx = 1', "one role"),
    ('# %% points=2\nx = 1', "tests cell only"),
])
def test_bad_sources_are_rejected_with_the_cell(text, message):
    with pytest.raises(SourceError, match=message):
        parse_source(text, "demo.py")


# --- build -----------------------------------------------------------------------------------------------

def test_student_notebook_has_stubs_and_no_hidden_tests(course_repo):
    text = (course_repo / "notebooks" / "99_demo.ipynb").read_text()
    assert "raise NotImplementedError()" in text
    assert "double(-3)" not in text and "BEGIN SOLUTION" not in text and "return 2 * x" not in text
    assert build(course_repo, check=True) == []


def test_rebuild_keeps_a_backup_of_learner_work(course_repo, tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(course_repo, root)
    student = root / "notebooks" / "99_demo.ipynb"
    nb = nbformat.read(student, as_version=4)
    nb.cells[2].source = "def double(x):\n    return x + x  # my answer"
    nbformat.write(nb, student)
    (root / "solutions" / "src" / "99_demo.py").write_text(FIXTURE.read_text() + "\n# %% [markdown]\n# A new closing note.\n")
    written = build(root)
    backups = [item.backup for item in written if item.backup]
    assert len(backups) == 1 and "my answer" in backups[0].read_text()
    assert "A new closing note" in student.read_text()


# --- check -----------------------------------------------------------------------------------------------

def solved_copy(course_repo, tmp_path, edit=None) -> Path:
    """The student notebook with correct answers typed in (as a learner would), optionally edited further."""
    nb = nbformat.read(course_repo / "notebooks" / "99_demo.ipynb", as_version=4)
    answers = {"ex1_double": "def double(x):\n    return 2 * x", "ex2_half": "def half(x):\n    return x / 2"}
    for cell in nb.cells:
        if cell.id in answers:
            cell.source = answers[cell.id]
    if edit:
        edit(nb)
    path = tmp_path / "99_demo.ipynb"
    nbformat.write(nb, path)
    return path


def test_solution_full_marks_blank_zero_and_files_untouched(course_repo):
    for name, expected in (("solutions", 3), ("notebooks", 0)):
        path = course_repo / name / "99_demo.ipynb"
        before = digest(path)
        result = check_notebook(path, root=course_repo)
        assert (result.score, result.max_score) == (expected, 3)
        assert digest(path) == before
    assert result.exercises[0].error.startswith("NotImplementedError")
    assert "not answered yet" in result.exercises[0].hint


def test_learner_answers_graded_with_hidden_tests(course_repo, tmp_path):
    def wrong_for_negatives(nb):
        nb.cells[2].source = "def double(x):\n    return 2 * abs(x)"  # passes the visible test only

    path = solved_copy(course_repo, tmp_path, wrong_for_negatives)
    result = check_notebook(path, root=course_repo)
    scores = {e.grade_id: e.score for e in result.exercises}
    assert scores == {"ex1_double_tests": 0, "ex2_half_tests": 1}
    assert result.exercises[0].error.startswith("AssertionError")


def test_check_survives_duplicated_cells_edited_locked_cells_and_stderr(course_repo, tmp_path):
    def mess_up(nb):
        copy = nbformat.from_dict(json.loads(json.dumps(nb.cells[2])))  # a pasted duplicate of a graded cell
        copy.id = "pasted"
        nb.cells.insert(3, copy)
        tests = next(c for c in nb.cells if c.id == "ex1_double_tests")
        tests.source = "pass  # the learner 'fixed' the test"
        nb.cells[2].source += "\nimport sys; print('UserWarning: noisy', file=sys.stderr)"
        nb.metadata["kernelspec"]["name"] = "my-env"

    path = solved_copy(course_repo, tmp_path, mess_up)
    result = check_notebook(path, root=course_repo)
    assert (result.score, result.max_score) == (3, 3)


def test_edited_locked_test_cannot_rescue_a_wrong_answer(course_repo, tmp_path):
    def cheat(nb):
        nb.cells[2].source = "def double(x):\n    return 0"
        next(c for c in nb.cells if c.id == "ex1_double_tests").source = "pass"

    result = check_notebook(solved_copy(course_repo, tmp_path, cheat), root=course_repo)
    assert result.score == 1  # only ex2: the original test was restored from the gradebook


def test_deleted_cells_are_restored_and_graded_instead_of_crashing(course_repo, tmp_path):
    def delete_test(nb):
        nb.cells = [c for c in nb.cells if c.id != "ex2_half_tests"]

    result = check_notebook(solved_copy(course_repo, tmp_path, delete_test), root=course_repo)
    assert (result.score, result.max_score) == (3, 3)  # the test cell comes back from the gradebook

    def delete_answer(nb):
        nb.cells = [c for c in nb.cells if c.id != "ex2_half"]

    result = check_notebook(solved_copy(course_repo, tmp_path, delete_answer), root=course_repo)
    assert {e.grade_id: e.score for e in result.exercises} == {"ex1_double_tests": 2, "ex2_half_tests": 0}


def test_bad_notebook_paths_give_clear_errors(course_repo, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_notebook(tmp_path / "99_demo.ipynb", root=course_repo)
    other = tmp_path / "42_unknown.ipynb"
    other.write_text("{}")
    with pytest.raises(ValueError, match="not a course notebook; known chapters: 99_demo"):
        check_notebook(other, root=course_repo)
    broken = tmp_path / "sub" / "99_demo.ipynb"
    broken.parent.mkdir()
    broken.write_text('{"cells": [')
    with pytest.raises(ValueError, match="not a readable notebook"):
        check_notebook(broken, root=course_repo)


# --- instructor workflow ---------------------------------------------------------------------------------

def test_course_init_refuses_to_overwrite(course_repo, tmp_path):
    target = tmp_path / "course"
    created = init_course(target, root=course_repo)
    assert created == [target / "source" / "99_demo" / "99_demo.ipynb"]
    assert (target / "nbgrader_config.py").exists()
    with pytest.raises(FileExistsError, match="not empty"):
        init_course(target, root=course_repo)


def test_plain_nbgrader_commands_work_on_an_initialised_course(course_repo, tmp_path):
    course = tmp_path / "course"
    init_course(course, root=course_repo)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    def nbgrader(*args):
        done = subprocess.run([str(bin_dir / "nbgrader"), *args], cwd=course, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

    nbgrader("generate_assignment", "99_demo", "--force")
    student_dir = course / "submitted" / "alice" / "99_demo"
    student_dir.mkdir(parents=True)
    shutil.copy(course / "release" / "99_demo" / "99_demo.ipynb", student_dir)
    (course / "submitted" / "bob" / "99_demo").mkdir(parents=True)
    shutil.copy(course_repo / "solutions" / "99_demo.ipynb", course / "submitted" / "bob" / "99_demo")
    nbgrader("autograde", "99_demo")
    nbgrader("generate_feedback", "99_demo")
    nbgrader("export")
    with open(course / "grades.csv", newline="") as f:
        scores = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}
    assert scores == {"alice": (0.0, 3.0), "bob": (3.0, 3.0)}
    page = (course / "feedback" / "bob" / "99_demo" / "99_demo.html").read_text()
    feedback = html.unescape(re.sub(r"<[^>]+>", "", page))  # the code as a reader sees it
    assert "double(2) == 4" in feedback and "double(-3)" not in feedback  # hidden tests stay hidden
