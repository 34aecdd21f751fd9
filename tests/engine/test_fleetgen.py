"""Fleet files opened by the real libvirt test driver."""

from __future__ import annotations

import uuid

import libvirt
import pytest
from lxml import etree

from vmwarden.engine.fleetgen import (
    FLEET_NETWORKS,
    FleetDisk,
    FleetMeta,
    FleetNic,
    FleetPool,
    FleetVM,
    FleetVolume,
    generate_fleet,
    write_fleet,
    write_generated_fleet,
)
from vmwarden.model.vm import VM_XMLNS

RUNNING, PAUSED, SHUTOFF = (
    libvirt.VIR_DOMAIN_RUNNING,
    libvirt.VIR_DOMAIN_PAUSED,
    libvirt.VIR_DOMAIN_SHUTOFF,
)


def open_fleet(path):
    return libvirt.openReadOnly(f"test://{path}")


def vm(name, **kw):
    return FleetVM(uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), name=name, **kw)


@pytest.fixture
def small_fleet(tmp_path):
    vms = [
        vm(
            "web01",
            state="running",
            vcpus=2,
            memory=1048576,
            disks=[FleetDisk("/srv/images/web01.qcow2"), FleetDisk("/srv/images/d.img", "raw")],
            nics=[FleetNic("52:54:00:00:00:01", "prod", portgroup="web", vlan=42)],
            metadata=FleetMeta(
                owner="alice", classification="pci", template="debian12-base", registered=True
            ),
        ),
        vm("db01", state="paused", metadata=FleetMeta(owner="bob", registered=False)),
        vm("old01", state="shutoff", nics=[FleetNic("52:54:00:00:00:03", "pci")]),
        vm("tmp01", state="running", transient=True, nics=[FleetNic("52:54:00:00:00:04", "dmz")]),
        vm("tmp02", state="paused", transient=True),
    ]
    pools = [
        FleetPool(
            "images",
            "/srv/images",
            [
                FleetVolume(
                    "web01.qcow2",
                    "/srv/images/web01.qcow2",
                    allocation=196608,
                    backing="/srv/images/base.qcow2",
                    backing_format="qcow2",
                ),
                FleetVolume("base.qcow2", "/srv/images/base.qcow2"),
            ],
        )
    ]
    return write_fleet(tmp_path / "hv1.xml", vms, FLEET_NETWORKS, pools)


def test_counts_states_and_transience(small_fleet):
    conn = open_fleet(small_fleet)
    doms = {d.name(): d for d in conn.listAllDomains()}
    assert sorted(doms) == ["db01", "old01", "tmp01", "tmp02", "web01"]
    assert {n: d.state()[0] for n, d in doms.items()} == {
        "web01": RUNNING,
        "db01": PAUSED,
        "old01": SHUTOFF,
        "tmp01": RUNNING,
        "tmp02": PAUSED,
    }
    assert {n for n, d in doms.items() if not d.isPersistent()} == {"tmp01", "tmp02"}
    assert not doms["old01"].isActive()
    assert doms["web01"].isActive()


def test_metadata_element(small_fleet):
    conn = open_fleet(small_fleet)
    web = conn.lookupByName("web01")
    meta = etree.fromstring(web.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, VM_XMLNS))
    assert {child.tag: child.text for child in meta} == {
        "owner": "alice",
        "classification": "pci",
        "template": "debian12-base",
        "registered": "yes",
    }
    db = etree.fromstring(
        conn.lookupByName("db01").metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, VM_XMLNS)
    )
    assert {child.tag: child.text for child in db} == {"owner": "bob", "registered": "no"}
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName("old01").metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, VM_XMLNS)


