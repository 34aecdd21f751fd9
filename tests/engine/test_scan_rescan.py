"""An unchanged re-scan parses no domain XML and writes no inventory row; a change is seen.

The second ``Sweep`` is a new ``Sweep`` over the same store (as a new ``vmwarden scan``
process is): its connections' parse caches are empty, so any domain it does not parse was
rebuilt from the store's record of the same input digest. Statements are counted on the
store's real engine with SQLAlchemy's ``before_cursor_execute`` event.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import event

from tests.engine.test_scan_fleet import found, rows, sweep
from vmwarden.connectors.libvirt import inventory as libvirt_inventory
from vmwarden.engine.known import StoredInputs

_WRITE = re.compile(r"^\s*(INSERT\s+INTO|UPDATE)\s+(\w+)", re.IGNORECASE)


class Writes:
    """Rows written per (verb, table) while attached to an engine."""

    def __init__(self) -> None:
        self.rows: Counter[tuple[str, str]] = Counter()

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        m = _WRITE.match(statement)
        if m:
            verb = m.group(1).split()[0].upper()
            self.rows[(verb, m.group(2))] += len(parameters) if executemany else 1

    def on(self, table: str) -> int:
        return sum(n for (_, t), n in self.rows.items() if t == table)


@pytest.fixture
def writes(store) -> Iterator[Writes]:
    counter = Writes()
    event.listen(store._engine, "before_cursor_execute", counter)
    yield counter
    event.remove(store._engine, "before_cursor_execute", counter)


@pytest.fixture
def parsed(monkeypatch) -> list[str]:
    """Names of the domains whose XML went through the real ``parse_domain``."""
    names: list[str] = []
    real = libvirt_inventory.parse_domain

    def counting(xml, **kw):
        vm = real(xml, **kw)
        names.append(vm.name)
        return vm

    monkeypatch.setattr(libvirt_inventory, "parse_domain", counting)
    return names


def test_unchanged_rescan_parses_nothing_and_writes_no_vm_row(scan_fleet, store, writes, parsed):
    first = sweep(store, scan_fleet)
    assert len(parsed) == len(scan_fleet.specs)  # the first scan parses every domain
    assert writes.on("vms") == len(scan_fleet.specs)
    parsed.clear()
    writes.rows.clear()

    second = sweep(store, scan_fleet)

    assert parsed == []
    assert writes.on("vms") == 0
    assert writes.on("vm_history") == 0
    # the rebuilt VMs are what parsing gave: same records, same findings, same JSON
    assert [vm.to_dict() for vm in second.vms] == [vm.to_dict() for vm in first.vms]
    assert [f.to_dict() for f in second.findings] == [f.to_dict() for f in first.findings]
    assert second.to_dict()["vms"] == first.to_dict()["vms"]


def test_a_changed_domain_is_parsed_again_and_its_history_written(
    scan_fleet, store, writes, parsed
):
    sweep(store, scan_fleet)
    name = "hv-a-vm-000"
    vm_id = scan_fleet.uuid_of(name)
    spec = scan_fleet.specs[name]
    assert spec.state == "running" and spec.nets is None  # on its zone's network, prod
    # Moved to the DMZ. (Not a state change: the test driver numbers the running domains
    # in file order, so stopping one changes the XML (id) of every later running one.)
    moved = {"nets": ("dmz",), "rules": spec.rules | {"outside-zone"}}
    scan_fleet.write_host("hv-a", **{name: moved})
    history = rows(store, "SELECT count(*) FROM vm_history")[0][0]
    parsed.clear()
    writes.rows.clear()

    later = sweep(store, scan_fleet)

    assert parsed == [name]
    assert writes.rows[("UPDATE", "vms")] + writes.rows[("INSERT", "vms")] == 1
    changes = [(h.field, h.old, h.new) for h in store.vm_history(vm_id) if h.field != "state"]
    mac = spec.macs[0]
    assert changes[-1][1:] == (f"{mac}=prod", f"{mac}=dmz")
    assert rows(store, "SELECT count(*) FROM vm_history")[0][0] > history
    vm = next(v for v in later.vms if v.id == vm_id)
    assert [nic.network for nic in vm.nics] == ["dmz"]
    assert found(later) == scan_fleet.expected()
    # the stored digest now names the new XML: a third scan parses nothing again
    parsed.clear()
    sweep(store, scan_fleet)
    assert parsed == []


def test_a_vm_written_without_a_digest_is_parsed_next_time(scan_fleet, store, parsed):
    """Writers without the scan's input (watch) clear the digest: it would name old XML."""
    first = sweep(store, scan_fleet)
    vm = first.vms[0]
    vcpus = vm.vcpus
    vm.vcpus = (vcpus or 1) + 1  # a record that no longer matches the digested XML
    store.record_inventory([vm], now=first.finished_at, complete_hosts=set(), source="watch")
    known = StoredInputs(store)
    known.wait()
    assert known.digest(vm.id) is None
    parsed.clear()

    again = sweep(store, scan_fleet)

    assert parsed == [vm.name]
    assert next(v for v in again.vms if v.id == vm.id).vcpus == vcpus


def test_a_touched_disk_is_written_though_its_xml_is_the_same(
    scan_fleet, images, store, writes, parsed
):
    """Lineage facts (a disk's mtime) are not in the XML: a rebuilt VM is still compared."""
    clones = {"rogue-0", "rogue-1", "hv-c-rogue-old"}  # backed by the rogue base
    users = {s.name for s in scan_fleet.specs.values() if clones & set(s.disks)}
    assert len(users) > 3
    first = sweep(store, scan_fleet)
    rogue = str(scan_fleet.rogue)
    before = {vm.id: root.mtime.isoformat() for vm in first.vms if (root := _root(vm, rogue))}
    assert set(before) == {vm.id for vm in first.vms if vm.name in users}
    images.backdate(scan_fleet.rogue, 2)
    parsed.clear()
    writes.rows.clear()

    again = sweep(store, scan_fleet)

    assert parsed == []
    assert writes.rows[("UPDATE", "vms")] + writes.rows[("INSERT", "vms")] == len(users)
    for vm in (v for v in again.vms if v.name in users):
        root = _root(vm, rogue)
        i = next(i for i, d in enumerate(vm.disks) if d.root is root)
        stored = store.get_vm(vm.id)["disks"][i]["chain"][-1]
        assert stored["mtime"] == root.mtime.isoformat() != before[vm.id]


def _root(vm, path: str):
    """The root layer of the VM's (non-cdrom) disk backed by ``path``, if any."""
    return next((d.root for d in vm.disks if d.device == "disk" and d.root.path == path), None)
