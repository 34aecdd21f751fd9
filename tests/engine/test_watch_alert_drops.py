"""#11.8: alert drops reach ``/metrics`` by receiver and severity, from the daemon's queues.

The daemon is built but not run (its receivers' workers are not started), so alerts sent to
it fill the real queue behind a real webhook receiver that never gets to answer.
"""

from __future__ import annotations

from pathlib import Path

from tests.engine.test_watch import POLICY
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
