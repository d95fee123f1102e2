"""An ipywidgets quiz for the notebooks: questions, choice buttons or a text box, instant feedback, a score.

``show(chapter=2)`` returns a :class:`QuizWidget` (an ``ipywidgets.VBox``): a cell ending with it displays the
quiz. Widgets are built without a frontend too (headless nbgrader runs, tests); nothing is graded from widget
state, since nbgrader never replays interactions. The first answer to each question counts for the score;
an unreadable answer shows a hint and does not count.
"""
from __future__ import annotations

import html
import random

import ipywidgets as widgets

from coursekit.quiz.answers import ParseError, check_answer, letter
from coursekit.quiz.catalog import questions
from coursekit.quiz.formatting import answer_hint
from coursekit.quiz.generators import instantiate


def _html_text(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


class QuestionCard(widgets.VBox):
    """One question: prompt, controls and a feedback line. ``on_answer(card, result)`` is called once."""

    def __init__(self, question, number: int, on_answer=None):
        self.question, self.result, self._on_answer = question, None, on_answer
        self.feedback = widgets.HTML(value="")
        self.controls = self._controls()
        prompt = widgets.HTML(value=f"<b>{number}.</b> {_html_text(question.prompt)}"
                                    f" <small>({html.escape(question.topic)}, {question.difficulty})</small>")
        super().__init__(children=[prompt, self.controls, self.feedback],
                         layout=widgets.Layout(margin="0 0 12px 0"))

    def _controls(self):
        q = self.question
        if q.type == "single":
            self.buttons = [widgets.Button(description=f"{letter(i)}) {c}", tooltip=c,
                                           layout=widgets.Layout(width="auto")) for i, c in enumerate(q.choices)]
            for i, button in enumerate(self.buttons):
                button.on_click(lambda _b, i=i: self.answer(letter(i)))
            return widgets.VBox(self.buttons)
        self.submit = widgets.Button(description="Check", button_style="primary")
        if q.type == "multiple":
            self.boxes = [widgets.Checkbox(description=f"{letter(i)}) {c}", indent=False, value=False)
                          for i, c in enumerate(q.choices)]
            self.submit.on_click(lambda _b: self.answer(
                ",".join(letter(i) for i, box in enumerate(self.boxes) if box.value)))
            self.buttons = [self.submit]
            return widgets.VBox([*self.boxes, self.submit])
        self.text = widgets.Text(placeholder=answer_hint(q), layout=widgets.Layout(width="60%"))
        self.submit.on_click(lambda _b: self.answer(self.text.value))
        self.buttons = [self.submit]
        return widgets.HBox([self.text, self.submit])

    def answer(self, response: str):
        """Check ``response`` (what a click or the text box gives) and show the feedback."""
        if self.result is not None:
            return self.result
        try:
            result = check_answer(self.question, response)
        except ParseError as err:
            self.feedback.value = f"<span style='color:#b35900'>{html.escape(str(err))}</span>"
            return None
        self.result = result
        colour, mark = ("#1a7f37", "Right.") if result.correct else ("#cf222e", "Not quite.")
        self.feedback.value = (f"<b style='color:{colour}'>{mark}</b> {html.escape(result.feedback)}"
                               f"<br><i>{_html_text(result.explanation)}</i>")
        for control in [*self.buttons, *getattr(self, "boxes", []), getattr(self, "text", None)]:
            if control is not None:
                control.disabled = True
        if self._on_answer:
            self._on_answer(self, result)
        return result


class QuizWidget(widgets.VBox):
    """A list of :class:`QuestionCard` under a score line."""

    def __init__(self, qs, title: str = "Quiz"):
        self.title = title
        self.score = widgets.HTML()
        self.cards = [QuestionCard(q, n, on_answer=self._update) for n, q in enumerate(qs, 1)]
        super().__init__(children=[self.score, *self.cards])
        self._update()

    @property
    def right(self) -> int:
        return sum(c.result is not None and c.result.correct for c in self.cards)

    @property
    def answered(self) -> int:
        return sum(c.result is not None for c in self.cards)

    def _update(self, *_):
        self.score.value = (f"<b>{html.escape(self.title)}</b>: score {self.right}/{self.answered} answered, "
                            f"{len(self.cards)} questions")


def show(chapter=None, topic=None, n: int | None = None, seed: int = 0, *, exclude=(), bank_dir=None) -> QuizWidget:
    """A quiz widget over the bank's questions of ``chapter``/``topic``.

    ``n`` picks that many at random (kept in bank order); ``seed`` fixes that pick and the numbers of
    parameterised questions; ``exclude`` leaves out question ids (the graded quiz below a practice widget, so
    that practice never shows the graded answers). End a cell with it to display it.
    """
    excluded = set(exclude)
    pool = [q for q in questions(chapter, topic, directory=bank_dir) if q.id not in excluded]
    if n is not None and n < len(pool):
        keep = set(random.Random(seed).sample(range(len(pool)), n))
        pool = [q for i, q in enumerate(pool) if i in keep]
    qs = [instantiate(q, seed) for q in pool]
    title = "Quiz" + (f": chapter {qs[0].chapter}" if chapter is not None and qs else "")
    return QuizWidget(qs, title + (f", {topic}" if topic else ""))
