"""Rewrite one ``<interface>``: move a NIC to the quarantine network, find and replace NICs.

Pure functions over XML text, used by the connector's ``set_interface`` and by enforcement
to build the quarantined definition (the original is kept by ``nic_snapshot`` for release).
NICs are matched by MAC address, compared case-insensitively, as libvirt itself does.
"""

from __future__ import annotations

import copy

from lxml import etree

from vmwarden.connectors.libvirt.domxml import parse_xml
from vmwarden.errors import ConnectorError

# Children that describe the *old* attachment and mean nothing (or something wrong) on a
# plain libvirt network: its source, VLAN, port profile, QoS, and the host-side settings of
# ethernet/user/socket back-ends.
_DROP = frozenset(
    {
        "source",
        "vlan",
        "virtualport",
        "bandwidth",
        "ip",
        "route",
        "portForward",
        "script",
        "downscript",
        "port",
        "local",
        "reconnect",
    }
)


def _serialize(el: etree._Element) -> str:
    return etree.tostring(el, encoding="unicode", with_tail=False)


def _iface_root(xml: str) -> etree._Element:
    root = parse_xml(xml, "interface XML")
    if root.tag != "interface":
        raise ConnectorError(f"expected an <interface> element, got <{root.tag}>")
    return root


def quarantine_interface(xml: str, network: str, *, link_down: bool = True) -> str:
    """The same NIC attached to libvirt network ``network`` (and link down by default).

    Kept: mac, model, alias, address, target, boot, rom, driver, mtu, filterref and tuning.
    Dropped: the old ``<source>`` (with its portgroup), ``<vlan>``, ``<virtualport>``,
    ``<bandwidth>`` and host-side back-end settings, which belong to the old network.
    """
    if not network:
        raise ConnectorError("quarantine network name is empty", hint="set quarantine.network")
    old = _iface_root(xml)
    old_type = old.get("type")
    attrs = {"type": "network"}
    for key, value in old.attrib.items():
        if key != "type" and not (key == "managed" and old_type == "hostdev"):
            attrs[key] = value
    new = etree.Element("interface", attrs)
    new.text, new.tail = old.text, None
    placed = False
    for child in old:
        if not isinstance(child.tag, str):
            continue
        tag = child.tag
        if tag == "link" and link_down:
            continue
        if tag == "driver" and old_type == "hostdev":
            continue  # <driver name='vfio'> is for PCI passthrough only
        if tag in _DROP:
            if tag == "source" and not placed:
                _add_source(new, network)
                placed = True
            continue
        new.append(copy.deepcopy(child))
        if tag == "mac" and not placed:
            _add_source(new, network)
            placed = True
    if not placed:
        _add_source(new, network)
    if link_down:
        etree.SubElement(new, "link", state="down")
    _reindent(new)
    return _serialize(new)


def _add_source(iface: etree._Element, network: str) -> None:
    etree.SubElement(iface, "source", network=network)


def _reindent(el: etree._Element) -> None:
    """Keep libvirt's two-space layout readable after children were dropped or added."""
    etree.indent(el, space="  ")


def _norm(mac: str) -> str:
    return mac.strip().lower()


def _interfaces(root: etree._Element, mac: str) -> list[etree._Element]:
    want = _norm(mac)
    found = []
    for iface in root.iterfind("devices/interface"):
        el = iface.find("mac")
        if el is not None and _norm(el.get("address") or "") == want:
            found.append(iface)
    return found


def interface_by_mac(domain_xml: str, mac: str) -> str | None:
    """The first ``<interface>`` with this MAC (serialized as in the domain), or None."""
    found = _interfaces(parse_xml(domain_xml, "domain XML"), mac)
    return _serialize(found[0]) if found else None


def interface_macs(domain_xml: str) -> list[str]:
    """MACs of the domain's NICs, in document order (lower case, duplicates kept)."""
    root = parse_xml(domain_xml, "domain XML")
    macs = []
    for iface in root.iterfind("devices/interface"):
        el = iface.find("mac")
        if el is not None and el.get("address"):
            macs.append(_norm(el.get("address") or ""))
    return macs


def iface_mac(iface_xml: str) -> str:
    """The MAC of an ``<interface>``; one is required to know which NIC to change."""
    el = _iface_root(iface_xml).find("mac")
    address = el.get("address") if el is not None else None
    if not address:
        raise ConnectorError(
            "the <interface> has no <mac address>; vmwarden matches NICs by MAC",
            hint="pass the interface XML from nic_snapshot or quarantine_interface",
        )
    return _norm(address)


def replace_interface(domain_xml: str, mac: str, new_iface_xml: str) -> str:
    """The domain XML with the NIC ``mac`` replaced by ``new_iface_xml`` (position kept).

    Raises ``ConnectorError`` when no NIC, or more than one, has that MAC.
    """
    root = parse_xml(domain_xml, "domain XML")
    found = _interfaces(root, mac)
    if not found:
        raise ConnectorError(f"no <interface> with MAC {mac} in the domain definition")
    if len(found) > 1:
        raise ConnectorError(
            f"{len(found)} interfaces share MAC {mac}; cannot tell which one to change",
            hint="give the NICs distinct MAC addresses",
        )
    old = found[0]
    new = _iface_root(new_iface_xml)
    new.tail = old.tail
    parent = old.getparent()
    if parent is None:  # pragma: no cover - found under devices/
        raise ConnectorError("interface without a parent element")
    parent.replace(old, new)
    return etree.tostring(root, encoding="unicode")
