"""#10.4: release never silently overwrites a NIC someone changed during quarantine.

Test driver, shut-off VM (its persistent NICs are what quarantine and release change there);
the real-libvirtd version with a running VM is in tests/integration/test_real_estate_scenario.
"""

from __future__ import annotations

import pytest
from lxml import etree

from tests.enforce.conftest import JournalTap
from tests.enforce.enforce_fleet import MAC_DOWN, MAC_VLAN, OFF, attachment, interfaces
from tests.enforce.test_quarantine import _quarantine
from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.enforce import Quarantiner
from vmwarden.enforce.changed import ReleaseConflict
from vmwarden.errors import EnforceError


def admin_moves(conn: LibvirtConnector, mac: str, network: str) -> None:
    """What an admin does with ``virsh update-device --config``: the persistent NIC, moved
    to ``network``; the rest of the interface (link down from quarantine) left as found."""
    iface = etree.fromstring(interfaces(conn, OFF)[mac].encode())
    iface.find("source").set("network", network)
    conn.set_interface(OFF, etree.tostring(iface, encoding="unicode"), live=False, config=True)
    assert attachment(interfaces(conn, OFF)[mac])["network"] == network


def test_release_refuses_to_overwrite_an_admin_fix_and_changes_nothing(store: JournalTap, conn):
    q = _quarantine(store, conn, OFF)
    admin_moves(conn, MAC_VLAN, "pci")
    fixed = interfaces(conn, OFF)
    entries = store.journal_entries()

    with pytest.raises(ReleaseConflict) as err:
        Quarantiner(store, "operator").release(conn, OFF, reason="moved to pci")

    message = str(err.value)
    assert MAC_VLAN in message and "persistent" in message
    assert "is now network 'pci'" in message and "network 'prod'" in message
    assert MAC_DOWN not in message  # the untouched NIC is no conflict
    assert "--force" in err.value.hint and "--keep-changes" in err.value.hint
    assert err.value.exit_code != 0
    assert interfaces(conn, OFF) == fixed  # nothing was touched
    assert store.journal_entries() == entries  # nothing journaled, still held
    assert store.active_quarantine(OFF).journal_id == q.journal_id


def test_force_puts_back_the_pre_quarantine_nics_and_journals_what_it_overwrote(store, conn):
    before = interfaces(conn, OFF)
    _quarantine(store, conn, OFF)
    admin_moves(conn, MAC_VLAN, "pci")

    rel = Quarantiner(store, "operator").release(conn, OFF, reason="IR-9", force=True)

    assert rel.status == "done"
    assert interfaces(conn, OFF) == before
    assert rel.changes["resolution"] == "force"
    (said,) = rel.changes["changed_during_quarantine"]
    assert MAC_VLAN in said and "'pci'" in said
    assert store.active_quarantine(OFF) is None


def test_keep_changes_keeps_the_fix_raises_its_link_and_restores_the_rest(store, conn):
    before = interfaces(conn, OFF)
    _quarantine(store, conn, OFF)
    admin_moves(conn, MAC_VLAN, "pci")

    rel = Quarantiner(store, "operator").release(conn, OFF, reason="IR-9", keep_changes=True)

    assert rel.status == "done" and rel.changes["resolution"] == "keep-changes"
    after = interfaces(conn, OFF)
    # the admin's network stays; the link quarantine took down is up again, as it was before
    assert attachment(after[MAC_VLAN]) == {
        "type": "network", "network": "pci", "portgroup": None, "vlan": [], "link": "up"
    }  # fmt: skip
    assert after[MAC_DOWN] == before[MAC_DOWN]  # untouched NIC: restored exactly (link down)
    assert store.active_quarantine(OFF) is None


def test_a_change_re_isolated_by_a_reconcile_is_still_reported_at_release(store, conn):
    _quarantine(store, conn, OFF)
    admin_moves(conn, MAC_VLAN, "pci")
    again = _quarantine(store, conn, OFF)  # the next sweep keeps the quarantine whole
    assert attachment(interfaces(conn, OFF)[MAC_VLAN])["network"] == "quarantine"
    assert again.status == "done"

    with pytest.raises(ReleaseConflict, match="re-isolated"):
        Quarantiner(store, "operator").release(conn, OFF, reason="moved to pci")
    rel = Quarantiner(store, "operator").release(conn, OFF, reason="IR-9", keep_changes=True)
    assert rel.status == "done"
    assert attachment(interfaces(conn, OFF)[MAC_VLAN])["network"] == "pci"  # the fix, kept


def test_a_hand_undo_of_the_quarantine_is_no_conflict(store, conn):
    before = interfaces(conn, OFF)
    rec = _quarantine(store, conn, OFF)
    original = next(n for n in rec.changes["nics"] if n["mac"] == MAC_VLAN)["config_before"]
    conn.set_interface(OFF, original, live=False, config=True)  # back where it was
    rel = Quarantiner(store, "operator").release(conn, OFF, reason="done")
    assert rel.status == "done" and "changed_during_quarantine" not in rel.changes
    assert interfaces(conn, OFF) == before


def test_force_and_keep_changes_exclude_each_other(store, conn):
    _quarantine(store, conn, OFF)
    with pytest.raises(EnforceError, match="exclude each other"):
        Quarantiner(store, "op").release(conn, OFF, reason="x", force=True, keep_changes=True)
    assert store.active_quarantine(OFF) is not None


def test_a_change_undone_by_hand_before_the_next_reconcile_is_forgotten(store, conn):
    before = interfaces(conn, OFF)
    rec = _quarantine(store, conn, OFF)
    admin_moves(conn, MAC_VLAN, "pci")
    _quarantine(store, conn, OFF)  # re-isolated; the change to pci is remembered
    original = next(n for n in rec.changes["nics"] if n["mac"] == MAC_VLAN)["config_before"]
    conn.set_interface(OFF, original, live=False, config=True)  # the admin changes their mind
    _quarantine(store, conn, OFF)  # re-isolated again: the latest hand change counts
    rel = Quarantiner(store, "operator").release(conn, OFF, reason="as it was")
    assert rel.status == "done" and "changed_during_quarantine" not in rel.changes
    assert interfaces(conn, OFF) == before
