"""One receiver's bounded alert queue: by severity, so what matters is never crowded out.

A plain FIFO that drops the newest when full lost a critical alert behind 1,000 low ones
(a noisy rule and a receiver that was down for a while are enough). Here:

- delivery order is severity first (critical before high … before info), FIFO within one
  severity, so an open/resolve pair of one finding keeps its order and a critical alert
  does not wait behind a thousand low ones in the token bucket;
- when the queue is full, an arriving alert evicts the newest queued alert of the lowest
  severity below its own; when nothing queued is lower, the arrival itself is dropped. A
  higher severity is never dropped to make room for a lower one;
- ``put`` returns the alert it dropped, so the caller counts drops (by receiver and
  severity, for ``/metrics`` and ``/state``).

Example::

    q = AlertQueue(1000)
    q.put(alert)          # the alert dropped to make room (or this one), else None
    alert = q.get()       # blocks; None once closed and empty
"""

from __future__ import annotations

import threading
from collections import deque

from vmwarden.notify.base import Alert

# Alert.severity is a word; gate alerts and unknown words rank as medium.
RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_DEFAULT_RANK = RANK["medium"]


def rank(alert: Alert) -> int:
    return RANK.get(alert.severity, _DEFAULT_RANK)


class AlertQueue:
    """Bounded, severity-ordered, thread-safe; ``put`` never blocks."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("alert queue size must be >= 1")
        self.maxsize = maxsize
        self._lanes: list[deque[Alert]] = [deque() for _ in range(max(RANK.values()) + 1)]
        self._size = 0
        self._closed = False
        self._cond = threading.Condition()

    def put(self, alert: Alert) -> Alert | None:
        """Queue ``alert``; returns the alert dropped to keep the bound (maybe ``alert``)."""
        level = rank(alert)
        with self._cond:
            victim: Alert | None = None
            if self._size >= self.maxsize:
                lowest = next((i for i, lane in enumerate(self._lanes) if lane), None)
                if lowest is None or lowest >= level:
                    return alert
                victim = self._lanes[lowest].pop()  # the newest of the least important
                self._size -= 1
            self._lanes[level].append(alert)
            self._size += 1
            self._cond.notify()
            return victim

    def get(self, timeout: float | None = None) -> Alert | None:
        """The most severe, oldest alert; waits for one. None when closed and empty, or when
        ``timeout`` passed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._size or self._closed, timeout):
                return None
            return self._pop()

    def _pop(self) -> Alert | None:
        for lane in reversed(self._lanes):
            if lane:
                self._size -= 1
                return lane.popleft()
        return None

    def close(self) -> None:
        """Wake the reader; ``get`` still returns what is queued, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self) -> list[Alert]:
        """Take everything still queued (severity order)."""
        with self._cond:
            out = []
            while (alert := self._pop()) is not None:
                out.append(alert)
            return out

    def qsize(self) -> int:
        with self._cond:
            return self._size
