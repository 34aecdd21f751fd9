"""Neutral records of network isolation (quarantine), shared by connectors and enforcement.

A connector isolates a VM NIC by NIC and hands back one ``IsolationRecord`` per NIC: a
JSON-serialisable mapping that holds whatever that platform needs to restore the NIC exactly
(libvirt: the ``<interface>`` XML before, live and persistent; vSphere: the portgroup and the
connected flags; EC2: the ENI's security groups) and the progress of its steps. Enforcement
journals these records durably and hands them back for crash repair and release; it never
reads inside them (``connectors.capabilities.records_of`` answers the two questions it has).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: One NIC's isolation record: JSON-serialisable, owned by the connector that made it.
IsolationRecord = dict[str, Any]


@dataclass(frozen=True, slots=True)
class QuarantineSpec:
    """The policy's ``quarantine:`` block: where isolated NICs go (libvirt: ``network``,
    with the link taken down when ``link_down``)."""

    network: str
    link_down: bool = True


@dataclass(frozen=True, slots=True)
class NicChange:
    """One NIC setting someone changed while vmwarden held it, in words for people.

    ``key``: the NIC (a MAC, a device key, an ENI id); ``scope``: which of its settings
    (libvirt: ``live`` / ``persistent``); ``now``, ``quarantined``, ``before``: the setting
    as changed, as quarantine set it, and as release would put it back (described by the
    connector, e.g. ``network 'prod' (vlan 42), link up``); ``reisolated``: a reconcile moved
    it back to quarantine since (the change was found then).
    """

    key: str
    scope: str
    now: str
    quarantined: str
    before: str
    reisolated: bool = False

    def describe(self) -> str:
        how = "was changed to" if self.reisolated else "is now"
        tail = " (vmwarden re-isolated it since)" if self.reisolated else ""
        return (
            f"NIC {self.key} {self.scope}: {how} {self.now}{tail}; "
            f"quarantine set {self.quarantined}; release would put back {self.before}"
        )
