"""The sealed grading engine: grade one learner notebook against its instructor notebook.

    result = grade_sealed("notebooks/02_ptq.ipynb", "solutions/02_ptq.ipynb", timeout=120)

1. ``repair`` assembles the notebook to run from the instructor's skeleton and the learner's answers (the
   learner's file is only read).
2. The cells run in one fresh kernel (``kernel``) started with ``NBGRADER_EXECUTION=autograde`` and
   ``COURSEKIT_SEAL=<a random token for this run>``, in a temporary directory, each cell with a time limit. A tests
   cell runs in three parts: its visible tests, its hidden section, the rest. Under the seal the hidden section's
   ``sealed_test`` only prints ``<token><probe data as JSON>``.
3. Here, in the grader's process, the instructor's hidden section is executed afresh (``key.checks``) and its
   check is applied to the data found in *that* cell's output (``sealed.run_check``): the verdict never runs in
   the learner's kernel, so nothing a learner cell does there (IPython transformers, monkeypatching
   ``torch.allclose``, ``builtins``, ``sys.modules``, writing a gradebook) can turn a wrong answer into points; at
   worst it stops the answer line from appearing, which scores 0. Points are the instructor notebook's.
4. ``scan`` flags suspicious learner code for the instructor (beside the grade, never in it).

Messages never quote hidden-test source: a failure of the visible tests shows its exception name and message,
a failure in the hidden section shows ``hidden test failed: <the check's message>`` (or the exception the
learner's code raised there), and notebook problems (timeout, dead kernel, missing or pasted cells, wrong
chapter) say which cell and what to do.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
import threading
import time
import warnings
from pathlib import Path

import nbformat

from coursekit.grading import kernel as kernels
from coursekit.grading.config import SEALED_CELL_TIMEOUT_S
from coursekit.grading.key import Key, SealedError, checks, kernel_hidden, load_key
from coursekit.grading.repair import Repaired, Step, repair
from coursekit.grading.result import CheckResult, ExerciseScore
from coursekit.grading.scan import imported_names, scan_cells
from coursekit.grading.sealed import SEAL_ENV, run_check

_check_lock = threading.Lock()  # checks run one at a time (warning filters are process-wide)


def read_notebook(path) -> nbformat.NotebookNode:
    """Read a learner notebook, turning anything that is not one into a ValueError that says what to do."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"NOTEBOOK {str(path)!r} is a directory; give the path of a .ipynb file")
    if not path.exists():
        raise FileNotFoundError(f"NOTEBOOK {str(path)!r} does not exist")
    restore = ("restore it from a backup or with `git checkout -- <path>`, or start again from the chapter's "
               "student notebook")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"NOTEBOOK {str(path)!r} is not a readable notebook ({type(exc).__name__}); {restore}") from exc
    except OSError as exc:
        raise ValueError(f"NOTEBOOK {str(path)!r} cannot be read ({exc.strerror or exc})") from exc
    if not isinstance(data, dict) or "nbformat" not in data or not isinstance(data.get("cells", data.get("worksheets")),
                                                                                  list):
        raise ValueError(f"NOTEBOOK {str(path)!r} is JSON but not a Jupyter notebook (no nbformat/cells); {restore}")
    try:
        with warnings.catch_warnings():  # nbformat repairs duplicate/missing cell ids with a warning on stderr
            warnings.simplefilter("ignore")
            return nbformat.reads(json.dumps(data), as_version=4)
    except Exception as exc:
        raise ValueError(f"NOTEBOOK {str(path)!r} is a damaged notebook ({type(exc).__name__}: {exc}); {restore}") from exc


