"""The libvirt connector against libvirt's real test driver (an in-process hypervisor)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from collections import Counter
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from tests.connectors.connectors_fleet import COUNTS, fleet_vms, write_fleet
from vmwarden.connectors import LiveChangeUnsupportedError, open_connector
from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.connectors.libvirt.inventory import list_domains, read_domains
from vmwarden.connectors.libvirt.nicxml import quarantine_interface
from vmwarden.errors import ConnectorError, DomainGoneError, UnreachableError
from vmwarden.model import State, VmMeta

FLEET = {vm.name: vm for vm in fleet_vms()}
RUN0 = FLEET["run-000"]
OFF0 = FLEET["off-000"]
TRANS0 = FLEET["trans-000"]
PAUSED0 = FLEET["paused-000"]


def test_host_is_the_file_stem(conn: LibvirtConnector) -> None:
    assert conn.host == "dc1-fleet"
    with LibvirtConnector("test:///default") as default:
        assert default.host == "default"


def test_inventory_counts_states_and_persistence(conn: LibvirtConnector) -> None:
    inv = conn.inventory()
    assert (inv.host, inv.uri, inv.warnings) == ("dc1-fleet", conn.uri, [])
    assert len(inv.vms) == sum(COUNTS.values()) + 1
    by_name = {vm.name: vm for vm in inv.vms}
    assert Counter(vm.state for vm in inv.vms) == {
        State.RUNNING: COUNTS["run"] + COUNTS["trans"],
        State.PAUSED: COUNTS["paused"],
        State.SHUTOFF: COUNTS["off"] + 1,
    }
    assert {vm.name for vm in inv.vms if not vm.persistent} == {
        name for name, vm in FLEET.items() if vm.kind == "trans"
    }
    assert by_name["bare"].disks == [] and by_name["bare"].nics == []
    assert by_name["bare"].memory_kib == 65536


def test_inventory_vm_fields(conn: LibvirtConnector) -> None:
    by_id = {vm.id: vm for vm in conn.inventory().vms}
    for spec in FLEET.values():
        vm = by_id[spec.uuid]
        assert (vm.name, vm.host, vm.vcpus, vm.memory_kib, vm.arch, vm.os_type) == (
            spec.name,
            "dc1-fleet",
            2,
            256 * 1024,
            "x86_64",
            "hvm",
        )
        (d,) = vm.disks
        assert (d.target, d.bus, d.source, d.chain[0].format) == (
            "vda",
            "virtio",
            f"/pool/images/{spec.name}.qcow2",
            "qcow2",
        )
        (nic,) = vm.nics
        assert (nic.mac, nic.type, nic.network, nic.portgroup, nic.model) == (
            spec.mac,
            "network",
            spec.network,
            "web",
            "virtio",
        )
        assert nic.vlan == ([spec.vlan] if spec.vlan is not None else [])
        if spec.owner:
            assert vm.meta == VmMeta(spec.owner, "internal", None, True, {"team": "blue"})
        else:
            assert vm.meta == VmMeta()


def test_inventory_addresses_only_for_running(conn: LibvirtConnector) -> None:
    by_name = {vm.name: vm for vm in conn.inventory().vms}
    for name, spec in FLEET.items():
        addrs = by_name[name].nics[0].addresses
        if spec.kind == "off":
            assert addrs == []
        else:  # the test driver makes up a lease from the network's DHCP config
            assert len(addrs) == 1 and ipaddress.ip_address(addrs[0]).version == 4


def test_inventory_networks_and_pools(conn: LibvirtConnector) -> None:
    inv = conn.inventory()
    nets = {n.name: (n.bridge, n.active, n.forward) for n in inv.networks}
    assert nets == {
        "prod": ("virbr1", True, "nat"),
        "pci": ("virbr2", True, "route"),
        "quarantine": ("virbr9", True, None),
    }
    (pool,) = inv.pools
    assert (pool.name, pool.type, pool.path, pool.active) == ("images", "dir", "/pool/images", True)
    vols = {v.name: v for v in pool.volumes}
    assert set(vols) == {"debian12-base.qcow2", "run-000.qcow2", "orphan.raw"}
    base = vols["debian12-base.qcow2"]
    assert (base.path, base.format, base.capacity, base.allocation, base.backing) == (
        "/pool/images/debian12-base.qcow2",
        "qcow2",
        10 * 1024**3,
        700 * 1024**2,
        None,
    )
    assert vols["run-000.qcow2"].backing == "/pool/images/debian12-base.qcow2"
    assert vols["orphan.raw"].path == "/pool/images/orphan.raw"
    assert vols["orphan.raw"].mtime is None  # the test driver has no timestamps


def test_lookup_by_uuid_and_by_name(conn: LibvirtConnector) -> None:
    by_uuid = conn.lookup(RUN0.uuid)
    assert by_uuid == conn.lookup("run-000")
    assert by_uuid.state is State.RUNNING and by_uuid.nics[0].addresses
    assert conn.lookup(TRANS0.uuid).persistent is False
    with pytest.raises(DomainGoneError, match="no longer exists on dc1-fleet"):
        conn.lookup("00000000-0000-4000-8000-999999999999")
    with pytest.raises(DomainGoneError):
        conn.lookup("no-such-vm")


def test_domain_vanishing_mid_inventory_is_a_warning(conn: LibvirtConnector) -> None:
    pairs, transient = list_domains(conn.conn, conn.uri)
    conn.conn.lookupByName("off-001").undefine()  # gone between listing and reading
    warnings: list[str] = []
    vms = read_domains(pairs, transient, conn.host, conn.uri, warnings)
    assert len(vms) == len(pairs) - 1 and "off-001" not in {vm.name for vm in vms}
    assert warnings == [
        f"domain off-001 ({FLEET['off-001'].uuid}) vanished during inventory; skipped"
    ]
    assert "off-001" not in {vm.name for vm in conn.inventory().vms}


def test_domain_state_and_power_operations(conn: LibvirtConnector) -> None:
    vm = RUN0.uuid
    assert conn.domain_state(vm) is State.RUNNING
    conn.pause(vm)
    assert conn.domain_state(vm) is State.PAUSED
    conn.resume(vm)
    assert conn.domain_state(vm) is State.RUNNING
    conn.shutdown(vm)
    assert conn.domain_state(vm) is State.SHUTOFF
    with pytest.raises(ConnectorError, match=r"pause of VM .* failed: .*not running"):
        conn.pause(vm)
    conn.destroy(TRANS0.uuid)  # a destroyed transient domain is gone
    with pytest.raises(DomainGoneError):
        conn.domain_state(TRANS0.uuid)


def test_snapshot(conn: LibvirtConnector) -> None:
    assert conn.snapshot(RUN0.uuid, "vmwarden-q1", "before <quarantine> & co") == "vmwarden-q1"
    dom = conn.conn.lookupByUUIDString(RUN0.uuid)
    snap = etree.fromstring(dom.snapshotLookupByName("vmwarden-q1").getXMLDesc())
    assert snap.findtext("description") == "before <quarantine> & co"
    with pytest.raises(ConnectorError, match="snapshot 'vmwarden-q1'"):
        conn.snapshot(RUN0.uuid, "vmwarden-q1", "again")


@pytest.mark.parametrize("spec", [RUN0, OFF0, TRANS0, PAUSED0], ids=lambda s: s.kind)
def test_metadata_round_trip(conn: LibvirtConnector, spec) -> None:
    meta = VmMeta("carol", "pci", "debian12-base", False, {"quarantined": "yes", "rule": "r1"})
    conn.set_metadata(spec.uuid, meta)
    assert conn.get_metadata(spec.uuid) == meta
    assert conn.lookup(spec.uuid).meta == meta  # and it is in the domain XML under our namespace
    dom = conn.conn.lookupByUUIDString(spec.uuid)
    if spec.kind != "trans":  # persistent: the definition carries it too
        config = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert "<vmwarden:owner>carol</vmwarden:owner>" in config
    if spec.kind == "run":  # running persistent: live and config both
        live = dom.metadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT,
            "http://vmwarden.dev/xmlns/vm/1",
            libvirt.VIR_DOMAIN_AFFECT_LIVE,
        )
        assert "carol" in live


def test_metadata_absent_is_empty(conn: LibvirtConnector) -> None:
    assert conn.get_metadata("bare") == VmMeta()


def test_nic_snapshot(conn: LibvirtConnector) -> None:
    (running,) = conn.nic_snapshot(RUN0.uuid)
    assert running.mac == RUN0.mac
    assert running.live_xml is not None and running.config_xml is not None
    assert etree.fromstring(running.live_xml).find("source").get("network") == RUN0.network
    (off,) = conn.nic_snapshot(OFF0.uuid)
    assert off.live_xml is None and off.config_xml is not None
    (trans,) = conn.nic_snapshot(TRANS0.uuid)
    assert trans.live_xml is not None and trans.config_xml is None
    assert conn.nic_snapshot("bare") == []


def test_test_driver_cannot_update_devices(conn: LibvirtConnector) -> None:
    """Pin the fact the fallbacks are built on (libvirt 9.0's test driver)."""
    dom = conn.conn.lookupByUUIDString(RUN0.uuid)
    iface = conn.nic_snapshot(RUN0.uuid)[0].config_xml
    for flags in (libvirt.VIR_DOMAIN_AFFECT_LIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG):
        with pytest.raises(libvirt.libvirtError) as info:
            dom.updateDeviceFlags(iface, flags)
        assert info.value.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT


def test_set_interface_live_unsupported_changes_nothing(conn: LibvirtConnector) -> None:
    before = conn.nic_snapshot(RUN0.uuid)
    new = quarantine_interface(before[0].config_xml or "", "quarantine")
    with pytest.raises(LiveChangeUnsupportedError, match="live change unsupported") as info:
        conn.set_interface(RUN0.uuid, new, live=True, config=True)
    assert info.value.code == "live-unsupported" and info.value.hint
    assert conn.nic_snapshot(RUN0.uuid) == before


@pytest.mark.parametrize("spec", [RUN0, OFF0], ids=lambda s: s.kind)
def test_set_interface_config_redefines(conn: LibvirtConnector, spec) -> None:
    before = conn.nic_snapshot(spec.uuid)[0]
    new = quarantine_interface(before.config_xml or "", "quarantine")
    conn.set_interface(spec.uuid, new, live=False, config=True)
    after = conn.nic_snapshot(spec.uuid)[0]
    cfg = etree.fromstring(after.config_xml or "")
    assert cfg.find("source").attrib == {"network": "quarantine"}
    assert cfg.find("link").get("state") == "down" and cfg.find("vlan") is None
    assert after.live_xml == before.live_xml  # the running VM is untouched
    assert conn.domain_state(spec.uuid) is conn.lookup(spec.uuid).state
    # Release: put the original back, exactly.
    conn.set_interface(spec.uuid, before.config_xml or "", live=False, config=True)
    assert conn.nic_snapshot(spec.uuid)[0].config_xml == before.config_xml
    if spec.kind == "off":
        assert conn.lookup(spec.uuid).nics[0].network == spec.network


def test_set_interface_errors(conn: LibvirtConnector) -> None:
    new = quarantine_interface(conn.nic_snapshot(TRANS0.uuid)[0].live_xml or "", "q")
    with pytest.raises(ConnectorError, match="transient"):
        conn.set_interface(TRANS0.uuid, new, live=False, config=True)
    with pytest.raises(ConnectorError, match="neither live nor config"):
        conn.set_interface(RUN0.uuid, new, live=False, config=False)
    other = new.replace(TRANS0.mac, "52:54:00:ff:ff:ff")
    with pytest.raises(ConnectorError, match="no <interface> with MAC"):
        conn.set_interface(RUN0.uuid, other, live=False, config=True)
    with pytest.raises(DomainGoneError):
        conn.set_interface("00000000-0000-4000-8000-999999999999", new, live=False, config=True)


def test_operations_on_missing_domain_raise_domain_gone(conn: LibvirtConnector) -> None:
    gone = "00000000-0000-4000-8000-999999999999"
    for op in (conn.pause, conn.resume, conn.shutdown, conn.destroy, conn.get_metadata):
        with pytest.raises(DomainGoneError):
            op(gone)


def test_unreachable_uri_is_a_clean_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.xml"
    with pytest.raises(UnreachableError) as info:
        LibvirtConnector(f"test://{missing}", retries=3, backoff=0.01)
    message = str(info.value)
    assert message.startswith(f"cannot connect to test://{missing}: ")
    assert "Traceback" not in message and "\n" not in message
    assert info.value.hint
    assert info.value.__cause__ is None and info.value.__context__ is None  # no libvirt chain


def test_closed_connector_says_so(fleet_uri: str) -> None:
    connector = open_connector(fleet_uri)
    connector.close()
    connector.close()  # idempotent
    with pytest.raises(ConnectorError, match="is closed"):
        connector.inventory()


def test_two_fleet_files_are_two_hosts(tmp_path: Path) -> None:
    a = write_fleet(tmp_path / "rack-a.xml", fleet_vms()[:3], bare=False)
    b = write_fleet(tmp_path / "rack-b.xml", fleet_vms()[3:5], bare=False)
    with open_connector(f"test://{a}") as ca, open_connector(f"test://{b}") as cb:
        assert (ca.host, len(ca.inventory().vms)) == ("rack-a", 3)
        assert (cb.host, len(cb.inventory().vms)) == ("rack-b", 2)


def test_network_without_ip_does_not_crash_the_test_driver(tmp_path: Path) -> None:
    """libvirt 9.0's test driver SIGSEGVs in interfaceAddresses for a NIC on a network
    without <ip>; the connector must not ask. Run in a child so a crash fails, not kills."""
    fleet = tmp_path / "isolated.xml"
    fleet.write_text(
        "<node><domain type='test'><name>iso-vm</name><memory>1024</memory>"
        "<os><type>hvm</type></os><devices>"
        "<interface type='network'><mac address='52:54:00:00:0e:01'/>"
        "<source network='isolated'/></interface>"
        "<interface type='bridge'><mac address='52:54:00:00:0e:02'/>"
        "<source bridge='br0'/></interface></devices></domain>"
        "<network><name>isolated</name><bridge name='virbr7'/></network></node>"
    )
    code = (
        "from vmwarden.connectors.libvirt.connection import LibvirtConnector\n"
        f"c = LibvirtConnector('test://{fleet}')\n"
        "vm, = c.inventory().vms\n"
        "assert [n.addresses for n in vm.nics] == [[], []], vm.nics\n"
        "assert c.lookup('iso-vm').nics[0].addresses == []\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
