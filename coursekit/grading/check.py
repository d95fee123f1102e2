"""``coursekit check NOTEBOOK``: the sealed grade of one learner notebook, against the chapter's instructor notebook.

The learner's file is only read. The instructor notebook ``solutions/NN_topic.ipynb`` is found by the file name
(copies such as ``02_ptq (1).ipynb`` included) and the notebook is graded by the sealed engine
(:mod:`coursekit.grading.engine`): the same engine an instructor runs with ``coursekit grade``.

In self-study, the grading key comes from this checkout (``solutions/``) and graded quiz answers are checked
against the question bank installed here; ``check`` runs the learner's code in a local kernel and is not a
sandbox (see the README, "What check guarantees").
"""
from __future__ import annotations

import re
from pathlib import Path

from coursekit.grading.config import SEALED_CELL_TIMEOUT_S
from coursekit.grading.course import NOTEBOOK_NAME, repo_root, solution_notebooks
from coursekit.grading.engine import grade_sealed, hint_for, read_notebook
from coursekit.grading.key import grading_flags, load_key
from coursekit.grading.result import CheckResult, ExerciseScore

SELF_STUDY_NOTE = ("note: self-study grading; graded quiz answers are checked against the question bank installed "
                   "here, and check runs your code in a local kernel: it is not a sandbox.")


def matching_solution(notebook: Path, root: Path | None = None) -> Path:
    """The instructor notebook ``solutions/NAME.ipynb`` that grades ``notebook`` (matched by file name)."""
    if not notebook.exists():
        raise FileNotFoundError(f"NOTEBOOK {str(notebook)!r} does not exist")
    if notebook.is_dir():
        raise ValueError(f"NOTEBOOK {str(notebook)!r} is a directory; give the path of a .ipynb file")
    if notebook.suffix != ".ipynb":
        raise ValueError(f"NOTEBOOK {str(notebook)!r} is not a .ipynb file")
    root = root or repo_root()
    # Tolerate copies such as "02_ptq (1).ipynb" or "02_ptq-Copy1.ipynb" by their chapter prefix.
    match = re.match(r"^(\d\d_[a-z0-9_]+?)(?:[ -]\(?copy\d*\)?| \(\d+\)|-Copy\d+)?$", notebook.stem, re.IGNORECASE)
    candidate = root / "solutions" / f"{match.group(1)}.ipynb" if match else None
    if candidate is not None and candidate.exists():
        return candidate
    known = ", ".join(p.stem for p in sorted((root / "solutions").glob("*.ipynb")) if NOTEBOOK_NAME.match(p.stem))
    raise ValueError(f"NOTEBOOK {str(notebook)!r} is not a course notebook; known chapters: {known}")


def guess_chapter(notebook: Path, root: Path | None = None) -> str | None:
    """The chapter whose graded cells a notebook has most of (to name the right chapter in a message)."""
    try:
        ids = {f["grade_id"] for c in read_notebook(notebook).cells if (f := grading_flags(c))}
    except (ValueError, OSError):
        return None
    best, overlap = None, 0
    for solution in solution_notebooks(root):
        try:
            theirs = {a.grade_id for a in load_key(solution).anchors}
        except ValueError:
            continue
        common = len(ids & theirs)
        if common > overlap:
            best, overlap = solution.stem, common
    return best


def check_notebook(notebook, root: Path | None = None, timeout: float = SEALED_CELL_TIMEOUT_S) -> CheckResult:
    """Grade ``notebook`` against its instructor version with the sealed engine; never modifies the learner's file."""
    notebook = Path(notebook)
    solution = matching_solution(notebook, root)
    result = grade_sealed(notebook, solution, timeout=timeout)
    if result.wrong_chapter:
        guess = guess_chapter(notebook, root)
        if guess and guess != solution.stem:
            result.messages.append(f"it looks like chapter {guess}: `coursekit check` grades a notebook by its file "
                                   f"name, so name the file {guess}.ipynb")
    return result


def format_result(result: CheckResult, note: str | None = SELF_STUDY_NOTE) -> str:
    """The human-readable report: one line per exercise, the reason and a hint under each loss, the total,
    then notes on the notebook, errors of other cells and the scan's flags."""
    lines = [f"{result.notebook}"]
    width = max((len(e.grade_id) for e in result.exercises), default=10)
    for e in result.exercises:
        mark = "PASS" if e.score >= e.max_score else ("PART" if e.score > 0 else "FAIL")
        lines.append(f"  {mark}  {e.grade_id.ljust(width)}  {e.score:g}/{e.max_score:g}")
        if e.error:
            lines.append(f"        {e.error}")
        if e.hint:
            lines.append(f"        hint: {e.hint}")
    lines.append(f"  score: {result.score:g}/{result.max_score:g}" + ("  (full marks)" if result.full_marks else ""))
    for title, items in (("about your notebook", result.messages), ("errors in other cells", result.cell_errors),
                         ("flagged for review (not part of the score)", result.flags)):
        if items:
            lines.append(f"  {title}:")
            lines.extend(f"    - {item}" for item in items)
    if note:
        lines.append(f"  {note}")
    return "\n".join(lines)


__all__ = ["SELF_STUDY_NOTE", "CheckResult", "ExerciseScore", "check_notebook", "format_result", "guess_chapter",
           "hint_for", "matching_solution", "read_notebook"]
