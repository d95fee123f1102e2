"""``coursekit course autograde``: a class graded by the sealed engine in worker processes into nbgrader's
gradebook, on SQLite and on a real PostgreSQL server (a throw-away cluster started here on a loopback port).

Expected scores are hand-computed from the fixture chapter's points (tests/fixtures/99_demo.py: 2+1+2+2+3 = 10;
a ``double`` that returns x + 2 loses exactly Exercise 1's 2 points), and read back through nbgrader's own
``nbgrader export`` (what formgrader and instructors see).
"""
import csv
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from glob import glob
from pathlib import Path

import nbformat
import pytest

from coursekit.cli import main
from coursekit.grading import init_course

FIXTURES = Path(__file__).parent / "fixtures"
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

RIGHT = {"ex1_double": "def double(x):\n    return 2 * x", "ex2_half": "def half(x):\n    return x / 2",
         "ex3_scale": "def scale(t, s):\n    return t / s",
         "ex4_memory": "def weight_memory_gb(n, bits):\n    return n * bits / 8 / 1e9",
         "quiz_answers": 'answers = {"q1": "4", "q2": "Paris", "q3": "9"}'}
WRONG_DOUBLE = {**RIGHT, "ex1_double": "def double(x):\n    return x + 2"}



def nbgrader(course: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([str(BIN / "nbgrader"), *args], cwd=course, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def exported(course: Path, *db: str) -> dict[str, tuple[float, float]]:
    nbgrader(course, "export", *db)
    with open(course / "grades.csv", newline="") as f:
        return {r["student_id"]: (float(r["score"]), float(r["max_score"])) for r in csv.DictReader(f)}


def submit(course: Path, repo: Path, student: str, answers=None, chapter="99_demo", text=None):
    folder = course / "submitted" / student / "99_demo"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "99_demo.ipynb"
    if text is not None:
        target.write_text(text)
        return
    nb = nbformat.read(repo / "notebooks" / f"{chapter}.ipynb", as_version=4)
    for c in nb.cells:
        c.source = (answers or {}).get(c.get("metadata", {}).get("nbgrader", {}).get("grade_id"), c.source)
    nbformat.write(nb, target)


def run_autograde(capsys, course: Path, *extra: str) -> tuple[int, str]:
    """Exit code and stdout (stderr stays in ``capsys``)."""
    code = main(["course", "autograde", "99_demo", "--course", str(course), *extra])
    out = capsys.readouterr()
    sys.stderr.write(out.err)
    return code, out.out


def class_round_trip(course_repo, course, capsys, db_args: list[str]):
    """Two grading rounds: the class, then resubmissions that cannot be graded (nothing overwritten)."""
    nbgrader(course, "generate_assignment", "99_demo", "--force", *db_args)
    submit(course, course_repo, "alice")  # blank
    submit(course, course_repo, "amy", WRONG_DOUBLE)
    submit(course, course_repo, "bob", RIGHT)
    submit(course, course_repo, "dave", text="this is not a notebook")
    code, out = run_autograde(capsys, course, "--workers", "2", *(["--db", db_args[0].split("=", 1)[1]]
                                                                   if db_args else []))
    assert code == 1, out  # dave's submission was rejected
    assert "dave: 0/10" in out and "REJECTED (recorded as 0)" in out and "not a readable notebook" in out
    assert "graded 3 submission(s), rejected 1" in out
    assert exported(course, *db_args) == {"alice": (0.0, 10.0), "amy": (8.0, 10.0), "bob": (10.0, 10.0),
                                          "dave": (0.0, 10.0)}
    # bob resubmits a broken file, amy another chapter's notebook: the gradebook keeps their grades
    submit(course, course_repo, "bob", text='{"cells": 3}')
    submit(course, course_repo, "amy", RIGHT, chapter="98_other")
    code, out = run_autograde(capsys, course, "--workers", "2", "--student", "bob", "--student", "amy",
                              *(["--db", db_args[0].split("=", 1)[1]] if db_args else []))
    assert code == 1 and out.count("REJECTED, gradebook unchanged") == 2, out
    assert "amy: 0/10" in out and "this notebook is not chapter 99_demo" in out, out
    assert exported(course, *db_args) == {"alice": (0.0, 10.0), "amy": (8.0, 10.0), "bob": (10.0, 10.0),
                                          "dave": (0.0, 10.0)}
    with open(course / "sealed_grades.csv", newline="") as f:
        totals = {r["student"]: float(r["score"]) for r in csv.DictReader(f) if r["exercise"] == "(total)"}
    assert totals == {"alice": 0.0, "amy": 8.0, "bob": 10.0, "dave": 0.0}


def test_autograde_into_sqlite_gradebook(course_repo, tmp_path, capsys):
    course = tmp_path / "course"
    init_course(course, root=course_repo)
    class_round_trip(course_repo, course, capsys, [])


def test_autograde_rejects_bad_arguments_in_one_line(course_repo, tmp_path, capsys):
    course = tmp_path / "course"
    init_course(course, root=course_repo)
    code, _ = run_autograde(capsys, course)
    assert code != 0 and "gradebook.db does not exist" in capsys.readouterr().err
    nbgrader(course, "generate_assignment", "99_demo", "--force")
    for extra, message in ((["--workers", "0"], "--workers"), (["--db", "gradebook.db"], "--db must be a database URL"),
                           ([], "no submissions")):
        assert run_autograde(capsys, course, *extra)[0] != 0
        assert message in capsys.readouterr().err, extra


# --- PostgreSQL -------------------------------------------------------------------------------------------

def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    assert found, f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql; .ci/run does it)"
    return found


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL cluster on a free loopback port (as the `postgres` user when run as root)."""
    as_user: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="coursekit-pg-"))
    if os.geteuid() == 0:
        user = "postgres"
        pw = pwd.getpwnam(user)  # Debian's postgresql package creates it
        os.chown(data, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", user, "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pgdata = data / "pgdata"
    subprocess.run([*as_user, _pg_bin("initdb"), "-D", str(pgdata), "-U", "grader", "--auth=trust", "-E", "UTF8"],
                   capture_output=True, text=True, timeout=120, check=True)
    subprocess.run([*as_user, _pg_bin("pg_ctl"), "-D", str(pgdata), "-l", str(data / "log"), "-w", "-t", "60", "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   capture_output=True, text=True, timeout=120, check=True)
    try:
        yield f"postgresql://grader@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, _pg_bin("pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(data, ignore_errors=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the port is free again: the server is gone
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail(f"PostgreSQL still listens on port {port} after pg_ctl stop")


def test_autograde_into_postgresql_gradebook(course_repo, tmp_path, capsys, postgres):
    course = tmp_path / "course"
    init_course(course, root=course_repo)
    class_round_trip(course_repo, course, capsys, [f"--CourseDirectory.db_url={postgres}"])
    assert not (course / "gradebook.db").exists()  # everything went to the server
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres)
    with engine.connect() as con:  # the server itself holds the grades (an independent read, not nbgrader's)
        rows = con.execute(sqlalchemy.text(
            "SELECT s.student_id, SUM(COALESCE(g.manual_score, g.auto_score, 0)) FROM grade g "
            "JOIN submitted_notebook n ON g.notebook_id = n.id JOIN submitted_assignment s ON n.assignment_id = s.id "
            "GROUP BY s.student_id")).all()
    engine.dispose()
    assert {student: float(total) for student, total in rows} == {"alice": 0.0, "amy": 8.0, "bob": 10.0, "dave": 0.0}


# --- who submitted: the hub's identity (coursekit.grading.identity) through nbgrader's own exchange -------------

def exchange_submit(course: Path, exchange: Path, home: Path, hub_user: str, student_id: str, answers) -> None:
    """``hub_user``'s server (key from the hub) fetches and submits under ``student_id`` with nbgrader's exchange."""
    from coursekit.grading.identity import user_key

    home.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COURSEKIT_IDENTITY_USER": hub_user,
           "COURSEKIT_IDENTITY_KEY": user_key(SECRET, hub_user), "JUPYTER_CONFIG_PATH": str(home)}
    (home / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.course_id = 'coursekit'\nc.Exchange.root = {str(exchange)!r}\n"
        f"c.CourseDirectory.student_id = {student_id!r}\n"  # what a student can change in their own config
        "c.ExchangeFactory.submit = 'coursekit.grading.identity.IdentitySubmit'\n")
    for args in (["fetch_assignment", "99_demo"], ["submit", "99_demo"]):
        if args[0] == "submit":
            nb = nbformat.read(home / "99_demo" / "99_demo.ipynb", as_version=4)
            for c in nb.cells:
                c.source = answers.get(c.get("metadata", {}).get("nbgrader", {}).get("grade_id"), c.source)
            nbformat.write(nb, home / "99_demo" / "99_demo.ipynb")
        done = subprocess.run([str(BIN / "nbgrader"), *args], cwd=home, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0 and "[ERROR]" not in done.stderr, done.stderr[-2000:]


SECRET = b"shared by the hub and the grader only"


def test_a_submission_filed_under_another_students_id_is_rejected(course_repo, tmp_path, capsys, monkeypatch):
    course, exchange = tmp_path / "course", tmp_path / "exchange"
    init_course(course, root=course_repo)
    exchange.mkdir()
    xargs = [f"--Exchange.root={exchange}", "--CourseDirectory.course_id=coursekit"]
    nbgrader(course, "generate_assignment", "99_demo", "--force")
    nbgrader(course, "release_assignment", "99_demo", "--force", *xargs)
    exchange_submit(course, exchange, tmp_path / "bob", "bob", "bob", RIGHT)
    exchange_submit(course, exchange, tmp_path / "amy", "amy", "amy", WRONG_DOUBLE)
    nbgrader(course, "collect", "99_demo", *xargs)
    assert (course / "submitted" / "bob" / "99_demo" / "coursekit_identity.json").is_file()  # collect carries it
    secret_file = tmp_path / "identity_secret"
    secret_file.write_bytes(SECRET)
    code, out = run_autograde(capsys, course, "--identity-secret-file", str(secret_file))
    assert code == 0 and "rejected 0" in out, out
    assert exported(course) == {"amy": (8.0, 10.0), "bob": (10.0, 10.0)}

    # alice sets her nbgrader student id to bob's and submits a blank notebook from her own server; carol's
    # notebook is put in submitted/ by hand (no identity)
    exchange_submit(course, exchange, tmp_path / "alice", "alice", "bob", {})
    submit(course, course_repo, "carol", RIGHT)
    nbgrader(course, "collect", "99_demo", "--update", *xargs)
    monkeypatch.setenv("COURSEKIT_IDENTITY_SECRET", SECRET.decode())  # the environment serves as well as the file
    code, out = run_autograde(capsys, course)
    assert code == 1 and "graded 1 submission(s), rejected 2" in out, out
    assert "bob: 0/10" in out and "REJECTED, gradebook unchanged: submitted from alice's server under bob's id" in out
    assert "carol: 0/10" in out and "REJECTED (recorded as 0): no coursekit_identity.json" in out, out
    assert exported(course) == {"amy": (8.0, 10.0), "bob": (10.0, 10.0), "carol": (0.0, 10.0)}
    with open(course / "sealed_grades.csv", newline="") as f:
        totals = {r["student"]: float(r["score"]) for r in csv.DictReader(f) if r["exercise"] == "(total)"}
    assert totals == {"amy": 8.0, "bob": 10.0, "carol": 0.0}

    # without a secret nothing is checked (behaviour unchanged): alice's blank notebook now counts for bob
    monkeypatch.delenv("COURSEKIT_IDENTITY_SECRET")
    code, out = run_autograde(capsys, course, "--student", "bob")
    assert code == 0 and exported(course)["bob"] == (0.0, 10.0), out
