"""Read the host-side libvirt objects (storage pools, volumes, networks) from their XML.

Pure functions, as ``domxml``: the connection passes XML text in and gets model records out.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from vmwarden.connectors.libvirt.domxml import parse_xml, scaled_to_bytes
from vmwarden.model.estate import Network, Pool, Volume


def parse_pool(xml: str | bytes, *, active: bool) -> Pool:
    """A ``<pool>`` (volumes are added by the caller: they need their own API calls)."""
    root = parse_xml(xml, "storage pool XML")
    return Pool(
        name=(root.findtext("name") or "").strip(),
        type=root.get("type") or "unknown",
        path=_strip(root.findtext("target/path")),
        active=active,
    )


def parse_volume(xml: str | bytes, *, pool: str) -> Volume:
    """A ``<volume>``; sizes in bytes, ``mtime`` from ``<timestamps>`` when the driver has it."""
    root = parse_xml(xml, "storage volume XML")
    name = (root.findtext("name") or "").strip()
    fmt = root.find("target/format")
    return Volume(
        name=name,
        path=_strip(root.findtext("target/path")) or _strip(root.findtext("key")) or name,
        pool=pool,
        format=fmt.get("type") if fmt is not None else None,
        capacity=_size(root.find("capacity")),
        allocation=_size(root.find("allocation")),
        mtime=_timestamp(root.findtext("target/timestamps/mtime")),
        backing=_strip(root.findtext("backingStore/path")),
    )


def parse_network(xml: str | bytes, *, active: bool) -> Network:
    """A ``<network>``. ``forward`` is None for an isolated network; ``<forward/>`` is nat."""
    root = parse_xml(xml, "network XML")
    bridge = root.find("bridge")
    forward = root.find("forward")
    return Network(
        name=(root.findtext("name") or "").strip(),
        bridge=(bridge.get("name") or None) if bridge is not None else None,
        active=active,
        forward=(forward.get("mode") or "nat") if forward is not None else None,
    )


def _strip(text: str | None) -> str | None:
    if text is None:
        return None
    return text.strip() or None


def _size(el: etree._Element | None) -> int | None:
    if el is None:
        return None
    return scaled_to_bytes(el.text, el.get("unit"), default_unit="bytes")


def _timestamp(text: str | None) -> datetime | None:
    """``<mtime>1700000000.123456789</mtime>`` (seconds.nanoseconds since the epoch), UTC."""
    if not text or not text.strip():
        return None
    try:
        return datetime.fromtimestamp(float(text.strip()), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
