"""Errors a user can fix. The CLI turns them into a one-line message and exit code 2."""
from __future__ import annotations

import contextlib
import signal
import threading
from contextvars import ContextVar

_ON_COMMAND_LINE: ContextVar[bool] = ContextVar("on_command_line", default=False)


class BadInput(ValueError):
    """Input the user gave is wrong: a file, a column, a setting, a name. Say what and how to fix it."""


class MissingLabel(BadInput):
    """A row without a label, where labels are read: an error unless the labels are never used
    (a domain-adaptation target)."""


def option(name: str, flag: str | None = None, python: str | None = None) -> str:
    """A setting named as the user gave it: `--none-label` on the command line, `none_label` in
    Python (the keyword argument `name`). `flag`: the command line's name where it differs
    (`n_way` is `--ways`); `python`: the Python text where the name alone reads badly
    (`force=True`)."""
    if _ON_COMMAND_LINE.get():
        return flag or "--" + name.replace("_", "-")
    return python or name


@contextlib.contextmanager
def on_command_line(flags: bool = True):
    """Within: messages name options as flags (`option`); with `flags` False, by their Python
    names again (`quickadapt serve`'s requests, whose JSON fields are those names)."""
    token = _ON_COMMAND_LINE.set(flags)
    try:
        yield
    finally:
        _ON_COMMAND_LINE.reset(token)


# `docker stop`, systemd, `timeout` and `kill` send SIGTERM; closing a terminal sends SIGHUP,
# which Windows has not (naming it there failed `import quickadapt.errors`, so every command)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def first_line(exc: BaseException) -> str:
    """An exception's message as one line of ours shows it: its first line (its type without one)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as Ctrl-C's KeyboardInterrupt is, so that what cleans up or saves
    on Ctrl-C (temp folders, meta-train's checkpoint) runs for them too."""

    def __init__(self, signum: int, *args):
        super().__init__(*args)
        self.signum = signum


class LostProcess(RuntimeError):
    """Under torchrun, a collective failed: another process died, was killed or stopped answering
    (distributed.timeout_s(), 10 minutes), and the run cannot go on (quickadapt/distributed.py). The CLI says
    so in one line, with exit code 1: not the user's input, but nothing to show a traceback for."""


def raise_stopped(signum, frame):
    raise Stopped(signum)


@contextlib.contextmanager
def stop_signals_interrupt():
    """Within: SIGTERM and SIGHUP raise `Stopped` (in the main thread, where signals arrive)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, raise_stopped) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
