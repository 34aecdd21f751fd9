"""Interface XML surgery for release: put back the original NIC, keeping the live handles.

A live ``updateDeviceFlags`` must name the same tap device and alias the running NIC has; the
original XML we journaled may come from the persistent config (VM was off at quarantine time),
which has none. So the restore copies ``<target>`` and ``<alias>`` from the current live NIC.
"""

from __future__ import annotations

from lxml import etree

_LIVE_HANDLES = ("target", "alias")


def with_live_handles(desired_xml: str, current_live_xml: str | None) -> str:
    """``desired_xml`` with ``<target>``/``<alias>`` taken from the current live interface."""
    if not current_live_xml:
        return desired_xml
    desired = etree.fromstring(desired_xml.encode())
    current = etree.fromstring(current_live_xml.encode())
    for tag in _LIVE_HANDLES:
        for old in desired.findall(tag):
            desired.remove(old)
        live = current.find(tag)
        if live is not None:
            desired.append(live)
    return etree.tostring(desired, encoding="unicode")


def with_link_of(desired_xml: str, source_xml: str | None) -> str:
    """``desired_xml`` with the ``<link>`` of ``source_xml`` (none there: no ``<link>``, up)."""
    desired = etree.fromstring(desired_xml.encode())
    for old in desired.findall("link"):
        desired.remove(old)
    link = None if not source_xml else etree.fromstring(source_xml.encode()).find("link")
    if link is not None:
        link.tail = None
        desired.append(link)
    return etree.tostring(desired, encoding="unicode")


def link_state(xml: str) -> str:
    """``up`` or ``down`` as libvirt reads ``<link state>`` (absent: up)."""
    link = etree.fromstring(xml.encode()).find("link")
    return "up" if link is None else link.get("state", "up")


def describe(xml: str | None) -> str:
    """Where a NIC is attached, for people: ``network 'prod' (portgroup web, vlan 42), link up``."""
    if xml is None:
        return "absent"
    type_, where, portgroup, state, tags = _essence(xml)
    extra = ", ".join(
        part for part in (portgroup and f"portgroup {portgroup}", tags and f"vlan {tags}") if part
    )
    place = f"{type_} {where!r}" if where else type_
    return f"{place}{f' ({extra})' if extra else ''}, link {state}"


def same_interface(a: str | None, b: str | None) -> bool:
    """Whether two interface XMLs mean the same attachment (type, source, link, vlan, port)."""
    if a is None or b is None:
        return a is b
    return _essence(a) == _essence(b)


def _essence(xml: str) -> tuple[str, ...]:
    """What decides where a NIC is attached; ignores what libvirt adds live (portid, bridge)."""
    el = etree.fromstring(xml.encode())
    kind = el.get("type", "")
    src = el.find("source")
    key = {"network": "network", "bridge": "bridge", "direct": "dev"}.get(kind, "")
    where = "" if src is None or not key else src.get(key, "")
    portgroup = "" if src is None else src.get("portgroup", "")
    link = el.find("link")
    state = "up" if link is None else link.get("state", "up")
    tags = ",".join(t.get("id", "") for t in el.iterfind("vlan/tag"))
    return (kind, where, portgroup, state, tags)
