"""Load the question bank shipped in ``coursekit/quiz/bank/`` (or another directory) and query it.

``load_bank()`` reads every ``chNN_*.json`` file through ``importlib.resources``, validates it with
:mod:`coursekit.quiz.schema` and checks that ids are unique across files. The result is cached per
directory; ``questions(chapter=..., topic=...)`` and ``bank_stats()`` work on it.
"""
from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from coursekit._validate import check_choice
from coursekit.quiz.schema import BankError, Question, validate_file


@dataclass(frozen=True)
class Bank:
    """All questions of a bank, in file order, with the chapter titles."""

    questions: tuple[Question, ...]
    titles: dict  # chapter -> title
    files: tuple[str, ...]

    def get(self, qid: str) -> Question:
        """The question with id ``qid``; KeyError naming the id otherwise."""
        for q in self.questions:
            if q.id == qid:
                return q
        raise KeyError(f"no question with id {qid!r} in the bank")

    @property
    def chapters(self) -> list[str]:
        return sorted({q.chapter for q in self.questions})

    @property
    def topics(self) -> list[str]:
        return sorted({q.topic for q in self.questions})


def _bank_files(directory):
    """``(name, text)`` of each bank file in ``directory`` (default: the installed package bank)."""
    root = resources.files("coursekit.quiz").joinpath("bank") if directory is None else Path(directory)
    if directory is not None and not Path(directory).is_dir():
        raise BankError(f"bank directory {directory} does not exist")
    if not root.is_dir():
        return []
    entries = sorted((e for e in root.iterdir() if e.name.endswith(".json")), key=lambda e: e.name)
    return [(e.name, e.read_text(encoding="utf-8")) for e in entries]


def _parse(name: str, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise BankError(f"bank file {name}: not valid JSON: {err.msg} at line {err.lineno}, "
                        f"column {err.colno}") from None


@functools.lru_cache(maxsize=8)
def _load(directory: str | None) -> Bank:
    questions, titles, files, owner = [], {}, [], {}
    for name, text in _bank_files(directory):
        chapter, title, items = validate_file(name, _parse(name, text))
        for q in items:
            if q.id in owner:
                raise BankError(f"bank file {name}, question {q.id}: duplicate id, already in {owner[q.id]}")
            owner[q.id] = name
        titles[chapter] = title
        questions += items
        files.append(name)
    return Bank(tuple(questions), titles, tuple(files))


def load_bank(directory=None) -> Bank:
    """Load and validate every bank file; BankError names the file, question id and problem.

    ``directory`` selects another folder of ``chNN_*.json`` files (course authors, tests).
    """
    return _load(None if directory is None else str(Path(directory).resolve()))


def clear_cache() -> None:
    """Forget loaded banks (after editing bank files in the same process)."""
    _load.cache_clear()


def normalize_chapter(chapter) -> str:
    """``2``, ``"2"``, ``"02"`` and ``"ch02"`` all mean chapter ``"02"``."""
    text = str(chapter).strip().lower().removeprefix("ch")
    return f"{int(text):02d}" if text.isdigit() else text


def questions(chapter=None, topic=None, *, directory=None) -> list[Question]:
    """Questions of the bank, optionally of one chapter and/or one topic.

    An unknown chapter or topic raises ValueError listing the known ones (within the chapter, if given).
    """
    bank = load_bank(directory)
    selected = list(bank.questions)
    if not selected and (chapter is not None or topic is not None):
        raise ValueError("the question bank is empty: no chNN_*.json files in "
                         f"{directory or 'coursekit/quiz/bank'}")
    if chapter is not None:
        chapter = check_choice("chapter", normalize_chapter(chapter), bank.chapters)
        selected = [q for q in selected if q.chapter == chapter]
    if topic is not None:
        check_choice("topic" if chapter is None else f"topic (in chapter {chapter})", topic,
                     sorted({q.topic for q in selected}))
        selected = [q for q in selected if q.topic == topic]
    return selected


def bank_stats(directory=None) -> dict:
    """Question counts: total and by chapter, topic, type and difficulty (plus the chapter titles)."""
    bank = load_bank(directory)
    qs = bank.questions

    def count(attr):
        return dict(sorted(Counter(getattr(q, attr) for q in qs).items()))

    return {"total": len(qs), "files": list(bank.files), "titles": dict(sorted(bank.titles.items())),
            "by_chapter": count("chapter"), "by_topic": count("topic"), "by_type": count("type"),
            "by_difficulty": count("difficulty"), "parameterised": sum(q.generator is not None for q in qs)}
