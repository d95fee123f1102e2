"""The sealed grader against the attacks and accidents of issue 15, on the fixture chapter tests/fixtures/99_demo.py.

Every notebook here is graded for real: a fresh kernel runs it, the instructor's checks run in this process. The
reference for each score is the fixture's points (2 + 1 + 2 + 2 + 3) and the answers typed in, written by hand.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from coursekit.cli import main
from coursekit.grading import check_notebook, format_result, init_course
from coursekit.grading import kernel as kernels
from coursekit.grading.key import SealedError, load_key, read_key, validate

FIXTURES = Path(__file__).parent / "fixtures"
pytestmark = pytest.mark.slow
POINTS = {"ex1_double_tests": 2, "ex2_half_tests": 1, "ex3_scale_tests": 2, "ex4_memory_tests": 2,
          "quiz_answers_tests": 3}
RIGHT = {"ex1_double": "def double(x):\n    return 2 * x",
         "ex2_half": "def half(x):\n    return x / 2",
         "ex3_scale": "def scale(t, s):\n    return t / s",
         "ex4_memory": "def weight_memory_gb(num_params, bits):\n    return num_params * bits / 8 / 1e9",
         "quiz_answers": 'answers = {"q1": "4", "q2": "Paris", "q3": "9"}'}
HIDDEN_BITS = ("BEGIN HIDDEN TESTS", "SEALED-FIXTURE-7391", "def _probe", "def _check", "memory_bytes(n, name)")



def cell(nb, grade_id):
    return next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)


def learner(course_repo, tmp_path, answers=RIGHT, edit=None, name="99_demo") -> Path:
    """The student notebook with ``answers`` typed in (as a learner would), then ``edit(nb)`` applied."""
    nb = nbformat.read(course_repo / "notebooks" / f"{name}.ipynb", as_version=4)
    for grade_id, source in (answers or {}).items():
        cell(nb, grade_id).source = source
    if edit:
        edit(nb)
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def insert_after(nb, grade_id, source):
    """A new ungraded learner cell right after the cell with ``grade_id``."""
    index = nb.cells.index(cell(nb, grade_id))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))


def scores(result):
    return {e.grade_id: e.score for e in result.exercises}


def grade(course_repo, path, timeout=60):
    result = check_notebook(path, root=course_repo, timeout=timeout)
    assert result.max_score == sum(POINTS.values())  # the total is always the instructor notebook's
    return result


# --- full, zero, partial ----------------------------------------------------------------------------------

def test_solution_full_marks_blank_zero_and_files_untouched(course_repo):
    for folder, expected in (("solutions", 10), ("notebooks", 0)):
        path = course_repo / folder / "99_demo.ipynb"
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        result = grade(course_repo, path)
        assert result.score == expected and result.flags == []
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert result.exercises[0].error == "NotImplementedError" and "not answered yet" in result.exercises[0].hint
    text = format_result(result)
    assert "question bank installed here" in text and "not a sandbox" in text


def test_typed_answers_full_marks_and_partial_credit_on_the_quiz(course_repo, tmp_path):
    answers = {**RIGHT, "quiz_answers": 'answers = {"q1": "4", "q2": "Lyon", "q3": "9"}'}
    result = grade(course_repo, learner(course_repo, tmp_path, answers))
    assert scores(result) == {**POINTS, "quiz_answers_tests": 2}
    quiz = result.exercises[-1]
    assert quiz.error == "partial credit: wrong or missing: q2"


def test_wrong_answers_lose_their_points_with_the_check_message(course_repo, tmp_path):
    answers = {**RIGHT, "ex1_double": "def double(x):\n    return 2 * abs(x)",  # passes the visible test only
               "ex4_memory": "def weight_memory_gb(num_params, bits):\n    return num_params * bits / 8 / 2**30"}
    result = grade(course_repo, learner(course_repo, tmp_path, answers))
    assert scores(result) == {**POINTS, "ex1_double_tests": 0, "ex4_memory_tests": 0}
    errors = {e.grade_id: e.error for e in result.exercises}
    assert errors["ex1_double_tests"] == ("hidden test failed: double on hidden cases: 2 * abs(x): the sign of "
                                          "negative inputs is lost")
    assert errors["ex4_memory_tests"].startswith("AssertionError: weight_memory_gb(7e9, 32)")  # the visible test
    delegating = {**RIGHT, "ex4_memory": "from coursekit.formats import memory_bytes\n"
                                         "def weight_memory_gb(n, bits):\n"
                                         "    return memory_bytes(int(n), {32: 'fp32', 16: 'fp16', 8: 'int8'}[bits]) / 1e9"}
    result = grade(course_repo, learner(course_repo, tmp_path, delegating))
    assert scores(result)["ex4_memory_tests"] == 0
    assert "Exercise 4 asks you to write this yourself" in result.exercises[3].error


# --- attacks: no cell in the kernel can turn a wrong answer into points -------------------------------------

WRONG = {"ex1_double": "def double(x):\n    return x + 2",
         "ex2_half": "def half(x):\n    return x // 2",
         "ex3_scale": "def scale(t, s):\n    return t * s",
         "ex4_memory": "def weight_memory_gb(num_params, bits):\n    return 0.0",
         "quiz_answers": 'answers = {"q1": "5", "q2": "Rome", "q3": "6"}'}

ATTACKS = {
    "input_transformers_cleanup": "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])",
    "ast_transformer_try_except": (
        "import ast\n"
        "class Swallow(ast.NodeTransformer):\n"
        "    def visit_Module(self, node):\n"
        "        handler = ast.ExceptHandler(type=ast.Name('BaseException', ast.Load()), name=None, body=[ast.Pass()])\n"
        "        node.body = [ast.Try(body=node.body or [ast.Pass()], handlers=[handler], orelse=[], finalbody=[])]\n"
        "        return ast.fix_missing_locations(node)\n"
        "get_ipython().ast_transformers.append(Swallow())"),
    "patched_library_functions": (
        "import builtins, sys, torch\n"
        "builtins.abs = lambda x: 0\n"
        "torch.allclose = lambda *a, **k: True\n"
        "torch.equal = lambda *a, **k: True\n"
        "sys.modules['coursekit.formats'].memory_bytes = lambda *a, **k: 0\n"
        "import coursekit.grading.sealed as s\n"
        "s.expect_close = lambda *a, **k: None\n"
        "s.partial = lambda results: (1.0, None)\n"
        "s.run_check = lambda check, data: (1.0, None)"),
    "forged_answer_lines": (
        "import os, coursekit.grading.sealed as s\n"
        "s.sealed_test = lambda probe, check, points=None: print(os.environ['COURSEKIT_SEAL'] + '{\"y\": [1, 2]}')"),
    "leak_hidden_source_in_an_error": (
        "def leak(lines):\n"
        "    if any('sealed_test' in line for line in lines):\n"
        "        raise ValueError(' | '.join(line.strip() for line in lines))\n"
        "    return lines\n"
        "get_ipython().input_transformers_cleanup.append(leak)"),
    "custom_exception_handler": (
        "get_ipython().set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)"),
    "gradebook_rewrite": (
        "import pathlib, sqlite3\n"
        "for folder in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents]:\n"
        "    db = folder / 'gradebook.db'\n"
        "    if db.exists():\n"
        "        con = sqlite3.connect(db); con.execute('UPDATE grade_cells SET max_score = 0'); con.commit()"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attacks_in_a_cell_earn_nothing_and_are_flagged(course_repo, tmp_path, attack):
    def edit(nb):
        insert_after(nb, "setup", ATTACKS[attack])
        # and the visible tests "fixed" by the learner, as plain nbgrader would have run them
        for tests in ("ex1_double_tests", "ex2_half_tests"):
            cell(nb, tests).source = "pass"

    result = grade(course_repo, learner(course_repo, tmp_path, WRONG, edit))
    assert result.score == 0, format_result(result)
    assert result.flags, "the attack must be flagged for the instructor"
    report = format_result(result) + json.dumps(result.to_json())
    assert not [bit for bit in HIDDEN_BITS if bit in report]
    assert all("cell 3 of your notebook" in flag for flag in result.flags)  # the inserted cell, after the setup


def test_patches_do_not_fail_right_answers_either(course_repo, tmp_path):
    """The verdict does not depend on the kernel's libraries: right answers keep their points beside the patches."""
    result = grade(course_repo, learner(course_repo, tmp_path, RIGHT,
                                        lambda nb: insert_after(nb, "setup", ATTACKS["patched_library_functions"])))
    assert result.score == 10 and len(result.flags) >= 5


