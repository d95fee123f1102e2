"""Chapter sources: readable plain text compiled into nbgrader notebooks.

A chapter is written in ``solutions/src/NN_topic.nbsrc``. Lines starting with ``%%`` open a new cell::

    %% md                                   a markdown cell
    %% code                                 an ordinary code cell the learner may edit
    %% code locked id=setup                 a read-only code cell (nbgrader "locked")
    %% md locked id=intro                   a read-only markdown cell
    %% solution id=ex1_timer                an autograded answer cell: the solution sits between
                                            ### BEGIN SOLUTION / ### END SOLUTION and nbgrader replaces it
    %% tests id=ex1_timer_tests points=2    an autograder test cell (locked); hidden tests go between
                                            ### BEGIN HIDDEN TESTS / ### END HIDDEN TESTS

Cell ids are deterministic: graded cells use their ``id``, other cells ``cNNN`` by position, so compiling the
same source twice gives the same bytes. Notebooks are written without outputs and with the ``python3`` kernel
(nbgrader forces the source's kernelspec onto submissions).
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

KINDS = ("md", "code", "solution", "tests")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


class SourceError(ValueError):
    """A chapter source that cannot be compiled; the message names the file and line."""


def _parse_header(header: str, where: str) -> dict:
    words = header.split()
    if not words or words[0] not in KINDS:
        raise SourceError(f"{where}: cell header '%% {header}' must start with one of {', '.join(KINDS)}")
    cell = {"kind": words[0], "locked": False, "id": None, "points": 0}
    for word in words[1:]:
        if word == "locked":
            cell["locked"] = True
        elif word.startswith("id="):
            cell["id"] = word[3:]
            if not _ID.match(cell["id"]):
                raise SourceError(f"{where}: id {cell['id']!r} must be 1-64 letters, digits, '-' or '_'")
        elif word.startswith("points="):
            cell["points"] = int(word[7:])
        else:
            raise SourceError(f"{where}: unknown word {word!r} in cell header (use locked, id=..., points=...)")
    if cell["kind"] in ("solution", "tests") and not cell["id"]:
        raise SourceError(f"{where}: a {cell['kind']} cell needs id=...")
    if cell["kind"] == "tests" and cell["points"] <= 0:
        raise SourceError(f"{where}: a tests cell needs points=N with N >= 1")
    if cell["locked"] and not cell["id"]:
        raise SourceError(f"{where}: a locked cell needs id=... (nbgrader tracks it by id)")
    return cell


def parse_source(text: str, name: str = "<source>") -> list[dict]:
    """Split a chapter source into cell dicts: kind, locked, id, points, source."""
    cells: list[dict] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("%%"):
            cells.append(_parse_header(line[2:].strip(), f"{name}:{number}") | {"lines": [], "line": number})
        elif cells:
            cells[-1]["lines"].append(line)
        elif line.strip():
            raise SourceError(f"{name}:{number}: text before the first '%%' cell header")
    for cell in cells:
        cell["source"] = "\n".join(cell.pop("lines")).strip("\n")
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
    """Build the instructor (nbgrader source) notebook from a chapter source."""
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
    return nb


def compile_file(path) -> nbformat.NotebookNode:
    """Compile ``solutions/src/NN_topic.nbsrc`` into a notebook node."""
    path = Path(path)
    return compile_source(path.read_text(encoding="utf-8"), str(path))


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """The exact bytes we commit for a notebook (stable key order, trailing newline)."""
    return nbformat.writes(nb) + "\n"
