"""Errors the user can fix: the CLI prints their message without a traceback."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user; the message names the file, key or value to fix."""


class RunInterrupted(BaseException):
    """A run stopped on a signal after saving what it needs to resume; the command line exits
    with :attr:`exit_status` (128 + the signal number: 143 for SIGTERM, 130 for SIGINT).

    Like KeyboardInterrupt it is no ``Exception``: code that records a failure and goes on
    (a sweep's failed point) lets it through."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum
