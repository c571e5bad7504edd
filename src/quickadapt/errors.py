"""Errors a user can fix. The CLI turns them into a one-line message and exit code 2."""


class BadInput(ValueError):
    """Input the user gave is wrong: a file, a column, a setting, a name. Say what and how to fix it."""