def test_the_kernel_never_sees_the_checks(course_repo, tmp_path):
    """A transformer sees every cell the kernel runs; the checks' bodies (references, named mistakes) are not there."""
    seen = tmp_path / "seen.txt"

    def edit(nb):
        insert_after(nb, "setup", "SEEN = []\ndef spy(lines):\n    SEEN.append(''.join(lines))\n    return lines\n"
                                  "get_ipython().input_transformers_cleanup.append(spy)")
        insert_after(nb, "quiz_answers_tests", f"open({str(seen)!r}, 'w').write('\\n'.join(SEEN))")

    result = grade(course_repo, learner(course_repo, tmp_path, RIGHT, edit))
    assert result.score == 10
    kernel_saw = seen.read_text()
    assert "def _probe" in kernel_saw and "XS = [-3, 0.5, 1_000_000]" in kernel_saw  # the probes run there
    for check_body in ("instead of 2 * x", "memory_bytes(n, name)", "torch.allclose(got, t / S)", '"paris"'):
        assert check_body not in kernel_saw


def test_a_dead_kernel_keeps_earlier_points_and_names_the_cell(course_repo, tmp_path):
    result = grade(course_repo, learner(course_repo, tmp_path, RIGHT,
                                        lambda nb: insert_after(nb, "ex2_half_tests", "import os\nos._exit(1)")))
    assert scores(result) == {**dict.fromkeys(POINTS, 0), "ex1_double_tests": 2, "ex2_half_tests": 1}
    died = result.exercises[2].error
    assert died.startswith("the kernel died in cell ") and "os._exit" in died and died in result.messages
    assert any("exits the kernel (os._exit)" in flag for flag in result.flags)


