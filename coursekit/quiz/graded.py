"""Graded quiz cells for nbgrader: show bank questions in a notebook and grade a student's answers.

In the notebook, a locked cell shows the questions and an autograded answer cell holds the responses::

    coursekit.quiz.render(["ch00-warmup", "ch00-bits"])      # locked markdown-producing cell
    answers = {"ch00-warmup": "B", "ch00-bits": "3.5 GB"}     # the student's answer cell

and a hidden test cell calls ``coursekit.quiz.grade_answers(answers, ["ch00-warmup", "ch00-bits"])``. The
right answers live in the installed bank, never in the notebook; a wrong answer raises AssertionError naming
the ids that are wrong, missing or unreadable, never the right answer. Nothing is written to stderr (nbgrader
scores a test cell with stderr output as 0). Use the same ``seed`` in ``render`` and ``grade_answers`` for
parameterised questions.
"""
from __future__ import annotations

import warnings

from coursekit.quiz.answers import ParseError, check_answer
from coursekit.quiz.catalog import load_bank
from coursekit.quiz.formatting import markdown
from coursekit.quiz.generators import instantiate


def _concrete(ids, seed: int, bank_dir):
    bank = load_bank(bank_dir)
    if isinstance(ids, str):
        ids = [ids]
    return [instantiate(bank.get(qid), seed) for qid in ids]


def render_markdown(ids, *, seed: int = 0, bank_dir=None) -> str:
    """The questions as Markdown, numbered and headed by their id, choices lettered A, B, C ..."""
    qs = _concrete(ids, seed, bank_dir)
    return "\n".join(markdown(q, heading=f"{n}. `{q.id}`") for n, q in enumerate(qs, 1))


def render(ids, *, seed: int = 0, bank_dir=None):
    """An ``IPython.display.Markdown`` of the questions (displayed as a cell's last expression)."""
    from IPython.display import Markdown

    return Markdown(render_markdown(ids, seed=seed, bank_dir=bank_dir))


def check_answers(answers: dict, ids, *, seed: int = 0, bank_dir=None) -> dict[str, str]:
    """``id -> "correct" | "wrong" | "missing" | "unreadable"`` for each id, without raising."""
    if not isinstance(answers, dict):
        raise TypeError(f"answers must be a dict mapping question ids to answers, got {type(answers).__name__}")
    verdicts = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for q in _concrete(ids, seed, bank_dir):
            response = answers.get(q.id)
            if response is None or (isinstance(response, str) and not response.strip()):
                verdicts[q.id] = "missing"
                continue
            try:
                verdicts[q.id] = "correct" if check_answer(q, response).correct else "wrong"
            except ParseError:
                verdicts[q.id] = "unreadable"
    return verdicts


def grade_answers(answers: dict, ids, *, seed: int = 0, bank_dir=None) -> int:
    """Assert that every question in ``ids`` is answered right; return how many there are.

    The AssertionError lists the wrong, missing and unreadable ids, never the right answers.
    """
    verdicts = check_answers(answers, ids, seed=seed, bank_dir=bank_dir)
    problems = []
    for kind, label in (("wrong", "wrong"), ("missing", "not answered"), ("unreadable", "could not be read")):
        bad = [qid for qid, v in verdicts.items() if v == kind]
        if bad:
            problems.append(f"{label}: {', '.join(bad)}")
    if problems:
        right = sum(v == "correct" for v in verdicts.values())
        raise AssertionError(f"{right}/{len(verdicts)} right; " + "; ".join(problems))
    return len(verdicts)
