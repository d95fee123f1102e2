"""Assemble the notebook the sealed grader runs: the instructor's skeleton with the learner's answers in it.

The learner's file is only read. From the instructor notebook (the grading key) come every read-only cell and
every tests cell (deleted ones restored, edited ones reverted, a hidden section included); from the learner's
notebook come the answer cells (``solution``, matched by grade id) and every cell the learner added or may edit,
each kept in its place relative to the graded cells (it follows the graded cell it followed in the learner's
notebook).

Learners paste copies of graded cells (JupyterLab copies the grading metadata too). For every graded id one
learner cell is *chosen*: for an answer cell the last copy above the next graded cell (what "Run All" would
leave defined when the tests run), for a read-only or tests cell the first copy after the previous chosen cell.
Every other copy is kept as an ordinary ungraded cell in its place and never graded. A cell claiming a grade id
the chapter does not have (pasted from another notebook, or renamed) is run as an ordinary cell. Each repair is
reported with a message that names the cell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import nbformat

from coursekit.grading.key import Anchor, Key, grading_flags

_COMPARED_FLAGS = ("grade", "solution", "locked")


@dataclass
class Step:
    """One cell of the notebook the grader runs. ``kind``: ``learner`` (code the learner wrote or may edit),
    ``course`` (an instructor read-only code cell), ``tests`` (a graded tests cell, run by the engine in its
    three parts) or ``markdown`` (not run)."""

    kind: str
    source: str
    label: str
    grade_id: str | None = None
    edited: bool = True  # learner code that differs from the course's version of the cell (what the scan reads)


@dataclass
class Repaired:
    steps: list[Step]
    messages: list[str] = field(default_factory=list)
    # Per tests grade id: why its exercise cannot be answered as submitted (e.g. the answer cell is missing).
    problems: dict[str, list[str]] = field(default_factory=dict)
    wrong_chapter: str | None = None


def _preview(cell) -> str:
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return (first[:40] + "...") if len(first) > 40 else first


def learner_label(index: int, cell) -> str:
    """How messages name a cell of the learner's notebook: its 1-based position and first line."""
    preview = _preview(cell)
    return f"cell {index + 1} of your notebook" + (f" ({preview!r})" if preview else "")


def anchor_label(anchor: Anchor) -> str:
    kind = {"solution": "answer cell", "tests": "test cell", "locked": "read-only cell"}[anchor.role]
    return f"the {kind} {anchor.grade_id!r}"


def _claims(nb, key: Key) -> tuple[dict[str, list[int]], list[int], list[int]]:
    """Learner cells by the graded id they claim; cells claiming unknown ids; cells whose metadata was removed."""
    by_cell_id = {a.cell_id: a.grade_id for a in key.anchors}
    claims: dict[str, list[int]] = {}
    unknown, stripped = [], []
    for index, cell in enumerate(nb.cells):
        flags = grading_flags(cell)
        raw = cell.get("metadata", {}).get("nbgrader")
        if flags is not None:
            if key.anchor(flags["grade_id"]) is None:
                unknown.append(index)
            else:
                claims.setdefault(flags["grade_id"], []).append(index)
        elif raw is not None:  # grading metadata that is not even well formed
            unknown.append(index)
        elif cell.get("id") in by_cell_id:  # the course's cell with its grading metadata deleted
            claims.setdefault(by_cell_id[cell["id"]], []).append(index)
            stripped.append(index)
    return claims, unknown, stripped


def _choose(key: Key, claims: dict[str, list[int]]) -> dict[str, int]:
    """The learner cell that plays each graded id (see the module docstring)."""
    chosen: dict[str, int] = {}
    cursor = -1
    anchors = list(key.anchors)
    for k, anchor in enumerate(anchors):
        candidates = claims.get(anchor.grade_id, [])
        if not candidates:
            continue
        after = [p for p in candidates if p > cursor]
        if anchor.role == "solution":
            following = next((a.grade_id for a in anchors[k + 1:] if claims.get(a.grade_id)), None)
            limits = sorted(p for p in claims.get(following, []) if p > cursor) + [math.inf]
            pick = next((max(before) for limit in limits if (before := [p for p in after if p < limit])), None)
            pick = pick if pick is not None else candidates[-1]
        else:
            pick = after[0] if after else candidates[-1]
        chosen[anchor.grade_id] = pick
        cursor = max(cursor, pick)
    return chosen


def _wrong_chapter(nb, key: Key, claims, unknown) -> str | None:
    known = set(claims)
    foreign = {grading_flags(nb.cells[i])["grade_id"] for i in unknown if grading_flags(nb.cells[i])}
    if known and len(foreign) <= len(known):
        return None
    if not known and not foreign:
        return (f"this notebook has none of the graded cells of chapter {key.name} (no grading metadata, no "
                f"matching cells): grade the notebook of chapter {key.name}, or start again from its student "
                f"notebook")
    sample = ", ".join(sorted(foreign)[:4])
    return (f"this notebook is not chapter {key.name}: {len(foreign)} of its graded cells belong to another "
            f"notebook ({sample}{', ...' if len(foreign) > 4 else ''}) and {len(known)} to this one; check the "
            f"file you submitted")


