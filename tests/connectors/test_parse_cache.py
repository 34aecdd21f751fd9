"""The parse cache of long-lived connections: same VMs as a fresh parse, never shared."""

from __future__ import annotations

from datetime import UTC, datetime

from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.model import State, VmMeta


def _by_id(conn: LibvirtConnector) -> dict[str, object]:
    return {vm.id: vm for vm in conn.inventory().vms}


def test_cached_inventory_equals_a_fresh_parse(fleet_uri: str, conn: LibvirtConnector) -> None:
    sweeps = [_by_id(conn) for _ in range(3)]
    assert conn.parse_cache.hits == len(sweeps[2])  # the third sweep parsed nothing
    with LibvirtConnector(fleet_uri) as fresh:
        expected = _by_id(fresh)
    for sweep in sweeps:
        assert sweep == expected


def test_cached_vms_share_nothing_mutable(conn: LibvirtConnector) -> None:
    for _ in range(2):
        conn.inventory()
    first = conn.inventory().vms
    vm = next(v for v in first if v.disks and v.nics)
    tags = dict(vm.meta.tags)
    vm.disks[0].chain[0].digest = "sha256:" + "f" * 64
    vm.disks[0].chain.append(vm.disks[0].chain[0])
    vm.nics[0].addresses.append("192.0.2.99")
    vm.meta.tags["x"] = "y"
    vm.first_seen = datetime.now(UTC)
    again = next(v for v in conn.inventory().vms if v.id == vm.id)
    assert again.disks[0].chain[0].digest is None
    assert len(again.disks[0].chain) == len(vm.disks[0].chain) - 1
    assert "192.0.2.99" not in again.nics[0].addresses
    assert again.meta.tags == tags
    assert again.first_seen is None


def test_a_changed_domain_is_parsed_again(conn: LibvirtConnector) -> None:
    for _ in range(3):
        vms = conn.inventory().vms
    target = next(v for v in vms if v.state is State.RUNNING and v.persistent)
    conn.set_metadata(target.id, VmMeta(owner="zoe", classification="pci", registered=True))
    conn.pause(target.id)
    hits = conn.parse_cache.hits
    after = next(v for v in conn.inventory().vms if v.id == target.id)
    assert after.meta.owner == "zoe" and after.state is State.PAUSED
    assert conn.parse_cache.hits == hits + len(vms) - 1


def test_entries_of_vanished_domains_are_dropped(conn: LibvirtConnector) -> None:
    vms = conn.inventory().vms
    assert len(conn.parse_cache) == len(vms)
    victim = next(v for v in vms if v.persistent and v.state is State.SHUTOFF)
    conn.conn.lookupByUUIDString(victim.id).undefine()
    conn.inventory()
    assert len(conn.parse_cache) == len(vms) - 1


def test_a_cache_in_use_by_another_sweep_is_bypassed(conn: LibvirtConnector) -> None:
    for _ in range(2):
        expected = _by_id(conn)
    cache = conn.parse_cache
    with cache.lock:  # another thread's sweep on a shared connection
        assert _by_id(conn) == expected
    assert cache.hits == 0 and len(cache) == len(expected)
