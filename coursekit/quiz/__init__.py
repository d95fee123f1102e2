"""coursekit.quiz: the question bank, the terminal drill, the notebook widget and graded quiz cells.

- ``load_bank()``, ``questions(chapter=None, topic=None)``, ``bank_stats()``: the validated bank
  (``coursekit/quiz/bank/chNN_*.json``, schema in :mod:`coursekit.quiz.schema`).
- ``check_answer(question, response) -> Result``; unreadable responses raise ``ParseError``.
- ``instantiate(question, seed)``: a concrete copy of a parameterised question.
- ``show(chapter=..., topic=None, n=None, seed=0)``: an ipywidgets quiz.
- ``render(ids)`` / ``grade_answers(answers, ids)``: nbgrader quiz cells.
- ``run_drill`` / ``run_mock`` / ``print_stats`` and ``ProgressStore``: the terminal drill (``coursekit drill``).
"""
from coursekit.quiz.answers import ParseError, Result, check_answer
from coursekit.quiz.catalog import bank_stats, load_bank, questions
from coursekit.quiz.generators import instantiate
from coursekit.quiz.graded import check_answers, grade_answers, render, render_markdown
from coursekit.quiz.schema import BankError, Question

__all__ = [
    "BankError",
    "ParseError",
    "ProgressStore",
    "Question",
    "Result",
    "bank_stats",
    "check_answer",
    "check_answers",
    "grade_answers",
    "instantiate",
    "load_bank",
    "print_stats",
    "questions",
    "render",
    "render_markdown",
    "run_drill",
    "run_mock",
    "show",
]

_LAZY = {"show": "coursekit.quiz.widget", "run_drill": "coursekit.quiz.drill", "run_mock": "coursekit.quiz.drill",
         "print_stats": "coursekit.quiz.drill", "ProgressStore": "coursekit.quiz.store"}


def __getattr__(name):
    """Import the widget and drill modules on first use (ipywidgets is slow to import)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'coursekit.quiz' has no attribute {name!r}")
