"""Errors the user can fix: the CLI prints their message without a traceback."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user; the message names the file, key or value to fix."""
