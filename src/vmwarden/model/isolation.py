"""Neutral records of network isolation (quarantine), shared by connectors and enforcement.

A connector isolates a VM NIC by NIC and hands back one ``IsolationRecord`` per NIC: a
JSON-serialisable mapping that holds whatever that platform needs to restore the NIC exactly
(libvirt: the ``<interface>`` XML before, live and persistent; vSphere: the portgroup and the
connected flags; EC2: the ENI's security groups) and the progress of its steps. Enforcement
journals these records durably and hands them back for crash repair and release; it never
reads inside them (``connectors.capabilities.records_of`` answers the two questions it has).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

#: One NIC's isolation record: JSON-serialisable, owned by the connector that made it.
IsolationRecord = dict[str, Any]


@dataclass(frozen=True, slots=True)
class QuarantineSpec:
    """The policy's ``quarantine:`` block: where isolated NICs go (libvirt: ``network``,
    with the link taken down when ``link_down``). Each quarantine journals its spec
    (``to_journal``) and is repaired and released with *that* spec (``from_journal``), not
    today's policy; a field a platform adds (a vSphere portgroup, an EC2 security group)
    round-trips without enforcement knowing it."""

    network: str = ""  # libvirt: the isolated network ("" when the policy names none)
    link_down: bool = True
    vsphere_portgroup: str = ""  # vSphere: ``quarantine.vsphere.portgroup``
    aws_security_group: str = ""  # EC2: ``quarantine.aws.security_group`` (name, per VPC)

    def to_journal(self) -> dict[str, Any]:
        """The spec as the quarantine entry's ``changes`` keys (``network``, ``link_down``…)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        # a platform's field is written only when set: libvirt entries keep the keys they had
        return {k: v for k, v in out.items() if k in ("network", "link_down") or v}

    @classmethod
    def from_journal(
        cls, changes: Mapping[str, Any], default: QuarantineSpec | None = None
    ) -> QuarantineSpec:
        """The spec an entry was made with; what it lacks comes from ``default`` (entries
        older than a field), else the field's own default."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if changes.get(f.name) is not None:
                values[f.name] = changes[f.name]
            elif default is not None:
                values[f.name] = getattr(default, f.name)
        values.setdefault("network", "")
        return cls(**values)


@dataclass(frozen=True, slots=True)
class QuarantineTarget:
    """What a platform isolates NICs onto, declared by its connector class
    (``quarantine_target``), so a sweep can tell from its inventory alone whether
    quarantine would work on a host: which :class:`QuarantineSpec` field names the target,
    its policy key and kind (for messages), and whether the host must already have it
    (listed among ``HostInventory.networks``) and have it active. EC2 creates its security
    group when absent: it need not exist."""

    field: str  # the QuarantineSpec field, e.g. "network"
    policy_key: str  # e.g. "quarantine.network"
    kind: str  # e.g. "network", "portgroup", "security group"
    must_exist: bool = True
    must_be_active: bool = False
    start_hint: str = ""  # how an inactive one is started (e.g. "virsh net-start")

    def name_in(self, spec: QuarantineSpec) -> str:
        """The target's name in ``spec`` ("" when the policy names none)."""
        return str(getattr(spec, self.field, "") or "")


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
