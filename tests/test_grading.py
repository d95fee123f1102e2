"""The grading pipeline on a tiny fixture chapter: authoring, build, and the instructor workflow (plain nbgrader,
then ``coursekit grade`` over the same course). The sealed engine's attacks and repairs are in test_sealed.py.

Scores are checked against the fixture's points and the answers typed in (hand-computed), and nbgrader's own
``export`` reads back what ``coursekit grade --write-gradebook`` stored.
"""
import csv
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from coursekit.cli import main
from coursekit.grading import SourceError, build, compile_source, init_course, parse_source
from coursekit.grading.classgrade import CSV_NAME

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
    assert "SEALED-FIXTURE-7391" not in text and "sealed_test" not in text
    assert "BEGIN SOLUTION" not in text and "return 2 * x" not in text
    assert build(course_repo, check=True) == []


def test_rebuild_keeps_a_backup_of_learner_work(course_repo, tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(course_repo, root)
    student = root / "notebooks" / "99_demo.ipynb"
    nb = nbformat.read(student, as_version=4)
    next(c for c in nb.cells if c.id == "ex1_double").source = "def double(x):\n    return x + x  # my answer"
    nbformat.write(nb, student)
    (root / "solutions" / "src" / "99_demo.py").write_text(FIXTURE.read_text() + "\n# %% [markdown]\n# A new closing note.\n")
    written = build(root)
    backups = [item.backup for item in written if item.backup]
    assert len(backups) == 1 and "my answer" in backups[0].read_text()
    assert "A new closing note" in student.read_text()


# --- instructor workflow ---------------------------------------------------------------------------------

def test_course_init_refuses_to_overwrite(course_repo, tmp_path):
    target = tmp_path / "course"
    created = init_course(target, root=course_repo)
    assert created == [target / "source" / "99_demo" / "99_demo.ipynb"]
    assert (target / "nbgrader_config.py").exists()
    with pytest.raises(FileExistsError, match="not empty"):
        init_course(target, root=course_repo)


WRONG_WITH_ATTACK = """import pathlib, sqlite3, torch
torch.allclose = lambda *a, **k: True
def double(x):
    return x + 2
db = pathlib.Path({db!r})
if db.exists():  # rewrite the gradebook from inside the kernel: every cell worth 0, every score 99
    con = sqlite3.connect(db)
    con.execute("UPDATE grade_cells SET max_score = 0")
    con.execute("UPDATE grade SET auto_score = 99, extra_credit = 99")
    con.commit()
"""


def test_plain_nbgrader_then_coursekit_grade_on_an_initialised_course(course_repo, tmp_path, capsys):
    course = tmp_path / "course"
    init_course(course, root=course_repo)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    def nbgrader(*args):
        done = subprocess.run([str(bin_dir / "nbgrader"), *args], cwd=course, env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]

    def submit(student, notebook, edit=None, name="99_demo.ipynb"):
        nb = nbformat.read(notebook, as_version=4)
        if edit:
            edit(nb)
        folder = course / "submitted" / student / "99_demo"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / name)

    def attack(nb):
        answer = next(c for c in nb.cells if c.get("id") == "ex1_double")
        answer.source = WRONG_WITH_ATTACK.format(db=str(course / "gradebook.db"))

    def wrong_double(nb):  # every answer typed in, double() wrong on the hidden cases only
        answers = {"ex1_double": "def double(x):\n    return x + 2", "ex2_half": "def half(x):\n    return x / 2",
                   "ex3_scale": "def scale(t, s):\n    return t / s",
                   "ex4_memory": "def weight_memory_gb(n, bits):\n    return n * bits / 8 / 1e9",
                   "quiz_answers": 'answers = {"q1": "4", "q2": "Paris", "q3": "9"}'}
        for c in nb.cells:
            c.source = answers.get(c.get("id"), c.source)

    def exported():
        nbgrader("export")
        with open(course / "grades.csv", newline="") as f:
            return {r["student_id"]: (float(r["score"]), float(r["max_score"])) for r in csv.DictReader(f)}

    nbgrader("generate_assignment", "99_demo", "--force")
    release = course / "release" / "99_demo" / "99_demo.ipynb"
    submit("alice", release)
    submit("bob", course_repo / "solutions" / "99_demo.ipynb")
    submit("carol", release, attack)
    submit("amy", release, wrong_double)  # graded before carol (nbgrader goes in name order)
    nbgrader("autograde", "99_demo")
    nbgrader("generate_feedback", "99_demo")
    for student in ("bob", "amy"):
        page = (course / "feedback" / student / "99_demo" / "99_demo.html").read_text()
        feedback = html.unescape(re.sub(r"<[^>]+>", "", page))  # the code as a reader sees it
        assert "double(2)" in feedback  # visible tests are shown; hidden ones never, tracebacks included:
        for hidden in ("SEALED-FIXTURE-7391", "def _check", "sealed_test(_probe", "for x in XS"):
            assert hidden not in feedback, (student, hidden)
    assert "AssertionError: double on hidden cases: x + 2 instead of 2 * x" in feedback  # amy's, one line
    # plain nbgrader is fooled: carol's cell rewrote the gradebook (every maximum 0, scores of 99 + 99)
    plain = exported()
    assert {student: total for student, (_, total) in plain.items()} == dict.fromkeys(("alice", "bob", "carol", "amy"), 0.0)
    assert plain["alice"][0] == 990.0

    submit("dave", release, name="my_copy.ipynb")  # a submission under the wrong file name
    code = main(["grade", str(course), "99_demo", "--jobs", "2", "--write-gradebook"])
    out = capsys.readouterr().out
    assert code == 0 and "graded 5 submission(s)" in out
    assert exported() == {"alice": (0.0, 10.0), "bob": (10.0, 10.0), "carol": (0.0, 10.0), "dave": (0.0, 10.0),
                          "amy": (8.0, 10.0)}

    with open(course / CSV_NAME, newline="") as f:
        rows = list(csv.DictReader(f))
    totals = {r["student"]: (float(r["score"]), float(r["max"])) for r in rows if r["exercise"] == "(total)"}
    assert totals == {"alice": (0, 10), "bob": (10, 10), "carol": (0, 10), "dave": (0, 10), "amy": (8, 10)}
    carol = next(r for r in rows if r["student"] == "carol" and r["exercise"] == "(total)")
    assert "assigns to torch.allclose" in carol["flags"] and "sqlite3" in carol["flags"]
    dave = next(r for r in rows if r["student"] == "dave" and r["exercise"] == "ex1_double_tests")
    assert dave["message"] == "no 99_demo.ipynb in the submission (found my_copy.ipynb: rename the notebook to 99_demo.ipynb)"
    for student in ("alice", "bob", "carol", "dave", "amy"):
        page = (course / "feedback_sealed" / student / "99_demo" / "99_demo.html").read_text()
        text = html.unescape(page)
        for hidden in ("BEGIN HIDDEN TESTS", "SEALED-FIXTURE-7391", "def _check", "flag"):
            assert hidden not in text
    alice = html.unescape((course / "feedback_sealed" / "alice" / "99_demo" / "99_demo.html").read_text())
    assert "0 / 10" in alice and "NotImplementedError" in alice and "not answered yet" in alice

    # grading one student again keeps the others' rows
    assert main(["grade", str(course), "99_demo", "--student", "bob"]) == 0
    with open(course / CSV_NAME, newline="") as f:
        assert {r["student"] for r in csv.DictReader(f)} == {"alice", "bob", "carol", "dave", "amy"}


def test_grade_command_rejects_bad_arguments_in_one_line(course_repo, tmp_path, capsys):
    course = tmp_path / "course"
    init_course(course, root=course_repo)
    for args, message in ((["grade", str(tmp_path / "nope"), "99_demo"], "is not a directory"),
                          (["grade", str(course), "42_unknown"], "assignments in this course: 99_demo"),
                          (["grade", str(course), "99_demo"], "no submissions"),
                          (["grade", str(course), "99_demo", "--student", "zoe"], "--student zoe: no submitted/"),
                          (["grade", str(course), "99_demo", "--jobs", "0"], "--jobs")):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_build_rejects_a_tests_cell_without_a_sealed_test():
    unsealed = FIXTURE.read_text().replace("sealed_test(_probe, _check)\n### END HIDDEN TESTS\nprint(\"Exercise 1",
                                           "### END HIDDEN TESTS\nprint(\"Exercise 1")
    assert unsealed != FIXTURE.read_text()
    with pytest.raises(SourceError, match="'ex1_double_tests': the hidden tests must call sealed_test"):
        compile_source(unsealed, "99_demo.py")
