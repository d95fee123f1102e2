"""The question-bank schema: one JSON file per chapter, checked question by question.

A bank file ``chNN_topic.json`` holds ``{"chapter": "NN", "title": "...", "questions": [...]}``. Each question
is a JSON object with the fields below; :func:`validate_file` turns one file into :class:`Question` objects or
raises :class:`BankError` whose message names the file, the question id and every problem found.

Fields of a question (all strings unless said otherwise):

- ``id`` (unique across the bank, starts with ``chNN-``), ``chapter`` (``"00"`` .. ``"09"``), ``topic`` (a
  kebab-case slug), ``difficulty`` (easy | medium | hard), ``type`` (single | multiple | numeric | short),
  ``prompt``, ``explanation``, ``section`` (e.g. ``"02_ptq#calibration"``); ``classic`` (optional bool).
- single / multiple: ``choices`` (list of strings); ``answer`` is the 0-based index (single) or the sorted
  list of indices (multiple).
- numeric: ``answer`` (number) and optional ``tolerance`` (``{"rel": x}`` or ``{"abs": x}``, default
  ``{"rel": 0.01}``) and ``unit``. A parameterised question has ``generator`` and ``params`` (name -> list of
  candidate values) instead of ``answer``, and ``{placeholders}`` in its prompt (see ``generators.py``).
- short: ``keywords`` (list of synonym groups; a response passes if it contains one synonym of every group)
  and ``model_answer``.
"""
from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, field

CHAPTERS = tuple(f"{i:02d}" for i in range(10))
DIFFICULTIES = ("easy", "medium", "hard")
TYPES = ("single", "multiple", "numeric", "short")
DEFAULT_TOLERANCE = {"rel": 0.01}

REQUIRED = ("id", "chapter", "topic", "difficulty", "type", "prompt", "explanation", "section")
OPTIONAL = ("choices", "answer", "tolerance", "unit", "keywords", "model_answer", "classic", "generator",
            "params")
_FILE_NAME = re.compile(r"^ch(\d\d)_[a-z0-9_]+\.json$")
_ID = re.compile(r"^ch(\d\d)-[a-z0-9][a-z0-9_.-]*$")
_TOPIC = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class BankError(ValueError):
    """A bank file is malformed; the message names the file, the question id and the problem."""


@dataclass(frozen=True)
class Question:
    """One bank question. Parameterised numeric questions have ``generator``/``params`` and ``answer=None``
    until :func:`coursekit.quiz.generators.instantiate` draws concrete values."""

    id: str
    chapter: str
    topic: str
    difficulty: str
    type: str
    prompt: str
    explanation: str
    section: str
    source: str = ""
    choices: tuple[str, ...] | None = None
    answer: int | tuple[int, ...] | float | None = None
    tolerance: dict = field(default_factory=lambda: dict(DEFAULT_TOLERANCE))
    unit: str | None = None
    keywords: tuple[tuple[str, ...], ...] | None = None
    model_answer: str | None = None
    classic: bool = False
    generator: str | None = None
    params: dict | None = None
    values: dict | None = None  # the drawn parameter values of a generated instance

    @property
    def is_parameterised(self) -> bool:
        """True for a generator question that has not been instantiated yet."""
        return self.generator is not None and self.values is None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_text(value) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _check_common(q: dict, file_chapter: str | None) -> list[str]:
    problems = [f"missing field {key!r}" for key in REQUIRED if key not in q]
    unknown = sorted(set(q) - set(REQUIRED) - set(OPTIONAL))
    problems += [f"unknown field {key!r} (allowed: {', '.join(REQUIRED + OPTIONAL)})" for key in unknown]
    for key in ("prompt", "explanation", "section", "topic", "id"):
        if key in q and not _is_text(q[key]):
            problems.append(f"{key!r} must be a non-empty string, got {q[key]!r}")
    chapter = q.get("chapter")
    if "chapter" in q and chapter not in CHAPTERS:
        problems.append(f"chapter={chapter!r} must be one of {', '.join(CHAPTERS)}")
    if file_chapter is not None and chapter in CHAPTERS and chapter != file_chapter:
        problems.append(f"chapter={chapter!r} does not match the file's chapter {file_chapter!r}")
    qid = q.get("id")
    match = _ID.match(qid) if isinstance(qid, str) else None
    if isinstance(qid, str) and not match:
        problems.append(f"id {qid!r} must look like 'chNN-some-name' (lowercase letters, digits, - _ .)")
    elif match and chapter in CHAPTERS and match.group(1) != chapter:
        problems.append(f"id {qid!r} does not start with 'ch{chapter}-'")
    if isinstance(q.get("topic"), str) and not _TOPIC.match(q["topic"]):
        problems.append(f"topic {q['topic']!r} must be a kebab-case slug such as 'calibration-methods'")
    if "difficulty" in q and q["difficulty"] not in DIFFICULTIES:
        problems.append(f"difficulty={q['difficulty']!r} must be one of {', '.join(DIFFICULTIES)}")
    if "type" in q and q["type"] not in TYPES:
        problems.append(f"type={q['type']!r} must be one of {', '.join(TYPES)}")
    if "classic" in q and not isinstance(q["classic"], bool):
        problems.append(f"classic must be true or false, got {q['classic']!r}")
    return problems


