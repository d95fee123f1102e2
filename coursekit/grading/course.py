"""Course directories in nbgrader's standard layout, and where the repository keeps its chapters.

    DIR/nbgrader_config.py
    DIR/source/NN_topic/NN_topic.ipynb      instructor notebooks (solutions + hidden tests)
    DIR/release/NN_topic/NN_topic.ipynb     after `nbgrader generate_assignment NN_topic`
    DIR/submitted/STUDENT/NN_topic/...      after collecting
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from traitlets.config import Config

from coursekit._paths import cannot_write
from coursekit.grading.config import configure

NOTEBOOK_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")
CONFIG_TEXT = '''"""nbgrader configuration for a coursekit course (created by `coursekit course init`)."""
from coursekit.grading.config import configure

c = get_config()  # noqa: F821 - provided by nbgrader
configure(c)
'''


def repo_root() -> Path:
    """The course repository: ``COURSEKIT_ROOT`` if set, else the checkout that contains this package."""
    override = os.environ.get("COURSEKIT_ROOT")
    root = Path(override) if override else Path(__file__).resolve().parents[2]
    if not (root / "solutions").is_dir():
        raise FileNotFoundError(
            f"no solutions/ folder under {root}: run coursekit from a clone of the course repository "
            "(pip install -e .), or set COURSEKIT_ROOT to the clone's path"
        )
    return root


def solution_notebooks(root: Path | None = None) -> list[Path]:
    """The instructor notebooks ``solutions/NN_topic.ipynb``, in chapter order."""
    root = root or repo_root()
    return sorted(p for p in (root / "solutions").glob("*.ipynb") if NOTEBOOK_NAME.match(p.stem))


def nbgrader_config(root: Path) -> Config:
    """A traitlets Config for a course rooted at ``root``."""
    c = Config()
    configure(c, root)
    return c


@contextlib.contextmanager
def quiet_logs() -> Iterator[io.StringIO]:
    """Capture nbgrader's, SQLAlchemy's and the grading kernel's chatter (all on stderr) so commands stay
    readable; the captured text is in the yielded buffer for error messages."""
    stream = io.StringIO()
    with _captured_stderr_fd(stream), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _captured_loggers(stream):
            yield stream


@contextlib.contextmanager
def _captured_stderr_fd(stream: io.StringIO) -> Iterator[None]:
    """Send file descriptor 2 (also used by child processes such as kernels) to a temporary file."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, io.UnsupportedOperation, ValueError):  # e.g. inside Jupyter
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            stream.write(tmp.read().decode("utf-8", "replace"))


@contextlib.contextmanager
def _captured_loggers(stream: io.StringIO) -> Iterator[None]:
    handler = logging.StreamHandler(stream)
    loggers = [logging.getLogger(name) for name in ("traitlets", "nbgrader", "NbGraderAPI")]
    saved = [(lg, lg.handlers[:], lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.handlers = [handler]
        lg.propagate = False
    try:
        yield
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate


def ensure_scripts_on_path() -> None:
    """Put this interpreter's script folder on PATH: nbgrader runs ``alembic`` from PATH, and a virtual
    environment used without being activated would otherwise not be found."""
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")


def make_api(root: Path):
    """An in-process ``NbGraderAPI`` for the course at ``root`` (about 2x faster than the nbgrader CLI)."""
    from nbgrader.apps import NbGraderAPI

    ensure_scripts_on_path()
    api = NbGraderAPI(config=nbgrader_config(root))
    api.log.handlers = []
    api.log.propagate = True
    return api


@contextlib.contextmanager
def temporary_course(solution: Path) -> Iterator[tuple[Path, str]]:
    """A throw-away course holding one chapter's instructor notebook as ``source/NAME/NAME.ipynb``."""
    name = solution.stem
    with tempfile.TemporaryDirectory(prefix="coursekit-") as tmp:
        root = Path(tmp)
        (root / "source" / name).mkdir(parents=True)
        shutil.copyfile(solution, root / "source" / name / f"{name}.ipynb")
        yield root, name


def init_course(directory, root: Path | None = None) -> list[Path]:
    """Create a standard nbgrader course in ``directory`` from the repository's ``solutions/``.

    Refuses to touch an existing non-empty directory, so an instructor's gradebook or students'
    submissions can never be overwritten. A path that cannot be created (a file, an unwritable folder) raises an
    ``OSError`` whose one-line message names ``DIR``; a folder this call created is removed again on failure.
    """
    directory = Path(directory).expanduser()
    unchanged = " (nothing was changed)"
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"DIR {str(directory)!r} is a file; give the name of a new folder{unchanged}")
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(
            f"DIR {str(directory)!r} exists and is not empty; choose a new folder{unchanged}"
        )
    notebooks = solution_notebooks(root)
    if not notebooks:
        raise FileNotFoundError("no solutions/NN_topic.ipynb notebooks found to put in the course")
    made = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "nbgrader_config.py").write_text(CONFIG_TEXT)
        created = []
        for nb in notebooks:
            target = directory / "source" / nb.stem / nb.name
            target.parent.mkdir(parents=True)
            shutil.copyfile(nb, target)
            created.append(target)
    except OSError as exc:
        if made and directory.is_dir():
            shutil.rmtree(directory, ignore_errors=True)
        raise cannot_write("DIR", exc.filename or directory, exc, suffix=unchanged if made else "") from exc
    return created
