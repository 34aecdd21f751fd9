"""Findings open, stay open, resolve when a sweep no longer concludes them, and reopen."""

from __future__ import annotations

from datetime import timedelta

from tests.store.store_builders import T0
from vmwarden.model import Finding, Severity
from vmwarden.store import Store

T1, T2, T3 = (T0 + timedelta(hours=h) for h in (1, 2, 3))


def _f(rule: str, vm: str, host: str = "kvm1", **evidence: object) -> Finding:
    return Finding(rule, "vm", vm, f"name-{vm}", host, Severity.HIGH, dict(evidence))


def _keys(findings: list[Finding]) -> set[tuple[str, str, str]]:
    return {f.key for f in findings}


def test_open_still_open_resolved(store: Store) -> None:
    a, b = _f("forbidden-software", "u1", packages=["telnetd"]), _f("unregistered", "u2")
    delta = store.record_findings([a, b], now=T0)
    assert _keys(delta.opened) == {a.key, b.key} and not delta.still_open
    delta = store.record_findings([a], now=T1)
    assert _keys(delta.still_open) == {a.key} and not delta.opened
    assert _keys(delta.resolved) == {b.key}
    assert delta.resolved[0].severity is Severity.HIGH
    assert _keys(store.open_findings()) == {a.key}
    stored = {(f["rule"], f["id"]): f for f in store.findings()}
    assert stored["forbidden-software", "u1"]["first_seen"] == T0
    assert stored["forbidden-software", "u1"]["last_seen"] == T1
    assert stored["forbidden-software", "u1"]["evidence"] == {"packages": ["telnetd"]}
    assert stored["unregistered", "u2"]["status"] == "resolved"
    assert stored["unregistered", "u2"]["resolved_at"] == T1


def test_resolved_finding_reopens(store: Store) -> None:
    a = _f("unregistered", "u1")
    store.record_findings([a], now=T0)
    store.record_findings([], now=T1)
    delta = store.record_findings([a], now=T2)
    assert _keys(delta.opened) == {a.key}
    (row,) = store.findings(status="open")
    assert row["first_seen"] == T2 and row["resolved_at"] is None


def test_evidence_and_severity_follow_the_latest_sweep(store: Store) -> None:
    store.record_findings([_f("forbidden-software", "u1", packages=["telnetd"])], now=T0)
    worse = _f("forbidden-software", "u1", packages=["telnetd", "netcat"])
    worse.severity = Severity.CRITICAL
    store.record_findings([worse], now=T1)
    (found,) = store.open_findings()
    assert found.severity is Severity.CRITICAL
    assert found.evidence == {"packages": ["telnetd", "netcat"]}
    (row,) = store.findings(status="open")  # rewritten, yet open since the first sweep
    assert (row["first_seen"], row["last_seen"]) == (T0, T1)


def test_scope_rules_limits_resolution(store: Store) -> None:
    a, b = _f("forbidden-software", "u1"), _f("dormant", "u1")
    store.record_findings([a, b], now=T0)
    delta = store.record_findings([], now=T1, scope_rules={"dormant"})
    assert _keys(delta.resolved) == {b.key}
    assert _keys(store.open_findings()) == {a.key}


def test_scope_hosts_keeps_findings_of_unread_hosts(store: Store) -> None:
    a, b = _f("unregistered", "u1", host="kvm1"), _f("unregistered", "u2", host="kvm2")
    store.record_findings([a, b], now=T0)
    delta = store.record_findings([], now=T1, scope_hosts={"kvm1"})
    assert _keys(delta.resolved) == {a.key}
    assert _keys(store.open_findings()) == {b.key}


def test_findings_survive_reopen(db_path) -> None:
    url = f"sqlite:///{db_path}"
    with Store.open(url) as first:
        first.record_findings([_f("unregistered", "u1")], now=T0)
    with Store.open(url) as second:
        assert _keys(second.open_findings()) == {("unregistered", "vm", "u1")}
        assert not second.record_findings([_f("unregistered", "u1")], now=T3).opened
