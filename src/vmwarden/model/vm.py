"""The VM record: what the inventory reads from a hypervisor, plus facts the engine derives.

Fields that could not be collected are ``None`` (unknown), never a guessed default: filters
treat unknown as "not cleared".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from vmwarden.model.guest import GuestFacts

VM_XMLNS = "http://vmwarden.dev/xmlns/vm/1"


class State(StrEnum):
    """libvirt domain states, named as operators read them."""

    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    SHUTDOWN = "shutdown"  # shutting down
    CRASHED = "crashed"
    PMSUSPENDED = "pmsuspended"
    BLOCKED = "blocked"
    NOSTATE = "nostate"


# Begins the ``error`` of every layer of a disk on another host: its path is not a file here.
NOT_HERE = "not readable from here"


@dataclass(slots=True)
class Layer:
    """One image in a disk's backing chain (the disk's own source is layer 0).

    ``path`` is a file or block path, or for network storage ``protocol://host/name``.
    ``digest`` (``sha256:<hex>``) and ``mtime`` are filled by the engine when the file is
    readable on this machine; ``error`` says why the layer could not be followed.
    """

    path: str | None
    format: str | None = None
    type: str = "file"  # file | block | network | volume | dir
    digest: str | None = None
    mtime: datetime | None = None
    error: str | None = None
    # The host whose file this is when it is not this machine's (read through that host's
    # libvirt connection, never from a local file of the same path); None: a local file.
    host: str | None = None


@dataclass(slots=True)
class Disk:
    """A ``<disk>`` of the domain. ``chain[0]`` is the disk's own source; ``chain[-1]`` the root."""

    target: str
    device: str = "disk"  # disk | cdrom | floppy | lun
    type: str = "file"
    bus: str | None = None
    readonly: bool = False
    encrypted: bool = False
    chain: list[Layer] = field(default_factory=list)
    # Space allocated as written (vSphere thinProvisioned, a sparse file); None: not said.
    thin: bool | None = None

    @property
    def source(self) -> str | None:
        return self.chain[0].path if self.chain else None

    @property
    def root(self) -> Layer | None:
        """The root of the backing chain: what the VM was cloned from (or the disk itself)."""
        return self.chain[-1] if self.chain else None


@dataclass(slots=True)
class NicOrigin:
    """Where a NIC was attached before vmwarden's quarantine moved it (from the journal).

    Policy judges a held NIC by this, not by the quarantine network vmwarden itself put it
    on: otherwise quarantine would create its own ``outside-zone`` finding and a VM held by
    the power-on gate could never pass and be released."""

    type: str
    network: str | None = None
    bridge: str | None = None
    source_dev: str | None = None
    portgroup: str | None = None
    vlan: list[int] = field(default_factory=list)
    link: str = "up"


@dataclass(slots=True)
class Nic:
    """An ``<interface>``. ``network`` is set for type=network, ``bridge`` for bridge/network
    (libvirt fills it for running VMs), ``source_dev`` for direct (macvtap).

    ``quarantined_from`` is set while vmwarden holds the NIC on its quarantine network: the
    fields above say where the NIC *is*, ``quarantined_from`` where it belongs (``judged``)."""

    mac: str | None
    type: str
    network: str | None = None
    bridge: str | None = None
    source_dev: str | None = None
    portgroup: str | None = None
    vlan: list[int] = field(default_factory=list)
    model: str | None = None
    link: str = "up"  # up | down
    target_dev: str | None = None
    addresses: list[str] = field(default_factory=list)
    quarantined_from: NicOrigin | None = None
    # Other names zones may use for ``network`` (EC2: the subnet's Name tag beside its id).
    network_aliases: list[str] = field(default_factory=list)
    # Where the platform keeps the two apart (vSphere): connected now / connects at power-on;
    # None: not said (``link`` alone is the state).
    connected: bool | None = None
    start_connected: bool | None = None

    def judged(self) -> Nic:
        """The NIC as policy judges it: at its pre-quarantine attachment while held."""
        o = self.quarantined_from
        if o is None:
            return self
        return Nic(
            self.mac,
            o.type,
            o.network,
            o.bridge,
            o.source_dev,
            o.portgroup,
            list(o.vlan),
            self.model,
            o.link,
            self.target_dev,
            self.addresses,
            o,
            list(self.network_aliases),
            self.connected,
            self.start_connected,
        )


@dataclass(slots=True)
class VmMeta:
    """The ``<vmwarden:vm>`` metadata element (namespace ``VM_XMLNS``)."""

    owner: str | None = None
    classification: str | None = None
    template: str | None = None
    registered: bool | None = None  # None: element or field absent
    tags: dict[str, str] = field(default_factory=dict)  # set by the `tag` action


@dataclass(slots=True)
class TemplateRecord:
    """What the platform says of the template a VM was made from (EC2: the AMI), when it
    names one: its owner, whether it is public, its dates, and the templates it was copied
    from as far as the connector trusts the record (nearest first; EC2 follows copies only
    for the scanning account's own private AMIs, never a description anyone could write on
    a public or another account's AMI)."""

    id: str
    name: str | None = None
    owner: str | None = None  # the owning account
    own: bool | None = None  # owned by the account being scanned
    public: bool | None = None
    created: datetime | None = None
    deprecated_at: datetime | None = None
    copied_from: list[str] = field(default_factory=list)
    error: str | None = None  # why the platform could not describe it (deregistered …)


@dataclass(slots=True)
class VM:
    """One libvirt domain as seen on one host during one sweep."""

    id: str  # the domain UUID
    name: str
    host: str
    uri: str
    state: State
    persistent: bool = True
    vcpus: int | None = None
    memory_kib: int | None = None
    os_type: str | None = None
    arch: str | None = None
    disks: list[Disk] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)
    meta: VmMeta = field(default_factory=VmMeta)
    # Derived by the engine from the store (history) before evaluation.
    first_seen: datetime | None = None
    state_since: datetime | None = None
    # Facts read offline from the VM's disks; None = not inspected (unknown).
    guest: GuestFacts | None = None
    # The QEMU guest agent channel's state in the XML (None: no channel) and, for a running
    # VM, what the agent said this sweep (the engine lays it over ``guest``).
    agent_channel: str | None = None
    agent: GuestFacts | None = None
    # The platform's template identity when it names one (EC2: the AMI id the instance was
    # launched from), judged against the catalog's ``aws_image`` entries; None: the disks'
    # lineage is the only identity (libvirt).
    template_id: str | None = None
    # Where the platform groups hosts (vSphere: the host's cluster and datacenter); None:
    # not grouped (a standalone host) or not said.
    cluster: str | None = None
    datacenter: str | None = None
    # What the platform itself says (None: it does not, or could not be read): when the VM
    # was created, and when it was last powered off (vSphere: its newest VmPoweredOffEvent).
    created: datetime | None = None
    powered_off_at: datetime | None = None
    # When it was last started (EC2: LaunchTime), and its template as the platform
    # describes it (EC2: the AMI's owner, public flag, dates and copy sources).
    started_at: datetime | None = None
    template_record: TemplateRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO 8601 strings)."""
        return _jsonable(asdict(self))

    def judged(self) -> VM:
        """This VM as policy judges it: held NICs at their pre-quarantine attachment (the
        same object when none is held, so evaluation of the usual estate copies nothing)."""
        if not any(n.quarantined_from is not None for n in self.nics):
            return self
        copy = replace(self)
        copy.nics = [n.judged() for n in self.nics]
        return copy


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    return value
