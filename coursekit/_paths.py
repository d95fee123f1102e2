"""Output paths checked before the work, and file-system errors told in one line.

A command that runs for minutes and then fails to save its result has wasted the minutes, so anything that writes
a file checks the path first (``check_output_file``): not a folder, its folder exists, and it can really be written
(probed by opening it, because ``os.access`` says yes to root even on read-only file systems such as /sys). Each
error is an ``OSError`` subclass whose message names the argument, the path and what to do, so the CLI prints it as
one line (exit status 2, a usage error: see ``coursekit.cli.errors``).

Like ``_validate.py``, this module sits below every layer and may be imported by all of them.
"""
from __future__ import annotations

import os
from pathlib import Path


def cannot_write(name: str, path, exc: OSError, *, suffix: str = "") -> OSError:
    """A one-line error for ``exc``, raised while writing ``path`` (given as argument ``name``).

    Returns an exception of the same family (PermissionError, FileNotFoundError, ...) to ``raise ... from exc``.
    """
    path = Path(path)
    reason = (exc.strerror or str(exc)).lower()
    if isinstance(exc, FileNotFoundError):
        return FileNotFoundError(f"{name} {str(path)!r}: folder {str(path.parent)!r} does not exist; create it "
                                 f"first{suffix}")
    if isinstance(exc, NotADirectoryError):
        return NotADirectoryError(f"{name} {str(path)!r}: a part of the path is a file, not a folder{suffix}")
    if isinstance(exc, IsADirectoryError):
        return IsADirectoryError(f"{name} {str(path)!r} is a folder; give a file name{suffix}")
    return PermissionError(f"{name} {str(path)!r} cannot be written ({reason}); choose a place you can write to"
                           f"{suffix}")


def check_output_file(name: str, path, *, overwrite: bool = True,
                      exists_hint: str = "choose another name") -> Path:
    """``path`` as a Path if a file can be written there; otherwise an OSError naming argument ``name``.

    Checks, without leaving anything behind: ``path`` is not a folder; its folder exists; it does not exist yet
    unless ``overwrite``; and it can be opened for writing. Raises IsADirectoryError, FileNotFoundError,
    NotADirectoryError, FileExistsError or PermissionError.
    """
    if path is None or str(path).strip() == "":
        raise FileNotFoundError(f"{name} is empty; give a file name such as results.json")
    target = Path(path).expanduser()
    if target.is_dir():
        raise IsADirectoryError(f"{name} {str(target)!r} is a folder; give a file name inside it, "
                                f"e.g. {str(target / 'results.json')!r}")
    if not overwrite and (target.exists() or target.is_symlink()):
        raise FileExistsError(f"{name} {str(target)!r} already exists; {exists_hint}")
    parent = target.parent
    if not parent.exists():
        raise FileNotFoundError(f"{name} {str(target)!r}: folder {str(parent)!r} does not exist; create it first "
                                f"(mkdir -p {parent})")
    if not parent.is_dir():
        raise NotADirectoryError(f"{name} {str(target)!r}: {str(parent)!r} is a file, not a folder")
    existed = target.exists()
    try:
        with open(target, "a"):
            pass
    except OSError as exc:
        raise cannot_write(name, target, exc) from exc
    finally:
        if not existed and target.exists():
            os.remove(target)
    return target
