"""Progress bars on stderr (rich), silenced by --quiet."""
from __future__ import annotations

import contextlib
import sys
import time

_QUIET = {"on": False}


def set_quiet(quiet: bool) -> None:
    _QUIET["on"] = bool(quiet)


LOG_EVERY = 30.0  # seconds between plain progress lines where stderr is not a terminal


@contextlib.contextmanager
def progress_bar(description, total: int):
    """Yields `advance(n, description=None)`. Shows a bar on stderr only when described, not
    quiet, worth it, and drawn on a terminal: rich redraws a bar in place, which a log file or a
    pipe keeps only as an empty line. There, a long run writes a plain line every LOG_EVERY
    seconds instead (a 5-minute predict into a log said nothing until it ended). An outer bar's
    `advance` given as `description` is yielded as it is: the steps count towards that bar."""
    if callable(description):
        yield description
        return
    if description is None or _QUIET["on"] or total <= 0:
        yield lambda n=1, description=None: None
        return
    if not sys.stderr.isatty():
        yield _plain_lines(description, total)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        def advance(n=1, description=None):
            if description is None:
                bar.advance(task, n)
            else:
                bar.update(task, advance=n, description=description)

        yield advance


def _plain_lines(description: str, total: int):
    """`advance` that logs "description: done/total" at most every LOG_EVERY seconds."""
    state = {"done": 0, "description": description, "last": time.monotonic()}

    def advance(n=1, description=None):
        state["done"] += n
        state["description"] = description or state["description"]
        now = time.monotonic()
        if now - state["last"] >= LOG_EVERY:
            state["last"] = now
            print(f"{state['description']}: {state['done']}/{total}", file=sys.stderr, flush=True)

    return advance


_NOTES: dict = {"seen": None}  # the notes shown so far, within `each_note_once`


def log(message: str) -> None:
    """A line of log on stderr unless quiet."""
    if _QUIET["on"]:
        return
    seen = _NOTES["seen"]
    if seen is not None and message.startswith("note:"):
        if message in seen:
            return
        seen.add(message)
    print(message, file=sys.stderr)


@contextlib.contextmanager
def each_note_once():
    """Within (also as a decorator): a note already shown is not shown again. A held-out fit and
    its refit on all the data would otherwise say the same thing twice."""
    outer = _NOTES["seen"]
    _NOTES["seen"] = set() if outer is None else outer
    try:
        yield
    finally:
        _NOTES["seen"] = outer
