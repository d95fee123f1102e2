"""Progress bars for benchmarks: the one ``progress_bar`` of ``coursekit._progress`` (below every layer)."""
from coursekit._progress import progress_bar

__all__ = ["progress_bar"]
