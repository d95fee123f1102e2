"""Chapter sources: jupytext percent-format Python files compiled into nbgrader notebooks.

A chapter is written in ``solutions/src/NN_topic.py`` in jupytext's percent format (an ordinary Python file that
ruff, editors and ``duplicates`` read; JupyterLab opens it as a notebook when jupytext is installed). A line
starting with ``# %%`` opens a cell; its header carries the grading role as jupytext cell metadata::

    # %% [markdown]                         a markdown cell (each line commented with "# ")
    # %%                                    an ordinary code cell the learner may edit
    # %% locked="setup"                     a read-only code cell (nbgrader "locked") with id "setup"
    # %% [markdown] locked="intro"          a read-only markdown cell
    # %% solution="ex1_timer"               an autograded answer cell: the solution sits between
                                            ### BEGIN SOLUTION / ### END SOLUTION and nbgrader replaces it
    # %% tests="ex1_timer_tests" points=2   an autograder test cell (locked); hidden tests go between
                                            ### BEGIN HIDDEN TESTS / ### END HIDDEN TESTS (see ``sealed``)
    # %% id="demo"                          any cell may name its id (anchors for the quiz bank, tests)

Cell ids are deterministic: a cell uses its named id, other cells ``cNNN`` by position, so compiling the same
source twice gives the same bytes. Notebooks are written without outputs and with the ``python3`` kernel
(nbgrader forces the source's kernelspec onto submissions).
"""
from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat

KINDS = ("md", "code", "solution", "tests")
ROLES = ("locked", "solution", "tests", "id")
_JUPYTEXT_LAYOUT = ("lines_to_next_cell", "lines_to_end_of_cell_marker", "cell_marker")  # jupytext's own keys
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


class SourceError(ValueError):
    """A chapter source that cannot be compiled; the message names the file and cell."""


def _cell_from_jupytext(cell, where: str) -> dict:
    meta = {k: v for k, v in cell.metadata.items() if k not in _JUPYTEXT_LAYOUT}
    unknown = sorted(set(meta) - set(ROLES) - {"points"})
    if unknown:
        raise SourceError(f"{where}: unknown cell header key(s) {unknown}; use one of {', '.join(ROLES)} and points")
    roles = [r for r in ("locked", "solution", "tests") if r in meta]
    if len(roles) > 1:
        raise SourceError(f"{where}: a cell has one role, got {roles}")
    kind = "md" if cell.cell_type == "markdown" else "code"
    if roles and roles[0] in ("solution", "tests"):
        if kind == "md":
            raise SourceError(f"{where}: a {roles[0]} cell must be a code cell")
        kind = roles[0]
    cell_id = meta.get(roles[0]) if roles else meta.get("id")
    if cell_id is not None and (not isinstance(cell_id, str) or not _ID.match(cell_id)):
        raise SourceError(f"{where}: id {cell_id!r} must be 1-64 letters, digits, '-' or '_'")
    points = meta.get("points", 0)
    if kind == "tests" and (not isinstance(points, int) or points <= 0):
        raise SourceError(f"{where}: a tests cell needs points=N with N >= 1")
    if kind != "tests" and "points" in meta:
        raise SourceError(f"{where}: points=... belongs on a tests cell only")
    return {"kind": kind, "locked": roles == ["locked"], "id": cell_id, "points": points if kind == "tests" else 0,
            "source": cell.source.strip("\n")}


def parse_source(text: str, name: str = "<source>") -> list[dict]:
    """Split a percent-format chapter source into cell dicts: kind, locked, id, points, source."""
    try:
        nb = jupytext.reads(text, fmt="py:percent")
    except Exception as exc:  # jupytext raises many kinds; the message is what matters
        raise SourceError(f"{name}: not a jupytext percent-format file ({exc})") from exc
    cells = [_cell_from_jupytext(c, f"{name}: cell {i}") for i, c in enumerate(nb.cells)]
    ids = [c["id"] for c in cells if c["id"]]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SourceError(f"{name}: duplicate cell ids {duplicates}")
    return cells


def _nbgrader_metadata(cell: dict) -> dict | None:
    kind = cell["kind"]
    if kind == "solution":
        flags = {"grade": False, "solution": True, "locked": False}
    elif kind == "tests":
        flags = {"grade": True, "solution": False, "locked": True, "points": cell["points"]}
    elif cell["locked"]:
        flags = {"grade": False, "solution": False, "locked": True}
    else:
        return None
    return {"grade_id": cell["id"], "schema_version": 3, "task": False, **flags}


def compile_source(text: str, name: str = "<source>") -> nbformat.NotebookNode:
    """Build the instructor (nbgrader source) notebook from a chapter source; every tests cell must be sealed
    (one hidden section calling ``sealed_test`` once, runnable in the grader's process), else SourceError."""
    nb = nbformat.v4.new_notebook(metadata=_NOTEBOOK_METADATA)
    for index, cell in enumerate(parse_source(text, name)):
        cell_id = cell["id"] or f"c{index:03d}"
        if cell["kind"] == "md":
            nb_cell = nbformat.v4.new_markdown_cell(cell["source"], id=cell_id)
        else:
            nb_cell = nbformat.v4.new_code_cell(cell["source"], id=cell_id)
        metadata = _nbgrader_metadata(cell)
        if metadata:
            nb_cell.metadata["nbgrader"] = metadata
        nb.cells.append(nb_cell)
    _validate_sealed(nb, name)
    return nb


def _validate_sealed(nb: nbformat.NotebookNode, name: str) -> None:
    """Every tests cell must hold a sealed test that runs in the grader (``key.validate``)."""
    from coursekit.grading.key import SealedError, validate

    try:
        validate(nb, name)
    except SealedError as exc:
        raise SourceError(str(exc)) from exc


def compile_file(path) -> nbformat.NotebookNode:
    """Compile ``solutions/src/NN_topic.py`` into a notebook node."""
    path = Path(path)
    return compile_source(path.read_text(encoding="utf-8"), str(path))


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """The exact bytes we commit for a notebook (stable key order, trailing newline)."""
    return nbformat.writes(nb) + "\n"
