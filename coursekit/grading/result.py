"""The result of grading one notebook: points per exercise, a true message for every lost point, flags."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExerciseScore:
    """The score of one graded tests cell and, when points were lost, why (``error``) and what to do (``hint``).
    ``error`` never contains hidden-test source: it is the visible test's error, ``hidden test failed: <the
    check's message>``, or a message about the notebook (timeout, dead kernel, missing cell)."""

    grade_id: str
    score: float
    max_score: float
    error: str | None = None
    hint: str | None = None


@dataclass
class CheckResult:
    """Scores per exercise (their ``max_score`` always the instructor notebook's points) and notes.

    ``cell_errors``: errors and timeouts of cells that are not tests cells; ``messages``: repairs and problems
    of the notebook itself (pasted copies, restored cells, wrong chapter, a dead kernel); ``flags``: what the
    static scan found in the learner's code (for the instructor; never changes a score).
    """

    notebook: str
    score: float
    max_score: float
    exercises: list[ExerciseScore] = field(default_factory=list)
    cell_errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    seconds: float = 0.0
    wrong_chapter: bool = False  # the notebook belongs to another chapter: nothing was run

    @property
    def full_marks(self) -> bool:
        return self.max_score > 0 and self.score >= self.max_score

    def to_json(self) -> dict:
        return {
            "notebook": self.notebook, "score": self.score, "max_score": self.max_score,
            "full_marks": self.full_marks,
            "exercises": [
                {"grade_id": e.grade_id, "score": e.score, "max_score": e.max_score, "error": e.error,
                 "hint": e.hint}
                for e in self.exercises
            ],
            "cell_errors": self.cell_errors, "messages": self.messages, "flags": self.flags,
            "seconds": round(self.seconds, 1),
        }


__all__ = ["CheckResult", "ExerciseScore"]