def test_an_endless_cell_is_interrupted_and_later_exercises_still_graded(course_repo, tmp_path):
    def edit(nb):
        insert_after(nb, "ex1_double_tests", "while True:\n    pass")

    # 10 s per cell: enough for the set-up cell's imports on a loaded machine
    result = grade(course_repo, learner(course_repo, tmp_path, RIGHT, edit), timeout=10)
    assert result.score == 10
    assert len(result.cell_errors) == 1 and "timed out after 10 s and was interrupted" in result.cell_errors[0]

    slow_answer = {**RIGHT, "ex1_double": "def double(x):\n    while True:\n        pass"}
    result = grade(course_repo, learner(course_repo, tmp_path, slow_answer), timeout=10)
    assert scores(result) == {**POINTS, "ex1_double_tests": 0}
    assert result.exercises[0].error.startswith("the test timed out after 10 s and was interrupted")


def test_a_cell_that_ignores_interrupts_stops_the_run_with_a_message(course_repo, tmp_path, monkeypatch):
    monkeypatch.setattr(kernels, "INTERRUPT_GRACE_S", 2.0)
    stuck = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    result = grade(course_repo, learner(course_repo, tmp_path, RIGHT,
                                        lambda nb: insert_after(nb, "ex3_scale_tests", stuck)), timeout=10)
    assert scores(result) == {**POINTS, "ex4_memory_tests": 0, "quiz_answers_tests": 0}
    assert "did not stop when interrupted" in result.exercises[3].error


# --- repairs and messages ---------------------------------------------------------------------------------

def test_pasted_test_cell_above_its_exercise_and_deleted_setup_are_repaired(course_repo, tmp_path):
    def edit(nb):
        copy = nbformat.from_dict(json.loads(json.dumps(cell(nb, "ex1_double_tests"))))
        copy.id = "pasted"
        nb.cells.insert(nb.cells.index(cell(nb, "ex1_double")), copy)
        nb.cells.remove(cell(nb, "setup"))

    result = grade(course_repo, learner(course_repo, tmp_path, RIGHT, edit))
    assert result.score == 10
    assert any("copy of the test cell 'ex1_double_tests'" in m for m in result.messages)
    assert "the read-only cell 'setup' was missing (deleted?) and was restored from the course" in result.messages
    assert len(result.cell_errors) == 1 and "NameError" in result.cell_errors[0]  # the copy ran above the answer


