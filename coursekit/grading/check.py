"""``coursekit check NOTEBOOK``: a real nbgrader autograde of one learner notebook.

The learner's file is never touched. We build a temporary nbgrader course from the matching instructor notebook
(so hidden tests are in the gradebook), put a *sanitised copy* of the learner notebook in
``submitted/you/NAME/``, run ``autograde`` and read the scores from the gradebook, cell by cell.

Sanitising repairs what learners commonly do to a notebook and what would otherwise crash nbgrader:
a copy-pasted graded cell (duplicate ``grade_id``: the copy keeps its code but loses its grading metadata), and a
missing or changed kernelspec. Edited locked cells and deleted graded cells are restored by nbgrader itself
(``OverwriteCells``), and warnings or progress bars on stderr are ignored (``IgnorePattern``).
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from coursekit.grading.course import NOTEBOOK_NAME, make_api, quiet_logs, repo_root, temporary_course

STUDENT = "you"


@dataclass
class ExerciseScore:
    """The score of one autograded test cell, and why it failed if it did."""

    grade_id: str
    score: float
    max_score: float
    error: str | None = None
    hint: str | None = None


@dataclass
class CheckResult:
    notebook: str
    score: float
    max_score: float
    exercises: list[ExerciseScore] = field(default_factory=list)
    # Errors raised by cells that are not test cells (e.g. a demo cell), as "cell id: error".
    cell_errors: list[str] = field(default_factory=list)

    @property
    def full_marks(self) -> bool:
        return self.max_score > 0 and self.score >= self.max_score

    def to_json(self) -> dict:
        return {
            "notebook": self.notebook, "score": self.score, "max_score": self.max_score,
            "exercises": [
                {"grade_id": e.grade_id, "score": e.score, "max_score": e.max_score, "error": e.error}
                for e in self.exercises
            ],
        }


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook, turning a corrupted file into an error that says what to do."""
    try:
        return nbformat.read(path, as_version=4)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"NOTEBOOK {str(path)!r} is not a readable notebook ({exc.__class__.__name__}); "
            "restore it from a backup or with `git checkout -- <path>`, or start again from notebooks/"
        ) from exc


def matching_solution(notebook: Path, root: Path | None = None) -> Path:
    """The instructor notebook ``solutions/NAME.ipynb`` that grades ``notebook`` (matched by file name)."""
    if not notebook.exists():
        raise FileNotFoundError(f"NOTEBOOK {str(notebook)!r} does not exist")
    if notebook.suffix != ".ipynb":
        raise ValueError(f"NOTEBOOK {str(notebook)!r} is not a .ipynb file")
    root = root or repo_root()
    # Tolerate copies such as "02_ptq (1).ipynb" or "02_ptq-Copy1.ipynb" by their chapter prefix.
    stem = notebook.stem
    match = re.match(r"^(\d\d_[a-z0-9_]+?)(?:[ -]\(?copy\d*\)?| \(\d+\)|-Copy\d+)?$", stem, re.IGNORECASE)
    candidates = [root / "solutions" / f"{match.group(1)}.ipynb"] if match else []
    for candidate in candidates:
        if candidate.exists():
            return candidate
    known = ", ".join(p.stem for p in sorted((root / "solutions").glob("*.ipynb")) if NOTEBOOK_NAME.match(p.stem))
    raise ValueError(f"NOTEBOOK {str(notebook)!r} is not a course notebook; known chapters: {known}")