def _forbid(q: dict, keys: tuple[str, ...], kind: str) -> list[str]:
    return [f"field {key!r} is not allowed for a {kind} question" for key in keys if key in q]


def _check_choices(q: dict) -> list[str]:
    problems = _forbid(q, ("tolerance", "unit", "keywords", "model_answer", "generator", "params"), q["type"])
    choices = q.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(_is_text(c) for c in choices):
        return problems + [f"choices must be a list of at least 2 non-empty strings, got {choices!r}"]
    if len(set(choices)) != len(choices):
        problems.append("choices contain duplicates")
    if len(choices) > 26:
        problems.append("at most 26 choices (they are lettered A-Z)")
    answer, n = q.get("answer"), len(choices)
    if q["type"] == "single":
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < n:
            problems.append(f"answer must be a 0-based choice index in 0..{n - 1}, got {answer!r}")
    else:
        ok = (isinstance(answer, list) and answer and all(isinstance(a, int) and not isinstance(a, bool)
                                                          and 0 <= a < n for a in answer))
        if not ok:
            problems.append(f"answer must be a non-empty list of choice indices in 0..{n - 1}, got {answer!r}")
        elif answer != sorted(set(answer)):
            problems.append(f"answer must be sorted and without repeats, got {answer!r}")
    return problems


def _check_tolerance(tolerance) -> list[str]:
    if (not isinstance(tolerance, dict) or len(tolerance) != 1 or next(iter(tolerance)) not in ("rel", "abs")
            or not _is_number(next(iter(tolerance.values()))) or next(iter(tolerance.values())) < 0):
        return [f"tolerance must be {{'rel': x}} or {{'abs': x}} with x >= 0, got {tolerance!r}"]
    return []


def _check_generator(q: dict) -> list[str]:
    from coursekit.quiz.generators import GENERATORS

    name, params = q.get("generator"), q.get("params")
    if name not in GENERATORS:
        return [f"generator {name!r} is unknown; choose one of: {', '.join(sorted(GENERATORS))}"]
    if not isinstance(params, dict) or not all(isinstance(v, list) and v for v in params.values()):
        return [f"params must map each parameter name to a non-empty list of candidate values, got {params!r}"]
    spec = GENERATORS[name]
    problems = [f"params lacks {p!r}, needed by generator {name!r}" for p in spec.required if p not in params]
    placeholders = {f for _, f, _, _ in string.Formatter().parse(q.get("prompt", "")) if f}
    for key in sorted(set(params) - set(spec.required) - set(spec.optional) - placeholders):
        problems.append(f"params has {key!r}, which neither generator {name!r} nor the prompt uses")
    problems += [f"prompt placeholder {{{p}}} is not in params" for p in sorted(placeholders - set(params))]
    return problems


def _check_numeric(q: dict) -> list[str]:
    problems = _forbid(q, ("choices", "keywords", "model_answer"), "numeric")
    if "tolerance" in q:
        problems += _check_tolerance(q["tolerance"])
    if "unit" in q and not _is_text(q["unit"]):
        problems.append(f"unit must be a non-empty string, got {q['unit']!r}")
    has_generator = "generator" in q or "params" in q
    if has_generator and "answer" in q:
        problems.append("a parameterised question (generator/params) must not also have a fixed 'answer'")
    elif has_generator:
        problems += _check_generator(q)
    elif not _is_number(q.get("answer")):
        problems.append(f"answer must be a finite number, got {q.get('answer')!r}")
    return problems


