"""The alert state machine: one alert per finding state change, rate limited, sent off-thread.

A finding is *opened* (first concluded, or back after being resolved), *escalated* (still
open, severity went up) or *resolved*; each change is one alert, and nothing is sent while a
finding merely stays as it was. ``AlertManager.transitions`` turns a sweep's before/after into
those alerts; ``AlertManager.send`` queues one.

Each receiver has its own queue, worker thread and token bucket, so a receiver that is down
or slow (a webhook that takes 30 s to time out) delays neither enforcement, which only ever
enqueues, nor the other receivers. When a receiver's bucket is empty its alerts wait in its
queue, most severe first (``vmwarden.notify.alertqueue``); when the queue is full the least
severe alert goes, never one more severe than the one arriving. Sent, failed and dropped
alerts are counted per receiver, drops also per severity (``AlertManager.stats``); failures
and drops are logged.

Example::

    alerts = AlertManager.from_specs(policy_notify_specs, rate=1.0, burst=10)
    alerts.start()
    for alert in alerts.transitions(before, opened, still_open, resolved):
        alerts.send(alert)
    alerts.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vmwarden.model import Finding, Severity
from vmwarden.notify.alertqueue import AlertQueue
from vmwarden.notify.base import Alert, Dispatcher, Notifier

log = logging.getLogger(__name__)

OPENED, ESCALATED, RESOLVED = "finding.opened", "finding.escalated", "finding.resolved"


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. Thread-safe.

    ``clock`` is injectable so the arithmetic can be tested without sleeping.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("alert rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.clock = rate, burst, clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take a token: 0.0 when one was taken, else the seconds until one is due."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate


@dataclass(slots=True)
class ReceiverStats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    dropped_by_severity: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "dropped_by_severity": dict(self.dropped_by_severity),
            "last_error": self.last_error,
        }


@dataclass
class _Lane:
    """One receiver's queue, bucket and worker thread."""

    receiver: Notifier
    bucket: TokenBucket
    queue: AlertQueue
    stats: ReceiverStats = field(default_factory=ReceiverStats)
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards stats

    def drop(self, alert: Alert, why: str) -> None:
        with self.lock:
            self.stats.dropped += 1
            self.stats.dropped_by_severity[alert.severity] += 1
            n = self.stats.dropped
        if n == 1 or n % 100 == 0:  # a flood of drops is one line per hundred, not a flood
            label = self.receiver.label
            log.warning("alert to %s dropped (%s), %d so far: %s", label, why, n, alert.summary)


class AlertManager:
    """Queues alerts to every receiver; never blocks and never raises to its caller."""

    def __init__(
        self,
        receivers: Iterable[Notifier],
        *,
        rate: float = 1.0,
        burst: int = 10,
        queue_size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        on_failure: Callable[[Alert, str, str], None] | None = None,
    ) -> None:
        """``on_failure(alert, receiver, reason)`` runs on the receiver's thread after a send
        that raised, so the caller can record it (the daemon journals it ``failed``)."""
        self._lanes = [
            _Lane(r, TokenBucket(rate, burst, clock), AlertQueue(queue_size)) for r in receivers
        ]
        self._stop = threading.Event()
        self._started = False
        self._on_failure = on_failure

    @classmethod
    def from_specs(cls, specs: list[dict[str, Any]], **kw: Any) -> AlertManager:
        """Receivers from the policy's ``notify:`` entries (as plain dicts)."""
        return cls(Dispatcher(specs).receivers if specs else [], **kw)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for i, lane in enumerate(self._lanes):
            lane.thread = threading.Thread(
                target=self._work, args=(lane,), name=f"alerts-{i}", daemon=True
            )
            lane.thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers; alerts still queued after ``timeout`` are given up (counted)."""
        self._stop.set()
        for lane in self._lanes:
            lane.queue.close()
        deadline = time.monotonic() + timeout
        for lane in self._lanes:
            if lane.thread is not None:
                lane.thread.join(max(0.0, deadline - time.monotonic()))
            for alert in lane.queue.drain():
                lane.drop(alert, "shutting down")

    # -- sending -----------------------------------------------------------------------

    def send(self, alert: Alert) -> None:
        """Queue ``alert`` for every receiver (returns at once). A full queue drops its least
        severe alert, or this one when nothing queued is less severe."""
        for lane in self._lanes:
            dropped = lane.queue.put(alert)
            if dropped is not None:
                lane.drop(dropped, f"queue full ({lane.queue.maxsize})")

    def _work(self, lane: _Lane) -> None:
        while (alert := lane.queue.get()) is not None:
            while (wait := lane.bucket.take()) > 0:
                if self._stop.wait(min(wait, 1.0)):
                    lane.drop(alert, "shutting down")
                    return
            try:
                lane.receiver.send(alert)
            except Exception as exc:  # the notify boundary: counted and logged, never raised
                reason = f"{type(exc).__name__}: {exc}"
                with lane.lock:
                    lane.stats.failed += 1
                    lane.stats.last_error = reason
                log.warning("alert to %s failed: %s", lane.receiver.label, exc)
                self._failed(alert, lane.receiver.label, reason)
            else:
                with lane.lock:
                    lane.stats.sent += 1

    def _failed(self, alert: Alert, receiver: str, reason: str) -> None:
        if self._on_failure is None:
            return
        try:
            self._on_failure(alert, receiver, reason)
        except Exception:  # recording the failure must not stop the receiver's lane
            log.exception("recording the failed alert to %s failed", receiver)

    # -- state machine -----------------------------------------------------------------

    @staticmethod
    def transitions(
        before: Mapping[tuple[str, str, str], Severity],
        opened: Iterable[Finding],
        still_open: Iterable[Finding],
        resolved: Iterable[Finding],
        *,
        rules: set[str] | None = None,
    ) -> list[Alert]:
        """The alerts of one sweep: ``before`` maps the open findings' keys to their severity
        before it; ``rules`` (if given) limits alerts to those rules (the ones that notify)."""
        out: list[Alert] = []
        for event, found in ((OPENED, opened), (RESOLVED, resolved)):
            out += [_alert(event, f) for f in found if rules is None or f.rule in rules]
        for f in still_open:
            old = before.get(f.key)
            if old is not None and f.severity > old and (rules is None or f.rule in rules):
                out.append(_alert(ESCALATED, f, previous=str(old)))
        return out

    # -- observability -----------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per receiver label: sent, failed, dropped (and by severity), queued, last_error."""
        out = {}
        for lane in self._lanes:
            with lane.lock:
                stats = lane.stats.to_dict()
            out[lane.receiver.label] = stats | {"queued": lane.queue.qsize()}
        return out

    @property
    def receivers(self) -> list[str]:
        return [lane.receiver.label for lane in self._lanes]


def _alert(event: str, f: Finding, previous: str | None = None) -> Alert:
    evidence = dict(f.evidence)
    if previous is not None:
        evidence["previous_severity"] = previous
    return Alert(event, f.rule, str(f.severity), f.resource, f.id, f.name, f.host, evidence)
