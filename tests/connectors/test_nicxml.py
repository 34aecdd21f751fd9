"""Moving a NIC to the quarantine network, on the NICs of libvirt's own test XMLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import corpus_files, needs_corpus
from vmwarden.connectors.libvirt.domxml import parse_domain
from vmwarden.connectors.libvirt.nicxml import (
    iface_mac,
    interface_by_mac,
    interface_macs,
    quarantine_interface,
    replace_interface,
)
from vmwarden.errors import ConnectorError
from vmwarden.model import State

NIC_FILES = corpus_files("<interface")


def corpus_nics() -> list[tuple[str, str, str]]:
    out = []
    for path in NIC_FILES:
        xml = path.read_text()
        for mac in dict.fromkeys(interface_macs(xml)):
            out.append((path.name, mac, interface_by_mac(xml, mac) or ""))
    return out


@needs_corpus
@pytest.mark.parametrize(
    ("name", "mac", "iface"), corpus_nics() or [("none", "", "")], ids=lambda v: str(v)[:40]
)
def test_quarantine_every_corpus_nic(name: str, mac: str, iface: str) -> None:
    out = etree.fromstring(quarantine_interface(iface, "quarantine"))
    old = etree.fromstring(iface)
    assert out.get("type") == "network"
    assert [s.attrib for s in out.findall("source")] == [{"network": "quarantine"}]
    assert [link.get("state") for link in out.findall("link")] == ["down"]
    assert out.find("mac").get("address").lower() == mac
    for gone in ("vlan", "virtualport", "bandwidth"):
        assert out.find(gone) is None
    for kept in ("model", "alias", "address", "target"):
        before = old.find(kept)
        after = out.find(kept)
        assert (None if before is None else dict(before.attrib)) == (
            None if after is None else dict(after.attrib)
        )


def test_quarantine_drops_old_network_settings(corpus_dir: Path) -> None:
    xml = (corpus_dir / "net-virtio-network-portgroup.xml").read_text()
    out = quarantine_interface(interface_by_mac(xml, "00:11:22:33:44:55") or "", "quar")
    assert "portgroup" not in out and "portid" not in out and "4095" not in out
    assert 'trustGuestRxFilters="yes"' in out  # unrelated attributes stay
    domain = f"<domain><name>x</name><devices>{out}</devices></domain>"
    (nic,) = parse_domain(domain, host="h", uri="u", state=State.RUNNING, persistent=True).nics
    assert (nic.type, nic.network, nic.portgroup, nic.vlan, nic.link, nic.model) == (
        "network",
        "quar",
        None,
        [],
        "down",
        "virtio",
    )


def test_quarantine_hostdev_nic_loses_passthrough_bits(corpus_dir: Path) -> None:
    xml = (corpus_dir / "net-hostdev-vfio.xml").read_text()
    out = etree.fromstring(quarantine_interface(interface_by_mac(xml, "00:11:22:33:44:55"), "q"))
    assert out.get("managed") is None and out.find("driver") is None
    assert out.find("source/address") is None


def test_quarantine_without_link_down_keeps_link(corpus_dir: Path) -> None:
    xml = (corpus_dir / "lxcconf2xml-macvlannetwork.xml").read_text()
    iface = interface_by_mac(xml, "02:00:15:8F:05:C1")  # matched case-insensitively
    assert iface is not None
    out = etree.fromstring(quarantine_interface(iface, "q", link_down=False))
    assert [link.get("state") for link in out.findall("link")] == ["up"]
    assert out.find("source").attrib == {"network": "q"}


def test_quarantine_rejects_non_interface_and_empty_network() -> None:
    with pytest.raises(ConnectorError, match="expected an <interface>"):
        quarantine_interface("<disk/>", "q")
    with pytest.raises(ConnectorError, match="empty"):
        quarantine_interface("<interface type='user'/>", "")
    with pytest.raises(ConnectorError, match="malformed"):
        quarantine_interface("<interface", "q")


def test_interface_by_mac_ignores_hostdev_interfaces(corpus_dir: Path) -> None:
    xml = (corpus_dir / "lxcconf2xml-miscnetwork.xml").read_text()
    assert interface_macs(xml) == ["02:00:15:8f:05:c1"]
    assert interface_by_mac(xml, "00:00:00:00:00:00") is None


def test_replace_interface_keeps_position_and_other_nics(corpus_dir: Path) -> None:
    xml = (corpus_dir / "net-virtio-network-portgroup.xml").read_text()
    mac = "10:11:22:33:44:55"
    new = quarantine_interface(interface_by_mac(xml, mac) or "", "quarantine")
    out = replace_interface(xml, mac.upper(), new)
    vm = parse_domain(out, host="h", uri="u", state=State.SHUTOFF, persistent=True)
    assert [(n.mac, n.network) for n in vm.nics] == [
        ("00:11:22:33:44:55", "rednet"),
        ("10:11:22:33:44:55", "quarantine"),
        ("22:11:22:33:44:55", "blue"),
    ]
    assert len(vm.disks) == 1


def test_replace_interface_refuses_unknown_or_ambiguous_mac(corpus_dir: Path) -> None:
    xml = (corpus_dir / "net-virtio-teaming-network.xml").read_text()
    iface = "<interface type='network'><mac address='00:11:22:33:44:55'/></interface>"
    with pytest.raises(ConnectorError, match="2 interfaces share MAC"):
        replace_interface(xml, "00:11:22:33:44:55", iface)
    with pytest.raises(ConnectorError, match="no <interface> with MAC"):
        replace_interface(xml, "00:00:00:00:00:01", iface)


def test_iface_mac() -> None:
    assert iface_mac("<interface><mac address='AA:BB:CC:DD:EE:FF'/></interface>") == (
        "aa:bb:cc:dd:ee:ff"
    )
    with pytest.raises(ConnectorError, match="no <mac"):
        iface_mac("<interface type='user'/>")
