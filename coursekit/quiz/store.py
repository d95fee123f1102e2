"""Quiz progress in SQLite, scheduled with Leitner boxes.

Spaced repetition follows the Leitner system (S. Leitner, *So lernt man lernen*, 1972): every question sits
in a box 1..5; a right answer moves it one box up, a wrong answer back to box 1, and a question in box ``b``
is due again ``INTERVAL_DAYS[b]`` days after its last answer (0, 1, 3, 7, 21 days for boxes 1..5). A question
never answered counts as box 1, due now; a first right answer puts it in box 2 (due tomorrow). Leitner was chosen over SM-2 (P. Wozniak, SuperMemo 2, 1987) because a quiz answer is
right or wrong, not graded 0-5, and the boxes are easy to show a learner.

Every answer is written in its own transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a drill that is
killed loses nothing already answered. A database another process holds locked raises
:class:`ProgressLockedError` after ``timeout`` seconds; a file that is not a readable SQLite database is
renamed to ``<name>.corrupt-<timestamp>`` (never deleted) and a fresh one started, with a notice in
``ProgressStore.notices`` for the caller to show.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from coursekit._env import data_dir

INTERVAL_DAYS = (0, 0, 1, 3, 7, 21)  # index = box; box 0 is unused
MAX_BOX = 5
MASTERED_BOX = 4
DAY = 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL, session TEXT NOT NULL, mode TEXT NOT NULL,
    question_id TEXT NOT NULL, chapter TEXT NOT NULL, topic TEXT NOT NULL,
    correct INTEGER NOT NULL, response TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cards (
    question_id TEXT PRIMARY KEY, chapter TEXT NOT NULL, topic TEXT NOT NULL,
    box INTEGER NOT NULL, due REAL NOT NULL, last_ts REAL NOT NULL,
    n_right INTEGER NOT NULL, n_wrong INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '1');
"""


class ProgressStoreError(RuntimeError):
    """The progress database cannot be opened or written."""


class ProgressLockedError(ProgressStoreError):
    """Another process holds the progress database locked (probably another drill)."""


@dataclass(frozen=True)
class Card:
    """The Leitner state of one question."""

    question_id: str
    box: int
    due: float
    n_right: int
    n_wrong: int


def default_path() -> Path:
    """``coursekit._env.data_dir() / "progress.sqlite"`` (``COURSEKIT_DATA`` moves it)."""
    return data_dir() / "progress.sqlite"


def next_box(box: int, correct: bool) -> int:
    """Leitner: right -> one box up (at most 5), wrong -> box 1."""
    return min(box + 1, MAX_BOX) if correct else 1


def _is_lock(err: sqlite3.Error) -> bool:
    return isinstance(err, sqlite3.OperationalError) and "locked" in str(err).lower()


def _is_corruption(err: sqlite3.Error) -> bool:
    text = str(err).lower()
    return type(err) is sqlite3.DatabaseError or "not a database" in text or "malformed" in text


class ProgressStore:
    """Quiz answers and Leitner boxes in one SQLite file (default :func:`default_path`)."""

    def __init__(self, path=None, *, timeout: float = 5.0):
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.timeout = timeout
        self.notices: list[str] = []
        self._conn = self._open()

    # ---- opening ----------------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise ProgressStoreError(f"progress database {self.path} is a directory; pass a file path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ProgressStoreError(f"cannot create the folder of progress database {self.path}: {err}") from None
        conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA quick_check").fetchall()
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.Error as err:
            if _is_lock(err):
                raise self._locked() from None
            if not _is_corruption(err):
                raise ProgressStoreError(f"cannot open progress database {self.path}: {err}") from None
            reason = str(err)
        moved = self._move_aside()
        self.notices.append(f"The progress database {self.path} was unreadable ({reason}); it was moved to "
                            f"{moved} and a fresh one started.")
        try:
            return self._connect()
        except sqlite3.Error as again:
            raise ProgressStoreError(f"cannot create progress database {self.path}: {again}") from None

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        counter = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{counter}")
            counter += 1
        try:
            self.path.rename(target)
        except OSError as err:
            raise ProgressStoreError(f"progress database {self.path} is unreadable and could not be moved "
                                     f"aside to {target}: {err}") from None
        return target

    def _locked(self) -> ProgressLockedError:
        return ProgressLockedError(
            f"the progress database {self.path} is locked (waited {self.timeout:g} s): another drill may be "
            "running; finish it or use --db to pick another file")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- writing ----------------------------------------------------------------------------------------
    def record(self, question, correct: bool, response: str = "", *, session: str = "", mode: str = "drill",
               now: float | None = None) -> Card:
        """Store one answer and move the question's Leitner box, in one committed transaction."""
        now = time.time() if now is None else now
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                card = self._update(question, bool(correct), str(response), session, mode, now)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            if _is_lock(err):
                raise self._locked() from None
            raise ProgressStoreError(f"cannot write progress database {self.path}: {err}") from None
        return card

    def _update(self, question, correct, response, session, mode, now) -> Card:
        self._conn.execute(
            "INSERT INTO answers (ts, session, mode, question_id, chapter, topic, correct, response) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (now, session, mode, question.id, question.chapter, question.topic, int(correct), response))
        old = self.card(question.id)
        box = next_box(old.box if old else 1, correct)  # a new question starts in box 1
        card = Card(question.id, box, now + INTERVAL_DAYS[box] * DAY,
                    (old.n_right if old else 0) + correct, (old.n_wrong if old else 0) + (not correct))
        self._conn.execute(
            "INSERT OR REPLACE INTO cards VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (card.question_id, question.chapter, question.topic, card.box, card.due, now, card.n_right,
             card.n_wrong))
        return card

    # ---- reading ----------------------------------------------------------------------------------------
    def _query(self, sql: str, args=()) -> list:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as err:
            if _is_lock(err):
                raise self._locked() from None
            raise ProgressStoreError(f"cannot read progress database {self.path}: {err}") from None

    def card(self, question_id: str) -> Card | None:
        """The Leitner state of one question (None if never answered)."""
        rows = self._query("SELECT question_id, box, due, n_right, n_wrong FROM cards WHERE question_id = ?",
                           (question_id,))
        return Card(*rows[0]) if rows else None

    def cards(self) -> dict[str, Card]:
        """Leitner state of every answered question, by id."""
        rows = self._query("SELECT question_id, box, due, n_right, n_wrong FROM cards")
        return {r[0]: Card(*r) for r in rows}

    def answers(self, session: str | None = None) -> list[dict]:
        """Recorded answers, oldest first (optionally of one session)."""
        sql = "SELECT ts, session, mode, question_id, chapter, topic, correct, response FROM answers"
        rows = self._query(sql + (" WHERE session = ?" if session else "") + " ORDER BY id",
                           (session,) if session else ())
        keys = ("ts", "session", "mode", "question_id", "chapter", "topic", "correct", "response")
        return [dict(zip(keys, r)) for r in rows]

    def topic_accuracy(self) -> dict[str, tuple[int, int]]:
        """``topic -> (right, total)`` over every recorded answer."""
        rows = self._query("SELECT topic, SUM(correct), COUNT(*) FROM answers GROUP BY topic")
        return {topic: (int(right), int(total)) for topic, right, total in rows}

    def due(self, question_ids, now: float | None = None) -> list[str]:
        """The ids among ``question_ids`` that are due (never answered, or past their due time)."""
        now = time.time() if now is None else now
        cards = self.cards()
        return [q for q in question_ids if q not in cards or cards[q].due <= now]
