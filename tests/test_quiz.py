"""The quiz engine on a small fixture bank: schema errors, answer parsing, Leitner store, drill, export,
widget and graded cells. The real bank is checked in test_quiz_bank.py."""
import dataclasses
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coursekit.cli import main as coursekit_main
from coursekit.quiz import catalog, drill, export, graded
from coursekit.quiz.answers import ParseError, check_answer, parse_choices, parse_number
from coursekit.quiz.generators import compression_ratio, instantiate
from coursekit.quiz.schema import BankError
from coursekit.quiz.store import DAY, ProgressLockedError, ProgressStore, ProgressStoreError

ROOT = Path(__file__).resolve().parents[1]


def _q(qid, **fields):
    base = {"id": qid, "chapter": qid[2:4], "topic": "basics", "difficulty": "easy", "type": "single",
            "prompt": f"Prompt of {qid}?", "choices": ["yes", "no", "maybe"], "answer": 0,
            "explanation": f"Because {qid}.", "section": f"{qid[2:4]}_intro#start"}
    base.update(fields)
    return base


FIXTURE = {
    "ch00_basics.json": {"chapter": "00", "title": "Measuring", "questions": [
        _q("ch00-a"), _q("ch00-b"), _q("ch00-c", topic="bits"),
    ]},
    "ch02_ptq.json": {"chapter": "02", "title": "Post-training quantization", "questions": [
        _q("ch02-multi", topic="calibration", type="multiple", choices=["min-max", "percentile", "dropout", "MSE"],
           answer=[0, 1, 3]),
        _q("ch02-mem", topic="memory", type="numeric", choices=None, answer=3.5, unit="GB",
           tolerance={"rel": 0.02}, prompt="How many GB does a 7B model take in INT4 (no scales)?"),
        _q("ch02-ratio", topic="memory", type="numeric", choices=None, answer=None, generator="compression_ratio",
           params={"from_bits": [16, 32], "to_bits": [4, 8], "group_size": [None, 64, 128]},
           prompt="Compression ratio from {from_bits}-bit to {to_bits}-bit with group size {group_size}?"),
        _q("ch02-why", topic="calibration", type="short", choices=None, answer=None,
           keywords=[["outlier", "outliers"], ["clip", "clipping", "saturate"]],
           model_answer="Percentile calibration clips rare outliers so the scale fits the bulk."),
    ]},
}


def _clean(q):
    return {k: v for k, v in q.items() if v is not None}


def write_bank(folder: Path, files=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (files or FIXTURE).items():
        data = dict(data, questions=[_clean(q) for q in data["questions"]])
        (folder / name).write_text(json.dumps(data, indent=1))
    return folder


@pytest.fixture
def bank_dir(tmp_path):
    catalog.clear_cache()
    return write_bank(tmp_path / "bank")


def bank_q(bank_dir, qid):
    return catalog.load_bank(bank_dir).get(qid)


# ---- bank loading and validation ------------------------------------------------------------------------

def test_fixture_bank_loads_and_counts(bank_dir):
    stats = catalog.bank_stats(bank_dir)
    assert stats["total"] == 7 and stats["by_chapter"] == {"00": 3, "02": 4}
    assert stats["by_type"] == {"multiple": 1, "numeric": 2, "short": 1, "single": 3}
    assert stats["parameterised"] == 1 and stats["titles"]["02"] == "Post-training quantization"
    assert [q.id for q in catalog.questions(2, "memory", directory=bank_dir)] == ["ch02-mem", "ch02-ratio"]
    assert len(catalog.questions("ch00", directory=bank_dir)) == 3


def test_unknown_chapter_and_topic_list_the_known_ones(bank_dir):
    with pytest.raises(ValueError, match="'00', '02'"):
        catalog.questions(chapter=5, directory=bank_dir)
    with pytest.raises(ValueError, match="'basics', 'bits'"):
        catalog.questions(chapter="00", topic="memory", directory=bank_dir)


@pytest.mark.parametrize("change, problem", [
    ({"answer": 7}, "answer must be a 0-based choice index"),
    ({"difficulty": "brutal"}, "difficulty='brutal'"),
    ({"topic": "Bad Topic"}, "kebab-case"),
    ({"explanation": ""}, "'explanation' must be a non-empty string"),
    ({"tolerance": {"rel": 0.1}}, "'tolerance' is not allowed"),
    ({"chapter": "03"}, "does not match the file's chapter"),
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"type": "numeric", "choices": None, "answer": None, "generator": "nope", "params": {"x": [1]}},
     "generator 'nope' is unknown"),
    ({"type": "numeric", "choices": None, "answer": None, "generator": "lowrank_params", "params": {"m": [1]},
      "prompt": "{m} by {k}"}, "params lacks 'n'"),
    ({"type": "multiple", "answer": [2, 0]}, "sorted"),
    ({"type": "short", "choices": None, "answer": None, "keywords": [[]], "model_answer": "x"}, "keywords"),
])
def test_malformed_question_names_file_id_and_problem(tmp_path, change, problem):
    files = {"ch00_basics.json": {"chapter": "00", "title": "T", "questions": [_q("ch00-ok"), _q("ch00-bad", **change)]}}
    folder = write_bank(tmp_path / "bad")
    catalog.clear_cache()
    with pytest.raises(BankError) as err:
        catalog.load_bank(write_bank(folder, files))
    message = str(err.value)
    assert "ch00_basics.json" in message and "ch00-bad" in message and problem in message
    assert "ch00-ok" not in message


