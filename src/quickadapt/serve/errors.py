"""Errors the service answers with: a status code and one line, `{"error": "..."}`."""
from __future__ import annotations


class ApiError(Exception):
    """A request the service refuses: `status` (4xx) and a one-line `message` saying what was
    wrong and how to fix it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