def _check_short(q: dict) -> list[str]:
    problems = _forbid(q, ("choices", "answer", "tolerance", "unit", "generator", "params"), "short")
    groups = q.get("keywords")
    ok = isinstance(groups, list) and groups and all(
        isinstance(g, list) and g and all(_is_text(s) for s in g) for g in groups)
    if not ok:
        problems.append(f"keywords must be a non-empty list of non-empty lists of strings, got {groups!r}")
    if not _is_text(q.get("model_answer")):
        problems.append("model_answer must be a non-empty string")
    return problems


_TYPE_CHECKS = {"single": _check_choices, "multiple": _check_choices, "numeric": _check_numeric,
                "short": _check_short}


def question_problems(q, file_chapter: str | None = None) -> list[str]:
    """Every problem of one question (an empty list when it is valid)."""
    if not isinstance(q, dict):
        return [f"a question must be a JSON object, got {type(q).__name__}"]
    problems = _check_common(q, file_chapter)
    if q.get("type") in _TYPE_CHECKS:
        problems += _TYPE_CHECKS[q["type"]](q)
    return problems


def to_question(q: dict, source: str) -> Question:
    """Build a :class:`Question` from a validated JSON object."""
    answer = q.get("answer")
    if isinstance(answer, list):
        answer = tuple(answer)
    return Question(
        id=q["id"], chapter=q["chapter"], topic=q["topic"], difficulty=q["difficulty"], type=q["type"],
        prompt=q["prompt"], explanation=q["explanation"], section=q["section"], source=source,
        choices=tuple(q["choices"]) if "choices" in q else None, answer=answer,
        tolerance=dict(q.get("tolerance", DEFAULT_TOLERANCE)), unit=q.get("unit"),
        keywords=tuple(tuple(g) for g in q["keywords"]) if "keywords" in q else None,
        model_answer=q.get("model_answer"), classic=bool(q.get("classic", False)),
        generator=q.get("generator"), params={k: list(v) for k, v in q["params"].items()} if "params" in q
        else None,
    )


def validate_file(name: str, data) -> tuple[str, str, list[Question]]:
    """Check one parsed bank file; return ``(chapter, title, questions)`` or raise :class:`BankError`.

    ``name`` is the file name (``chNN_topic.json``); every message starts with it and the question id.
    """
    match = _FILE_NAME.match(name)
    if not match:
        raise BankError(f"bank file {name}: the name must look like 'chNN_topic.json'")
    file_chapter = match.group(1)
    if not isinstance(data, dict):
        raise BankError(f"bank file {name}: the top level must be a JSON object, got {type(data).__name__}")
    problems = []
    if data.get("chapter") != file_chapter:
        problems.append(f"bank file {name}: 'chapter' is {data.get('chapter')!r}, expected {file_chapter!r}")
    if not _is_text(data.get("title")):
        problems.append(f"bank file {name}: 'title' must be a non-empty string")
    extra = sorted(set(data) - {"chapter", "title", "questions"})
    problems += [f"bank file {name}: unknown top-level field {key!r}" for key in extra]
    items = data.get("questions")
    if not isinstance(items, list):
        raise BankError("\n".join(problems + [f"bank file {name}: 'questions' must be a list"]))
    seen: dict[str, int] = {}
    for index, q in enumerate(items):
        qid = q.get("id") if isinstance(q, dict) else None
        label = f"question {qid}" if isinstance(qid, str) else f"question #{index + 1} (no id)"
        problems += [f"bank file {name}, {label}: {p}" for p in question_problems(q, file_chapter)]
        if isinstance(qid, str):
            if qid in seen:
                problems.append(f"bank file {name}, {label}: duplicate id (also question #{seen[qid] + 1})")
            seen.setdefault(qid, index)
    if problems:
        raise BankError("\n".join(problems))
    return file_chapter, data["title"], [to_question(q, name) for q in items]
