"""nbgrader configuration for the coursekit course (used by `nbgrader ...` run in a course directory).

All settings live in coursekit.grading.config so that plain nbgrader, `coursekit check` and
`coursekit course init` grade the same way.
"""
from coursekit.grading.config import configure

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file
configure(c)
