"""coursekit.grading: chapter sources, student notebooks, sealed grading (check, class grading), course set-up.

Names are imported lazily: a notebook kernel imports ``coursekit.grading.sealed`` in every graded cell, and must
not pay for nbformat/jupytext/nbgrader (seconds of imports) to do so. ``build`` is both a submodule and a
function; importing the submodule would set the package attribute to the module, so the function is bound here
by ``_Package.__setattr__`` whenever the import system binds the submodule (as the former eager imports did).
"""
from __future__ import annotations

import importlib
import sys
import types

_EXPORTS = {
    "SourceError": "authoring", "compile_file": "authoring", "compile_source": "authoring", "parse_source": "authoring",
    "build": "build", "plan_build": "build",
    "check_notebook": "check", "format_result": "check",
    "CheckResult": "result", "ExerciseScore": "result",
    "grade_sealed": "engine", "load_key": "key", "SealedError": "key",
    "grade_course": "classgrade",
    "init_course": "course", "repo_root": "course", "solution_notebooks": "course",
}

__all__ = ["CheckResult", "ExerciseScore", "SealedError", "SourceError", "build", "check_notebook", "compile_file",
           "compile_source", "format_result", "grade_course", "grade_sealed", "init_course", "load_key", "parse_source",
           "plan_build", "repo_root", "solution_notebooks"]


def __getattr__(name: str):  # only called for names not yet set on the package
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'coursekit.grading' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"coursekit.grading.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """``coursekit.grading.build`` is the function, even after the submodule of that name is imported."""

    def __setattr__(self, name, value):
        if name == "build" and isinstance(value, types.ModuleType):
            value = value.build
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
