"""The nbgrader configuration of the course, in one place.

``nbgrader_config.py`` at the repository root, the course that ``coursekit course init`` creates, and the
temporary courses behind ``coursekit build`` and ``coursekit check`` all call ``configure``, so an instructor
running plain ``nbgrader`` commands grades exactly as the self-check does.
"""
from __future__ import annotations

# Stderr text that must not cost a learner points: warnings and progress bars (nbgrader scores any stderr
# output in a test cell as 0; errors are "error" outputs, not stderr, so they still fail).
IGNORED_STDERR = r"(Warning|warnings\.warn|it/s\]|s/it\]|\d+%\|)"

COURSE_ID = "coursekit"
CELL_TIMEOUT_S = 300
# The sealed grader's time limit per cell (``coursekit check/grade --timeout``); grading runs in fast mode.
SEALED_CELL_TIMEOUT_S = 120


def configure(c, root=None) -> None:
    """Apply the course settings to the traitlets config ``c`` (as ``get_config()`` returns it)."""
    if root is not None:
        c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = COURSE_ID
    # Keep notebooks small and deterministic; solutions become the standard stub.
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
    # Grading kernels run in coursekit's fast mode (NBGRADER_EXECUTION is set); this bounds a slow laptop.
    c.Execute.timeout = CELL_TIMEOUT_S
    c.Execute.interrupt_on_timeout = True
    c.IgnorePattern.enabled = True
    c.IgnorePattern.pattern = IGNORED_STDERR
    # A learner who deleted a graded cell gets it back (scored 0) instead of a crashed autograde.
    c.OverwriteCells.add_missing_cells = True
    # Hidden tests live in the gradebook; never show them in feedback.
    c.GenerateFeedback.preprocessors = [
        "nbgrader.preprocessors.GetGrades",
        "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
        "nbgrader.preprocessors.ClearHiddenTests",
        # ... and tracebacks of test cells quote the source around the failing line: keep ename: evalue only.
        "coursekit.grading.feedback.ScrubTestTracebacks",
    ]