def test_duplicate_ids_across_files_and_bad_json(tmp_path):
    files = {"ch00_a.json": {"chapter": "00", "title": "A", "questions": [_q("ch00-same")]},
             "ch00_b.json": {"chapter": "00", "title": "B", "questions": [_q("ch00-same")]}}
    catalog.clear_cache()
    with pytest.raises(BankError, match=r"ch00_b.json, question ch00-same: duplicate id, already in ch00_a.json"):
        catalog.load_bank(write_bank(tmp_path / "dup", files))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ch01_x.json").write_text('{"chapter": "01", "questions": [')
    with pytest.raises(BankError, match=r"ch01_x.json: not valid JSON"):
        catalog.load_bank(broken)


# ---- answers --------------------------------------------------------------------------------------------

def test_choice_parsing(bank_dir):
    q = bank_q(bank_dir, "ch00-a")
    for response in ("A", "a", "a)", "(A)", "1", "yes", " YES "):
        assert check_answer(q, response).correct, response
    assert not check_answer(q, "B").correct and "A) yes" in check_answer(q, "c").feedback
    for bad in ("", "Z", "4", "0", "a b", "A,C"):
        with pytest.raises(ParseError):
            check_answer(q, bad)
    choices = ["w", "x", "y", "z"]
    for text in ("a,c", "A C", "ac", "1 3", "c, a", "A and C", "a;c;a"):
        assert parse_choices(text, choices) == (0, 2), text
    multi = bank_q(bank_dir, "ch02-multi")
    assert check_answer(multi, "a,b,d").correct and not check_answer(multi, "a,b").correct


def test_numeric_parsing_and_units():
    assert parse_number("3.5 GB", "GB") == 3.5
    assert parse_number("3500 MB", "GB") == pytest.approx(3.5)
    assert parse_number("3.5e9 bytes", "GB") == pytest.approx(3.5)
    assert parse_number("3.5e9") == 3.5e9
    assert parse_number("~ 1,024") == 1024
    assert parse_number("1/3") == pytest.approx(1 / 3)
    assert parse_number("2^-7") == 2 ** -7 and parse_number("2**-7") == 2 ** -7
    assert parse_number("50%") == 0.5 and parse_number("3.9x") == 3.9
    assert parse_number("3.26 GiB", "GB") == pytest.approx(3.5, rel=1e-3)
    for bad, unit in (("three", None), ("3,5", None), ("3.5 parsecs", "GB"), ("1/0", None), ("", None)):
        with pytest.raises(ParseError):
            parse_number(bad, unit)


def test_numeric_tolerance_and_unit_hint(bank_dir):
    q = bank_q(bank_dir, "ch02-mem")
    assert check_answer(q, "3.55").correct and check_answer(q, 3.5).correct
    assert not check_answer(q, "3.7 GB").correct
    wrong = check_answer(q, "3.5e9")
    assert not wrong.correct and "factor of 1e9" in wrong.feedback


