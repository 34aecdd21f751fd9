"""Journal entries written before the connector contract (#12) still repair and release.

Until then ``enforce/quarantine.py`` wrote each NIC's ``<interface>`` XML into the entry
itself, in exactly this literal form; stores in the field hold such entries (pending after
a crash, or active quarantines to release). Since #12 the records are opaque to enforcement
and only the libvirt connector reads them, so these must keep working as they are.
"""

from __future__ import annotations

from typing import Any

from tests.enforce.conftest import JournalTap
from tests.enforce.enforce_fleet import MAC_DOWN, MAC_VLAN, OFF, attachment, interfaces
from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.enforce import EnforceContext, Quarantiner, QuarantineSpec, mark_held, repair


def _old_entry(store: JournalTap, conn: LibvirtConnector, originals: dict[str, str]) -> int:
    """A quarantine entry as the pre-#12 code journaled it before touching libvirt."""
    changes: dict[str, Any] = {
        "network": "quarantine",
        "link_down": True,
        "nics": [
            {
                "mac": mac,
                "live_before": None,
                "config_before": originals[mac],
                "live": "pending",
                "config": "pending",
            }
            for mac in (MAC_VLAN, MAC_DOWN)
        ],
    }
    vm = conn.lookup(OFF)
    return store.journal_begin(
        "quarantine",
        vm_id=vm.id,
        vm_name=vm.name,
        host=vm.host,
        uri=vm.uri,
        actor="old-vmwarden",
        reason="held before the upgrade",
        rule="r",
        changes=changes,
    )


def test_a_pre_contract_pending_quarantine_is_repaired_then_released_exactly(
    store: JournalTap, conn: LibvirtConnector
) -> None:
    originals = interfaces(conn, OFF)
    entry_id = _old_entry(store, conn, originals)

    ctx = EnforceContext(store=store, connectors={conn.uri: conn}, actor="repairer")
    (done,) = repair(ctx)
    assert (done.journal_id, done.status) == (entry_id, "done")
    for xml in interfaces(conn, OFF).values():
        assert attachment(xml)["network"] == "quarantine"
        assert attachment(xml)["link"] == "down"

    vm = conn.lookup(OFF)
    mark_held(store, [vm])  # judged where its NICs were, from the old records
    origins = {n.mac: n.quarantined_from for n in vm.nics}
    assert origins[MAC_VLAN] is not None and origins[MAC_VLAN].network == "prod"
    assert origins[MAC_VLAN].vlan == [42] and origins[MAC_VLAN].portgroup == "web"

    rec = Quarantiner(store, "admin").release(conn, OFF, reason="fixed")
    assert rec.status == "done"
    assert interfaces(conn, OFF) == originals  # exactly what the old entry recorded
    assert store.active_quarantine(OFF) is None


def test_a_pre_contract_pending_release_is_finished(
    store: JournalTap, conn: LibvirtConnector
) -> None:
    originals = interfaces(conn, OFF)
    parent_id = _old_entry(store, conn, originals)
    ctx = EnforceContext(store=store, connectors={conn.uri: conn}, actor="repairer")
    repair(ctx)
    parent = store.journal_get(parent_id)
    store.journal_begin(  # a release the old code began, then crashed before any step
        "release",
        vm_id=parent.id,
        vm_name=parent.name,
        host=parent.host,
        uri=parent.uri,
        actor="old-vmwarden",
        reason="fixed",
        rule=parent.rule,
        changes={
            "parent_id": parent_id,
            "nics": [
                {"mac": m, "live": "pending", "config": "pending"} for m in (MAC_VLAN, MAC_DOWN)
            ],
        },
        parent_id=parent_id,
    )
    (finished,) = repair(ctx)
    assert (finished.action, finished.status) == ("release", "done")
    assert interfaces(conn, OFF) == originals
    assert store.journal_get(parent_id).status == "released"


def test_the_spec_round_trips_through_the_entry_and_old_entries_default() -> None:
    spec = QuarantineSpec("iso", link_down=False)
    assert spec.to_journal() == {"network": "iso", "link_down": False}  # the keys entries had
    assert QuarantineSpec.from_journal({**spec.to_journal(), "nics": []}) == spec
    # what an entry lacks: from the default given, else the field's own default
    assert QuarantineSpec.from_journal({"network": "q"}) == QuarantineSpec("q", link_down=True)
    assert QuarantineSpec.from_journal({}, spec) == spec
