"""coursekit.grading: chapter sources, student notebooks, self-check and course set-up (nbgrader underneath)."""
from coursekit.grading.authoring import SourceError, compile_file, compile_source, parse_source
from coursekit.grading.build import build, plan_build
from coursekit.grading.check import CheckResult, ExerciseScore, check_notebook, format_result
from coursekit.grading.course import init_course, repo_root, solution_notebooks

__all__ = [
    "CheckResult", "ExerciseScore", "SourceError", "build", "check_notebook", "compile_file", "compile_source",
    "format_result", "init_course", "parse_source", "plan_build", "repo_root", "solution_notebooks",
]
