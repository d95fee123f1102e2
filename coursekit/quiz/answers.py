"""Read a typed response and check it against a question.

Choices are shown lettered ``A, B, C ...``. A response to a choice question may be a letter (``"B"``,
``"b)"``), a 1-based number (``"2"``) or the choice text itself; a multiple-answer response lists several
(``"a,c"``, ``"A C"``, ``"ac"``, ``"1 3"``). A numeric response is a number with an optional unit
(``"3.5"``, ``"3.5 GB"``, ``"3500 MB"``, ``"1/3"``, ``"2^-7"``, ``"50%"``); byte units are converted to the
question's unit. A response that cannot be read raises :class:`ParseError`, so a drill asks again instead of
counting a typo as a wrong answer.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from coursekit.quiz.schema import Question

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_BYTE_UNITS = {"b": 1, "byte": 1, "bytes": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
               "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}
_NUMBER = r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:e[-+]?\d+)?"
_VALUE = re.compile(
    rf"^(?P<a>{_NUMBER})(?:\s*(?P<op>/|\^|\*\*)\s*(?P<b>{_NUMBER}))?\s*(?P<unit>[a-z%×µ][a-z% ./×µ-]*)?$")


class ParseError(ValueError):
    """The response could not be read; the message says what is expected."""


@dataclass(frozen=True)
class Result:
    """The verdict on one response."""

    correct: bool
    feedback: str
    explanation: str


def letter(index: int) -> str:
    """``0 -> "A"``, ``1 -> "B"`` ..."""
    return LETTERS[index]


def format_number(value: float) -> str:
    """A compact rendering: integers without decimals, others with 4 significant digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def expected_text(question: Question) -> str:
    """The right answer, as shown after a response (never in graded feedback)."""
    if question.type == "single":
        return f"{letter(question.answer)}) {question.choices[question.answer]}"
    if question.type == "multiple":
        return ", ".join(f"{letter(i)}) {question.choices[i]}" for i in question.answer)
    if question.type == "numeric":
        unit = f" {question.unit}" if question.unit else ""
        return f"{format_number(question.answer)}{unit}"
    return question.model_answer


# ---- choice questions -----------------------------------------------------------------------------------

def _one_choice(token: str, choices) -> int:
    n = len(choices)
    cleaned = token.strip().strip("().:").strip()
    if len(cleaned) == 1 and cleaned.upper() in LETTERS[:n]:
        return LETTERS.index(cleaned.upper())
    if cleaned.isdigit() and 1 <= int(cleaned) <= n:
        return int(cleaned) - 1
    raise ParseError(f"{token.strip()!r} is not a choice; type a letter A-{LETTERS[n - 1]} (or 1-{n})")


def _match_choice_text(text: str, choices) -> int | None:
    lowered = [c.strip().lower() for c in choices]
    return lowered.index(text.lower()) if text.lower() in lowered else None


def parse_choice(text: str, choices) -> int:
    """The 0-based index of one choice: ``"B"``, ``"b)"``, ``"2"`` or the exact choice text."""
    text = text.strip()
    if not text:
        raise ParseError("empty answer; type a letter such as A")
    by_text = _match_choice_text(text, choices)
    return by_text if by_text is not None else _one_choice(text, choices)


def parse_choices(text: str, choices) -> tuple[int, ...]:
    """Sorted distinct indices of several choices: ``"a,c"``, ``"A C"``, ``"ac"``, ``"1, 3"``."""
    text = text.strip()
    if not text:
        raise ParseError("empty answer; list letters such as A,C")
    tokens = [t for t in re.split(r"[,;\s]+|\band\b", text) if t.strip()]
    compact = len(tokens) == 1 and text.isalpha() and len(text) <= len(choices)
    if compact:
        tokens = list(text)
    return tuple(sorted({_one_choice(t, choices) for t in tokens}))


# ---- numeric questions ----------------------------------------------------------------------------------

def _number(text: str) -> float:
    if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")
    elif "," in text:
        raise ParseError(f"{text!r}: use a dot for decimals (3.5) and no comma")
    return float(text)


def _unit_key(unit: str) -> str:
    return re.sub(r"\s+", " ", unit.strip().lower())


def _convert_unit(value: float, unit: str | None, expected: str | None) -> float:
    """``value`` expressed in the question's unit; ParseError for a unit that does not fit."""
    if not unit:
        return value
    key, want = _unit_key(unit).rstrip("."), _unit_key(expected) if expected else None
    if key == want or (want and key.rstrip("s") == want.rstrip("s")):
        return value
    if key in _BYTE_UNITS and want in _BYTE_UNITS:
        return value * _BYTE_UNITS[key] / _BYTE_UNITS[want]
    if key == "%" and want is None:
        return value / 100
    if key in ("x", "×") and want in (None, "x", "×"):
        return value
    hint = f"answer in {expected}" if expected else "this answer has no unit"
    raise ParseError(f"unit {unit.strip()!r} does not fit; {hint}")


def _combine(a: float, op: str, b: float) -> float:
    """``a / b`` or ``a ** b`` as a finite real number; ParseError for anything else (never an exception leak)."""
    try:
        value = a / b if op == "/" else a ** b
    except ZeroDivisionError:
        raise ParseError("division by zero" if op == "/" else "0 to a negative power is undefined") from None
    except OverflowError:
        raise ParseError("that number is too large; type a value such as 1e9 or 2^30") from None
    if isinstance(value, complex):  # (-8) ** 0.5
        raise ParseError("a negative number to a fractional power is not a real number") from None
    return value


