"""Export the bank as Markdown (grouped by chapter) or as an Anki import file.

The Anki file is tab-separated ``front<TAB>back<TAB>tags`` with Anki's file headers (``#separator:tab``,
``#html:true``, ``#tags column:3``), one note per question; text is HTML-escaped and newlines become
``<br>``. Tags are ``coursekit chNN <topic> <difficulty> id::<question id>``. Parameterised questions are
exported as one concrete instance (``seed``). An existing file is never overwritten unless ``force=True``;
the path is checked before the bank is rendered.
"""
from __future__ import annotations

import contextlib
import html
import os
import tempfile
from collections import defaultdict
from pathlib import Path

from coursekit._paths import cannot_write, check_output_file
from coursekit._validate import check_choice
from coursekit.quiz.answers import expected_text
from coursekit.quiz.catalog import load_bank, questions
from coursekit.quiz.formatting import markdown, plain_text
from coursekit.quiz.generators import instantiate

FORMATS = ("markdown", "anki")
ANKI_HEADER = "#separator:tab\n#html:true\n#tags column:3\n"
EXISTS_HINT = "use --force (force=True) to overwrite it"


def to_markdown(qs, titles: dict | None = None, seed: int = 0) -> str:
    """Questions as Markdown: a ``## Chapter NN`` section per chapter, a ``### id`` section per question."""
    titles = titles or {}
    by_chapter = defaultdict(list)
    for q in qs:
        by_chapter[q.chapter].append(instantiate(q, seed))
    parts = ["# coursekit question bank\n"]
    for chapter in sorted(by_chapter):
        title = titles.get(chapter)
        parts.append(f"## Chapter {chapter}" + (f": {title}" if title else "") + "\n")
        for q in by_chapter[chapter]:
            parts.append(f"### {q.id}\n\n*{q.topic} . {q.difficulty} . {q.type} . section {q.section}*\n")
            parts.append(markdown(q))
            parts.append(f"**Answer:** {expected_text(q)}\n\n**Explanation:** {q.explanation}\n")
    return "\n".join(parts)


def _anki_field(text: str) -> str:
    return html.escape(text.replace("\t", "    ")).replace("\r\n", "\n").replace("\n", "<br>")


def to_anki(qs, seed: int = 0) -> str:
    """Questions as an Anki TSV (front, back, tags), with Anki's import headers."""
    lines = [ANKI_HEADER.rstrip("\n")]
    for q in qs:
        q = instantiate(q, seed)
        back = f"{expected_text(q)}\n\n{q.explanation}"
        tags = f"coursekit ch{q.chapter} {q.topic} {q.difficulty} id::{q.id}"
        lines.append("\t".join([_anki_field(plain_text(q)), _anki_field(back), tags]))
    return "\n".join(lines) + "\n"


def _write_new(path: Path, text: str, force: bool) -> None:
    """Write ``text`` to ``path``: refuse an existing file unless ``force``; replace atomically when forced.

    Every failure is an ``OSError`` with a one-line message naming the path (``coursekit._paths``).
    """
    try:
        if not force:
            with open(path, "x", encoding="utf-8") as f:
                f.write(text)
            return
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
    except FileExistsError:
        raise FileExistsError(f"path {str(path)!r} already exists; {EXISTS_HINT}") from None
    except OSError as exc:
        raise cannot_write("path", path, exc) from exc


def export_bank(path, fmt: str = "markdown", *, force: bool = False, chapter=None, topic=None, seed: int = 0,
                bank_dir=None) -> int:
    """Write the (filtered) bank to ``path`` as ``"markdown"`` or ``"anki"``; return the question count."""
    check_choice("fmt", fmt, FORMATS)
    target = check_output_file("path", path, overwrite=force, exists_hint=EXISTS_HINT)
    qs = questions(chapter, topic, directory=bank_dir)
    text = to_markdown(qs, load_bank(bank_dir).titles, seed) if fmt == "markdown" else to_anki(qs, seed)
    _write_new(target, text, force)
    return len(qs)
