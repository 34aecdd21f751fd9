"""The alert state machine and its delivery lanes, against real local receivers.

No sleeps are measured: the token bucket gets an injected clock, and "a slow receiver does
not delay anything" is shown by a receiver that answers only when the test lets it.
"""

from __future__ import annotations

import socket
import threading

import pytest

from tests.engine.test_watch import Receiver, wait_for
from vmwarden.model import Finding, Severity
from vmwarden.notify import Alert
from vmwarden.notify.alerts import ESCALATED, OPENED, RESOLVED, AlertManager, TokenBucket
from vmwarden.notify.receivers import Webhook


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def finding(rule: str, vm: str, severity: Severity = Severity.HIGH) -> Finding:
    return Finding(rule, "vm", vm, f"name-{vm}", "hv1", severity, {"why": rule})


def alert(i: int) -> Alert:
    return Alert("finding.opened", "r", "high", "vm", str(i), f"vm{i}", "hv1")


def test_transitions_one_alert_per_state_change() -> None:
    a, b, c, d = (finding("r", x) for x in "abcd")
    escalated = finding("r", "e", Severity.CRITICAL)
    before = {b.key: Severity.HIGH, escalated.key: Severity.MEDIUM, d.key: Severity.HIGH}
    alerts = AlertManager.transitions(before, [a], [b, escalated], [d])
    assert [(x.event, x.id) for x in alerts] == [(OPENED, "a"), (RESOLVED, "d"), (ESCALATED, "e")]
    assert alerts[-1].evidence["previous_severity"] == "medium"
    # Still open at the same severity: nothing. Rules that do not notify: nothing.
    assert AlertManager.transitions({b.key: Severity.HIGH}, [], [b], []) == []
    assert AlertManager.transitions({}, [c], [], [], rules={"other"}) == []


def test_token_bucket_arithmetic() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == 0.5  # empty: next token in 1/rate
    now[0] += 0.5
    assert bucket.take() == 0.0
    now[0] += 100  # refills to burst, never beyond
    assert [bucket.take() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_rate_limit_holds_back_what_exceeds_the_burst() -> None:
    receiver = Receiver()
    try:
        manager = AlertManager([Webhook(receiver.url, retries=0)], rate=1e-6, burst=2)
        manager.start()
        for i in range(5):
            manager.send(alert(i))
        wait_for(lambda: len(receiver.alerts) == 2, message="burst delivered")
        (stats,) = manager.stats().values()
        wait_for(lambda: manager.stats()[manager.receivers[0]]["queued"] == 2)
        assert stats["sent"] == 2 and stats["failed"] == 0
        assert [a["id"] for a in receiver.alerts] == ["0", "1"]  # in order; 2 waits for a token
        manager.close(timeout=0.5)
        assert manager.stats()[manager.receivers[0]]["dropped"] == 3  # given up at shutdown
    finally:
        receiver.close()


def test_down_and_slow_receivers_block_neither_sender_nor_each_other(closed_port: int) -> None:
    slow, fast = Receiver(), Receiver()
    slow.gate = threading.Event()
    try:
        manager = AlertManager(
            [
                Webhook(slow.url, retries=0, timeout=60),
                Webhook(f"http://127.0.0.1:{closed_port}/down", retries=0),
                Webhook(fast.url, retries=0),
            ],
            rate=1000,
            burst=100,
        )
        manager.start()
        for i in range(3):
            manager.send(alert(i))  # returns at once: the caller (enforcement) never waits
        wait_for(lambda: len(fast.alerts) == 3, message="fast receiver served")
        stats = manager.stats()
        label = f"webhook http://127.0.0.1:{closed_port}"  # scheme and host: no path (#11.4)
        down = stats[label]
        wait_for(lambda: manager.stats()[label]["failed"] == 3)
        assert down["last_error"] is None or "refused" in down["last_error"]
        assert slow.alerts == []  # still stuck in the first request
        slow.gate.set()
        wait_for(lambda: len(slow.alerts) == 3, message="slow receiver caught up")
        manager.close()
    finally:
        slow.close()
        fast.close()
