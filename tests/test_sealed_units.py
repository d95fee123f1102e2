"""The sealed grader's pieces without a kernel: the static scan, the choice among pasted copies, the answer line,
the kernel-side half of sealed tests. Expected values are written by hand from the inputs."""
import json

import nbformat
import pytest

from coursekit.grading import sealed
from coursekit.grading.engine import _answer, hint_for
from coursekit.grading.key import kernel_hidden, read_key
from coursekit.grading.repair import repair
from coursekit.grading.scan import imported_names, scan_source

MODULES = {"torch", "np", "quiz", "plt", "sys", "sealed"}


@pytest.mark.parametrize("source, what", [
    ("get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])", "touches IPython's shell"),
    ("ip = get_ipython()\nip.ast_transformers.append(T())", "ip.ast_transformers"),
    ("get_ipython().events.register('pre_run_cell', f)", "registers IPython events"),
    ("import builtins\nbuiltins.abs = lambda x: 0", "assigns to builtins.abs"),
    ("__builtins__.abs = lambda x: 0", "touches __builtins__"),
    ("torch.allclose = lambda *a, **k: True", "assigns to torch.allclose"),
    ("sys.modules['coursekit.formats'].memory_bytes = f", "uses sys.modules"),
    ("setattr(torch, 'equal', lambda a, b: True)", "setattr() on torch"),
    ("vars(torch)['equal'] = f", "assigns to vars()[]"),
    ("quiz.grade_answers = lambda *a, **k: 5", "assigns to quiz.grade_answers"),
    ("import sqlite3\nsqlite3.connect('../../gradebook.db')", "mentions the gradebook"),
    ("import os\nos._exit(1)", "exits the kernel (os._exit)"),
    ("import os\nprint(os.environ['COURSEKIT_SEAL'])", "the grader's seal"),
    ("sealed.sealed_test = None", "assigns to sealed.sealed_test"),
    ("f.__code__ = g.__code__", "assigns to f.__code__"),
    ("this is ( not python get_ipython().ast_transformers", "touches IPython's shell hooks"),  # text search
])
def test_scan_flags_what_can_tamper_with_grading(source, what):
    flags = scan_source(source, "cell 4", MODULES)
    assert any(what in str(flag) for flag in flags), [str(f) for f in flags]
    assert all(str(flag).startswith("cell 4, line ") for flag in flags)


@pytest.mark.parametrize("source", [
    "%matplotlib inline\n!ls\nx = 1",
    "def double(x):\n    return 2 * abs(x)",
    "torch.backends.quantized.engine = 'qnnpack'",
    "plt.rcParams['figure.dpi'] = 100",
    "setattr(parent, name, quantized_layer)",
    "model.fc.weight = None\nx = [1]\nx[0] = 2",
    "np.random.seed(0)\ntorch.manual_seed(0)",
])
def test_scan_leaves_ordinary_answers_alone(source):
    assert scan_source(source, "cell 1", MODULES) == []


def test_imported_names_include_aliases_and_functions():
    assert imported_names(["import numpy as np\nfrom coursekit import quiz\nfrom x.y import f as g", "%time 1"]) == {
        "np", "quiz", "g"}


def _notebook(*cells, prefix="i"):
    nb = nbformat.v4.new_notebook()
    for role, grade_id, source in cells:
        cell = nbformat.v4.new_code_cell(source, id=f"{prefix}{len(nb.cells)}")
        if role:
            flags = {"grade_id": grade_id, "grade": role == "tests", "solution": role == "solution",
                     "locked": role != "solution"}
            if role == "tests":
                flags["points"] = 1
            cell.metadata["nbgrader"] = flags
        nb.cells.append(cell)
    return nb


TESTS = ("pass\n### BEGIN HIDDEN TESTS\nfrom coursekit.grading.sealed import sealed_test\n"
         "sealed_test(lambda: 1, lambda out: None)\n### END HIDDEN TESTS")
INSTRUCTOR = _notebook(("locked", "setup", "import math"), ("solution", "a", "def f(): return 1"),
                       ("tests", "a_tests", TESTS), ("solution", "b", "def g(): return 2"), ("tests", "b_tests", TESTS))


def _learner(*cells):
    return _notebook(*cells, prefix="l")


def _plan(nb):
    key = read_key(INSTRUCTOR, "demo")
    return [(step.kind, step.grade_id, step.source) for step in repair(nb, key).steps]


def test_repair_runs_the_course_cells_and_the_learners_answers_in_place():
    nb = _learner((None, "", "# my notes"), ("locked", "setup", "import os  # edited"),
                  ("solution", "a", "def f(): return 10"), (None, "", "f()"), ("tests", "a_tests", "pass"),
                  ("solution", "b", "def g(): return 20"))  # b_tests deleted
    assert _plan(nb) == [("learner", None, "# my notes"), ("course", "setup", "import math"),
                         ("learner", "a", "def f(): return 10"), ("learner", None, "f()"),
                         ("tests", "a_tests", TESTS), ("learner", "b", "def g(): return 20"),
                         ("tests", "b_tests", TESTS)]


