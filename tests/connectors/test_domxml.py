"""The domain XML reader against libvirt's own test XMLs (the corpus) and its traps."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import corpus_files, needs_corpus
from vmwarden.connectors.libvirt.domxml import (
    meta_from_xml,
    meta_to_xml,
    parse_domain,
    scaled_to_bytes,
)
from vmwarden.errors import ConnectorError
from vmwarden.model import VM, State, VmMeta
from vmwarden.model.vm import VM_XMLNS

CORPUS_FILES = corpus_files()


def parse(corpus_dir: Path, name: str) -> VM:
    return parse_domain(
        (corpus_dir / name).read_bytes(),
        host="h1",
        uri="test:///h1.xml",
        state=State.SHUTOFF,
        persistent=True,
    )


def disk(vm: VM, target: str):
    (found,) = [d for d in vm.disks if d.target == target]
    return found


def test_corpus_is_all_there(corpus_dir: Path) -> None:
    assert len(list(corpus_dir.glob("*.xml"))) == 97


@needs_corpus
@pytest.mark.parametrize("path", CORPUS_FILES or [None], ids=lambda p: getattr(p, "name", "none"))
def test_every_corpus_file_parses(path: Path) -> None:
    vm = parse_domain(path.read_text(), host="h", uri="u", state=State.RUNNING, persistent=False)
    assert vm.name and vm.id
    assert vm.host == "h" and vm.uri == "u" and vm.state is State.RUNNING and not vm.persistent
    assert vm.memory_kib is not None and vm.memory_kib > 0
    for d in vm.disks:
        assert d.target, "every corpus disk has a target"
        assert all(layer.path for layer in d.chain[:1])
    for nic in vm.nics:
        assert nic.mac and nic.mac == nic.mac.lower()
        assert nic.link in {"up", "down"}
    # The record is JSON-ready.
    assert vm.to_dict()["id"] == vm.id


def test_backing_chains_depths_and_formats(corpus_dir: Path) -> None:
    vm = parse(corpus_dir, "disk-backing-chains.xml")
    assert [len(d.chain) for d in vm.disks] == [2, 7, 1, 2, 1]
    vdb = disk(vm, "vdb")
    assert [layer.path for layer in vdb.chain] == [
        "nbd+unix:///bar?socket=/var/run/nbdsock",
        "/dev/HostVG/QEMUGuest1",
        "/tmp/image2.qcow",
        "/tmp/image3.qcow",
        "/tmp/image4.qcow",
        "/tmp/image5.qcow",
        "/tmp/Fedora-17-x86_64-Live-KDE.iso",
    ]
    assert [layer.format for layer in vdb.chain] == ["qcow2"] * 6 + ["raw"]
    assert [layer.type for layer in vdb.chain] == ["network", "block"] + ["file"] * 5
    assert vdb.root is not None and vdb.root.path == "/tmp/Fedora-17-x86_64-Live-KDE.iso"
    # An empty <backingStore/> before the source: no backing layer.
    assert [layer.path for layer in disk(vm, "vdc").chain] == [
        "gluster://example.org:6000/Volume1/Image"
    ]
    assert disk(vm, "vdd").chain[0].path == "rbd://mon1.example.org:6321/pool/image"
    assert disk(vm, "vdd").root.path == "/tmp/image.qcow"


def test_twelve_deep_chain(corpus_dir: Path) -> None:
    vdf = disk(parse(corpus_dir, "disk-backing-chains-noindex.xml"), "vdf")
    assert len(vdf.chain) == 12
    assert vdf.source == "/var/lib/libvirt/images/rhel7.1484071880"
    assert vdf.root.path == "/var/lib/libvirt/images/rhel7.qcow2"
    vdb = disk(parse(corpus_dir, "disk-backing-chains-noindex.xml"), "vdb")
    assert vdb.chain[2].format == "vmdk"


def test_mirror_is_not_part_of_the_chain(corpus_dir: Path) -> None:
    vm = parse(corpus_dir, "disk-mirror.xml")
    assert all(len(d.chain) == 1 for d in vm.disks)
    assert disk(vm, "vda").source == "/tmp/data.img"
    assert disk(vm, "hda").source == "/dev/HostVG/QEMUGuest1"


def test_reservations_source_is_not_the_disk_source(corpus_dir: Path) -> None:
    vm = parse(corpus_dir, "disk-virtio-scsi-reservations.xml")
    assert [(d.target, d.device, d.bus, d.source) for d in vm.disks] == [
        ("sda", "lun", "scsi", "/dev/HostVG/QEMUGuest1"),
        ("sdb", "lun", "scsi", "/dev/HostVG/QEMUGuest2"),
    ]


def test_network_disks(corpus_dir: Path) -> None:
    nbd = parse(corpus_dir, "disk-network-nbd.xml")
    assert [d.source for d in nbd.disks] == [
        "nbd://example.org:6000",
        "nbd://example.org:6000/bar",
        "nbd://[::1]:6000",
        "nbd://[::1]:6000/bar",
        "nbd+unix:///bar?socket=/var/run/nbdsock",
    ]
    iscsi = parse(corpus_dir, "disk-network-iscsi.xml")
    assert disk(iscsi, "sda").device == "lun"
    assert disk(iscsi, "vdb").source == "iscsi://example.org:6000/iqn.1992-01.com.example/1"
    curl = parse(corpus_dir, "disk-network-source-curl.xml")
    assert disk(curl, "vde").source == "https://https.example.org:8443/path/to/disk5.iso?foo=bar"
    assert disk(curl, "vde").encrypted  # luks inside <source>


def test_volume_nvme_dir_and_empty_cdroms(corpus_dir: Path) -> None:
    pool = parse(corpus_dir, "disk-source-pool.xml")
    assert disk(pool, "vda").source == "pool-disk/dir+vol1"
    assert disk(pool, "vda").type == "volume" and disk(pool, "vda").readonly
    assert disk(pool, "hda").source == "pool-disk/block+cdrom"  # attributes in odd order
    assert disk(pool, "hdc").chain == []  # volume cdrom with no medium
    nvme = parse(corpus_dir, "disk-nvme.xml")
    assert disk(nvme, "vdd").source == "nvme://0001:02:00.0/2" and disk(nvme, "vdd").encrypted
    fat = parse(corpus_dir, "floppy-drive-fat.xml")
    assert (fat.disks[0].type, fat.disks[0].source, fat.disks[0].chain[0].format) == (
        "dir",
        "/var/somefiles",
        "fat",
    )
    cdrom = parse(corpus_dir, "disk-cdrom.xml")
    assert [d.source for d in cdrom.disks] == [
        "/dev/HostVG/QEMUGuest1",
        "/root/boot.iso",
        None,
        None,
    ]


def test_encryption_in_disk_and_in_source(corpus_dir: Path) -> None:
    assert parse(corpus_dir, "encrypted-disk.xml").disks[0].encrypted
    luks = parse(corpus_dir, "luks-disks-source-qcow2.xml")
    assert all(d.encrypted for d in luks.disks if d.device == "disk")
    aliases = parse(corpus_dir, "user-aliases.xml")
    assert [d.target for d in aliases.disks if d.encrypted] == ["vdb"]


def test_many_disks_and_no_devices(corpus_dir: Path) -> None:
    many = parse(corpus_dir, "pci-bridge-many-disks.xml")
    assert len(many.disks) == 105 and many.nics == []
    assert many.vcpus is None  # no <vcpu> element: unknown, not guessed
    bare = parse(corpus_dir, "arm-vexpressa9-nodevs.xml")
    assert (bare.disks, bare.nics, bare.arch) == ([], [], "armv7l")
    assert bare.memory_kib == 1048576  # <memory> without unit is KiB


def test_vlan_tags_and_portgroups(corpus_dir: Path) -> None:
    ovs = parse(corpus_dir, "net-openvswitch.xml").nics[0]
    assert (ovs.type, ovs.network, ovs.vlan, ovs.model) == (
        "network",
        "openvswitch-net;plug-bridge-basic",
        [42, 48, 456],
        "rtl8139",
    )
    pg = parse(corpus_dir, "net-virtio-network-portgroup.xml").nics
    assert [(n.mac, n.network, n.portgroup, n.vlan) for n in pg] == [
        ("00:11:22:33:44:55", "rednet", "bob", [4095]),
        ("10:11:22:33:44:55", "blue", "sam", []),
        ("22:11:22:33:44:55", "blue", "sam", []),
    ]
    hostdev = parse(corpus_dir, "net-hostdev.xml").nics[0]
    assert (hostdev.type, hostdev.vlan) == ("hostdev", [42])


def test_hostdev_interfaces_are_not_nics(corpus_dir: Path) -> None:
    vm = parse(corpus_dir, "lxcconf2xml-miscnetwork.xml")
    assert len(vm.nics) == 1
    nic = vm.nics[0]
    assert (nic.type, nic.source_dev, nic.mac, nic.link) == (
        "direct",
        "eth0",
        "02:00:15:8f:05:c1",
        "up",
    )
    assert (vm.os_type, vm.arch, vm.disks) == ("exe", None, [])


def test_nic_fields(corpus_dir: Path) -> None:
    eth = parse(corpus_dir, "net-eth-ifname.xml").nics[0]
    assert (eth.type, eth.target_dev, eth.model) == ("ethernet", "nic02", "rtl8139")
    assert parse(corpus_dir, "net-client.xml").nics[0].model is None
    assert parse(corpus_dir, "net-midonet.xml").nics[0].bridge == "midonet"
    vdpa = parse(corpus_dir, "net-vdpa.xml").nics[0]
    assert (vdpa.type, vdpa.source_dev) == ("vdpa", "/dev/vhost-vdpa-0")
    dup = parse(corpus_dir, "net-many-models.xml").nics
    assert len(dup) == 6 and len({n.mac for n in dup}) == 4  # duplicate MACs kept


def test_link_down_is_read() -> None:
    xml = """<domain><name>x</name><uuid>C0FFEE00-0000-4000-8000-000000000001</uuid>
      <devices><interface type='bridge'><mac address='52:54:00:AA:BB:CC'/>
      <source bridge='br0'/><link state='down'/></interface></devices></domain>"""
    vm = parse_domain(xml, host="h", uri="u", state=State.RUNNING, persistent=True)
    assert vm.id == "c0ffee00-0000-4000-8000-000000000001"
    assert (vm.nics[0].mac, vm.nics[0].link, vm.nics[0].bridge) == (
        "52:54:00:aa:bb:cc",
        "down",
        "br0",
    )


@pytest.mark.parametrize(
    ("value", "unit", "kib"),
    [("512", "MiB", 524288), ("1", "G", 1048576), ("1000000", "KB", 976563), ("2048", "b", 2)],
)
def test_memory_units(value: str, unit: str, kib: int) -> None:
    xml = f"<domain><name>m</name><memory unit='{unit}'>{value}</memory></domain>"
    assert (
        parse_domain(xml, host="h", uri="u", state=State.SHUTOFF, persistent=True).memory_kib == kib
    )


def test_scaled_to_bytes_unknown_is_none() -> None:
    assert scaled_to_bytes("12", "furlongs") is None
    assert scaled_to_bytes("lots", "KiB") is None
    assert scaled_to_bytes(None, None) is None


def test_foreign_metadata_is_ignored(corpus_dir: Path) -> None:
    assert parse(corpus_dir, "metadata.xml").meta == VmMeta()
    assert parse(corpus_dir, "metadata-duplicate.xml").meta == VmMeta()


def test_vmwarden_metadata_is_read() -> None:
    xml = f"""<domain><name>m</name><metadata>
      <other:x xmlns:other="http://example.com/">noise</other:x>
      <vmwarden:vm xmlns:vmwarden="{VM_XMLNS}">
        <vmwarden:owner>alice</vmwarden:owner>
        <vmwarden:classification>pci</vmwarden:classification>
        <vmwarden:template>debian12-base</vmwarden:template>
        <vmwarden:registered>no</vmwarden:registered>
        <vmwarden:tag name="quarantined-by">rule-1</vmwarden:tag>
      </vmwarden:vm></metadata></domain>"""
    meta = parse_domain(xml, host="h", uri="u", state=State.SHUTOFF, persistent=True).meta
    assert meta == VmMeta("alice", "pci", "debian12-base", False, {"quarantined-by": "rule-1"})


def test_meta_xml_round_trip() -> None:
    meta = VmMeta("bob <&>", "internal", None, True, {"b": "2", "a": "1"})
    xml = meta_to_xml(meta)
    root = etree.fromstring(xml)
    assert root.tag == "vm" and root.nsmap == {}  # libvirt adds the namespace itself
    assert [c.tag for c in root] == ["owner", "classification", "registered", "tag", "tag"]
    assert meta_from_xml(xml) == meta
    assert meta_from_xml(meta_to_xml(VmMeta())) == VmMeta()


@pytest.mark.parametrize(
    "xml",
    ["", "<domain><name>x</name>", "<notadomain/>", "<domain/>", b"\x00\x01"],
)
def test_malformed_xml_is_a_connector_error(xml: str | bytes) -> None:
    with pytest.raises(ConnectorError, match="malformed"):
        parse_domain(xml, host="h", uri="u", state=State.SHUTOFF, persistent=True)


def test_str_with_encoding_declaration_parses() -> None:
    xml = "<?xml version='1.0' encoding='UTF-8'?><domain><name>é</name></domain>"
    assert parse_domain(xml, host="h", uri="u", state=State.SHUTOFF, persistent=True).name == "é"


def test_entities_are_not_expanded() -> None:
    xml = """<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>
      <domain><name>x</name><description>&e;</description></domain>"""
    vm = parse_domain(xml, host="h", uri="u", state=State.SHUTOFF, persistent=True)
    assert vm.name == "x"