def _first_line(text: str | None, limit: int = 300) -> str:
    line = next((s.strip() for s in (text or "").splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _error_text(ename: str | None, evalue: str | None) -> str:
    return f"{ename}: {_first_line(evalue)}".rstrip(": ").strip() if ename else "an error"


def hint_for(error: str | None) -> str | None:
    """One actionable sentence for the usual failure kinds."""
    if error is None:
        return None
    core = error.removeprefix("hidden test failed: ")
    if "NotImplementedError" in core.split(":")[0]:
        return "this exercise is not answered yet: replace `raise NotImplementedError()` with your code"
    if core.startswith("NameError"):
        return "a name the tests need is not defined: run the cells above, and keep the function's name"
    if core.startswith(("TypeError", "ValueError")) or "wrong type or shape" in core:
        return "check the arguments and the return type the exercise asks for"
    if "timed out" in error or "did not stop" in error:
        return "make the answer finish quickly: look for an endless loop or a run that is much too long"
    if error.startswith("partial credit"):
        return "the items named are wrong or missing: fix those to earn the rest of the points"
    if "kernel died" in error or "no answer was recorded" in error or "missing" in error:
        return None  # the message itself says what to do
    if error.startswith("hidden test failed") or core.startswith("AssertionError"):
        return "your answer runs but gives a wrong value: reread the exercise and compare with the example"
    return "read the error above, fix the answer cell, rerun the notebook top to bottom"


def _answer(stdout: str, token: str) -> tuple[object | None, str | None]:
    """The probe data a tests cell printed after ``token``, or why there is none."""
    lines = [line for line in stdout.splitlines() if token in line]
    if not lines:
        return None, "missing"
    if len(lines) > 1:
        return None, ("the test recorded more than one answer: a cell above may have changed how the notebook runs; "
                      "restart the kernel, run the notebook top to bottom, and check again")
    try:
        return json.loads(lines[0].split(token, 1)[1]), None
    except (ValueError, RecursionError) as exc:
        return None, f"the recorded answer could not be read ({type(exc).__name__}); rerun the notebook and check again"


class _Outcome:
    """What happened to the kernel so far (a death or a stuck cell ends the run)."""

    def __init__(self):
        self.ended: str | None = None


def _ended_message(run, step: Step, timeout: float) -> str:
    if run.status == "dead":
        return (f"the kernel died in {step.label}: the exercises after it were not run. Find what stops the kernel "
                "there (os._exit, exit(), a crash, running out of memory), fix it, and check again")
    return (f"{step.label} ran longer than {timeout:g} s and did not stop when interrupted; the kernel was stopped "
            "and the exercises after it were not run. Make that cell finish (an endless loop? a signal handler?)")


async def _run_tests(k: kernels.Kernel, step: Step, key: Key, token: str, timeout: float, check, outcome: _Outcome
                     ) -> ExerciseScore:
    tests = next(t for t in key.tests if t.grade_id == step.grade_id)
    score = ExerciseScore(tests.grade_id, 0.0, tests.points)
    if outcome.ended:
        score.error = outcome.ended
        return score
    parts = [("before", tests.before), ("hidden", kernel_hidden(tests.hidden)), ("after", tests.after)]
    data, found = None, False
    for part, source in parts:
        if not source.strip():
            continue
        run = await k.run(source, timeout, keep_stdout=part == "hidden")
        if run.status in ("dead", "stuck"):
            outcome.ended = _ended_message(run, step, timeout)
            score.error = outcome.ended
            return score
        if run.status == "timeout":
            score.error = (f"the test timed out after {timeout:g} s and was interrupted: your answer may loop "
                           "forever or be far too slow")
            return score
        if run.status == "error":
            text = _error_text(run.ename, run.evalue)
            score.error = text if part != "hidden" else f"hidden test failed: {text}"
            return score
        if part == "hidden":
            data, problem = _answer(run.stdout, token)
            if problem == "missing":
                score.error = ("no answer was recorded: a cell above may have changed how the notebook runs (IPython "
                               "transformers or hooks, a replaced print or sys.stdout); remove it, restart the kernel, "
                               "run the notebook top to bottom and check again")
                return score
            if problem:
                score.error = problem
                return score
            found = True
    if not found:  # cannot happen with a key that passed validation; never give points without an answer
        score.error = "no answer was recorded"
        return score
    with _check_lock, warnings.catch_warnings():  # a library warning inside a check must not reach the terminal
        warnings.simplefilter("ignore")
        fraction, message = run_check(check, data)
    score.score = round(fraction * tests.points, 4)
    if fraction < 1.0:
        score.error = ("hidden test failed: " if fraction == 0 else "partial credit: ") + (message or "wrong answer")
    return score


async def _execute(repaired: Repaired, key: Key, found_checks: dict, timeout: float, env: dict, cwd: str,
                   token: str) -> tuple[list[ExerciseScore], list[str], list[str]]:
    scores: list[ExerciseScore] = []
    cell_errors: list[str] = []
    answer_errors: dict[str, str] = {}
    outcome = _Outcome()
    async with kernels.Kernel(env, cwd) as k:
        for step in repaired.steps:
            if step.kind == "markdown":
                continue
            if step.kind == "tests":
                scores.append(await _run_tests(k, step, key, token, timeout, found_checks[step.grade_id], outcome))
                continue
            if outcome.ended or not step.source.strip():
                continue
            run = await k.run(step.source, timeout, keep_stdout=False)
            if run.status in ("dead", "stuck"):
                outcome.ended = _ended_message(run, step, timeout)
            elif run.status == "timeout":
                cell_errors.append(f"{step.label} timed out after {timeout:g} s and was interrupted (the cells after "
                                   "it still ran)")
            elif run.status == "error":
                if step.kind == "learner" and step.grade_id:  # an answer cell: reported with its exercise
                    answer_errors[step.grade_id] = _error_text(run.ename, run.evalue)
                else:
                    cell_errors.append(f"{step.label}: {_error_text(run.ename, run.evalue)}")
    messages = [outcome.ended] if outcome.ended else []
    for score in scores:
        failed = [(gid, answer_errors[gid]) for gid in _exercise(key, score.grade_id) if gid in answer_errors]
        if failed and score.score < score.max_score and score.error != outcome.ended:
            gid, error = failed[0]
            score.error = f"{error} (raised by your answer cell {gid!r})"
    return scores, cell_errors, messages


def _exercise(key: Key, grade_id: str) -> tuple[str, ...]:
    return next(t.exercise for t in key.tests if t.grade_id == grade_id)


def _scrub(result: CheckResult, key: Key) -> None:
    """Last line of defence: a message that quotes a line of hidden-test source (a learner's transformer can put
    the source it sees into an exception) loses its text."""
    lines = {line.strip() for t in key.tests for line in t.hidden.splitlines() if len(line.strip()) >= 12}

    def clean(text: str | None) -> str | None:
        if text and any(line in text for line in lines):
            return text.split(":", 1)[0][:60] + ": (message withheld: it quoted the hidden tests)"
        return text

    for e in result.exercises:
        e.error, e.hint = clean(e.error), clean(e.hint)
    result.cell_errors = [clean(t) for t in result.cell_errors]
    result.messages = [clean(t) for t in result.messages]


def kernel_env(token: str, workdir: Path) -> dict[str, str]:
    """The grading kernel's environment: ours, in grading mode, sealed, without learner IPython start-up files."""
    env = {k: v for k, v in os.environ.items() if k not in (SEAL_ENV, "MPLBACKEND", "PYTHONSTARTUP")}
    env.update({"NBGRADER_EXECUTION": "autograde", SEAL_ENV: token, "IPYTHONDIR": str(workdir / ".ipython"),
                "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def _run_async(coro):
    """``asyncio.run``, also from inside a running event loop (e.g. called from a Jupyter cell)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict = {}

    def target():
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def grade_sealed(learner_nb_path, instructor_nb_path=None, timeout: float = SEALED_CELL_TIMEOUT_S, *,
                 key: Key | None = None) -> CheckResult:
    """Grade the learner notebook against the instructor notebook (or a ``key`` read once with ``load_key``).

    Every tests cell of the instructor notebook gets a score out of its points and, when points are lost, a
    message; the learner's file is never modified. Raises ValueError/FileNotFoundError for a path that is not a
    notebook, :class:`~coursekit.grading.key.SealedError` for an instructor notebook without sealed tests.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    start = time.monotonic()
    nb = read_notebook(learner_nb_path)
    if key is None:
        if instructor_nb_path is None:
            raise TypeError("grade_sealed needs instructor_nb_path or key")
        key = load_key(instructor_nb_path)
    if not key.tests:
        raise SealedError(f"{key.name}: the instructor notebook has no tests cells to grade")
    found_checks = checks(key)
    repaired = repair(nb, key)
    result = CheckResult(notebook=str(learner_nb_path), score=0.0, max_score=key.max_score,
                         messages=list(repaired.messages))
    if repaired.wrong_chapter:
        result.exercises = [ExerciseScore(t.grade_id, 0.0, t.points, repaired.wrong_chapter) for t in key.tests]
        result.wrong_chapter = True
        result.seconds = time.monotonic() - start
        return result
    modules = imported_names(s.source for s in repaired.steps if s.kind in ("learner", "course", "tests"))
    result.flags = [str(f) for f in scan_cells([(s.label, s.source) for s in repaired.steps
                                                if s.kind == "learner" and s.edited], modules)]
    token = "sealed-" + secrets.token_hex(16) + ":"
    with tempfile.TemporaryDirectory(prefix="coursekit-sealed-") as tmp:
        workdir = Path(tmp)
        (workdir / "work").mkdir()
        try:
            scores, cell_errors, ended = _run_async(
                _execute(repaired, key, found_checks, float(timeout), kernel_env(token, workdir), str(workdir / "work"),
                         token))
        except BaseException:
            kernels.kill_all_kernels()
            raise
    suspects = sorted({flag.split(", line ")[0] for flag in result.flags})
    for score in scores:
        if suspects and score.error and score.error.startswith("no answer was recorded"):
            score.error += f" (flagged: {'; '.join(suspects[:3])})"
        problems = repaired.problems.get(score.grade_id)
        if problems and score.score < score.max_score:
            score.error = problems[0] + (f" ({score.error})" if score.error and "missing" not in score.error else "")
        score.hint = hint_for(score.error) if score.score < score.max_score else None
    result.exercises = scores
    result.cell_errors = cell_errors
    result.messages += ended
    _scrub(result, key)
    result.score = round(sum(e.score for e in scores), 4)
    result.seconds = time.monotonic() - start
    return result


__all__ = ["grade_sealed", "hint_for", "kernel_env", "read_notebook"]
