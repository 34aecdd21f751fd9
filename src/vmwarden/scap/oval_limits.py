"""A wall-clock bound on one regular-expression search over hostile guest text.

OVAL's patterns are trusted (they come from the content), the text they search is not: SSG's
``.*\\n[^#]*(PASS_WARN_AGE\\s+\\d+)\\s*\\n`` (single-line mode) backtracks cubically, and 10 KB
of lines without a ``#`` kept it busy 35 s. CPython's regex engine checks for signals while
it matches, so an interval timer interrupts it (CPU time, so a loaded host does not cut a
legitimate search short); the search then fails as "error" for that
object instead of stalling the whole evaluation (or, in the worker, using up its CPU limit
and losing every other result). Off the main thread no timer can be set: there the 1 MiB file
cap and the worker's CPU limit are the bounds.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: Most CPU seconds one pattern may spend searching one file.
REGEX_SECONDS = 1.0


class SearchTimeout(Exception):
    """The search ran past its time; the text is treated as unreadable for this pattern."""


def _expire(signum: int, frame: FrameType | None) -> None:
    raise SearchTimeout


@contextmanager
def time_bound(seconds: float = REGEX_SECONDS) -> Iterator[None]:
    """Raise :class:`SearchTimeout` in the block once it has used ``seconds`` of CPU time."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGVTALRM, _expire)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)
