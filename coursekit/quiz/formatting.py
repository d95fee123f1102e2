"""Questions as plain text (terminal drill) and Markdown (notebooks, export), choices lettered A, B, C ..."""
from __future__ import annotations

from coursekit.quiz.answers import letter
from coursekit.quiz.schema import Question

_HINTS = {
    "single": "one letter, e.g. B",
    "multiple": "every letter that applies, e.g. A,C",
    "numeric": "a number",
    "short": "a short answer in one line",
}


def answer_hint(question: Question) -> str:
    """How to type the answer to ``question``."""
    hint = _HINTS[question.type]
    if question.type == "numeric" and question.unit:
        hint += f" in {question.unit}"
    return hint


def tag_line(question: Question) -> str:
    """``ch02 . calibration . medium`` and the id, for headers."""
    return f"ch{question.chapter} . {question.topic} . {question.difficulty} . {question.id}"


def plain_text(question: Question) -> str:
    """Prompt plus lettered choices, for a terminal."""
    lines = [question.prompt]
    if question.choices:
        lines += [f"  {letter(i)}) {c}" for i, c in enumerate(question.choices)]
    return "\n".join(lines)


def markdown(question: Question, heading: str | None = None) -> str:
    """Prompt plus lettered choices as Markdown (``heading`` becomes a bold first line)."""
    parts = [f"**{heading}**\n" if heading else "", question.prompt, ""]
    if question.choices:
        parts += [f"- **{letter(i)})** {c}" for i, c in enumerate(question.choices)] + [""]
    parts.append(f"*Answer with {answer_hint(question)}.*")
    return "\n".join(p for p in parts if p is not None).strip() + "\n"
