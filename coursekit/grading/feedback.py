"""Plain nbgrader's feedback without hidden tests in tracebacks.

``ClearHiddenTests`` removes the hidden section from a test cell's source, but the cell's error output keeps the
traceback IPython printed, which quotes the source lines around the failing line (hidden tests included). This
preprocessor, run by ``nbgrader generate_feedback`` (see ``config.configure``), replaces the traceback of every
graded test cell with one line, ``ename: first line of evalue``: the learner sees which test failed and why,
never its source.
"""
from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool


class ScrubTestTracebacks(Preprocessor):
    """Replace the traceback of each graded (tests) cell's error output with ``ename: evalue``."""

    enabled = Bool(True, help="on by default (nbconvert's preprocessors are off unless enabled)").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        flags = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and isinstance(flags, dict) and flags.get("grade"):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    evalue = next((line for line in str(output.get("evalue", "")).splitlines() if line.strip()), "")
                    output["traceback"] = [f"{output.get('ename', 'Error')}: {evalue}".rstrip(": ")]
        return cell, resources