def test_pasted_answer_copies_the_one_above_the_tests_is_graded(course_repo, tmp_path):
    def edit(nb):
        answer = cell(nb, "ex1_double")
        stale = nbformat.from_dict(json.loads(json.dumps(answer)))
        stale.id, stale.source = "old", "def double(x):\n    return 0  # my first try"
        nb.cells.insert(nb.cells.index(answer), stale)  # an older copy above the answer
        late = nbformat.from_dict(json.loads(json.dumps(answer)))
        late.id, late.source = "late", "def double(x):\n    return -1  # after the tests"
        nb.cells.insert(nb.cells.index(cell(nb, "ex1_double_tests")) + 1, late)

    result = grade(course_repo, learner(course_repo, tmp_path, RIGHT, edit))
    assert result.score == 10
    assert sum("second copy of the answer cell 'ex1_double'" in m for m in result.messages) == 2


def test_deleted_answer_unknown_id_and_flipped_flags_get_specific_messages(course_repo, tmp_path):
    def edit(nb):
        nb.cells.remove(cell(nb, "ex2_half"))
        foreign = nbformat.v4.new_code_cell("x = 1", id="foreign")
        foreign.metadata["nbgrader"] = {"grade_id": "ex9_from_elsewhere", "grade": True, "solution": False,
                                        "locked": True, "points": 5, "schema_version": 3}
        nb.cells.insert(2, foreign)
        tests = cell(nb, "ex3_scale_tests")
        tests.metadata["nbgrader"].update(grade=False, solution=True, locked=False)
        tests.source = "print('ok')"

    answers = {**RIGHT, "ex3_scale": "def scale(t, s):\n    return t * s"}
    result = grade(course_repo, learner(course_repo, tmp_path, answers, edit))
    assert scores(result) == {**POINTS, "ex2_half_tests": 0, "ex3_scale_tests": 0}
    assert result.exercises[1].error.startswith("the answer cell 'ex2_half' is missing from your notebook (deleted?)")
    assert any("'ex9_from_elsewhere', which chapter 99_demo does not have" in m for m in result.messages)
    assert any("grading settings of the test cell 'ex3_scale_tests' were changed (grade, solution, locked)" in m
               for m in result.messages)


def test_a_notebook_of_another_chapter_is_named_as_such(course_repo, tmp_path):
    (tmp_path / "x").mkdir()
    other = learner(course_repo, tmp_path / "x", None, name="98_other")
    renamed = tmp_path / "99_demo.ipynb"
    shutil.copy(other, renamed)
    result = grade(course_repo, renamed)
    assert result.score == 0 and result.wrong_chapter
    assert result.exercises[0].error.startswith("this notebook is not chapter 99_demo")
    assert any("it looks like chapter 98_other" in m for m in result.messages)


# --- what reaches the learner -----------------------------------------------------------------------------