def _flag_changes(learner_flags: dict | None, anchor: Anchor) -> list[str]:
    if learner_flags is None:
        return []
    changed = [name for name in _COMPARED_FLAGS if bool(learner_flags.get(name)) != bool(anchor.flags.get(name))]
    if anchor.role == "tests" and learner_flags.get("points") != anchor.flags.get("points"):
        changed.append("points")
    return changed


def repair(nb: nbformat.NotebookNode, key: Key) -> Repaired:
    """The steps to run for learner notebook ``nb`` graded with ``key`` (``nb`` is not modified)."""
    claims, unknown, stripped = _claims(nb, key)
    wrong = _wrong_chapter(nb, key, claims, unknown)
    if wrong:
        return Repaired(steps=[], messages=[wrong], wrong_chapter=wrong)
    chosen = _choose(key, claims)
    by_cell_id = {a.cell_id: a.grade_id for a in key.anchors}
    chosen_at = {p: gid for gid, p in chosen.items()}
    course_cells = {c.get("id"): c.source for c in key.notebook.cells if grading_flags(c) is None}
    out = Repaired(steps=[])
    say = out.messages.append

    # Free cells follow the chosen cell that precedes them in the learner's notebook.
    attached: dict[str | None, list[Step]] = {}
    owner: str | None = None
    for index, cell in enumerate(nb.cells):
        if index in chosen_at:
            owner = chosen_at[index]
            continue
        if cell.cell_type not in ("code", "markdown"):
            continue
        label = learner_label(index, cell)
        flags = grading_flags(cell)
        if index in unknown:
            gid = flags["grade_id"] if flags else "?"
            say(f"{label} has grading metadata for {gid!r}, which chapter {key.name} does not have (pasted from "
                "another notebook, or changed?): it was run as an ordinary cell and earns no points")
        elif flags is not None or index in stripped:
            gid = flags["grade_id"] if flags else by_cell_id[cell.get("id")]
            if key.anchor(gid).role == "solution":
                say(f"{label} is a second copy of {anchor_label(key.anchor(gid))}: it was run as an ordinary cell "
                    "in its place; only the copy right above the tests is graded. Delete the copies you do not want")
            else:
                say(f"{label} is a copy of {anchor_label(key.anchor(gid))}: it was run as an ordinary cell in its "
                    "place; the course's version runs where the cell belongs. You can delete the copy")
        kind = "markdown" if cell.cell_type == "markdown" else "learner"
        edited = course_cells.get(cell.get("id"), None) != cell.source
        attached.setdefault(owner, []).append(Step(kind, cell.source, label, edited=edited))

    out.steps.extend(attached.get(None, []))
    for anchor in key.anchors:
        index = chosen.get(anchor.grade_id)
        cell = nb.cells[index] if index is not None else None
        label = learner_label(index, cell) if cell is not None else anchor_label(anchor)
        if cell is not None:
            changes = _flag_changes(grading_flags(cell), anchor)
            if changes:
                say(f"{label}: the grading settings of {anchor_label(anchor)} were changed ({', '.join(changes)}); "
                    "the course's settings were used")
            if index in stripped:
                say(f"{label}: the grading metadata of {anchor_label(anchor)} was removed; the cell was "
                    "recognised by its id and graded as usual")
        if anchor.role == "solution":
            if cell is None:
                problem = (f"{anchor_label(anchor)} is missing from your notebook (deleted?): copy it back from "
                           f"the student notebook of chapter {key.name}, answer it, and check again")
                say(problem)
                for tests in key.tests:
                    if anchor.grade_id in tests.exercise:
                        out.problems.setdefault(tests.grade_id, []).append(problem)
            else:
                if cell.cell_type != "code":
                    say(f"{label}: {anchor_label(anchor)} was turned into a {cell.cell_type} cell; it was run as "
                        "code. Change its type back to Code")
                out.steps.append(Step("learner", cell.source, label, anchor.grade_id,
                                      edited=cell.source != anchor.source))
        else:
            if cell is None:
                say(f"{anchor_label(anchor)} was missing (deleted?) and was restored from the course")
            elif anchor.cell_type == "code" and cell.source.strip() not in _course_versions(key, anchor):
                say(f"{label}: {anchor_label(anchor)} was edited; the course's version was run instead")
            if anchor.cell_type == "markdown":
                out.steps.append(Step("markdown", anchor.source, label, anchor.grade_id, edited=False))
            else:
                out.steps.append(Step("tests" if anchor.role == "tests" else "course", anchor.source,
                                      anchor_label(anchor), anchor.grade_id, edited=False))
        out.steps.extend(attached.get(anchor.grade_id, []))
    return out


def _course_versions(key: Key, anchor: Anchor) -> tuple[str, ...]:
    """The sources a read-only or tests cell may have unedited: the instructor's, and the student version of a
    tests cell (without its hidden section)."""
    visible = [t.visible.strip() for t in key.tests if t.grade_id == anchor.grade_id]
    return (anchor.source.strip(), *visible)


__all__ = ["Repaired", "Step", "anchor_label", "learner_label", "repair"]
