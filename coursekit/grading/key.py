"""A chapter's grading key, read from its instructor notebook: which cells are graded, their points, and the
sealed check of every tests cell.

Each ``tests`` cell holds visible tests, then one hidden section::

    ### BEGIN HIDDEN TESTS
    ...  def _probe(): ...   def _check(out): ...   sealed_test(_probe, _check)
    ### END HIDDEN TESTS

The grader executes that section in its own process inside :func:`coursekit.grading.sealed.collecting`, which
records ``(probe, check, points)`` instead of running anything; the check is then applied to the probe data the
learner's kernel printed. A section is executed afresh for every submission, so a check that draws from a
generator defined at module level sees the same numbers for every learner. The points of a cell are the
instructor notebook's, never a gradebook's.
"""
from __future__ import annotations

import ast
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from coursekit.grading import sealed

BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
ROLES = ("solution", "tests", "locked")

_collect_lock = threading.Lock()  # sealed.collecting() is process-global


class SealedError(ValueError):
    """An instructor notebook (or chapter source) that the sealed grader cannot use; names the cell."""


@dataclass(frozen=True)
class Anchor:
    """A cell of the instructor notebook that grading relies on: a ``solution`` cell (the learner's answer),
    a ``tests`` cell or a ``locked`` (read-only) cell, the last two always run in the instructor's version."""

    grade_id: str
    role: str
    cell_id: str
    cell_type: str
    source: str
    flags: dict
    points: float = 0.0


@dataclass(frozen=True)
class TestsCell:
    """A tests cell split around its hidden section; ``exercise`` are the solution ids it grades."""

    grade_id: str
    points: float
    before: str
    hidden: str
    after: str
    exercise: tuple[str, ...]

    @property
    def visible(self) -> str:
        """The source the learner sees (what nbgrader's student version keeps)."""
        return "\n".join(part for part in (self.before, self.after) if part.strip())


@dataclass(frozen=True)
class Key:
    """The grading key of one chapter."""

    name: str
    anchors: tuple[Anchor, ...]
    tests: tuple[TestsCell, ...]
    notebook: nbformat.NotebookNode

    def anchor(self, grade_id: str) -> Anchor | None:
        return next((a for a in self.anchors if a.grade_id == grade_id), None)

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)


def _role(flags: dict) -> str | None:
    if flags.get("grade") and not flags.get("solution"):
        return "tests"
    if flags.get("solution"):
        return "solution"
    if flags.get("locked"):
        return "locked"
    return None


def grading_flags(cell) -> dict | None:
    """A cell's nbgrader metadata if it is a well-formed dict with a string grade id, else None."""
    flags = cell.get("metadata", {}).get("nbgrader")
    if isinstance(flags, dict) and isinstance(flags.get("grade_id"), str) and flags["grade_id"]:
        return flags
    return None


def split_hidden(source: str, where: str) -> tuple[str, str, str]:
    """``(visible before, hidden, visible after)`` of a tests cell; exactly one hidden section is required."""
    lines = source.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN_HIDDEN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_HIDDEN]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise SealedError(f"{where}: a tests cell needs exactly one '{BEGIN_HIDDEN}' ... '{END_HIDDEN}' section "
                          f"holding a sealed_test(...) call (see coursekit/grading/sealed.py)")
    b, e = begins[0], ends[0]
    return "\n".join(lines[:b]), "\n".join(lines[b + 1:e]), "\n".join(lines[e + 1:])


def collect_check(hidden: str, where: str, points: float | None = None) -> Callable:
    """Execute a hidden section here, in the grader, and return its check function.

    Raises :class:`SealedError` when the section does not run outside the learner's kernel (it may only use
    names it defines or imports itself) or does not call ``sealed_test`` exactly once.
    """
    namespace: dict = {"__name__": "coursekit_sealed_check"}
    with _collect_lock, sealed.collecting() as found, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            exec(compile(hidden, where, "exec"), namespace)  # noqa: S102 - the instructor's own code
        except Exception as exc:
            raise SealedError(
                f"{where}: the hidden tests do not run in the grader ({type(exc).__name__}: {exc}); a hidden "
                "section may only use names it imports or defines itself (the learner's names exist only "
                "inside _probe)") from exc
    if len(found) != 1:
        raise SealedError(f"{where}: the hidden tests must call sealed_test(_probe, _check) exactly once, "
                          f"found {len(found)} calls")
    _probe, check, declared = found[0]
    if declared is not None and points is not None and float(declared) != float(points):
        raise SealedError(f"{where}: sealed_test(..., points={declared}) differs from the cell's points={points}")
    return check