def parse_number(text: str, unit: str | None = None) -> float:
    """A number with an optional unit, converted to ``unit`` where possible (``"3500 MB"`` -> 3.5 for GB).

    Anything that is not a finite real number (``"10^400"``, ``"-8^0.5"``, ``"0^-1"``, ``"1e999"``) raises
    :class:`ParseError`, so a drill asks again.
    """
    cleaned = text.strip().lower().lstrip("~≈=").strip().replace("−", "-")
    match = _VALUE.match(cleaned.replace("_", ""))
    if not cleaned or not match:
        expected = f" in {unit}" if unit else ""
        raise ParseError(f"{text.strip()!r} is not a number; type a value{expected} such as 3.5 or 1e-3")
    operands = [_number(match["a"])] + ([_number(match["b"])] if match["op"] else [])
    value = _combine(*operands[:1], match["op"], *operands[1:]) if match["op"] else operands[0]
    if not all(math.isfinite(x) for x in (*operands, value)):
        raise ParseError(f"{text.strip()!r} is not a finite number; type a value such as 3.5 or 1e-3")
    return _convert_unit(value, match["unit"], unit)


def within_tolerance(value: float, expected: float, tolerance: dict) -> bool:
    """``|value - expected| <= rel * |expected|`` or ``<= abs`` (plus float round-off)."""
    kind, amount = next(iter(tolerance.items()))
    bound = amount * abs(expected) if kind == "rel" else amount
    return abs(value - expected) <= bound + 1e-9 * max(1.0, abs(expected))


# ---- short answers --------------------------------------------------------------------------------------

def _normalise(text: str) -> str:
    return " " + re.sub(r"[\s_\-]+", " ", text.lower()).strip() + " "


def _contains(text: str, synonym: str) -> bool:
    """``synonym`` at the start of a word of ``text``: "clip" matches "clips" and "clipping", not "eclipse"."""
    word = _normalise(synonym).strip()
    left = r"\b" if re.match(r"\w", word) else ""
    return re.search(left + re.escape(word), text) is not None


def missing_keywords(text: str, groups) -> list[tuple[str, ...]]:
    """The synonym groups that ``text`` does not mention (case-insensitive, each synonym matched at the start of
    a word, so simple inflections count: "clip" matches "clips", "clipping")."""
    normal = _normalise(text)
    return [g for g in groups if not any(_contains(normal, s) for s in g)]


# ---- checking -------------------------------------------------------------------------------------------

def parse_response(question: Question, response):
    """The response in the question's terms (index, sorted indices, number, text); ParseError if unreadable."""
    if question.type == "short":
        text = str(response).strip()
        if not text:
            raise ParseError("empty answer; write a sentence")
        return text
    if question.type == "numeric" and isinstance(response, (int, float)) and not isinstance(response, bool):
        try:
            value = float(response)
        except OverflowError:  # an int beyond float's range
            raise ParseError("that number is too large") from None
        if not math.isfinite(value):
            raise ParseError(f"{response!r} is not a finite number")
        return value
    if question.type in ("single", "multiple") and isinstance(response, int) and not isinstance(response, bool):
        raise ParseError("give the choice as a letter such as 'B', not a number (numbers are ambiguous)")
    if not isinstance(response, str):
        raise ParseError(f"expected text, got {type(response).__name__}")
    if question.type == "single":
        return parse_choice(response, question.choices)
    if question.type == "multiple":
        return parse_choices(response, question.choices)
    return parse_number(response, question.unit)


def _feedback_numeric(question: Question, value: float) -> tuple[bool, str]:
    if within_tolerance(value, question.answer, question.tolerance):
        return True, f"Correct: {expected_text(question)}."
    hint = ""
    ratio = value / question.answer if question.answer and value else 0.0
    if ratio > 0 and math.isfinite(ratio):
        power = round(math.log10(ratio))
        if power and abs(ratio / 10 ** power - 1) < 0.02:
            hint = f" Your value is off by a factor of 1e{power}: check the unit."
    return False, f"Not quite: you gave {format_number(value)}, the answer is {expected_text(question)}.{hint}"


def check_answer(question: Question, response) -> Result:
    """Judge ``response`` (text, or a number for numeric questions); ParseError if it cannot be read.

    ``question`` must be concrete: instantiate parameterised questions first
    (:func:`coursekit.quiz.generators.instantiate`).
    """
    if question.is_parameterised:
        raise ValueError(f"question {question.id} is parameterised; call generators.instantiate() first")
    value = parse_response(question, response)
    if question.type == "numeric":
        correct, feedback = _feedback_numeric(question, value)
    elif question.type == "short":
        missing = missing_keywords(value, question.keywords)
        correct = not missing
        feedback = ("Correct: your answer covers the key ideas." if correct else
                    "Missing: " + "; ".join(" / ".join(g) for g in missing)
                    + f". A model answer: {question.model_answer}")
    else:
        correct = value == question.answer
        feedback = f"Correct: {expected_text(question)}." if correct else \
            f"Not quite: the answer is {expected_text(question)}."
    return Result(correct, feedback, question.explanation)