def run_cli(course_repo, capsys, monkeypatch, *args):
    """``coursekit ARGS`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setenv("COURSEKIT_ROOT", str(course_repo))
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_output_never_shows_hidden_tests(course_repo, tmp_path, capsys, monkeypatch):
    answers = {**WRONG, "ex3_scale": "def scale(t, s):\n    if t.dim() > 1:\n"
                                 "        raise ValueError('no ' + 'matrices')\n    return t / s"}
    path = learner(course_repo, tmp_path, answers, lambda nb: [setattr(cell(nb, t), "source", "pass")
                                                                for t in ("ex1_double_tests", "ex2_half_tests")])
    for args in ((), ("--json",)):
        code, out, err = run_cli(course_repo, capsys, monkeypatch, "check", str(path), *args)
        assert code == 1, err
        for bit in HIDDEN_BITS:
            assert bit not in out + err
    report = json.loads(out)
    assert report["score"] == 0 and report["max_score"] == 10
    assert report["exercises"][2]["error"] == "hidden test failed: ValueError: no matrices"


def test_ctrl_c_exits_130_with_one_line(course_repo, tmp_path):
    path = learner(course_repo, tmp_path, {**RIGHT, "ex1_double": "import time\ndef double(x):\n    time.sleep(60)"})
    env = {**os.environ, "COURSEKIT_ROOT": str(course_repo)}
    proc = subprocess.Popen([sys.executable, "-m", "coursekit", "check", str(path)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(8)  # the kernel is running the notebook by now
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert [line for line in err.splitlines() if line.strip()] == ["coursekit check: interrupted"]


def test_ctrl_c_during_class_grading_exits_130_and_writes_nothing(course_repo, tmp_path):
    course = tmp_path / "course"
    init_course(course, root=course_repo)
    slow = learner(course_repo, tmp_path, {**RIGHT, "ex1_double": "import time\ndef double(x):\n    time.sleep(60)"})
    for student in ("ann", "ben"):
        (course / "submitted" / student / "99_demo").mkdir(parents=True)
        shutil.copy(slow, course / "submitted" / student / "99_demo" / "99_demo.ipynb")
    proc = subprocess.Popen([sys.executable, "-m", "coursekit", "grade", str(course), "99_demo", "--jobs", "2"],
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(8)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and out == ""
    assert [line for line in err.splitlines() if line.strip()] == ["coursekit grade: interrupted; nothing was written"]
    assert not (course / "sealed_grades.csv").exists() and not (course / "feedback_sealed").exists()


@pytest.mark.parametrize("content, message", [
    ("{}", "JSON but not a Jupyter notebook"), ("[1, 2, 3]", "JSON but not a Jupyter notebook"),
    ('{"cells": [', "not a readable notebook"),
])
def test_bad_notebooks_give_one_line_and_exit_2(course_repo, tmp_path, capsys, monkeypatch, content, message):
    path = tmp_path / "99_demo.ipynb"
    path.write_text(content)
    code, out, err = run_cli(course_repo, capsys, monkeypatch, "check", str(path))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    folder = tmp_path / "dir.ipynb"
    folder.mkdir()
    code, out, err = run_cli(course_repo, capsys, monkeypatch, "check", str(folder))
    assert code == 2 and "is a directory" in err and len(err.strip().splitlines()) == 1


# --- the key: authoring errors are caught at build time -----------------------------------------------------

def test_key_reads_points_and_hidden_sections(course_repo):
    key = load_key(course_repo / "solutions" / "99_demo.ipynb")
    assert {t.grade_id: t.points for t in key.tests} == POINTS
    assert key.tests[0].exercise == ("ex1_double",) and "sealed_test(_probe, _check)" in key.tests[0].hidden
    assert "BEGIN HIDDEN" not in key.tests[0].visible and "expect_close(double(2)" in key.tests[0].visible


@pytest.mark.parametrize("hidden, message", [
    (None, "exactly one '### BEGIN HIDDEN TESTS'"),
    ("assert double(-3) == -6", "do not run in the grader (NameError"),
    ("x = 1", "call sealed_test(_probe, _check) exactly once, found 0"),
    ("from coursekit.grading.sealed import sealed_test\nsealed_test(lambda: 1, lambda o: None, points=3)",
     "differs from the cell's points=2"),
])
def test_unsealed_tests_cells_are_authoring_errors(hidden, message):
    body = "assert True\n" + (f"### BEGIN HIDDEN TESTS\n{hidden}\n### END HIDDEN TESTS\n" if hidden else "")
    nb = nbformat.v4.new_notebook()
    tests = nbformat.v4.new_code_cell(body, id="t")
    tests.metadata["nbgrader"] = {"grade_id": "t", "grade": True, "solution": False, "locked": True, "points": 2}
    nb.cells.append(tests)
    with pytest.raises(SealedError, match=re.escape(message)):
        validate(nb, "demo")
    assert read_key(nbformat.v4.new_notebook(), "empty").tests == ()
