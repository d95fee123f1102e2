"""``coursekit build``: chapter sources -> instructor notebooks -> student notebooks.

1. ``solutions/src/NN_topic.py`` is compiled into ``solutions/NN_topic.ipynb`` (see ``authoring``).
2. nbgrader's ``generate_assignment`` turns each instructor notebook into the student notebook
   ``notebooks/NN_topic.ipynb``: solutions replaced by stubs, hidden tests removed, checksums added.

Both steps are deterministic, so ``--check`` can rebuild in memory and compare with what is committed.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from coursekit.grading.authoring import compile_file, notebook_text
from coursekit.grading.course import make_api, quiet_logs, repo_root, temporary_course


@dataclass
class BuildItem:
    """One generated file and whether it differs from what is on disk."""

    path: Path
    text: str
    stale: bool
    backup: Path | None = None


def student_notebook_text(solution: Path) -> str:
    """The student notebook nbgrader generates from one instructor notebook (as committed bytes)."""
    with temporary_course(solution) as (root, name), quiet_logs() as log:
        result = make_api(root).generate_assignment(name, force=True, create=True)
        released = root / "release" / name / f"{name}.ipynb"
        if not result.get("success") or not released.exists():
            raise RuntimeError(f"nbgrader generate_assignment failed for {solution}:\n"
                               f"{result.get('error') or ''}\n{result.get('log') or log.getvalue()}")
        nb = nbformat.read(released, as_version=4)
    return notebook_text(nb)


def _item(path: Path, text: str) -> BuildItem:
    return BuildItem(path, text, not path.exists() or path.read_text(encoding="utf-8") != text)


def plan_build(root: Path | None = None, chapters: list[str] | None = None) -> list[BuildItem]:
    """Everything ``build`` would write, with staleness, without writing anything."""
    root = root or repo_root()
    sources = sorted((root / "solutions" / "src").glob("[0-9][0-9]_*.py"))
    if chapters:
        sources = [s for s in sources if any(s.stem.startswith(c) for c in chapters)]
    items = []
    for source in sources:
        solution = root / "solutions" / f"{source.stem}.ipynb"
        solution_item = _item(solution, notebook_text(compile_file(source)))
        items.append(solution_item)
        # The student version must come from the fresh instructor notebook, written or not.
        staged = solution
        if solution_item.stale:
            staged = Path(root / ".coursekit" / "staging" / solution.name)
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_text(solution_item.text, encoding="utf-8")
        items.append(_item(root / "notebooks" / solution.name, student_notebook_text(staged)))
    return items


def has_learner_work(path: Path, fresh_text: str) -> bool:
    """True if the notebook at ``path`` holds anything a learner made: outputs, or answers in solution cells."""
    try:
        old = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    except (ValueError, OSError):  # an unreadable file is kept too: it may still be the learner's
        return True
    fresh = {c.get("id"): c.source for c in nbformat.reads(fresh_text, as_version=4).cells}
    for cell in old.cells:
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            return True
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and fresh.get(cell.get("id")) != cell.source:
            return True
    return False


def backup(path: Path, root: Path) -> Path:
    """Copy ``path`` to ``.coursekit/backups/NAME-TIMESTAMP.ipynb`` and return the copy's path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = root / ".coursekit" / "backups" / f"{path.stem}-{stamp}{path.suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, target)
    return target


def build(root: Path | None = None, chapters: list[str] | None = None, check: bool = False) -> list[BuildItem]:
    """Regenerate (or with ``check``, only compare) solutions/ and notebooks/; return the stale items.

    A student notebook that holds a learner's work is copied to ``.coursekit/backups/`` before it is
    replaced (``item.backup`` says where), so a rebuild never loses anything a learner wrote.
    """
    root = root or repo_root()
    stale = [item for item in plan_build(root, chapters) if item.stale]
    if not check:
        for item in stale:
            if item.path.exists() and item.path.parent.name == "notebooks" and has_learner_work(item.path, item.text):
                item.backup = backup(item.path, root)
            item.path.parent.mkdir(parents=True, exist_ok=True)
            item.path.write_text(item.text, encoding="utf-8")
    return stale
