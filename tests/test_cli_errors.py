"""The CLI's one error policy (coursekit.cli.errors): usage errors exit 2 with one line naming the argument, runtime
failures exit 1 with one line, Ctrl-C exits 130, and a bug (an ImportError included) shows its traceback."""
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coursekit._paths import check_output_file
from coursekit.bench import save_results
from coursekit.cli import bench as bench_cli
from coursekit.cli import main
from coursekit.cli.errors import describe, exit_code
from coursekit.quiz import drill as quiz_drill
from coursekit.quiz.store import ProgressLockedError

ROOT = Path(__file__).resolve().parents[1]


def one_line(text: str) -> str:
    lines = text.strip("\n").splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def unwritable_dir(tmp_path_factory):
    """A folder this process cannot write into (chmod for ordinary users; a read-only kernel file system for root,
    which ignores permission bits)."""
    folder = tmp_path_factory.mktemp("locked")
    folder.chmod(0o500)
    try:
        (folder / "probe").touch()
    except OSError:
        yield folder
        folder.chmod(0o700)
        return
    (folder / "probe").unlink()
    folder.chmod(0o700)
    for candidate in (Path("/sys"), Path("/proc/sys")):
        try:
            (candidate / "coursekit-probe").touch()
        except OSError:
            yield candidate
            return
        (candidate / "coursekit-probe").unlink()
    pytest.skip("no folder here refuses writes to this user")


@pytest.fixture
def no_suite(monkeypatch):
    """Replace the suite runner: records whether a command got as far as running a suite."""
    calls = []

    def fake_run_suite(*args, **kwargs):
        calls.append((args, kwargs))
        return {"hardware": {"cpu": {"model": "test", "isa": []}}, "records": []}

    monkeypatch.setattr(bench_cli, "run_suite", fake_run_suite)
    return calls


# ---- usage errors from argument parsing: every command, one line, exit 2 --------------------------------------