def test_numbers_that_are_not_finite_reals_are_parse_errors_with_a_message(bank_dir):
    cases = {"10^400": "too large", "10**400": "too large", "-8^0.5": "not a real number", "0^-1": "undefined",
             "1e999": "not a finite number", "1e400^0": "not a finite number", "1e308/1e-10": "not a finite number",
             "0/0": "division by zero"}
    for text, message in cases.items():
        with pytest.raises(ParseError, match=message):
            parse_number(text)
    q = bank_q(bank_dir, "ch02-mem")
    for response in (float("inf"), float("nan"), 10 ** 400):
        with pytest.raises(ParseError):
            check_answer(q, response)
    assert parse_number("2^10") == 1024 and parse_number("-2^7") == -128  # still reads what it read before
    tiny = dataclasses.replace(bank_q(bank_dir, "ch02-mem"), answer=1e-300)
    wrong = check_answer(tiny, "1e300")  # value / answer overflows to inf: the unit hint must not crash
    assert not wrong.correct and "factor" not in wrong.feedback


def test_drill_reasks_overflowing_and_complex_answers(tmp_path, bank_dir):
    out = io.StringIO()
    summary = drill.run_drill(chapter=2, topic="memory", n=1, seed=0, db=tmp_path / "p.sqlite", bank_dir=bank_dir,
                              out=out, inp=io.StringIO("10^400\n-8^0.5\n0^-1\nskip\n"))
    text = out.getvalue()
    assert text.count("Could not read that") == 3 and "too large" in text and "not a real number" in text
    assert summary.skipped == 1 and summary.answered == 0 and summary.ended_by == "done"


