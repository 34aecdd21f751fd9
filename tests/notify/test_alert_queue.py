"""#11.8: a full alert queue never drops a more severe alert for a less severe one.

Before, each receiver's queue was a 1,000-deep FIFO that dropped the arrival: after 1,100
low alerts a critical one was dropped. The receivers here are real (an OCSF file, a webhook
server that answers only when the test lets it).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.engine.test_watch import wait_for
from vmwarden.notify import Alert
from vmwarden.notify.alertqueue import AlertQueue
from vmwarden.notify.alerts import AlertManager
from vmwarden.notify.receivers import OcsfFile, Webhook

OCSF_SEVERITY = {1: "info", 2: "low", 3: "medium", 4: "high", 5: "critical"}


def alert(i: int, severity: str) -> Alert:
    return Alert("finding.opened", "r", severity, "vm", f"{severity}-{i}", f"vm{i}", "hv1")


def delivered(path: Path) -> list[tuple[str, str]]:
    """(severity, VM id) of each alert in the OCSF file, in delivery order."""
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [(OCSF_SEVERITY[e["severity_id"]], e["resources"][0]["uid"]) for e in events]


def test_a_critical_alert_after_1100_low_ones_is_kept_and_sent_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "alerts.ocsf"
    manager = AlertManager([OcsfFile(str(out))], rate=1e6, burst=10_000, queue_size=1000)
    for i in range(1100):  # the receiver's worker is not running yet: the queue fills
        manager.send(alert(i, "low"))
    manager.send(alert(0, "critical"))
    stats = manager.stats()[f"ocsf {out}"]
    assert (stats["queued"], stats["dropped"]) == (1000, 101)
    assert stats["dropped_by_severity"] == {"low": 101}
    drops = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 2 and "100 so far" in drops[1]  # the 1st and the 100th, not 101 lines
    manager.start()
    wait_for(lambda: manager.stats()[f"ocsf {out}"]["sent"] == 1000)
    manager.close()
    got = delivered(out)
    assert got[0] == ("critical", "critical-0")  # it did not wait behind the low ones
    assert Counter(s for s, _ in got) == {"low": 999, "critical": 1}
    # the low ones kept are the oldest, in order: a drop takes the newest of the lowest
    assert [i for _, i in got[1:]] == [f"low-{i}" for i in range(999)]


def test_eviction_takes_the_least_severe_and_never_a_more_severe_one() -> None:
    q = AlertQueue(3)
    assert q.put(alert(1, "medium")) is None
    assert q.put(alert(2, "low")) is None
    assert q.put(alert(3, "low")) is None
    assert q.put(alert(4, "high")).id == "low-3"  # newest of the lowest
    assert q.put(alert(5, "high")).id == "low-2"
    assert q.put(alert(6, "medium")).id == "medium-6"  # nothing lower queued: the arrival
    assert q.put(alert(7, "info")).id == "info-7"
    assert q.put(alert(8, "critical")).id == "medium-1"
    assert [a.id for a in q.drain()] == ["critical-8", "high-4", "high-5"]


def test_same_severity_stays_in_order_and_unknown_words_rank_as_medium() -> None:
    q = AlertQueue(10)
    for a in (alert(1, "high"), alert(2, "bogus"), alert(3, "high"), alert(4, "medium")):
        q.put(a)
    assert [a.id for a in q.drain()] == ["high-1", "high-3", "bogus-2", "medium-4"]
    with pytest.raises(ValueError):
        AlertQueue(0)


def test_a_slow_receiver_holds_lows_while_a_critical_overtakes(webhook) -> None:
    """The receiver is busy with one alert; the queue behind it is full of low ones."""
    gate = threading.Event()
    received: list[str] = []

    class Slow(Webhook):
        def send(self, a: Alert) -> None:
            gate.wait(10)
            received.append(a.id)
            super().send(a)

    manager = AlertManager([Slow(webhook.url)], rate=1e6, burst=10_000, queue_size=5)
    manager.start()
    manager.send(alert(0, "low"))  # taken by the worker, which waits on the gate
    wait_for(lambda: manager.stats()[Slow(webhook.url).label]["queued"] == 0)
    for i in range(1, 11):
        manager.send(alert(i, "low"))
    manager.send(alert(0, "critical"))
    gate.set()
    label = Slow(webhook.url).label
    wait_for(lambda: manager.stats()[label]["sent"] == 6)
    manager.close()
    assert received[:2] == ["low-0", "critical-0"]
    assert received[2:] == ["low-1", "low-2", "low-3", "low-4"]
    assert [r["json"]["id"] for r in webhook.requests] == received
    assert manager.stats()[label]["dropped_by_severity"] == {"low": 6}
