"""The one exception CLI commands raise for an expected failure."""


class CommandError(Exception):
    """An expected failure, reported as one line on stderr with exit status ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
