"""vSphere quarantine and release (#13.4) against vcsim, through the real enforcement path
(``Quarantiner`` + a SQLite journal): every NIC to the quarantine portgroup (standard or
distributed), disconnected and not connected at power-on; release puts every device back
field by field; a crash between NICs is repaired from the journal; a missing or unreachable
portgroup changes nothing; a NIC an admin changed during quarantine is never overwritten
silently.

vcsim 0.24 reports ``connected=False`` for the NICs of its powered-on VMs: the tests compare
what vCenter reports before and after (so release must write that False back, not a guess),
and judge isolation by the portgroup and ``startConnected``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.vsphere.conftest import Vcsim
from tests.connectors.vsphere.quarantine_ops import (
    DV_PG,
    STD_PG,
    add_distributed_portgroup,
    add_nic,
    add_standard_portgroup,
    devices,
    move_nic,
    nic_where,
    set_first_mac,
)
from tests.connectors.vsphere.vcsim_ops import admin, vm_named
from vmwarden.connectors.base import open_connector
from vmwarden.connectors.capabilities import records_of
from vmwarden.connectors.vsphere.connection import VsphereConnector
from vmwarden.enforce import Quarantiner
from vmwarden.enforce.changed import ReleaseConflict
from vmwarden.enforce.faults import FAULT_EXIT_CODE
from vmwarden.enforce.held import mark_held
from vmwarden.errors import ConnectorError, EnforceError
from vmwarden.model.isolation import QuarantineSpec
from vmwarden.store import Store

# What quarantine may change in a NIC's device spec; vcsim regenerates the summary.
NIC_FIELDS = ("backing", "connectable.connected", "connectable.startConnected",
              "deviceInfo.summary")  # fmt: skip


@pytest.fixture(scope="module")
def estate(vcsim: Vcsim) -> Vcsim:
    """Quarantine portgroups (a standard one on DC0_H0 only, a distributed one everywhere)
    and a second NIC, on the other kind of portgroup, for every VM of DC0_H0."""
    with admin(vcsim) as content:
        add_distributed_portgroup(content)
        h0 = vm_named(content, "DC0_H0_VM0").runtime.host
        add_standard_portgroup(h0)
        for i, name in enumerate(("DC0_H0_VM0", "DC0_H0_VM1", "DC0_C0_RP0_VM0")):
            vm = vm_named(content, name)
            set_first_mac(vm, f"00:50:56:02:00:{i:02x}")
            add_nic(vm, "VM Network", f"00:50:56:02:01:{i:02x}")
    return vcsim


@pytest.fixture
def conn(estate: Vcsim, vsphere_password: str) -> Iterator[VsphereConnector]:
    with open_connector(estate.uri()) as c:
        assert isinstance(c, VsphereConnector)
        yield c


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    with Store.open(f"sqlite:///{tmp_path / 'q.db'}") as s:
        yield s


def snapshot(sim: Vcsim, name: str) -> tuple[dict[int, dict[str, Any]], list[Any]]:
    with admin(sim) as content:
        vm = vm_named(content, name)
        return devices(vm), nic_where(vm)


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


@pytest.mark.parametrize(("portgroup", "vm_name"), [(STD_PG, "DC0_H0_VM0"), (DV_PG, "DC0_H0_VM1")])
def test_quarantine_moves_every_nic_and_release_restores_each_device_field_by_field(
    estate: Vcsim, conn: VsphereConnector, store: Any, portgroup: str, vm_name: str
) -> None:
    spec = QuarantineSpec(vsphere_portgroup=portgroup)
    before, where_before = snapshot(estate, vm_name)
    assert {w[1] for w in where_before} == {"DC0_DVPG0", "VM Network"}  # one of each kind
    vm = conn.lookup(vm_name)
    q = Quarantiner(store, "tester")
    assert q.quarantine(conn, vm, spec, reason="rogue", rule="r").status == "done"

    during, where = snapshot(estate, vm_name)
    assert [(mac, pg, start) for mac, pg, _conn, start in where] == [
        (mac, portgroup, False) for mac, *_ in where_before
    ]
    assert all(connected is False for _m, _p, connected, _s in where)
    nic_keys = {key for key, dev in before.items() if "macAddress" in dev}
    assert len(nic_keys) == 2 and during.keys() == before.keys()
    for key in before:  # field by field: only the backing and the two flags moved
        diff = changed_fields(before[key], during[key])
        if key in nic_keys:
            assert diff and all(f.startswith(NIC_FIELDS) for f in diff), diff
            assert any(f.startswith("backing") for f in diff)
        else:
            assert diff == set(), (key, diff)
    held = {n.mac: n for n in conn.lookup(vm_name).nics}
    assert {(n.network, n.link) for n in held.values()} == {(portgroup, "down")}

    again = q.quarantine(conn, conn.lookup(vm_name), spec, reason="rogue", rule="r")
    assert again.status == "noop"
    assert snapshot(estate, vm_name)[0] == during

    released = q.release(conn, vm.id, reason="rebuilt")
    assert released.status == "done"
    after, where_after = snapshot(estate, vm_name)
    assert where_after == where_before
    for key in before:
        assert changed_fields(before[key], after[key]) == set(), key
    assert after == before


def test_a_crash_between_nics_is_repaired_from_the_journal(
    estate: Vcsim, conn: VsphereConnector, tmp_path: Path
) -> None:
    """``vmwarden quarantine`` killed right after the first NIC's journaled step: one NIC
    moved, one not, the entry pending; resuming it moves only the other; release is exact."""
    name, db = "DC0_H0_VM0", f"sqlite:///{tmp_path / 'crash.db'}"
    before, where_before = snapshot(estate, name)
    policy = tmp_path / "p.yaml"
    policy.write_text(f"version: 1\nquarantine: {{vsphere: {{portgroup: {DV_PG}}}}}\nrules: []\n")
    ran = subprocess.run(
        [str(Path(sys.executable).with_name("vmwarden")), "quarantine", name, "-c", estate.uri(),
         "-p", str(policy), "--db", db, "--reason", "rogue"],
        env={**os.environ, "VMWARDEN_VSPHERE_PASSWORD": estate.password,
             "VMWARDEN_FAULT": "quarantine.nic:1"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == FAULT_EXIT_CODE, ran.stdout + ran.stderr
    moved = snapshot(estate, name)[1]
    assert moved[0][1] == DV_PG and moved[1] == where_before[1]  # first NIC only
    with Store.open(db) as store:
        (entry,) = store.incomplete_actions()
        assert (entry.action, entry.status, entry.name) == ("quarantine", "pending", name)
        steps = [n["step"] for n in entry.changes["nics"]]
        assert steps == ["done", "pending"]
        spec = QuarantineSpec.from_journal(entry.changes)
        assert spec.vsphere_portgroup == DV_PG
        assert not conn.is_isolated(entry.id, entry.changes["nics"], spec)
        assert Quarantiner(store, "repair").resume(conn, entry).status == "done"
        assert [(pg, start) for _m, pg, _c, start in snapshot(estate, name)[1]] == [
            (DV_PG, False), (DV_PG, False)
        ]  # fmt: skip
        assert store.incomplete_actions() == []
        assert Quarantiner(store, "admin").release(conn, entry.id, reason="ok").status == "done"
    assert snapshot(estate, name) == (before, where_before)


def test_a_missing_quarantine_portgroup_is_a_clear_error_and_changes_nothing(
    estate: Vcsim, conn: VsphereConnector, store: Any
) -> None:
    name = "DC0_C0_RP0_VM0"
    before = snapshot(estate, name)
    q = Quarantiner(store, "tester")
    absent = QuarantineSpec(network="quarantine", vsphere_portgroup="vmw-v2-absent")
    with pytest.raises(EnforceError, match="'vmw-v2-absent' does not exist in vCenter"):
        q.quarantine(conn, conn.lookup(name), absent, reason="rogue", rule="r")
    with pytest.raises(EnforceError, match="names no vSphere quarantine portgroup"):
        q.quarantine(conn, conn.lookup(name), QuarantineSpec("quarantine"), reason="r", rule="r")
    assert (
        store.incomplete_actions() == [] and store.active_quarantine(conn.lookup(name).id) is None
    )
    # the standard portgroup exists, but on DC0_H0 only: this VM's cluster host cannot reach
    # it (and vcsim would crash a reconfigure naming it), so no NIC is touched
    rec = q.quarantine(
        conn, conn.lookup(name), QuarantineSpec(vsphere_portgroup=STD_PG), reason="r", rule="r"
    )
    assert rec.status == "partial"
    assert rec.error and "not reachable from ESXi host DC0_C0_H" in rec.error
    assert snapshot(estate, name) == before


def test_release_refuses_while_an_admin_changed_a_held_nic_until_told(
    estate: Vcsim, conn: VsphereConnector, store: Any
) -> None:
    name = "DC0_H0_VM1"
    before, where_before = snapshot(estate, name)
    spec = QuarantineSpec(vsphere_portgroup=DV_PG)
    vm = conn.lookup(name)
    q = Quarantiner(store, "tester")
    assert q.quarantine(conn, vm, spec, reason="rogue", rule="r").status == "done"
    dv_mac = next(mac for mac, pg, _c, _s in where_before if pg == "DC0_DVPG0")
    with admin(estate) as content:  # an admin puts the DVPG's NIC on the standard portgroup
        move_nic(vm_named(content, name), dv_mac, "VM Network")
    changed = snapshot(estate, name)
    with pytest.raises(ReleaseConflict) as refused:
        q.release(conn, vm.id, reason="fixed")
    text = str(refused.value)
    assert f"NIC {dv_mac} device" in text and "is now portgroup 'VM Network'" in text
    assert "release would put back distributed portgroup 'DC0_DVPG0'" in text
    assert len(refused.value.changes) == 1  # the other NIC is as quarantine left it
    assert snapshot(estate, name) == changed  # refused: nothing touched
    assert store.active_quarantine(vm.id) is not None

    # a reconcile re-isolates the changed NIC; release still reports the change
    assert q.quarantine(conn, vm, spec, reason="rogue", rule="r").status == "done"
    assert [pg for _m, pg, _c, _s in snapshot(estate, name)[1]] == [DV_PG, DV_PG]
    with pytest.raises(ReleaseConflict, match="re-isolated it since"):
        q.release(conn, vm.id, reason="fixed")

    assert q.release(conn, vm.id, reason="originals", force=True).status == "done"
    assert snapshot(estate, name) == (before, where_before)


def test_keep_changes_keeps_the_admins_portgroup_and_reconnects_it(
    estate: Vcsim, conn: VsphereConnector, store: Any
) -> None:
    name = "DC0_H0_VM1"
    _, where_before = snapshot(estate, name)
    vm = conn.lookup(name)
    q = Quarantiner(store, "tester")
    assert q.quarantine(conn, vm, QuarantineSpec(vsphere_portgroup=DV_PG), reason="r",
                        rule="r").status == "done"  # fmt: skip
    dv_mac = next(mac for mac, pg, _c, _s in where_before if pg == "DC0_DVPG0")
    with admin(estate) as content:
        move_nic(vm_named(content, name), dv_mac, "VM Network")
    assert q.release(conn, vm.id, reason="moved", keep_changes=True).status == "done"
    # the admin's portgroup stays, the connect flags are put back as they were; the other
    # NIC is restored
    expected = [(m, "VM Network" if m == dv_mac else pg, c, s) for m, pg, c, s in where_before]
    assert snapshot(estate, name)[1] == expected


def test_records_say_where_each_nic_was_without_a_connection(
    estate: Vcsim, conn: VsphereConnector
) -> None:
    """What enforcement reads from a stored entry (no vCenter, no pyvmomi): the NIC's MAC
    and its pre-quarantine portgroup, so a held VM is judged where it belongs."""
    vm = conn.lookup("DC0_C0_RP0_VM0")
    records = conn.isolation_records(vm.id)
    reader = records_of(estate.uri())
    assert sorted(reader.key(r) for r in records) == sorted(n.mac for n in vm.nics)
    origins = {reader.key(r): reader.origin(r, DV_PG, live=True) for r in records}
    assert {mac: (o.type, o.network, o.link) for mac, o in origins.items() if o} == {
        "00:50:56:02:00:02": ("vsphere-dvpg", "DC0_DVPG0", "up"),
        "00:50:56:02:01:02": ("vsphere-portgroup", "VM Network", "up"),
    }
    dv = next(r for r in records if r["mac"] == "00:50:56:02:00:02")
    assert reader.origin(dv, "DC0_DVPG0", live=True) is None  # on it already
    with pytest.raises(ConnectorError, match="unreadable"):
        reader.origin({"mac": "x"}, DV_PG, live=True)


def test_a_held_vm_is_judged_on_the_portgroups_it_had(
    estate: Vcsim, conn: VsphereConnector, store: Any
) -> None:
    """Quarantine creates no finding of its own on vSphere either: while held, each NIC is
    judged at its pre-quarantine portgroup (``Nic.quarantined_from`` from the journal)."""
    name = "DC0_C0_RP0_VM0"
    vm = conn.lookup(name)
    q = Quarantiner(store, "tester")
    assert q.quarantine(conn, vm, QuarantineSpec(vsphere_portgroup=DV_PG), reason="r",
                        rule="r").status == "done"  # fmt: skip
    held = conn.lookup(name)
    mark_held(store, [held])
    assert {n.network for n in held.nics} == {DV_PG}
    assert sorted((n.judged().type, n.judged().network) for n in held.nics) == [
        ("vsphere-dvpg", "DC0_DVPG0"), ("vsphere-portgroup", "VM Network")
    ]  # fmt: skip
    assert q.release(conn, vm.id, reason="ok").status == "done"
    free = conn.lookup(name)
    mark_held(store, [free])
    assert all(n.quarantined_from is None for n in free.nics)


def test_a_nic_added_during_quarantine_is_isolated_by_the_next_reconcile(
    estate: Vcsim, conn: VsphereConnector, store: Any
) -> None:
    """An admin hot-adds a NIC to a held VM: the next quarantine (a sweep's reconcile)
    records its original and isolates it; release puts it back where it was added."""
    name, new_mac = "DC0_H0_VM0", "00:50:56:02:02:00"
    spec = QuarantineSpec(vsphere_portgroup=DV_PG)
    vm = conn.lookup(name)
    q = Quarantiner(store, "tester")
    assert q.quarantine(conn, vm, spec, reason="rogue", rule="r").status == "done"
    with admin(estate) as content:
        add_nic(vm_named(content, name), "VM Network", new_mac)
    added = snapshot(estate, name)
    assert (new_mac, "VM Network", True, True) in added[1]
    assert q.quarantine(conn, vm, spec, reason="rogue", rule="r").status == "done"
    where = snapshot(estate, name)[1]
    assert len(where) == 3 and {(pg, s) for _m, pg, _c, s in where} == {(DV_PG, False)}
    assert q.release(conn, vm.id, reason="ok").status == "done"
    ((key, dev),) = [(k, d) for k, d in added[0].items() if d.get("macAddress") == new_mac]
    assert snapshot(estate, name)[0][key] == dev  # as it was added, field by field


def test_checking_the_target_costs_calls_per_lookup_not_per_portgroup(
    estate: Vcsim, conn: VsphereConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vCenter with hundreds of portgroups: finding the quarantine portgroup is one
    property retrieval, not a round trip per portgroup (counted at pyvmomi's stub, every
    call still goes to vcsim)."""
    with admin(estate) as content:
        for i in range(40):
            add_distributed_portgroup(content, f"vmw-v2-many-{i:02d}")
    stub = conn._si._stub
    calls: list[str] = []
    real = stub.InvokeMethod

    def counted(mo: Any, info: Any, args: Any, *rest: Any) -> Any:
        calls.append(info.wsdlName)
        return real(mo, info, args, *rest)

    monkeypatch.setattr(stub, "InvokeMethod", counted)
    assert conn.quarantine_target_problem(QuarantineSpec(vsphere_portgroup=DV_PG)) is None
    assert conn.quarantine_target_problem(QuarantineSpec(vsphere_portgroup="vmw-v2-no")) is not None
    assert len(calls) <= 12, calls  # 10 (59 when each portgroup's name was a call)
    calls.clear()
    vm = conn.lookup("DC0_C0_RP0_VM0")
    calls.clear()
    records = conn.isolation_records(vm.id)
    assert conn.is_isolated(vm.id, records, QuarantineSpec(vsphere_portgroup=DV_PG)) is False
    assert len(calls) <= 30, calls  # 27 with ~45 portgroups on the host (36 before)


def test_the_cli_quarantines_and_releases_a_vsphere_vm_by_name(
    estate: Vcsim, tmp_path: Path
) -> None:
    """``vmwarden quarantine VM -c vsphere://… --network PORTGROUP`` (no policy file: the
    name typed is the portgroup on vSphere) and ``vmwarden release VM --reason``."""
    name, db = "DC0_C0_RP0_VM0", f"sqlite:///{tmp_path / 'cli.db'}"
    before = snapshot(estate, name)
    cli = str(Path(sys.executable).with_name("vmwarden"))
    env = {**os.environ, "VMWARDEN_VSPHERE_PASSWORD": estate.password}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *args, "--db", db], env=env, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip

    held = run("quarantine", name, "-c", estate.uri(), "--network", DV_PG, "--reason", "IR-1")
    assert held.returncode == 0, held.stdout + held.stderr
    assert {(pg, s) for _m, pg, _c, s in snapshot(estate, name)[1]} == {(DV_PG, False)}
    released = run("release", name, "-c", estate.uri(), "--reason", "fixed")
    assert released.returncode == 0, released.stdout + released.stderr
    assert snapshot(estate, name) == before
