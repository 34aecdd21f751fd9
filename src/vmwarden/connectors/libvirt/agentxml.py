"""Where a domain's XML says its QEMU guest agent channel stands; no libvirt import.

Kept apart from ``agent`` (which calls libvirt) because ``domxml`` is imported by the
admission decider, which must never load libvirt: libvirtd holds the domain's lock while
its hook waits for the decision.
"""

from __future__ import annotations

from lxml import etree

AGENT_CHANNEL = "org.qemu.guest_agent.0"


def agent_channel(devices: etree._Element | None) -> str | None:
    """The guest agent channel's state in a domain's ``<devices>``: ``connected``,
    ``disconnected``, ``unknown`` (defined, no state: the XML of a shut-off domain), or
    None when the domain has no agent channel."""
    if devices is None:
        return None
    for target in devices.iterfind("channel/target"):
        if target.get("name") == AGENT_CHANNEL:
            return target.get("state") or "unknown"
    return None