def test_devices(small_fleet):
    conn = open_fleet(small_fleet)
    web = conn.lookupByName("web01")
    xml = etree.fromstring(web.XMLDesc())
    assert web.UUIDString() == str(uuid.uuid5(uuid.NAMESPACE_DNS, "web01"))
    assert xml.findtext("vcpu") == "2"
    assert web.maxMemory() == 1048576
    disks = xml.findall("devices/disk")
    assert [d.find("source").get("file") for d in disks] == [
        "/srv/images/web01.qcow2",
        "/srv/images/d.img",
    ]
    assert [d.find("driver").get("type") for d in disks] == ["qcow2", "raw"]
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]
    (nic,) = xml.findall("devices/interface")
    assert nic.find("mac").get("address") == "52:54:00:00:00:01"
    assert nic.find("source").get("network") == "prod"
    assert nic.find("source").get("portgroup") == "web"
    assert nic.find("vlan/tag").get("id") == "42"


def test_networks_and_pools(small_fleet):
    conn = open_fleet(small_fleet)
    nets = {n.name(): n for n in conn.listAllNetworks()}
    assert sorted(nets) == sorted(FLEET_NETWORKS)
    assert all(n.isActive() for n in nets.values())
    (pool,) = conn.listAllStoragePools()
    assert pool.name() == "images" and pool.isActive()
    vols = {v.name(): etree.fromstring(v.XMLDesc()) for v in pool.listAllVolumes()}
    assert sorted(vols) == ["base.qcow2", "web01.qcow2"]
    assert vols["web01.qcow2"].findtext("backingStore/path") == "/srv/images/base.qcow2"
    assert vols["web01.qcow2"].findtext("target/path") == "/srv/images/web01.qcow2"


def test_interface_addresses_do_not_crash_the_driver(small_fleet):
    """The test driver dereferences the network's <ip> without checking it exists."""
    conn = open_fleet(small_fleet)
    addrs = conn.lookupByName("tmp01").interfaceAddresses(
        libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE
    )
    assert addrs


def test_transient_shutoff_is_refused(tmp_path):
    with pytest.raises(ValueError, match="transient"):
        write_fleet(tmp_path / "x.xml", [vm("a", state="shutoff", transient=True)], [])


def test_unknown_state_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"valid: .*running"):
        write_fleet(tmp_path / "x.xml", [vm("a", state="sleeping")], [])


def test_duplicate_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        write_fleet(tmp_path / "x.xml", [vm("a"), vm("a")], [])


def test_escaping(tmp_path):
    odd = vm("a&b<c>", metadata=FleetMeta(owner='o\'brien & "co"'))
    path = write_fleet(tmp_path / "x.xml", [odd], [])
    conn = open_fleet(path)
    dom = conn.lookupByName("a&b<c>")
    meta = etree.fromstring(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, VM_XMLNS))
    assert meta.findtext("owner") == 'o\'brien & "co"'


def test_generated_fleet_is_deterministic_and_varied(tmp_path):
    a = write_generated_fleet(tmp_path / "a", 300, seed=7, hosts=3)
    b = write_generated_fleet(tmp_path / "b", 300, seed=7, hosts=3)
    assert [p.name for p in a] == ["hv-00.xml", "hv-01.xml", "hv-02.xml"]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    c = write_generated_fleet(tmp_path / "c", 300, seed=8, hosts=3)
    assert a[0].read_bytes() != c[0].read_bytes()

    total, states, transient, macs = 0, set(), 0, []
    for path in a:
        conn = open_fleet(path)
        for dom in conn.listAllDomains():
            total += 1
            states.add(dom.state()[0])
            transient += not dom.isPersistent()
            xml = etree.fromstring(dom.XMLDesc())
            macs += [m.get("address") for m in xml.findall("devices/interface/mac")]
    assert total == 300
    assert states == {RUNNING, PAUSED, SHUTOFF}
    assert 0 < transient < 300
    assert len(macs) == len(set(macs))


def test_generate_fleet_named_hosts():
    fleet = generate_fleet(10, seed=1, hosts=["a", "b"])
    assert sorted(fleet) == ["a", "b"]
    assert sum(len(v) for v in fleet.values()) == 10
    meta = [vm.metadata for vms in fleet.values() for vm in vms]
    assert all(m is None or m.classification in {"internal", "pci", "public"} for m in meta)


def test_50k_vms_fleet_is_complete(tmp_path):
    (path,) = write_generated_fleet(tmp_path, 50_000, seed=1)
    assert path.read_bytes().count(b"<domain type='test'") == 50_000
