"""A crash between journal steps (``VMWARDEN_FAULT``) is finished from the recorded originals.

The step runs in a child process that ``os._exit``s at the fault point; the child writes its
persistent NIC changes back to the fleet file (see ``PersistingConnector``), so the parent
reopens the estate as the crash left it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.enforce.conftest import SPEC
from tests.enforce.enforce_fleet import MAC_DOWN, MAC_VLAN, OFF, attachment, interfaces
from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.enforce import EnforceContext, Quarantiner, repair
from vmwarden.enforce.faults import FAULT_EXIT_CODE
from vmwarden.store import Store


def _child(op: str, fleet: Path, db: str, vm_id: str, fault: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "VMWARDEN_FAULT"}
    if fault:
        env["VMWARDEN_FAULT"] = fault
    proc = subprocess.run(
        [sys.executable, "-m", "tests.enforce.crash_child", op, str(fleet), db, vm_id],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode not in (0, FAULT_EXIT_CODE):
        raise AssertionError(f"child failed ({proc.returncode}): {proc.stderr}")
    return proc.returncode


def _originals(fleet: Path) -> dict[str, str]:
    with LibvirtConnector(f"test://{fleet}") as conn:
        return interfaces(conn, OFF)


def test_crash_after_begin_leaves_pending_entry_with_originals_and_nothing_changed(fleet, db):
    before = _originals(fleet)
    assert _child("quarantine", fleet, db, OFF, "quarantine.begun") == FAULT_EXIT_CODE

    with Store.open(db) as store:
        (entry,) = store.incomplete_actions()
        assert (entry.action, entry.status, entry.id) == ("quarantine", "pending", OFF)
        recorded = {n["mac"]: n["config_before"] for n in entry.changes["nics"]}
        assert recorded == before
        assert _originals(fleet) == before  # the crash came before any change

        with LibvirtConnector(f"test://{fleet}") as conn:
            rec = Quarantiner(store, "repairer").resume(conn, entry)
            assert rec.status == "done" and rec.journal_id == entry.journal_id
            for xml in interfaces(conn, OFF).values():
                assert attachment(xml)["network"] == "quarantine"
        assert store.incomplete_actions() == []


def test_crash_between_nics_is_repaired_from_recorded_originals_and_release_is_exact(fleet, db):
    before = _originals(fleet)
    # the first NIC's definition is changed and journaled, then the process dies
    assert _child("quarantine", fleet, db, OFF, "quarantine.config:1") == FAULT_EXIT_CODE

    crashed = _originals(fleet)
    assert attachment(crashed[MAC_VLAN])["network"] == "quarantine"
    assert crashed[MAC_DOWN] == before[MAC_DOWN]

    with Store.open(db) as store:
        (entry,) = store.incomplete_actions()
        steps = {n["mac"]: n["config"] for n in entry.changes["nics"]}
        assert steps == {MAC_VLAN: "done", MAC_DOWN: "pending"}

        with LibvirtConnector(f"test://{fleet}") as conn:
            ctx = EnforceContext(
                store=store, connectors={conn.uri: conn}, actor="r", quarantine=SPEC
            )
            (fixed,) = repair(ctx)
            assert fixed.status == "done" and fixed.journal_id == entry.journal_id
            now = interfaces(conn, OFF)
            assert {attachment(x)["network"] for x in now.values()} == {"quarantine"}
            assert attachment(now[MAC_DOWN])["link"] == "down"
            assert store.incomplete_actions() == []
            assert repair(ctx) == []  # nothing left to repair

            # the recorded originals are the true ones, not what the crash left behind
            final = {
                n["mac"]: n["config_before"]
                for n in store.journal_get(entry.journal_id).changes["nics"]
            }
            assert final == before

            rel = Quarantiner(store, "operator").release(conn, OFF, reason="fixed")
            assert rel.status == "done"
            assert interfaces(conn, OFF) == before


def test_crash_during_release_is_finished_by_repair(fleet, db):
    before = _originals(fleet)
    assert _child("quarantine", fleet, db, OFF, None) == 0
    assert _child("release", fleet, db, OFF, "release.config:1") == FAULT_EXIT_CODE

    half = _originals(fleet)
    assert half[MAC_VLAN] == before[MAC_VLAN]
    assert attachment(half[MAC_DOWN])["network"] == "quarantine"

    with Store.open(db) as store:
        (entry,) = store.incomplete_actions()
        assert entry.action == "release"
        parent = store.journal_get(entry.changes["parent_id"])
        assert parent.status == "done"  # still holding the VM until the release completes
        assert store.active_quarantine(OFF).journal_id == parent.journal_id

        with LibvirtConnector(f"test://{fleet}") as conn:
            ctx = EnforceContext(
                store=store, connectors={conn.uri: conn}, actor="r", quarantine=SPEC
            )
            (fixed,) = repair(ctx)
            assert (fixed.action, fixed.status) == ("release", "done")
            assert interfaces(conn, OFF) == before
        assert store.journal_get(parent.journal_id).status == "released"
        assert store.active_quarantine(OFF) is None


def test_repair_leaves_hosts_it_is_not_connected_to_alone(fleet, db):
    assert _child("quarantine", fleet, db, OFF, "quarantine.begun") == FAULT_EXIT_CODE
    with Store.open(db) as store:
        ctx = EnforceContext(store=store, connectors={}, actor="r", quarantine=SPEC)
        assert repair(ctx) == []
        assert [e.status for e in store.incomplete_actions()] == ["pending"]
