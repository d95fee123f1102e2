"""The terminal drill: ask due questions, show right/wrong and the explanation, record progress.

Input and output are plain text streams (``inp``/``out``), so piped stdin works and tests script a session.
An unreadable response is asked again; ``skip`` skips a question, ``quit`` (or end of input) ends the session
with a summary. Questions are picked by spaced repetition (:mod:`coursekit.quiz.store`, Leitner boxes):
due questions only, weakest topics first. The mock interview (:func:`run_mock`) asks a timed, mixed set
regardless of due dates and ends with a score report by topic.

Run it as ``coursekit drill ...`` or ``python -m coursekit.quiz.drill ...`` (an alias; the flags are parsed by
``coursekit.cli.drill``).
"""
from __future__ import annotations

import random
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from coursekit._validate import check_positive
from coursekit.quiz.answers import ParseError, check_answer, expected_text
from coursekit.quiz.catalog import load_bank, questions
from coursekit.quiz.formatting import answer_hint, plain_text, tag_line
from coursekit.quiz.generators import instantiate
from coursekit.quiz.store import DAY, MASTERED_BOX, ProgressStore

SKIP, QUIT, EOF = "skip", "quit", "eof"
_QUIT_WORDS = {"quit", "exit", ":q"}


@dataclass
class Summary:
    """What happened in one session."""

    answered: int = 0
    correct: int = 0
    skipped: int = 0
    by_topic: dict = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # topic -> [right, total]
    ended_by: str = "done"  # done | eof | quit | time | nothing-due
    session: str = ""
    missed: list = field(default_factory=list)  # ids answered wrong
    review: list = field(default_factory=list)  # mock interview: answer and explanation of each miss

    def add(self, question, correct: bool) -> None:
        topic = question.topic
        if not correct:
            self.missed.append(question.id)
        self.answered += 1
        self.correct += int(correct)
        self.by_topic[topic][0] += int(correct)
        self.by_topic[topic][1] += 1


# ---- choosing questions ---------------------------------------------------------------------------------

def topic_weakness(store: ProgressStore) -> dict[str, float]:
    """Smoothed accuracy per topic, ``(right + 1) / (total + 2)``; unseen topics count as 0.5."""
    return {t: (right + 1) / (total + 2) for t, (right, total) in store.topic_accuracy().items()}


def pick_due(pool, store: ProgressStore, n: int | None, seed=None, now: float | None = None) -> list:
    """Due questions of ``pool``, weakest topics first, then lowest Leitner box, then oldest due date."""
    now = time.time() if now is None else now
    due_ids = set(store.due([q.id for q in pool], now))
    weakness, cards, rng = topic_weakness(store), store.cards(), random.Random(seed)
    due = [q for q in pool if q.id in due_ids]
    keyed = [(weakness.get(q.topic, 0.5), cards[q.id].box if q.id in cards else 0,
              cards[q.id].due if q.id in cards else 0.0, rng.random(), q) for q in due]
    ordered = [k[-1] for k in sorted(keyed, key=lambda k: k[:-1])]
    return ordered if n is None else ordered[:n]


def pick_mixed(pool, n: int | None, seed=None) -> list:
    """A shuffled set that alternates chapters (round robin over chapters in random order)."""
    rng = random.Random(seed)
    by_chapter = defaultdict(list)
    for q in pool:
        by_chapter[q.chapter].append(q)
    queues = list(by_chapter.values())
    for queue in queues:
        rng.shuffle(queue)
    rng.shuffle(queues)
    mixed = []
    while any(queues):
        mixed += [queue.pop() for queue in queues if queue]
    return mixed if n is None else mixed[:n]


# ---- asking ---------------------------------------------------------------------------------------------

def _read(inp) -> str | None:
    line = inp.readline()
    return None if line == "" else line.rstrip("\r\n")