def sanitize(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Repair a learner notebook enough for nbgrader: unique grade ids, python3 kernelspec, no outputs."""
    seen: set[str] = set()
    for cell in nb.cells:
        grading = cell.get("metadata", {}).get("nbgrader")
        if grading and grading.get("grade_id"):
            if grading["grade_id"] in seen:
                del cell.metadata["nbgrader"]
            else:
                seen.add(grading["grade_id"])
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    return nb


def _failure_text(cell) -> str | None:
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            lines = [line for line in output.evalue.splitlines() if line.strip()]
            return f"{output.ename}: {lines[0] if lines else ''}".strip()
        if output.output_type == "stream" and output.name == "stderr":
            return "the test cell wrote to stderr: " + output.text.strip().splitlines()[-1][:200]
    return None


def hint_for(error: str | None) -> str | None:
    """One actionable sentence for the usual failure kinds."""
    if error is None:
        return None
    if error.startswith("NotImplementedError"):
        return "this exercise is not answered yet: replace `raise NotImplementedError()` with your code"
    if error.startswith("NameError"):
        return "a name the tests need is not defined: run the cells above, and keep the function's name"
    if error.startswith("AssertionError"):
        return "your answer runs but gives a wrong value: reread the exercise and compare with the example"
    if error.startswith(("TypeError", "ValueError")):
        return "check the arguments and return type the exercise asks for"
    if "stderr" in error:
        return "something printed to stderr during the tests (a warning?): silence it in your answer"
    return "read the error above, fix the answer cell, rerun the notebook top to bottom"


def _scores(api, name: str) -> dict[str, tuple[float, float]]:
    gradebook = api.gradebook
    try:
        submission = gradebook.find_submission_notebook(name, name, STUDENT)
        return {g.name: (g.score, g.max_score) for g in submission.grades if g.max_score > 0}
    finally:
        gradebook.close()


def check_notebook(notebook, root: Path | None = None) -> CheckResult:
    """Autograde ``notebook`` against its instructor version; never modifies the learner's file."""
    notebook = Path(notebook)
    solution = matching_solution(notebook, root)
    learner = sanitize(read_notebook(notebook))
    with temporary_course(solution) as (course, name), quiet_logs() as log:
        api = make_api(course)
        released = api.generate_assignment(name, force=True, create=True)
        if not released.get("success"):
            raise RuntimeError(f"could not prepare the grading course:\n{released.get('error')}")
        submitted = course / "submitted" / STUDENT / name
        submitted.mkdir(parents=True)
        nbformat.write(learner, submitted / f"{name}.ipynb")
        result = api.autograde(name, STUDENT, force=True, create=True)
        graded_path = course / "autograded" / STUDENT / name / f"{name}.ipynb"
        if not result.get("success") or not graded_path.exists():
            raise RuntimeError(f"nbgrader autograde failed:\n{result.get('error') or ''}\n{log.getvalue()[-3000:]}")
        scores = _scores(api, name)
        graded = nbformat.read(graded_path, as_version=4)
        shutil.rmtree(course / "autograded", ignore_errors=True)
    exercises, cell_errors = [], []
    for cell in graded.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in scores:
            score, max_score = scores[grade_id]
            error = _failure_text(cell) if score < max_score else None
            exercises.append(ExerciseScore(grade_id, score, max_score, error, hint_for(error)))
        elif cell.cell_type == "code" and any(o.output_type == "error" for o in cell.get("outputs", [])):
            cell_errors.append(f"{cell.get('id')}: {_failure_text(cell)}")
    return CheckResult(
        notebook=str(notebook), score=sum(e.score for e in exercises),
        max_score=sum(e.max_score for e in exercises), exercises=exercises, cell_errors=cell_errors,
    )


def format_result(result: CheckResult) -> str:
    """The human-readable report: one line per exercise, hints under failures, the total."""
    lines = [f"{result.notebook}"]
    width = max((len(e.grade_id) for e in result.exercises), default=10)
    for e in result.exercises:
        mark = "PASS" if e.score >= e.max_score else "FAIL"
        lines.append(f"  {mark}  {e.grade_id.ljust(width)}  {e.score:g}/{e.max_score:g}")
        if e.error:
            lines.append(f"        {e.error}")
            lines.append(f"        hint: {e.hint}")
    lines.append(f"  score: {result.score:g}/{result.max_score:g}" + ("  (full marks)" if result.full_marks else ""))
    return "\n".join(lines)


__all__ = ["CheckResult", "ExerciseScore", "check_notebook", "format_result", "sanitize"]