def test_mock_minutes_must_be_finite_and_positive(tmp_path, bank_dir, capsys):
    for bad in ("inf", "nan", "-5", "0", "soon"):
        assert run_cli("drill", "--mock", bad, "--bank", str(bank_dir), "--db", str(tmp_path / "p.sqlite")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "argument --mock" in err and "finite number of minutes > 0" in err, err
    for bad in (float("inf"), float("nan"), 0, -1.0):
        with pytest.raises(ValueError, match="minutes"):
            drill.run_mock(bad, db=tmp_path / "p.sqlite", bank_dir=bank_dir, inp=io.StringIO(""), out=io.StringIO())


def test_short_answer_needs_every_keyword_group(bank_dir):
    q = bank_q(bank_dir, "ch02-why")
    assert check_answer(q, "It CLIPS... no: clipping the Outliers keeps the scale small").correct
    result = check_answer(q, "it ignores outliers")
    assert not result.correct and "clip" in result.feedback and result.explanation == "Because ch02-why."
    assert not check_answer(q, "outlier-ish eclipse").correct  # whole words only
    with pytest.raises(ParseError):
        check_answer(q, "   ")


def test_generated_question_is_deterministic(bank_dir):
    q = bank_q(bank_dir, "ch02-ratio")
    with pytest.raises(ValueError, match="instantiate"):
        check_answer(q, "2")
    one, again = instantiate(q, seed=3), instantiate(q, seed=3)
    assert one == again and "{" not in one.prompt
    v = one.values
    assert one.answer == compression_ratio(v["from_bits"], v["to_bits"], v["group_size"])
    assert {instantiate(q, s).prompt for s in range(30)} != {one.prompt}  # other seeds draw other values
    assert check_answer(one, f"{one.answer:.5f}").correct


# ---- store ----------------------------------------------------------------------------------------------

def test_leitner_boxes(bank_dir, tmp_path):
    q = bank_q(bank_dir, "ch00-a")
    with ProgressStore(tmp_path / "p.sqlite") as store:
        assert store.due(["ch00-a"], now=0) == ["ch00-a"]
        boxes = [store.record(q, ok, now=100.0).box for ok in (True, True, True, True, True, True)]
        assert boxes == [2, 3, 4, 5, 5, 5]  # a new question counts as box 1
        card = store.card("ch00-a")
        assert card.due == 100.0 + 21 * DAY and (card.n_right, card.n_wrong) == (6, 0)
        assert store.due(["ch00-a"], now=100.0 + 20 * DAY) == []
        assert store.record(q, False, now=200.0).box == 1 and store.due(["ch00-a"], now=200.0) == ["ch00-a"]
        assert store.topic_accuracy() == {"basics": (6, 7)}


def test_corrupted_database_is_moved_aside(tmp_path, bank_dir):
    path = tmp_path / "progress.sqlite"
    garbage = b"this is not an sqlite file " * 50
    path.write_bytes(garbage)
    with ProgressStore(path) as store:
        assert len(store.notices) == 1 and "moved to" in store.notices[0]
        assert store.answers() == []
    aside = list(tmp_path.glob("progress.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    path.write_bytes(garbage)
    out = io.StringIO()
    drill.run_drill(db=path, bank_dir=bank_dir, inp=io.StringIO(""), out=out)
    assert "NOTE: The progress database" in out.getvalue() and len(list(tmp_path.glob("*.corrupt-*"))) == 2


def test_locked_and_unreadable_database(tmp_path, bank_dir):
    path = tmp_path / "p.sqlite"
    store = ProgressStore(path, timeout=0.1)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ProgressLockedError, match="another drill may be running"):
            store.record(bank_q(bank_dir, "ch00-a"), True)
        with pytest.raises(ProgressLockedError, match="another drill may be running"):
            ProgressStore(path, timeout=0.1)
    finally:
        other.execute("ROLLBACK")
        other.close()
        store.close()
    with pytest.raises(ProgressStoreError, match="is a directory"):
        ProgressStore(tmp_path)


# ---- drill ----------------------------------------------------------------------------------------------

class Oracle(io.StringIO):
    """Answers each question the drill shows: right, or wrong for ids in ``wrong``."""

    def __init__(self, out, bank, wrong=(), garbage_first=False, clock=None, step=0.0):
        super().__init__()
        self.out, self.bank, self.wrong, self.garbage, self.clock, self.step = out, bank, set(wrong), garbage_first, \
            clock, step
        self.asked = []

    def readline(self, *args):
        if self.clock is not None:
            self.clock.t += self.step
        header = [line for line in self.out.getvalue().splitlines() if line.startswith("Question ")][-1]
        qid = header.rsplit(" . ", 1)[1].rstrip("]")
        if self.garbage and (not self.asked or self.asked[-1] != qid):
            self.asked.append(qid)
            return "???\n"
        if not self.asked or self.asked[-1] != qid:
            self.asked.append(qid)
        q = self.bank.get(qid)
        if q.type == "single":
            return ("B" if qid in self.wrong else "A") + "\n"
        if q.type == "multiple":
            return ("A" if qid in self.wrong else "A,B,D") + "\n"
        if q.type == "short":
            return ("no idea" if qid in self.wrong else q.model_answer) + "\n"
        instance = q if not q.is_parameterised else None
        if instance is None:  # parameterised: read the drawn values back from the shown prompt
            shown = self.out.getvalue().rsplit(header, 1)[1]
            for seed in range(1000):
                candidate = instantiate(q, seed)
                if candidate.prompt in shown:
                    instance = candidate
                    break
        return ("0" if qid in self.wrong else repr(instance.answer)) + "\n"


def test_drill_session_records_answers_weakest_topic_first(tmp_path, bank_dir):
    bank = catalog.load_bank(bank_dir)
    db = tmp_path / "p.sqlite"
    out = io.StringIO()
    summary = drill.run_drill(n=10, db=db, seed=1, bank_dir=bank_dir, out=out,
                              inp=Oracle(out, bank, wrong={"ch00-b", "ch02-why"}))
    assert (summary.answered, summary.correct, summary.ended_by) == (7, 5, "done")
    assert sorted(summary.missed) == ["ch00-b", "ch02-why"]
    with ProgressStore(db) as store:
        rows = store.answers()
        assert len(rows) == 7 and sum(r["correct"] for r in rows) == 5
        assert store.card("ch00-b").box == 1 and store.card("ch00-a").box == 2
    text = out.getvalue()
    assert "WRONG" in text and "Why: Because ch00-b." in text and "== Drill: 5/7 right" in text
    # right answers are due tomorrow (box 2), wrong ones at once (box 1, interval 0)
    out2 = io.StringIO()
    oracle = Oracle(out2, bank)
    again = drill.run_drill(db=db, seed=1, bank_dir=bank_dir, out=out2, inp=oracle)
    assert sorted(oracle.asked) == ["ch00-b", "ch02-why"] and again.correct == 2
    oracle = Oracle(io.StringIO(), bank)
    oracle.out = out4 = io.StringIO()
    drill.run_drill(db=db, seed=1, bank_dir=bank_dir, out=out4, inp=oracle, now=time.time() + 1.01 * DAY)
    assert len(oracle.asked) == 7  # all seven now sit in box 2: due a day later
    # weakest topics first: calibration (1 wrong of 2) before the others
    out3 = io.StringIO()
    oracle3 = Oracle(out3, bank)
    with ProgressStore(db) as store:
        store.record(bank.get("ch02-why"), False)
        store.record(bank.get("ch02-why"), False)
    drill.run_drill(db=db, seed=2, bank_dir=bank_dir, out=out3, inp=oracle3, now=time.time() + 2 * DAY)
    assert oracle3.asked[0] == "ch02-why"


def test_drill_reasks_malformed_input_and_ends_cleanly_on_eof(tmp_path, bank_dir):
    out = io.StringIO()
    summary = drill.run_drill(chapter=0, topic="bits", db=tmp_path / "p.sqlite", bank_dir=bank_dir, out=out,
                              inp=io.StringIO("zz\n\n9\nA\n"))
    text = out.getvalue()
    assert text.count("Could not read that") == 3 and summary.correct == 1 and summary.answered == 1
    out = io.StringIO()
    summary = drill.run_drill(chapter=0, db=tmp_path / "q.sqlite", bank_dir=bank_dir, out=out,
                              inp=io.StringIO("skip\nA\n"))
    assert (summary.skipped, summary.answered, summary.ended_by) == (1, 1, "eof")
    assert "end of input" in out.getvalue()
    out = io.StringIO()
    assert drill.run_drill(db=tmp_path / "r.sqlite", bank_dir=bank_dir, out=out,
                           inp=io.StringIO("quit\n")).ended_by == "quit"


def test_nothing_due_says_so(tmp_path, bank_dir):
    db = tmp_path / "p.sqlite"
    with ProgressStore(db) as store:
        for _ in range(2):
            store.record(bank_q(bank_dir, "ch00-c"), True)
    out = io.StringIO()
    assert drill.run_drill(chapter=0, topic="bits", db=db, bank_dir=bank_dir, out=out,
                           inp=io.StringIO("")).ended_by == "nothing-due"
    assert "Nothing is due" in out.getvalue()


class FakeClock:
    t = 0.0

    def __call__(self):
        return self.t


def test_mock_interview_ends_on_time_with_topic_report(tmp_path, bank_dir):
    bank, clock, out = catalog.load_bank(bank_dir), FakeClock(), io.StringIO()
    oracle = Oracle(out, bank, clock=clock, step=25.0)
    summary = drill.run_mock(1, db=tmp_path / "p.sqlite", seed=0, bank_dir=bank_dir, out=out, inp=oracle,
                             clock=clock)
    assert (summary.answered, summary.ended_by) == (2, "time")
    chapters = [qid[:4] for qid in oracle.asked]
    assert chapters[0] != chapters[1]  # mixed chapters
    text = out.getvalue()
    assert "not scored" in text and "Mock interview score: 2/2 right" in text and "RIGHT" not in text
    out = io.StringIO()
    summary = drill.run_mock(30, n=3, db=tmp_path / "p.sqlite", seed=0, bank_dir=bank_dir, out=out,
                             inp=Oracle(out, bank, wrong={"ch00-a", "ch00-b", "ch00-c"}), clock=FakeClock())
    assert summary.answered == 3 and summary.ended_by == "done" and "WRONG" not in out.getvalue()
    assert "review:\n  - ch00-" in out.getvalue() and ": A) yes. Because ch00-" in out.getvalue()


def test_stats_report(tmp_path, bank_dir):
    db = tmp_path / "p.sqlite"
    with ProgressStore(db) as store:
        store.record(bank_q(bank_dir, "ch02-why"), False)
        store.record(bank_q(bank_dir, "ch00-a"), True)
    out = io.StringIO()
    stats = drill.print_stats(db=db, bank_dir=bank_dir, out=out)
    assert stats["chapters"]["00"]["seen"] == 1 and stats["chapters"]["02"]["questions"] == 4
    assert stats["weakest_topics"][0]["topic"] == "calibration"
    assert "00 Measuring" in out.getvalue() and "weakest topics: calibration (0/1)" in out.getvalue()


def _drill_process(bank_dir, db, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "coursekit.quiz.drill", "--bank", str(bank_dir), "--db",
                             str(db), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def test_drill_through_piped_stdin_in_a_subprocess(tmp_path, bank_dir):
    db = tmp_path / "p.sqlite"
    proc = _drill_process(bank_dir, db, "--chapter", "0", "--n", "3", "--seed", "4")
    stdout, stderr = proc.communicate("what\nA\nA\nA\n", timeout=60)
    assert proc.returncode == 0 and stderr == "", stderr
    assert "Could not read that" in stdout and "== Drill: 3/3 right" in stdout
    with ProgressStore(db) as store:
        assert [r["correct"] for r in store.answers()] == [1, 1, 1]


def test_progress_survives_a_killed_drill(tmp_path, bank_dir):
    db = tmp_path / "p.sqlite"
    proc = _drill_process(bank_dir, db, "--chapter", "0", "--n", "3")
    proc.stdin.write("A\nB\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    rows = []
    while time.monotonic() < deadline and len(rows) < 2:
        time.sleep(0.1)
        if db.exists():
            try:
                with ProgressStore(db, timeout=1) as store:
                    rows = store.answers()
            except ProgressStoreError:
                pass
    assert proc.poll() is None, "the drill should still be waiting for the third answer"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    with ProgressStore(db) as store:
        assert [r["correct"] for r in store.answers()] == [1, 0] and store.notices == []


# ---- CLI commands (through coursekit.cli.main, in process) --------------------------------------------------

def run_cli(*argv):
    return coursekit_main(list(argv))


def test_cli_help_texts(capsys):
    for argv in (["drill"], ["quiz"], ["quiz", "stats"], ["quiz", "export"]):
        assert run_cli(*argv, "--help") == 0
        text = capsys.readouterr().out
        assert "usage: coursekit" in text and len(text) > 300, argv
    run_cli("quiz", "stats", "--json")
    assert "by_chapter" in json.loads(capsys.readouterr().out)


def test_cli_stats_and_errors(tmp_path, bank_dir, capsys):
    assert run_cli("quiz", "stats", "--bank", str(bank_dir)) == 0
    assert "7 questions in 2 files" in capsys.readouterr().out
    assert run_cli("drill", "--stats", "--bank", str(bank_dir), "--db", str(tmp_path / "p.sqlite")) == 0
    assert "weakest topics" in capsys.readouterr().out
    assert run_cli("drill", "--chapter", "7", "--bank", str(bank_dir), "--db", str(tmp_path / "p.sqlite")) == 2
    assert "chapter='07' is not supported" in capsys.readouterr().err


# ---- export ---------------------------------------------------------------------------------------------

def parse_markdown_ids(text):
    return [line[4:].strip() for line in text.splitlines() if line.startswith("### ")]


def parse_anki(text):
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    assert all(len(r) == 3 for r in rows)
    return [next(t[4:] for t in tags.split() if t.startswith("id::")) for _, _, tags in rows], rows


def test_export_round_trip_and_no_overwrite(tmp_path, bank_dir, capsys):
    ids = [q.id for q in catalog.questions(directory=bank_dir)]
    md, anki = tmp_path / "bank.md", tmp_path / "bank.txt"
    assert run_cli("quiz", "export", "--format", "markdown", str(md), "--bank", str(bank_dir)) == 0
    assert run_cli("quiz", "export", "--format", "anki", str(anki), "--bank", str(bank_dir)) == 0
    md_text = md.read_text()
    assert parse_markdown_ids(md_text) == ids
    assert md_text.index("## Chapter 00: Measuring") < md_text.index("### ch00-a") < md_text.index("## Chapter 02")
    anki_ids, rows = parse_anki(anki.read_text())
    assert anki_ids == ids and anki.read_text().startswith("#separator:tab\n#html:true\n#tags column:3\n")
    assert "<br>  A) yes<br>" in rows[0][0] and "{" not in rows[5][0]
    capsys.readouterr()
    md.write_text("mine")
    assert run_cli("quiz", "export", str(md), "--bank", str(bank_dir)) == 2
    assert "already exists" in capsys.readouterr().err and md.read_text() == "mine"
    with pytest.raises(FileExistsError):
        export.export_bank(md, "markdown", bank_dir=bank_dir)
    assert run_cli("quiz", "export", str(md), "--force", "--bank", str(bank_dir)) == 0
    assert parse_markdown_ids(md.read_text()) == ids


# ---- widget and graded cells ----------------------------------------------------------------------------

def test_widget_builds_headless_and_clicks_give_feedback(bank_dir):
    from coursekit.quiz import show

    quiz = show(chapter=2, bank_dir=bank_dir)
    assert len(quiz.cards) == 4 and "score 0/0" in quiz.score.value
    multi, mem = quiz.cards[0], quiz.cards[1]
    multi.boxes[0].value = multi.boxes[1].value = True
    multi.submit.click()
    assert "Not quite" in multi.feedback.value and "Because ch02-multi" in multi.feedback.value
    assert multi.submit.disabled and "score 0/1" in quiz.score.value
    mem.text.value = "lots"
    mem.submit.click()
    assert mem.result is None and "not a number" in mem.feedback.value
    mem.text.value = "3.5 GB"
    mem.submit.click()
    assert "Right." in mem.feedback.value and "score 1/2" in quiz.score.value
    single = show(chapter=0, topic="bits", bank_dir=bank_dir).cards[0]
    single.buttons[0].click()
    assert single.result.correct and all(b.disabled for b in single.buttons)
    assert len(show(bank_dir=bank_dir, n=3, seed=1).cards) == 3


def test_graded_cells(bank_dir, capsys):
    ids = ["ch00-a", "ch02-multi", "ch02-mem", "ch02-why"]
    right = {"ch00-a": "A", "ch02-multi": "a,b,d", "ch02-mem": "3.5 GB", "ch02-why": "clip the outliers"}
    assert graded.grade_answers(right, ids, bank_dir=bank_dir) == 4
    wrong = dict(right, **{"ch00-a": "C", "ch02-mem": "huge"})
    del wrong["ch02-why"]
    with pytest.raises(AssertionError) as err:
        graded.grade_answers(wrong, ids, bank_dir=bank_dir)
    message = str(err.value)
    assert message == "1/4 right; wrong: ch00-a; not answered: ch02-why; could not be read: ch02-mem"
    ratio = instantiate(bank_q(bank_dir, "ch02-ratio"), seed=5)
    assert graded.grade_answers({"ch02-ratio": str(ratio.answer)}, "ch02-ratio", seed=5, bank_dir=bank_dir) == 1
    text = graded.render_markdown(ids, bank_dir=bank_dir)
    assert "**1. `ch00-a`**" in text and "- **B)** no" in text and "Because" not in text
    assert graded.render(ids, bank_dir=bank_dir).data == text
    assert capsys.readouterr().err == ""


def test_graded_cell_in_a_fresh_kernel_like_process_writes_nothing_to_stderr(tmp_path):
    """nbgrader scores a test cell with any stderr output as 0: import + grade through torch-backed generators."""
    files = {"ch01_ints.json": {"chapter": "01", "title": "Integers", "questions": [
        _q("ch01-zp", type="numeric", choices=None, answer=None, generator="scale_zero_point", tolerance={"abs": 0},
           params={"min_val": [-1.0], "max_val": [3.0], "bits": [8], "symmetric": [False], "ask": ["zero_point"]},
           prompt="Zero point for [{min_val}, {max_val}] in unsigned {bits}-bit?"),
        _q("ch01-q", type="numeric", choices=None, answer=None, generator="quantize_value", tolerance={"abs": 0},
           params={"x": [0.25], "scale": [0.1], "zero_point": [0], "bits": [8]}, prompt="Code of {x}?")]}}
    bank = write_bank(tmp_path / "b", files)
    code = ("import coursekit.quiz as quiz\n"
            f"assert quiz.grade_answers({{'ch01-zp': '64', 'ch01-q': '2'}}, ['ch01-zp', 'ch01-q'], bank_dir={str(bank)!r}) == 2\n"
            "try:\n"
            f"    quiz.grade_answers({{'ch01-zp': '63'}}, ['ch01-zp'], bank_dir={str(bank)!r})\n"
            "except AssertionError as err:\n"
            "    print(err)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), NBGRADER_EXECUTION="autograde")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip() == "0/1 right; wrong: ch01-zp"