@pytest.mark.parametrize("argv, argument", [
    (["nope"], "COMMAND"),
    (["doctor", "--bogus"], "--bogus"),
    (["bench", "--threads", "x"], "--threads"),
    (["bench", "--repeats", "1"], "--repeats"),
    (["bench", "--device", "tpu"], "--device"),
    (["build", "--bogus"], "--bogus"),
    (["check"], "NOTEBOOK"),
    (["course"], "ACTION"),
    (["course", "init"], "DIR"),
    (["drill", "--n", "0"], "--n"),
    (["drill", "--mock", "inf"], "--mock"),
    (["quiz", "export"], "PATH"),
    (["quiz", "export", "x.md", "--format", "pdf"], "--format"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_usage_errors_exit_2_with_one_line_naming_the_argument(argv, argument, capsys):
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("coursekit") and ": error: " in line and argument in line and "--help" in line


def test_help_and_version_exit_0(capsys):
    assert main(["--help"]) == 0 and "usage: coursekit" in capsys.readouterr().out
    assert main(["--version"]) == 0 and capsys.readouterr().out.startswith("coursekit ")


# ---- bench: output paths are checked before the suite runs ----------------------------------------------

def test_bench_rejects_bad_output_paths_before_running(tmp_path, unwritable_dir, no_suite, capsys):
    (tmp_path / "a_file").write_text("x")
    cases = [
        (["--json", str(tmp_path)], "is a folder"),
        (["--json", str(tmp_path / "missing" / "r.json")], "does not exist; create it first"),
        (["--json", str(tmp_path / "a_file" / "r.json")], "is a file, not a folder"),
        (["--json", str(unwritable_dir / "r.json")], "cannot be written"),
        (["--plot", str(tmp_path)], "matplotlib can write"),
        (["--plot", str(tmp_path / "chart.nope")], "matplotlib can write"),
        (["--plot", str(unwritable_dir / "chart.png")], "cannot be written"),
        (["--json", str(tmp_path / "ok.json"), "--plot", str(tmp_path / "missing" / "c.png")], "--plot"),
    ]
    for args, message in cases:
        assert main(["bench", *args]) == 2, args
        line = one_line(capsys.readouterr().err)
        assert line.startswith("coursekit bench: error: ") and message in line and args[-2] in line, line
    assert no_suite == []  # nothing ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # and nothing was left behind


def test_bench_with_good_paths_runs_and_saves(tmp_path, no_suite, capsys):
    out = tmp_path / "r.json"
    assert main(["bench", "--json", str(out)]) == 0
    assert len(no_suite) == 1 and out.exists() and f"saved {out}" in capsys.readouterr().out


def test_bench_runtime_failure_interrupt_and_bug(monkeypatch, capsys):
    def fail(exc):
        def run_suite(*args, **kwargs):
            raise exc
        monkeypatch.setattr(bench_cli, "run_suite", run_suite)

    fail(RuntimeError("torch refused the kernel"))
    assert main(["bench"]) == 1
    assert one_line(capsys.readouterr().err) == "coursekit bench: error: torch refused the kernel"
    fail(OSError(errno.ENOSPC, "No space left on device", "/tmp/x"))
    assert main(["bench"]) == 1
    assert one_line(capsys.readouterr().err) == "coursekit bench: error: /tmp/x: no space left on device"
    fail(KeyboardInterrupt())
    assert main(["bench"]) == 130
    assert one_line(capsys.readouterr().err) == "coursekit bench: interrupted"
    fail(TypeError("a bug"))
    with pytest.raises(TypeError, match="a bug"):  # a bug is not dressed up as a user error
        main(["bench"])


def test_save_results_checks_the_path_before_writing(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        save_results(tmp_path, {}, [])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_results(tmp_path / "missing" / "r.json", {}, [])


# ---- course init and quiz export: OS errors as one line ------------------------------------------------------

def test_course_init_onto_a_file_or_an_unwritable_folder(tmp_path, unwritable_dir, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    cases = [(a_file, "is a file"), (a_file / "course", "part of the path is a file"),
             (unwritable_dir / "course", "cannot be written")]
    for target, message in cases:
        assert main(["course", "init", str(target)]) == 2, target
        line = one_line(capsys.readouterr().err)
        assert line.startswith("coursekit course: error: DIR ") and message in line, line
        assert "nothing was changed" in line and not target.is_dir()
    assert a_file.read_text() == "keep me"


def test_quiz_export_to_bad_paths(tmp_path, unwritable_dir, capsys):
    existing = tmp_path / "mine.md"
    existing.write_text("mine")
    cases = [(unwritable_dir / "q.md", "cannot be written"), (tmp_path, "is a folder"),
             (tmp_path / "missing" / "q.md", "does not exist"), (existing, "already exists; use --force")]
    for target, message in cases:
        assert main(["quiz", "export", str(target)]) == 2, target
        line = one_line(capsys.readouterr().err)
        assert line.startswith("coursekit quiz: error: path ") and message in line, line
    assert existing.read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["mine.md"]


# ---- drill: database path, locked database, Ctrl-C ---------------------------------------------------------

def test_drill_db_path_errors_and_runtime_failures(tmp_path, monkeypatch, capsys):
    assert main(["drill", "--db", str(tmp_path)]) == 2
    assert "--db" in one_line(capsys.readouterr().err)

    def locked(**kwargs):
        raise ProgressLockedError("progress database p.sqlite is locked by another drill; close it and retry")

    monkeypatch.setattr(quiz_drill, "run_drill", locked)
    assert main(["drill", "--db", str(tmp_path / "p.sqlite")]) == 1
    assert "locked by another drill" in one_line(capsys.readouterr().err)

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(quiz_drill, "run_drill", interrupted)
    assert main(["drill", "--db", str(tmp_path / "p.sqlite")]) == 130
    assert one_line(capsys.readouterr().err) == "coursekit drill: interrupted; every answer given so far is saved"


# ---- a broken import is a real error ----------------------------------------------------------------------------

BLOCK_IMPORT = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "coursekit.quiz.catalog":
            raise ImportError("simulated broken module coursekit.quiz.catalog")
sys.meta_path.insert(0, Block())
from coursekit.cli import main
sys.exit(main(["quiz", "stats"]))
"""


def test_a_broken_import_shows_its_traceback():
    done = subprocess.run([sys.executable, "-c", BLOCK_IMPORT], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "simulated broken module" in done.stderr
    assert "invalid choice" not in done.stderr and "unknown" not in done.stderr


# ---- the policy's pieces ------------------------------------------------------------------------------------

def test_exit_codes_by_exception_kind():
    assert exit_code(ValueError("x")) == 2 and exit_code(FileExistsError("x")) == 2
    assert exit_code(PermissionError("x")) == 2 and exit_code(IsADirectoryError("x")) == 2
    assert exit_code(RuntimeError("x")) == 1 and exit_code(OSError(errno.EIO, "I/O error")) == 1
    assert exit_code(TypeError("x")) is None and exit_code(ImportError("x")) is None
    assert describe(PermissionError(errno.EACCES, "Permission denied", "/x")) == "/x: permission denied"
    assert describe(FileExistsError("path 'a' already exists; use --force")) == "path 'a' already exists; use --force"


def test_check_output_file_leaves_nothing_behind(tmp_path):
    new = tmp_path / "new.json"
    assert check_output_file("--json", new) == new and not new.exists()
    old = tmp_path / "old.json"
    old.write_text("keep")
    before = old.stat().st_mtime_ns
    assert check_output_file("--json", old) == old
    assert old.read_text() == "keep" and old.stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="--json .* already exists; add --force"):
        check_output_file("--json", old, overwrite=False, exists_hint="add --force")
    with pytest.raises(FileNotFoundError, match="--json is empty"):
        check_output_file("--json", "")
