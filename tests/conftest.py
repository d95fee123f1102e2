"""Test-wide settings: fast mode, a repository-local cache, a headless matplotlib; the shared course fixture."""
import os
import shutil
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("COURSEKIT_FAST", "1")
os.environ.setdefault("COURSEKIT_CACHE", str(ROOT / ".coursekit" / "cache"))
os.environ.setdefault("MPLBACKEND", "Agg")
# A shell that starts the tests as a background job without job control (`cmd &` in a script) leaves SIGINT
# *ignored*, and every child process inherits that, so the Ctrl-C tests would send a signal nobody hears. A Python
# handler here is reset to the default action in each child at exec, so coursekit commands started by the tests
# react to Ctrl-C as they do in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def course_repo(tmp_path_factory):
    """A miniature course repository with the sealed fixture chapter (99_demo) and a second chapter (98_other),
    built into solutions/ and notebooks/ as `coursekit build` does."""
    from coursekit.grading import build

    root = tmp_path_factory.mktemp("repo")
    (root / "solutions" / "src").mkdir(parents=True)
    for name in ("99_demo.py", "98_other.py"):
        shutil.copy(ROOT / "tests" / "fixtures" / name, root / "solutions" / "src" / name)
    build(root)
    return root
