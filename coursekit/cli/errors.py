"""The one error policy of every ``coursekit`` command: what a failure prints, and its exit status.

    0    success
    1    the command ran and failed (a runtime failure: a locked progress database, a grading run that broke,
         notebooks out of date): one line on stderr
    2    a usage error: a bad argument value or a bad path (the file exists, the folder is missing or cannot be
         written, an unknown chapter). One line on stderr that names the argument and says how to fix it; nothing
         was run
    130  interrupted with Ctrl-C: one line on stderr

The line reads ``coursekit COMMAND: error: MESSAGE``. Library code raises ``ValueError`` (naming the argument,
``coursekit._validate``) or a path ``OSError`` (``coursekit._paths``) for usage errors, and ``RuntimeError`` or
another ``OSError`` for runtime failures; ``run_command`` maps them. Anything else (a ``TypeError``, an
``ImportError``, ...) is a bug in coursekit and is not caught: it shows as a full traceback.
"""
from __future__ import annotations

import argparse
import math
import sys

OK, FAILURE, USAGE, INTERRUPTED = 0, 1, 2, 130

# Bad input from the user: an argument value, or a path that does not fit.
USAGE_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                PermissionError)
# The command ran and could not finish.
RUNTIME_ERRORS = (RuntimeError, OSError)


class CommandError(Exception):
    """An expected failure, reported as one line on stderr with exit status ``code``."""

    def __init__(self, message: str, code: int = USAGE):
        super().__init__(message)
        self.code = code


class UsageError(CommandError):
    """A bad command-line argument: ``argument`` is named in the message (exit status 2)."""

    def __init__(self, argument: str, message: str):
        super().__init__(f"argument {argument}: {message}", USAGE)
        self.argument = argument


def exit_code(exc: BaseException) -> int | None:
    """The exit status for ``exc`` under the policy, or None for a bug (to be shown as a traceback)."""
    if isinstance(exc, CommandError):
        return exc.code
    if isinstance(exc, USAGE_ERRORS):
        return USAGE
    if isinstance(exc, RUNTIME_ERRORS):
        return FAILURE
    return None


def describe(exc: BaseException) -> str:
    """The message of ``exc`` for the error line (an OS error without a message of ours: "PATH: reason")."""
    if isinstance(exc, OSError) and exc.strerror and str(exc).startswith("[Errno"):
        return f"{exc.filename}: {exc.strerror.lower()}" if exc.filename else exc.strerror.lower()
    return str(exc).strip() or type(exc).__name__


def run_command(prog: str, func, args) -> int:
    """Run ``func(args)`` under the policy; ``prog`` starts the error line (e.g. ``coursekit bench``).

    ``args.interrupted`` (set with ``parser.set_defaults``) is added to the Ctrl-C line, e.g. what was saved.
    """
    try:
        return int(func(args) or OK)
    except KeyboardInterrupt:
        note = getattr(args, "interrupted", None)
        print(f"\n{prog}: interrupted" + (f"; {note}" if note else ""), file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise
        print(f"{prog}: error: {describe(exc)}", file=sys.stderr)
        return code


class Parser(argparse.ArgumentParser):
    """argparse with the policy's one-line usage errors: ``PROG: error: MESSAGE; see `PROG --help` ``, exit 2."""

    def error(self, message: str):
        self.exit(USAGE, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


# ---- argument types: each rejects a bad value with a message naming what is allowed -----------------------

def int_at_least(minimum: int, example: str | None = None):
    """An argparse ``type``: an integer >= ``minimum`` (``example``: a valid use, such as ``"--n 5"``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            hint = f"; e.g. {example}" if example is not None else ""
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}{hint}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def positive_number(unit: str, example: str):
    """An argparse ``type``: a finite number > 0 (``inf``, ``nan``, 0 and negatives are refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a finite number of {unit} > 0, got {text!r}; e.g. {example}")
        return value
    parse.__name__ = f"number of {unit}"
    return parse
