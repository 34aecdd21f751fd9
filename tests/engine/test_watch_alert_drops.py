"""The daemon's alert lanes: drops in ``/metrics`` (#11.8), failed deliveries in the
journal (#10.5).

The daemon is built but not run: alerts go straight into its alert manager, whose queues and
receivers are real (a webhook nobody answers, an aiosmtpd that refuses).
"""

from __future__ import annotations

from pathlib import Path

from tests.engine.test_watch import POLICY, wait_for
from tests.notify.conftest import SmtpReceiver, smtp  # noqa: F401  (the aiosmtpd fixture)
from vmwarden.engine.fleetgen import write_fleet
from vmwarden.engine.watch.daemon import Watcher
from vmwarden.engine.watch.state import WatchConfig
from vmwarden.notify import Alert
from vmwarden.policy import parse_policy
from vmwarden.store import Store


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_drops_by_severity_are_in_metrics_and_a_critical_is_not_one(tmp_path: Path) -> None:
    uri = f"test://{write_fleet(tmp_path / 'hv1.xml', [], ['prod', 'quarantine'])}"
    policy = parse_policy(POLICY.format(url="http://127.0.0.1:9/hook"), source="p.yaml")
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as store:
        w = Watcher(WatchConfig(uris=[uri], alert_queue=50), policy, store)
        try:
            for i in range(60):
                w.alerts.send(Alert("finding.opened", "r", "low", "vm", f"l{i}", f"vm{i}", "hv1"))
            w.alerts.send(Alert("finding.opened", "r", "critical", "vm", "c", "db", "hv1"))
            (label,) = w.alerts.receivers
            got = samples(w.metrics.render())
        finally:
            w.executor.shutdown(wait=False)
    assert got[f'vmwarden_alerts_dropped{{receiver="{label}",severity="low"}}'] == 11
    assert not any("critical" in k for k in got if k.startswith("vmwarden_alerts_dropped"))
    assert got[f'vmwarden_alerts{{outcome="dropped",receiver="{label}"}}'] == 11
    assert got[f'vmwarden_alerts{{outcome="queued",receiver="{label}"}}'] == 50


def test_a_delivery_that_raised_is_journaled_failed_with_the_reason(
    tmp_path: Path,
    smtp: SmtpReceiver,  # noqa: F811
) -> None:
    """In watch the notify action only hands over to the alert state machine; the SMTP
    server refusing later is an audit entry ``failed`` naming the receiver and its reply."""
    smtp.refuse = {"secops@example.org"}
    uri = f"test://{write_fleet(tmp_path / 'hv1.xml', [], ['prod', 'quarantine'])}"
    smtp_spec = f"{{type: smtp, host: 127.0.0.1, port: {smtp.port}, to: [secops@example.org]}}"
    policy = parse_policy(f"version: 1\nnotify:\n  - {smtp_spec}\n", source="p.yaml")
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as store:
        w = Watcher(WatchConfig(uris=[uri]), policy, store)
        try:
            w.alerts.start()
            w.alerts.send(Alert("finding.opened", "r", "high", "vm", "vm-1", "web01", "hv1"))
            entries = wait_for(lambda: [e for e in store.journal_entries() if e.error])
            assert store.incomplete_actions() == []  # never pending, even for a moment
            w.alerts.close()
        finally:
            w.executor.shutdown(wait=False)
    (entry,) = entries
    assert (entry.status, entry.id, entry.name, entry.rule) == ("failed", "vm-1", "web01", "r")
    assert entry.actor == "vmwarden-watch"
    assert f"smtp 127.0.0.1:{smtp.port}: recipients refused" in entry.error
    assert "secops@example.org: 550 5.1.1 no such user here" in entry.error
    assert entry.changes["receiver"] == f"smtp 127.0.0.1:{smtp.port}"