def test_repair_grades_the_answer_copy_right_above_its_tests():
    nb = _learner(("locked", "setup", "import math"), ("tests", "a_tests", "pass"),  # a test copy pasted above
                  ("solution", "a", "def f(): return 'first'"), ("solution", "a", "def f(): return 'second'"),
                  ("tests", "a_tests", "pass"), ("solution", "a", "def f(): return 'after'"))
    plan = _plan(nb)
    assert ("learner", "a", "def f(): return 'second'") in plan
    graded = [source for kind, gid, source in plan if gid == "a"]
    assert graded == ["def f(): return 'second'"]
    order = [source for _, _, source in plan]
    assert order.index("pass") < order.index("def f(): return 'first'") < order.index(TESTS)
    assert order.index(TESTS) < order.index("def f(): return 'after'")


def test_answer_line_is_read_only_after_the_token():
    assert _answer('noise\nTOK{"y": [1, NaN]}\n', "TOK")[0]["y"][0] == 1
    assert _answer("x = 1TOK[1, 2]\n", "TOK") == ([1, 2], None)  # a learner print without newline before it
    assert _answer("nothing\n", "TOK") == (None, "missing")
    assert "more than one answer" in _answer("TOK1\nTOK2\n", "TOK")[1]
    assert "could not be read" in _answer("TOK{bad\n", "TOK")[1]


def test_sealed_test_only_prints_under_the_seal_and_checks_in_the_kernel_otherwise(monkeypatch, capsys):
    def check(out):
        sealed.expect_close(out["y"], [2.0], what="y")

    monkeypatch.setenv(sealed.SEAL_ENV, "TOKEN:")
    assert sealed.sealed_test(lambda: {"y": [3.0]}, check) is None  # a wrong answer: only recorded
    assert capsys.readouterr().out == 'TOKEN:{"y":[3.0]}\n'
    monkeypatch.delenv(sealed.SEAL_ENV)
    with pytest.raises(AssertionError, match=r"y: expected \[2.0\], got \[3.0\]"):
        sealed.sealed_test(lambda: {"y": [3.0]}, check)
    quiz = sealed.sealed_test(lambda: [1, 0, 1], lambda out: sealed.partial([(v == 1, f"q{i}") for i, v in
                                                                             enumerate(out)]), points=3)
    assert quiz == 2.0 and "wrong or missing: q1" in capsys.readouterr().out
    with sealed.collecting() as found:
        sealed.sealed_test(lambda: 1 / 0, check, points=2)
    assert len(found) == 1 and found[0][1] is check and found[0][2] == 2


def test_run_check_and_hints():
    assert sealed.run_check(lambda out: None, [1]) == (1.0, None)
    assert sealed.run_check(lambda out: sealed.partial([(True, "a"), (False, "b")]), {}) == (0.5, "wrong or missing: b")
    fraction, message = sealed.run_check(lambda out: out["missing"], {})
    assert fraction == 0 and message.startswith("your answer has the wrong type or shape")
    assert "not answered yet" in hint_for("hidden test failed: NotImplementedError: ")
    assert hint_for(None) is None
    assert json.loads(sealed.dumps({"t": (1, 2.5)})) == {"t": [1, 2.5]}


def test_a_cell_whose_grading_metadata_was_removed_is_recognised_by_its_id():
    nb = _learner(("locked", "setup", "import math"), (None, "", "def f(): return 10"), ("tests", "a_tests", "pass"))
    nb.cells[1].id = "i1"  # the instructor's id of answer cell "a"
    repaired = repair(nb, read_key(INSTRUCTOR, "demo"))
    assert [(s.grade_id, s.source) for s in repaired.steps if s.kind == "learner"] == [("a", "def f(): return 10")]
    assert any("grading metadata of the answer cell 'a' was removed" in m for m in repaired.messages)
    assert repaired.problems == {"b_tests": [("the answer cell 'b' is missing from your notebook (deleted?): copy it "
                                             "back from the student notebook of chapter demo, answer it, and check "
                                             "again")]}


def test_the_kernel_gets_the_check_without_its_body():
    hidden = ("X = 3\ndef _probe():\n    return f(X)\n\n@staticmethod\ndef _check(out):\n    \"\"\"doc\"\"\"\n"
              "    assert out == 9, 'secret'\n\nsealed_test(_probe, _check)\nprint('done')")
    assert kernel_hidden(hidden) == ("X = 3\ndef _probe():\n    return f(X)\n\n@staticmethod\ndef _check(out):\n"
                                     "    pass  # decided by the grader, outside this kernel\n\n"
                                     "sealed_test(_probe, _check)\nprint('done')")
    one_line = "def _check(out): assert out\nsealed_test(p, _check)"
    assert kernel_hidden(one_line) == one_line and kernel_hidden("not python (") == "not python ("