def ask(question, inp, out, header: str):
    """Show ``question`` and read until a readable response: returns ``(response, Result)``, SKIP, QUIT or EOF."""
    out.write(f"\n{header}  [{tag_line(question)}]\n{plain_text(question)}\n")
    out.write(f"(answer with {answer_hint(question)}; 'skip' to skip, 'quit' to stop)\n")
    while True:
        out.write("> ")
        out.flush()
        line = _read(inp)
        if line is None:
            return EOF
        word = line.strip().lower()
        if word in _QUIT_WORDS:
            return QUIT
        if word == SKIP:
            return SKIP
        try:
            return line.strip(), check_answer(question, line)
        except ParseError as err:
            out.write(f"Could not read that: {err}. Please try again.\n")


def _show_result(result, card, out) -> None:
    mark = "RIGHT" if result.correct else "WRONG"
    out.write(f"{mark}. {result.feedback}\nWhy: {result.explanation}\n")
    if card is not None:
        days = (card.due - time.time()) / DAY
        when = "in the next drill" if days < 0.5 else f"in about {round(days)} day(s)"
        out.write(f"(Leitner box {card.box}; next review {when})\n")
    out.flush()


def _print_summary(summary: Summary, out, title: str) -> None:
    reasons = {"eof": "end of input", "quit": "stopped", "time": "time is up", "done": "all questions asked",
               "nothing-due": "nothing due"}
    out.write(f"\n== {title}: {summary.correct}/{summary.answered} right"
              f"{f', {summary.skipped} skipped' if summary.skipped else ''} ({reasons[summary.ended_by]}) ==\n")
    for topic, (right, total) in sorted(summary.by_topic.items(), key=lambda kv: kv[1][0] / kv[1][1]):
        out.write(f"  {topic:<32} {right}/{total}  {100 * right / total:5.1f}%\n")
    if summary.review:
        out.write("review:\n" + "".join(f"  - {line}\n" for line in summary.review))
    elif summary.missed:
        out.write("to review: " + ", ".join(summary.missed) + "\n")
    out.flush()


def _session(pool, store, inp, out, *, seed, mode, deadline=None, clock=time.monotonic) -> Summary:
    summary = Summary(session=uuid.uuid4().hex[:12])
    for number, question in enumerate(pool, 1):
        if deadline is not None and clock() >= deadline:
            summary.ended_by = "time"
            break
        concrete = instantiate(question, seed if seed is not None else random.randrange(2 ** 31))
        left = f"  ({max(0, int(deadline - clock())) // 60}:{max(0, int(deadline - clock())) % 60:02d} left)" \
            if deadline is not None else ""
        outcome = ask(concrete, inp, out, f"Question {number}/{len(pool)}{left}")
        if outcome in (EOF, QUIT):
            summary.ended_by = outcome
            break
        if outcome == SKIP:
            summary.skipped += 1
            continue
        if deadline is not None and clock() > deadline:
            out.write("Time is up: that answer came after the deadline and is not scored.\n")
            summary.ended_by = "time"
            break
        response, result = outcome
        card = store.record(concrete, result.correct, response, session=summary.session, mode=mode)
        summary.add(concrete, result.correct)
        if mode == "drill":
            _show_result(result, card, out)
        else:  # a mock interview gives no feedback until the end
            out.write("(answer recorded)\n")
            if not result.correct:
                summary.review.append(f"{concrete.id}: {expected_text(concrete)}. {result.explanation}")
    return summary


def _open_store(store, db):
    return (store, False) if store is not None else (ProgressStore(db), True)


def _show_notices(store: ProgressStore, out) -> None:
    for notice in store.notices:
        out.write(f"NOTE: {notice}\n")


def run_drill(*, chapter=None, topic=None, n: int | None = 10, db=None, store=None, seed=None,
              inp=None, out=None, bank_dir=None, now: float | None = None) -> Summary:
    """Ask up to ``n`` due questions (weakest topics first), record every answer, print a summary.

    ``db`` is the progress file (default ``data_dir()/progress.sqlite``) unless an open ``store`` is given;
    ``seed`` fixes the order among equals and the values of parameterised questions.
    """
    inp, out = inp or sys.stdin, out or sys.stdout
    pool = questions(chapter, topic, directory=bank_dir)
    store, owned = _open_store(store, db)
    try:
        _show_notices(store, out)
        chosen = pick_due(pool, store, n, seed=seed, now=now)
        if not chosen:
            out.write(f"Nothing is due among these {len(pool)} questions: well done. "
                      "Come back later, or try a mock interview (--mock MINUTES).\n")
            return Summary(ended_by="nothing-due")
        summary = _session(chosen, store, inp, out, seed=seed, mode="drill")
        _print_summary(summary, out, "Drill")
        return summary
    finally:
        if owned:
            store.close()


