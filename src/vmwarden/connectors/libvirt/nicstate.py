"""libvirt's per-NIC isolation records, read without a connection (pure XML, no libvirt).

A quarantine journals one record per NIC, opaque to everything outside this package:
``{"mac", "live_before", "config_before", "live", "config"[, "drift"]}`` — the NIC's
``<interface>`` XML before quarantine (live and persistent; None where the domain was off /
transient), the status of each of the two steps (``pending``, ``done``, ``skipped``, ``gone``,
``failed: …``) and, after a reconcile re-isolated a NIC someone had changed, the changed XML
(``drift``) so release reports it. This is the exact format journal entries had before the
connector contract existed, so old entries are read as they are.

``RECORDS`` (registered for every libvirt scheme) answers the two questions enforcement asks
without reading a record itself: which NIC it is (``key``) and where the NIC was before
(``origin``, for judging a held VM by the NICs it had). The XML helpers below are also what
``isolation`` compares and rewrites with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from vmwarden.connectors.capabilities import register_records
from vmwarden.connectors.libvirt.domxml import parse_interface
from vmwarden.connectors.libvirt.nicxml import quarantine_interface
from vmwarden.connectors.libvirt.schemes import SCHEMES
from vmwarden.model.vm import NicOrigin

STEPS = ("live", "config")  # the running VM's NIC, then the persistent definition's
SCOPE_NAME = {"live": "live", "config": "persistent"}
_LIVE_HANDLES = ("target", "alias")


@dataclass(frozen=True, slots=True)
class NicSnapshot:
    """A NIC's ``<interface>`` XML before an action changed it, so release can restore it.

    ``live_xml`` is None when the domain is not running; ``config_xml`` is None when it is
    transient (it has no persistent definition).
    """

    mac: str
    live_xml: str | None
    config_xml: str | None


class LibvirtRecords:
    """Reads libvirt isolation records for enforcement (see the module docstring)."""

    @staticmethod
    def key(record: Mapping[str, Any]) -> str:
        return str(record.get("mac") or "")

    @staticmethod
    def origin(record: Mapping[str, Any], network: str, *, live: bool) -> NicOrigin | None:
        """Where the NIC was before quarantine moved it to ``network``: None when nothing
        was recorded or it was on that network already; ``ConnectorError`` when the record
        is unreadable. ``live``: the VM runs, so its live original counts first."""
        first, second = (
            ("live_before", "config_before") if live else ("config_before", "live_before")
        )
        xml = record.get(first) or record.get(second)
        if not xml:
            return None
        before = parse_interface(xml)
        if before.type == "network" and before.network == network:
            return None
        return NicOrigin(
            type=before.type,
            network=before.network,
            bridge=before.bridge,
            source_dev=before.source_dev,
            portgroup=before.portgroup,
            vlan=list(before.vlan),
            link=before.link,
        )


RECORDS = register_records(*SCHEMES)(LibvirtRecords())


# --- interface XML helpers -------------------------------------------------------------


def original_of(nic: Mapping[str, Any], scope: str) -> str | None:
    """The recorded pre-quarantine XML of one scope (a VM started after quarantine has no
    live original: its original is the persistent one)."""
    return nic.get(f"{scope}_before") or nic.get("config_before") or nic.get("live_before")


def quarantined_xml(xml: str, network: str, link_down: bool) -> str:
    """What quarantine makes of ``xml``."""
    return quarantine_interface(xml, network, link_down=link_down)


def is_change(xml: str, before: str, network: str, link_down: bool) -> bool:
    """Whether ``xml`` is neither the pre-quarantine NIC nor what quarantine made of it."""
    return not same_interface(xml, before) and not same_interface(
        xml, quarantined_xml(before, network, link_down)
    )


def with_live_handles(desired_xml: str, current_live_xml: str | None) -> str:
    """``desired_xml`` with ``<target>``/``<alias>`` taken from the current live interface.

    A live ``updateDeviceFlags`` must name the same tap device and alias the running NIC
    has; the original we journaled may come from the persistent config (the VM was off at
    quarantine time), which has none."""
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
