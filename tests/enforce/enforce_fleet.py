"""The enforce tests' estate: a small test-driver fleet file and readers of its NICs.

The libvirt test driver reads the file on every open and keeps changes in memory only, so a
test reads back what quarantine did through the *same* connector it quarantined with. The
crash tests run the enforcement step in a child process; there ``PersistingConnector``
writes each persistent NIC change back into the file, as a real hypervisor would keep it
after vmwarden died (the test driver itself forgets everything when the process exits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lxml import etree

from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.engine.fleetgen import FleetNic, FleetVM, write_fleet

NETWORKS = ("prod", "pci", "quarantine")

OFF = "11111111-1111-4111-8111-000000000001"  # shut off, persistent, two NICs
RUN = "11111111-1111-4111-8111-000000000002"  # running, one NIC
PAUSED = "11111111-1111-4111-8111-000000000003"  # paused
SPARE = "11111111-1111-4111-8111-000000000004"  # running, no NICs (executor tests)

MAC_VLAN = "52:54:00:0a:00:01"  # prod, portgroup web, VLAN 42
MAC_DOWN = "52:54:00:0a:00:02"  # pci, link down
MAC_RUN = "52:54:00:0a:00:03"
MAC_PAUSED = "52:54:00:0a:00:04"
MAC_HOTPLUG = "52:54:00:0a:00:99"


def build_fleet(path: Path) -> Path:
    """Write the fleet; the second NIC of ``OFF`` gets ``<link state='down'/>``."""
    vms = [
        FleetVM(
            uuid=OFF,
            name="rogue-off",
            state="shutoff",
            nics=[
                FleetNic(MAC_VLAN, "prod", portgroup="web", vlan=42),
                FleetNic(MAC_DOWN, "pci"),
            ],
        ),
        FleetVM(uuid=RUN, name="rogue-run", state="running", nics=[FleetNic(MAC_RUN, "prod")]),
        FleetVM(
            uuid=PAUSED, name="rogue-paused", state="paused", nics=[FleetNic(MAC_PAUSED, "prod")]
        ),
        FleetVM(uuid=SPARE, name="spare", state="running"),
    ]
    written = write_fleet(path, vms, NETWORKS)
    tree = etree.parse(str(written))
    (iface,) = tree.xpath(f"//interface[mac/@address='{MAC_DOWN}']")
    etree.SubElement(iface, "link", state="down")
    tree.write(str(written))
    return written


def interfaces(conn: LibvirtConnector, vm_id: str, *, live: bool = False) -> dict[str, str]:
    """MAC → ``<interface>`` XML of the definition (or of the running VM with ``live``)."""
    return {
        snap.mac: snap.live_xml if live else snap.config_xml
        for snap in conn.nic_snapshot(vm_id)
        if (snap.live_xml if live else snap.config_xml) is not None
    }


def attachment(xml: str) -> dict[str, Any]:
    """What an operator cares about in one ``<interface>``: where it is and how."""
    el = etree.fromstring(xml.encode())
    src = el.find("source")
    link = el.find("link")
    return {
        "type": el.get("type"),
        "network": None if src is None else src.get("network"),
        "portgroup": None if src is None else src.get("portgroup"),
        "vlan": [t.get("id") for t in el.iterfind("vlan/tag")],
        "link": "up" if link is None else link.get("state"),
    }


def hot_add_nic(conn: LibvirtConnector, vm_id: str, mac: str, network: str) -> None:
    """Redefine the (shut-off) domain with one more NIC, as an operator's virsh edit would."""
    import libvirt

    dom = conn.conn.lookupByUUIDString(vm_id)
    root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    devices = root.find("devices")
    assert devices is not None
    iface = etree.SubElement(devices, "interface", type="network")
    etree.SubElement(iface, "mac", address=mac)
    etree.SubElement(iface, "source", network=network)
    etree.SubElement(iface, "model", type="virtio")
    conn.conn.defineXML(etree.tostring(root, encoding="unicode"))


class PersistingConnector(LibvirtConnector):
    """A real test-driver connector that also writes each definition change to its file."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"test://{path}")
        self.path = path

    def set_interface(self, vm_id: str, iface_xml: str, *, live: bool, config: bool) -> None:
        super().set_interface(vm_id, iface_xml, live=live, config=config)
        if config:
            self._write_back(vm_id, iface_xml)

    def _write_back(self, vm_id: str, iface_xml: str) -> None:
        new = etree.fromstring(iface_xml.encode())
        mac = new.find("mac").get("address")  # type: ignore[union-attr]
        tree = etree.parse(str(self.path))
        (old,) = tree.xpath(f"//domain[uuid='{vm_id}']/devices/interface[mac/@address='{mac}']")
        new.tail = old.tail
        old.getparent().replace(old, new)
        tmp = self.path.with_suffix(".tmp")
        tree.write(str(tmp))
        tmp.replace(self.path)