def run_mock(minutes: float, *, chapter=None, topic=None, n: int | None = None, db=None, store=None, seed=None,
             inp=None, out=None, bank_dir=None, clock=time.monotonic) -> Summary:
    """A timed mock interview: mixed chapters, no feedback until the end, a score report by topic.

    Ends after ``minutes`` (a finite number > 0, checked when an answer arrives) or ``n`` questions, whichever
    comes first.
    Answers are recorded (mode ``"mock"``) and move the Leitner boxes like drill answers.
    """
    minutes = check_positive("minutes", minutes)
    inp, out = inp or sys.stdin, out or sys.stdout
    pool = pick_mixed(questions(chapter, topic, directory=bank_dir), n, seed=seed)
    store, owned = _open_store(store, db)
    try:
        _show_notices(store, out)
        out.write(f"Mock interview: {len(pool)} questions, {minutes:g} minutes. Answers are scored at the end.\n")
        summary = _session(pool, store, inp, out, seed=seed, mode="mock", deadline=clock() + 60 * minutes,
                           clock=clock)
        _print_summary(summary, out, "Mock interview score")
        return summary
    finally:
        if owned:
            store.close()


# ---- progress report ------------------------------------------------------------------------------------

def progress_stats(store: ProgressStore, pool, now: float | None = None) -> dict:
    """Per chapter: questions, seen, mastered (box >= 4), due, accuracy; and the weakest topics."""
    now = time.time() if now is None else now
    cards, due = store.cards(), set(store.due([q.id for q in pool], now))
    chapters = {}
    for q in pool:
        row = chapters.setdefault(q.chapter, {"questions": 0, "seen": 0, "mastered": 0, "due": 0,
                                              "right": 0, "wrong": 0})
        card = cards.get(q.id)
        row["questions"] += 1
        row["due"] += q.id in due
        if card:
            row["seen"] += 1
            row["mastered"] += card.box >= MASTERED_BOX
            row["right"] += card.n_right
            row["wrong"] += card.n_wrong
    topics = [(t, r, n) for t, (r, n) in store.topic_accuracy().items()]
    weakest = sorted(topics, key=lambda x: ((x[1] + 1) / (x[2] + 2), -x[2]))
    return {"chapters": dict(sorted(chapters.items())),
            "weakest_topics": [{"topic": t, "right": r, "total": n} for t, r, n in weakest]}


def print_stats(*, db=None, store=None, chapter=None, out=None, bank_dir=None, top: int = 5) -> dict:
    """Print progress by chapter and the weakest topics; return :func:`progress_stats`."""
    out = out or sys.stdout
    pool = questions(chapter, directory=bank_dir)
    store, owned = _open_store(store, db)
    try:
        _show_notices(store, out)
        stats = progress_stats(store, pool)
    finally:
        if owned:
            store.close()
    titles = load_bank(bank_dir).titles
    out.write(f"{'chapter':<36} {'seen':>9} {'mastered':>9} {'due':>5} {'accuracy':>9}\n")
    for ch, row in stats["chapters"].items():
        total = row["right"] + row["wrong"]
        acc = f"{100 * row['right'] / total:.0f}%" if total else "-"
        name = f"{ch} {titles.get(ch, '')}"[:36]
        out.write(f"{name:<36} {row['seen']:>4}/{row['questions']:<4} {row['mastered']:>9} {row['due']:>5} "
                  f"{acc:>9}\n")
    weak = stats["weakest_topics"][:top]
    out.write("weakest topics: " + (", ".join(f"{w['topic']} ({w['right']}/{w['total']})" for w in weak)
                                    if weak else "none yet: run a drill first") + "\n")
    return stats


if __name__ == "__main__":  # an alias of `coursekit drill`: run the top-level program (the CLI owns the parsing)
    import runpy

    sys.argv = ["coursekit", "drill", *sys.argv[1:]]
    runpy.run_module("coursekit", run_name="__main__")
