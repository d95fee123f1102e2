"""Sealed tests: the learner's kernel only *collects* answers; the verdict is decided where learner code cannot reach.

In plain nbgrader the hidden tests run in the same Python process as the learner's cells, so one learner cell can
patch whatever the tests call (``torch.allclose``, ``builtins.abs``, IPython's input transformers, the gradebook).
A sealed test splits every hidden test in two::

    ### BEGIN HIDDEN TESTS
    def _probe():                      # runs in the learner's kernel: call the learner's code on
        return {"gb": [weight_memory_gb(n, b) for n, b in [(1.3e9, 16), (7e10, 8)]]}   # grader-chosen inputs

    def _check(out):                   # runs in the grader's own process, on plain data only
        from coursekit.formats import memory_bytes
        expect_close(out["gb"], [memory_bytes(1.3e9, "fp16") / 1e9, ...], what="weight_memory_gb",
                     wrong={"GiB instead of GB (divided by 2**30)": [...]})

    sealed_test(_probe, _check)
    ### END HIDDEN TESTS

* Inside a kernel (a learner running the cell, or plain ``nbgrader autograde``) ``sealed_test`` runs both halves,
  passing the probe's output through JSON first, so the check sees exactly what a sealed grader would see.
* Under the sealed grader (``coursekit check``, ``coursekit grade``) the kernel is started with
  ``COURSEKIT_SEAL`` set to a fresh random token: ``sealed_test`` then only prints the probe's output as one line
  ``<token><json>`` and checks nothing. The grader reads that line from the cell's output, and calls the
  *instructor's* ``_check`` (taken from the instructor notebook, never from the submission) in its own process.
  Anything a learner cell does to the kernel can at worst stop that line from appearing: a missing or malformed
  line scores 0. The sealed grader sends the kernel the hidden section with the check's body removed
  (``key.kernel_hidden``), so keep references and answer keys *inside* ``_check``: module-level constants of the
  hidden section (the probe's inputs) do reach the learner's kernel.

A check raises ``AssertionError`` with a message for the learner, or returns ``None`` (full points), a fraction
in [0, 1], or ``(fraction, message)`` (partial credit, e.g. a graded quiz: one point per question).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import types
from collections.abc import Callable, Iterator, Sequence

SEAL_ENV = "COURSEKIT_SEAL"


def to_plain(obj):
    """Turn a probe's result into JSON-ready plain data: tensors and arrays become nested lists, tuples become
    lists, numpy/torch scalars become Python numbers; anything else becomes ``{"__type__": "ClassName"}`` so that
    the check can say what the learner's function returned instead."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    tolist = getattr(obj, "tolist", None)  # torch.Tensor, numpy arrays and numpy scalars
    if callable(tolist) and type(obj).__module__.split(".")[0] in ("torch", "numpy"):
        return to_plain(tolist())
    return {"__type__": type(obj).__name__}


def dumps(obj) -> str:
    """One line of JSON (NaN and infinities allowed, as Python's json writes them)."""
    return json.dumps(to_plain(obj), separators=(",", ":"))


def run_check(check: Callable, data) -> tuple[float, str | None]:
    """Apply a check to probe data: ``(fraction of points, message for the learner or None)``.

    Used by the sealed grader; an AssertionError is a wrong answer, any other exception means the learner's
    function returned something the check could not read (wrong type or shape), which also scores 0.
    """
    try:
        result = check(data)
    except AssertionError as exc:
        return 0.0, str(exc) or "wrong answer"
    except Exception as exc:  # noqa: BLE001 - learner data of the wrong shape
        return 0.0, f"your answer has the wrong type or shape for this test ({type(exc).__name__}: {exc})"
    return _fraction(result)


def _fraction(result) -> tuple[float, str | None]:
    if result is None:
        return 1.0, None
    fraction, message = result if isinstance(result, tuple) else (result, None)
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0 or math.isnan(fraction):
        raise ValueError(f"a check must return None, a fraction in [0, 1] or (fraction, message), got {result!r}")
    return fraction, None if fraction == 1.0 else (message or "some answers are wrong")


_collected: list | None = None


@contextlib.contextmanager
def collecting() -> Iterator[list]:
    """Grader side: while active, ``sealed_test`` records ``(probe, check, points)`` instead of running anything.
    The grader execs an instructor hidden-test section inside this to get its check function."""
    global _collected
    saved, _collected = _collected, []
    try:
        yield _collected
    finally:
        _collected = saved


def sealed_test(probe: Callable[[], object], check: Callable[[object], object], points: float | None = None):
    """Run a sealed test (see the module docstring). Returns ``None`` on full marks; on partial credit with
    ``points`` given, prints the reason and returns the points earned (nbgrader reads a number as partial credit)."""
    if _collected is not None:
        _collected.append((probe, check, points))
        return None
    token = os.environ.get(SEAL_ENV)
    if token:
        print(token + dumps(probe()))
        return None
    data = json.loads(dumps(probe()))
    fraction, message = _fraction(check(data))
    if fraction >= 1.0:
        return None
    if points is None:
        raise AssertionError(message)
    print(message)
    return round(fraction * points, 4)


def _learner_global(name: str):
    """A name from the notebook's own namespace (IPython runs cells in ``__main__``)."""
    import sys

    return getattr(sys.modules.get("__main__"), name, None)


