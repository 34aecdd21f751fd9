"""Quarantine and release on the libvirt test driver, journaled in a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.enforce.conftest import SPEC, JournalTap
from tests.enforce.enforce_fleet import (
    MAC_DOWN,
    MAC_HOTPLUG,
    MAC_RUN,
    MAC_VLAN,
    OFF,
    PAUSED,
    RUN,
    attachment,
    build_fleet,
    hot_add_nic,
    interfaces,
)
from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.enforce import EnforceContext, Quarantiner, QuarantineSpec, execute, plan
from vmwarden.errors import EnforceError
from vmwarden.model import Finding
from vmwarden.model.finding import Severity
from vmwarden.store import Store

QUARANTINED = {"type": "network", "network": "quarantine", "portgroup": None, "vlan": []}


def _quarantine(store: JournalTap, conn: LibvirtConnector, vm_id: str, spec: QuarantineSpec = SPEC):
    return Quarantiner(store, "tester").quarantine(
        conn, conn.lookup(vm_id), spec, reason="unapproved template", rule="unapproved-template"
    )


def test_quarantine_shut_off_vm_journals_originals_then_isolates_every_nic(store, conn):
    before = interfaces(conn, OFF)
    assert attachment(before[MAC_VLAN]) == {
        "type": "network", "network": "prod", "portgroup": "web", "vlan": ["42"], "link": "up"
    }  # fmt: skip
    assert attachment(before[MAC_DOWN])["link"] == "down"

    rec = _quarantine(store, conn, OFF)

    (begun,) = store.begun
    first = begun["row"]
    assert (first.action, first.status, first.id) == ("quarantine", "pending", OFF)
    recorded = {n["mac"]: n for n in first.changes["nics"]}
    assert set(recorded) == {MAC_VLAN, MAC_DOWN}
    for mac in recorded:
        assert recorded[mac]["config_before"] == before[mac]
        assert recorded[mac]["live_before"] is None  # shut off: no live XML
        assert (recorded[mac]["live"], recorded[mac]["config"]) == ("pending", "pending")

    assert rec.status == "done" and rec.error is None
    final = store.journal_get(rec.journal_id)
    assert final.status == "done"
    for nic in final.changes["nics"]:
        assert (nic["live"], nic["config"]) == ("skipped", "done")
        assert nic["config_before"] == before[nic["mac"]]  # originals survive the updates

    after = interfaces(conn, OFF)
    assert set(after) == {MAC_VLAN, MAC_DOWN}
    for xml in after.values():
        assert attachment(xml) == {**QUARANTINED, "link": "down"}
    assert store.active_quarantine(OFF).journal_id == rec.journal_id


def test_quarantine_with_link_up_keeps_the_link_state_it_found(store, conn):
    rec = _quarantine(store, conn, OFF, QuarantineSpec("quarantine", link_down=False))
    assert rec.status == "done"
    after = interfaces(conn, OFF)
    assert attachment(after[MAC_VLAN]) == {**QUARANTINED, "link": "up"}
    assert attachment(after[MAC_DOWN]) == {**QUARANTINED, "link": "down"}


def test_running_vm_on_test_driver_is_partial_and_retry_touches_only_the_failed_scope(store, uri):
    calls: list[tuple[str, bool, bool]] = []

    class Recording(LibvirtConnector):
        def set_interface(self, vm_id, iface_xml, *, live, config):
            calls.append((vm_id, live, config))
            super().set_interface(vm_id, iface_xml, live=live, config=config)

    with Recording(uri) as conn:
        live_before = interfaces(conn, RUN, live=True)[MAC_RUN]
        rec = _quarantine(store, conn, RUN)
        assert rec.status == "partial"
        assert "live change unsupported" in rec.error and MAC_RUN in rec.error
        (nic,) = rec.changes["nics"]
        assert nic["config"] == "done"
        assert nic["live"].startswith("failed: live change unsupported")
        assert attachment(interfaces(conn, RUN)[MAC_RUN]) == {**QUARANTINED, "link": "down"}
        assert interfaces(conn, RUN, live=True)[MAC_RUN] == live_before  # nothing changed live
        assert calls == [(RUN, True, False), (RUN, False, True)]
        # partial still holds the VM: release must be possible, and quarantine must not restart
        assert store.active_quarantine(RUN).journal_id == rec.journal_id

        calls.clear()
        again = _quarantine(store, conn, RUN)
        assert again.journal_id == rec.journal_id  # the same entry is continued, not a new one
        assert calls == [(RUN, True, False)]  # only the live scope is retried
        assert again.status == "partial"
        assert again.changes["nics"][0]["config"] == "done"
        assert len(store.journal_entries(vm_id=RUN)) == 1


def test_quarantine_twice_is_a_noop_that_writes_nothing(store, conn):
    first = _quarantine(store, conn, OFF)
    entries = store.journal_entries()
    row = store.journal_get(first.journal_id)

    second = _quarantine(store, conn, OFF)

    assert second.status == "noop"
    assert second.journal_id == first.journal_id
    assert store.journal_entries() == entries
    assert store.journal_get(first.journal_id).updated_at == row.updated_at
    assert len(store.begun) == 1


def test_drift_after_quarantine_is_re_applied_on_the_next_call(store, conn):
    rec = _quarantine(store, conn, OFF)
    original = rec.changes["nics"][0]["config_before"]
    conn.set_interface(OFF, original, live=False, config=True)  # someone undid it by hand

    again = _quarantine(store, conn, OFF)

    assert again.status == "done" and again.journal_id == rec.journal_id
    assert attachment(interfaces(conn, OFF)[MAC_VLAN]) == {**QUARANTINED, "link": "down"}
    nic = next(n for n in again.changes["nics"] if n["mac"] == MAC_VLAN)
    assert nic["config_before"] == original  # the drifted XML is not recorded as original


def test_release_needs_a_reason(store, conn):
    _quarantine(store, conn, OFF)
    entries = store.journal_entries()
    for reason in ("", "   "):
        with pytest.raises(EnforceError, match="reason"):
            Quarantiner(store, "tester").release(conn, OFF, reason=reason)
    assert store.journal_entries() == entries
    assert attachment(interfaces(conn, OFF)[MAC_VLAN])["network"] == "quarantine"


def test_release_restores_the_definition_exactly(store, conn):
    before = interfaces(conn, OFF)
    q = _quarantine(store, conn, OFF)
    assert interfaces(conn, OFF) != before

    rel = Quarantiner(store, "operator").release(conn, OFF, reason="rebuilt from debian12-base")

    assert rel.status == "done" and rel.action == "release"
    assert interfaces(conn, OFF) == before  # network, portgroup, VLAN and link state, verbatim
    assert store.journal_get(q.journal_id).status == "released"
    assert store.journal_parent(rel.journal_id) == q.journal_id
    assert store.active_quarantine(OFF) is None
    assert rel.actor == "operator" and rel.reason == "rebuilt from debian12-base"


def test_release_of_a_running_vm_after_partial_quarantine(store, conn):
    before, live_before = interfaces(conn, RUN), interfaces(conn, RUN, live=True)
    _quarantine(store, conn, RUN)
    rel = Quarantiner(store, "tester").release(conn, RUN, reason="fixed")
    assert rel.status == "done"
    assert interfaces(conn, RUN) == before
    assert interfaces(conn, RUN, live=True) == live_before


def test_release_of_a_vm_that_is_not_quarantined_says_so(store, conn):
    with pytest.raises(EnforceError, match="not quarantined") as err:
        Quarantiner(store, "tester").release(conn, PAUSED, reason="fixed")
    assert PAUSED in str(err.value)
    assert store.journal_entries() == []


def test_release_twice_fails_the_second_time(store, conn):
    _quarantine(store, conn, OFF)
    Quarantiner(store, "tester").release(conn, OFF, reason="fixed")
    with pytest.raises(EnforceError, match="not quarantined"):
        Quarantiner(store, "tester").release(conn, OFF, reason="again")


def test_quarantine_after_release_starts_a_new_entry(store, conn):
    first = _quarantine(store, conn, OFF)
    Quarantiner(store, "tester").release(conn, OFF, reason="fixed")
    second = _quarantine(store, conn, OFF)
    assert second.status == "done" and second.journal_id != first.journal_id
    # the originals of the new entry are the restored ones, not the quarantine network
    for nic in second.changes["nics"]:
        assert attachment(nic["config_before"])["network"] in ("prod", "pci")


def test_nic_hot_added_after_quarantine_is_quarantined_on_reconcile(store, conn):
    rec = _quarantine(store, conn, OFF)
    hot_add_nic(conn, OFF, MAC_HOTPLUG, "prod")
    added_xml = interfaces(conn, OFF)[MAC_HOTPLUG]
    assert attachment(added_xml)["network"] == "prod"

    again = _quarantine(store, conn, OFF)

    assert again.status == "done" and again.journal_id == rec.journal_id
    assert attachment(interfaces(conn, OFF)[MAC_HOTPLUG]) == {**QUARANTINED, "link": "down"}
    recorded = {n["mac"]: n for n in store.journal_get(rec.journal_id).changes["nics"]}
    assert recorded[MAC_HOTPLUG]["config_before"] == added_xml
    assert (recorded[MAC_HOTPLUG]["live"], recorded[MAC_HOTPLUG]["config"]) == ("skipped", "done")

    # and release puts the hot-added NIC back where it was, too
    Quarantiner(store, "tester").release(conn, OFF, reason="fixed")
    assert interfaces(conn, OFF)[MAC_HOTPLUG] == added_xml


def test_quarantine_through_the_policy_pipeline(store, conn, ctx: EnforceContext):
    vm = conn.lookup(OFF)
    findings = [
        Finding("unapproved-template", "vm", OFF, vm.name, vm.host, Severity.HIGH),
        Finding("forbidden-software", "vm", OFF, vm.name, vm.host, Severity.CRITICAL),
    ]
    actions = {r: [("quarantine", {})] for r in ("unapproved-template", "forbidden-software")}
    planned = plan(findings, {OFF: vm}, actions, due=None)
    (rec,) = execute(ctx, planned)
    assert rec.status == "done"
    assert rec.reason == "policy: forbidden-software, unapproved-template"
    assert rec.rule == "forbidden-software"  # the most severe finding names the rule
    assert [e.action for e in store.journal_entries()] == ["quarantine"]
    (rec2,) = execute(ctx, plan(findings, {OFF: vm}, actions, due=set()))
    assert rec2.status == "noop"


def test_quarantine_without_a_policy_block_fails_without_touching_the_vm(store, conn):
    ctx = EnforceContext(store=store, connectors={conn.uri: conn}, actor="tester")
    vm = conn.lookup(OFF)
    finding = Finding("r", "vm", OFF, vm.name, vm.host, Severity.HIGH)
    (rec,) = execute(ctx, plan([finding], {OFF: vm}, {"r": [("quarantine", {})]}, None))
    assert rec.status == "failed" and "quarantine:" in rec.error
    assert store.journal_entries() == []
    assert attachment(interfaces(conn, OFF)[MAC_VLAN])["network"] == "prod"


def test_action_on_a_host_we_are_not_connected_to_fails_with_a_hint(store, conn, tmp_path: Path):
    ctx = EnforceContext(store=store, connectors={}, actor="tester", quarantine=SPEC)
    vm = conn.lookup(OFF)
    finding = Finding("r", "vm", OFF, vm.name, vm.host, Severity.HIGH)
    (rec,) = execute(ctx, plan([finding], {OFF: vm}, {"r": [("quarantine", {})]}, None))
    assert rec.status == "failed" and "no open connection" in rec.error


def test_quarantine_to_a_network_the_host_lacks_changes_nothing(tmp_path):
    """A typo in quarantine.network must not 'succeed' by redefining NICs onto nothing."""
    fleet = build_fleet(tmp_path / "hv.xml")
    with (
        Store.open(f"sqlite:///{tmp_path / 'db'}") as store,
        LibvirtConnector(f"test://{fleet}") as conn,
    ):
        before = conn.nic_snapshot(OFF)
        vm = conn.lookup(OFF)
        with pytest.raises(EnforceError, match="does not exist"):
            Quarantiner(store, "t").quarantine(
                conn, vm, QuarantineSpec("nosuchnet"), reason="r", rule=None
            )
        assert conn.nic_snapshot(OFF) == before
        assert store.journal_entries() == []
