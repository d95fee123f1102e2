"""Progress bars for long work (training, calibration, measurements) that stay out of logs.

Below every layer, like ``_env`` and ``_validate``: train, quant, prune and bench all use this one helper.

``progress_bar`` wraps tqdm with ``disable=None``: tqdm then shows the bar only when its stream is a terminal,
so a suite run in CI, piped into ``tee`` or redirected to a file writes no wall of carriage-return frames. In
Jupyter, ``tqdm.auto`` draws a widget instead (tqdm's notebook bar treats ``disable=None`` as "show"). Bars write
to stdout, never stderr (a graded cell must not write to stderr).
"""
from __future__ import annotations

import sys
from collections.abc import Iterable


def progress_bar(iterable: Iterable, *, desc: str, enabled: bool = True, total: int | None = None, file=None,
                 **tqdm_kwargs):
    """``iterable`` wrapped in a tqdm bar; off when ``enabled`` is False or the output is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=None if enabled else True,
                file=sys.stdout if file is None else file, **{"leave": False, "dynamic_ncols": True, **tqdm_kwargs})