def kernel_hidden(hidden: str) -> str:
    """The hidden section as sent to the learner's kernel: the check function passed to ``sealed_test`` keeps its
    name and signature but loses its body (under the seal the kernel never calls it), so the references and the
    named wrong answers never enter the kernel. Left unchanged when it cannot be parsed or the check is not a
    top-level ``def``."""
    try:
        tree = ast.parse(hidden)
    except SyntaxError:
        return hidden
    names = {call.args[1].id for call in ast.walk(tree) if isinstance(call, ast.Call)
             and getattr(call.func, "id", getattr(call.func, "attr", None)) == "sealed_test"
             and len(call.args) >= 2 and isinstance(call.args[1], ast.Name)}
    checks = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    if not checks:
        return hidden
    lines = hidden.splitlines()
    for node in sorted(checks, key=lambda n: n.lineno, reverse=True):
        first, last = node.body[0].lineno, node.end_lineno
        if first == node.lineno:  # `def _check(out): ...` on one line: left as is
            continue
        indent = " " * (node.col_offset + 4)
        lines[first - 1:last] = [f"{indent}pass  # decided by the grader, outside this kernel"]
    return "\n".join(lines)


def read_key(nb: nbformat.NotebookNode, name: str) -> Key:
    """The grading key of an instructor notebook (checks its structure; does not execute anything)."""
    anchors, tests, pending, seen = [], [], [], set()
    for index, cell in enumerate(nb.cells):
        flags = grading_flags(cell)
        role = _role(flags) if flags else None
        if role is None:
            continue
        grade_id = flags["grade_id"]
        where = f"{name}: cell {index} ({grade_id!r})"
        if grade_id in seen:
            raise SealedError(f"{where}: duplicate grade id")
        seen.add(grade_id)
        points = float(flags.get("points") or 0) if role == "tests" else 0.0
        anchors.append(Anchor(grade_id, role, cell.get("id") or grade_id, cell.cell_type, cell.source, dict(flags),
                              points))
        if role == "solution":
            pending.append(grade_id)
        elif role == "tests":
            if cell.cell_type != "code" or points <= 0:
                raise SealedError(f"{where}: a tests cell must be a code cell with points > 0")
            before, hidden, after = split_hidden(cell.source, where)
            tests.append(TestsCell(grade_id, points, before, hidden, after, tuple(pending)))
            pending = []
    return Key(name, tuple(anchors), tuple(tests), nb)


def load_key(path) -> Key:
    """Read the instructor notebook at ``path`` (e.g. ``solutions/02_ptq.ipynb``) as a grading key."""
    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:
        raise SealedError(f"instructor notebook {str(path)!r} is not readable ({type(exc).__name__}: {exc})") from exc
    return read_key(nb, path.stem)


def checks(key: Key) -> dict[str, Callable]:
    """A fresh check function for every tests cell, by grade id."""
    return {t.grade_id: collect_check(t.hidden, f"{key.name}: tests cell {t.grade_id!r}", t.points) for t in key.tests}


def validate(nb: nbformat.NotebookNode, name: str) -> None:
    """Authoring check (``coursekit build``): every tests cell has one hidden section that calls ``sealed_test``
    once and runs in a clean process. Raises :class:`SealedError` naming the cell."""
    checks(read_key(nb, name))


__all__ = ["Anchor", "Key", "SealedError", "TestsCell", "checks", "collect_check", "grading_flags", "kernel_hidden",
           "load_key", "read_key", "split_hidden", "validate"]