def sealed_quiz(ids: Sequence[str], answers: str = "answers"):
    """The hidden test of a graded quiz cell, one point per question::

        sealed_quiz(["ch00-warmup-iterations", "ch00-amdahl", ...])   # the cell has points=len(ids)

    The probe reads the learner's ``answers`` dict; the check marks each id with the question bank of the process
    it runs in (the grader's, under ``coursekit check``/``grade``) and returns ``partial``, naming the wrong ones.
    """
    ids = list(ids)

    def probe():
        given = _learner_global(answers)
        return {"answers": {qid: given.get(qid) for qid in ids} if isinstance(given, dict) else None}

    def check(out):
        from coursekit.quiz import check_answers

        given = out["answers"] if isinstance(out.get("answers"), dict) else {}
        return partial([(verdict == "correct", qid) for qid, verdict in check_answers(given, ids).items()])

    return sealed_test(probe, check, points=len(ids))


@contextlib.contextmanager
def forbid(*dotted_names: str, exercise: str = "this exercise") -> Iterator[None]:
    """Inside a probe: make library functions raise while the learner's function runs, so that delegating to the
    reference implementation (the thing the exercise asks to write) is caught. ``"coursekit.quant.quantize"``."""
    saved, swapped = [], []
    for dotted in dotted_names:
        module_name, _, attr = dotted.rpartition(".")
        module = importlib.import_module(module_name)
        original = getattr(module, attr)
        message = f"{exercise} asks you to write this yourself: calling {dotted} is not allowed here"

        def refuse(*args, _message=message, **kwargs):
            raise AssertionError(_message)

        saved.append((module, attr, original))
        setattr(module, attr, refuse)
        # A learner who imported the function by name (`from m import f`) holds the function object itself:
        # swap its code too (Python functions without a closure), so every reference refuses.
        if isinstance(original, types.FunctionType) and original.__closure__ is None:
            swapped.append((original, original.__code__))
            original.__code__ = _refusing_code(message)
    try:
        yield
    finally:
        for function, code in reversed(swapped):
            function.__code__ = code
        for module, attr, original in reversed(saved):
            setattr(module, attr, original)


def _refusing_code(message: str) -> types.CodeType:
    """The code of ``def f(*args, **kwargs): raise AssertionError(message)``, with no globals or closure."""
    module = compile(f"def refuse(*args, **kwargs):\n    raise AssertionError({message!r})\n", "<forbid>", "exec")
    return next(c for c in module.co_consts if isinstance(c, types.CodeType))


def _flatten(value) -> list:
    if isinstance(value, (list, tuple)):
        return [x for item in value for x in _flatten(item)]
    return [value]


def _close(got, want, rtol: float, atol: float) -> bool:
    if isinstance(want, dict) or isinstance(got, dict):
        return False
    g, w = _flatten(got), _flatten(want)
    if len(g) != len(w) or _shape(got) != _shape(want):
        return False
    for a, b in zip(g, w):
        if isinstance(b, str) or isinstance(a, str):
            if a != b:
                return False
            continue
        if a is None or b is None or isinstance(a, bool) != isinstance(b, bool):
            return False
        a, b = float(a), float(b)
        if math.isnan(b):
            if not math.isnan(a):
                return False
        elif math.isinf(b) or math.isinf(a):
            if a != b:
                return False
        elif not abs(a - b) <= atol + rtol * abs(b):
            return False
    return True


def _shape(value) -> tuple:
    if isinstance(value, (list, tuple)):
        return (len(value),) + (_shape(value[0]) if value else ())
    return ()


def _short(value, limit: int = 120) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def expect_close(got, want, *, what: str, rtol: float = 1e-6, atol: float = 1e-9,
                 wrong: dict[str, object] | None = None) -> None:
    """Assert that ``got`` equals ``want`` within tolerance, with a message that teaches.

    ``wrong`` maps a description of a plausible mistake ("GiB instead of GB: divided by 2**30") to the value that
    mistake produces; when the learner's answer matches one, the message names the mistake.
    """
    if isinstance(got, dict) and "__type__" in got:
        raise AssertionError(f"{what} returned a {got['__type__']}, not a number/list/tensor")
    if _close(got, want, rtol, atol):
        return
    for mistake, value in (wrong or {}).items():
        if _close(got, value, rtol, atol):
            raise AssertionError(f"{what}: {mistake}")
    raise AssertionError(f"{what}: expected {_short(want)}, got {_short(got)}")


def expect_equal(got, want, *, what: str, wrong: dict[str, object] | None = None) -> None:
    """Exact version of :func:`expect_close` (integer codes, masks, strings, choices). Both sides are compared as
    the plain data a probe delivers (tuples as lists, tensors as nested lists), so ``want=(1, 2)`` matches the
    probe's ``[1, 2]``."""
    got, want = _plain(got), _plain(want)
    if got == want:
        return
    for mistake, value in (wrong or {}).items():
        if got == _plain(value):
            raise AssertionError(f"{what}: {mistake}")
    raise AssertionError(f"{what}: expected {_short(want)}, got {_short(got)}")


def _plain(value):
    return json.loads(dumps(value))


def partial(results: Sequence[tuple[bool, str]]) -> tuple[float, str | None]:
    """For checks that give partial credit: ``[(ok, label), ...]`` → ``(fraction right, message naming the
    wrong ones)``, ready to be returned by a check."""
    wrong = [label for ok, label in results if not ok]
    fraction = (len(results) - len(wrong)) / len(results) if results else 1.0
    return fraction, ("wrong or missing: " + ", ".join(wrong)) if wrong else None


__all__ = ["SEAL_ENV", "collecting", "dumps", "expect_close", "expect_equal", "forbid", "partial", "run_check", "sealed_quiz",
           "sealed_test", "to_plain"]
