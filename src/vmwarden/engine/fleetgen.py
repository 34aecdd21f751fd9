"""libvirt test-driver fleet files: whole hosts of VMs that ``test:///abs/path.xml`` opens.

The test driver reads a custom ``<node>`` document holding ``<domain type='test'>``,
``<network>`` and ``<pool>`` (with ``<volume>``) elements. Run state and transience are not
part of the domain schema; the driver takes them from its own XML namespace
(libvirt ``src/test/test_driver.c``, ``testDomainDefNamespaceParse``)::

    <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
      ...
      <test:runstate>5</test:runstate>   <!-- a virDomainState number; default 1 (running) -->
      <test:transient/>                  <!-- isPersistent() == 0; not allowed with shutoff -->
    </domain>

The namespace URI must be exactly ``.../domain/test/1.0``: under any other URI the elements
are ignored silently and every domain comes up running and persistent. Every network and
pool in the file is active. Writing is plain string formatting so that 50,000 VMs take a
couple of seconds; values are XML-escaped.

Example::

    vms = [FleetVM(uuid="...", name="web01", state="shutoff",
                   disks=[FleetDisk("/srv/images/web01.qcow2")],
                   nics=[FleetNic("52:54:00:00:00:01", "prod")],
                   metadata=FleetMeta(owner="alice", classification="internal"))]
    write_fleet(tmp / "hv1.xml", vms, networks=["prod", "quarantine"])
    libvirt.open(f"test://{tmp / 'hv1.xml'}")
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from vmwarden.model.vm import VM_XMLNS

TEST_XMLNS = "http://libvirt.org/schemas/domain/test/1.0"

#: ``<test:runstate>`` values: libvirt's ``virDomainState`` numbers.
RUNSTATE: dict[str, int] = {
    "nostate": 0,
    "running": 1,
    "blocked": 2,
    "paused": 3,
    "shutdown": 4,
    "shutoff": 5,
    "crashed": 6,
    "pmsuspended": 7,
}

#: Networks every generated host carries.
FLEET_NETWORKS: tuple[str, ...] = ("prod", "pci", "dmz", "quarantine")


@dataclass(slots=True)
class FleetDisk:
    path: str
    format: str = "qcow2"
    device: str = "disk"


@dataclass(slots=True)
class FleetNic:
    mac: str
    network: str
    portgroup: str | None = None
    vlan: int | None = None


@dataclass(slots=True)
class FleetMeta:
    """The ``<vmwarden:vm>`` element; ``None`` fields are left out of the XML."""

    owner: str | None = None
    classification: str | None = None
    template: str | None = None
    registered: bool | None = None


@dataclass(slots=True)
class FleetVM:
    uuid: str
    name: str
    state: str = "running"  # a key of RUNSTATE
    transient: bool = False
    vcpus: int = 1
    memory: int = 524288  # KiB
    disks: list[FleetDisk] = field(default_factory=list)
    nics: list[FleetNic] = field(default_factory=list)
    metadata: FleetMeta | None = None


@dataclass(slots=True)
class FleetVolume:
    name: str
    path: str
    format: str = "qcow2"
    capacity: int = 64 * 1024 * 1024
    allocation: int = 0
    backing: str | None = None
    backing_format: str | None = None


@dataclass(slots=True)
class FleetPool:
    name: str
    path: str
    volumes: list[FleetVolume] = field(default_factory=list)


def write_fleet(
    path: str | os.PathLike[str],
    vms: Iterable[FleetVM],
    networks: Iterable[str],
    pools: Iterable[FleetPool] = (),
) -> Path:
    """Write a test-driver node file and return its absolute path (open it as ``test://PATH``).

    The file is replaced atomically, so a reader never sees half a fleet.

    Raises:
        ValueError: an unknown state, a transient shut-off VM (the driver refuses both), or
            a duplicate VM name or UUID.
    """
    target = Path(path).absolute()
    parts: list[str] = ["<node>\n"]
    names: set[str] = set()
    uuids: set[str] = set()
    for vm in vms:
        if vm.name in names or vm.uuid in uuids:
            raise ValueError(f"duplicate VM name or uuid in fleet: {vm.name} {vm.uuid}")
        names.add(vm.name)
        uuids.add(vm.uuid)
        parts.append(_domain_xml(vm))
    for i, net in enumerate(networks):
        parts.append(_network_xml(net, i))
    for pool in pools:
        parts.append(_pool_xml(pool))
    parts.append("</node>\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(parts), encoding="utf-8")
    os.replace(tmp, target)
    return target


def _domain_xml(vm: FleetVM) -> str:
    if vm.state not in RUNSTATE:
        raise ValueError(f"unknown state {vm.state!r} for {vm.name} (valid: {', '.join(RUNSTATE)})")
    if vm.transient and vm.state == "shutoff":
        raise ValueError(f"{vm.name}: a transient domain cannot be shut off")
    out = [
        f"<domain type='test' xmlns:test='{TEST_XMLNS}'>\n",
        f"  <name>{escape(vm.name)}</name>\n  <uuid>{escape(vm.uuid)}</uuid>\n",
        f"  <memory unit='KiB'>{int(vm.memory)}</memory>\n  <vcpu>{int(vm.vcpus)}</vcpu>\n",
        "  <os><type>hvm</type></os>\n",
    ]
    if vm.metadata is not None:
        out.append(_metadata_xml(vm.metadata))
    out.append("  <devices>\n")
    for i, disk in enumerate(vm.disks):
        out.append(
            f"    <disk type='file' device={quoteattr(disk.device)}>"
            f"<driver name='qemu' type={quoteattr(disk.format)}/>"
            f"<source file={quoteattr(disk.path)}/>"
            f"<target dev='vd{_disk_letter(i)}' bus='virtio'/></disk>\n"
        )
    for nic in vm.nics:
        portgroup = f" portgroup={quoteattr(nic.portgroup)}" if nic.portgroup else ""
        vlan = f"<vlan><tag id='{int(nic.vlan)}'/></vlan>" if nic.vlan is not None else ""
        out.append(
            f"    <interface type='network'><mac address={quoteattr(nic.mac)}/>"
            f"<source network={quoteattr(nic.network)}{portgroup}/>{vlan}"
            "<model type='virtio'/></interface>\n"
        )
    out.append("  </devices>\n")
    out.append(f"  <test:runstate>{RUNSTATE[vm.state]}</test:runstate>\n")
    if vm.transient:
        out.append("  <test:transient/>\n")
    out.append("</domain>\n")
    return "".join(out)


def _metadata_xml(meta: FleetMeta) -> str:
    fields = [
        ("owner", meta.owner),
        ("classification", meta.classification),
        ("template", meta.template),
        ("registered", None if meta.registered is None else ("yes" if meta.registered else "no")),
    ]
    body = "".join(f"<vmwarden:{k}>{escape(v)}</vmwarden:{k}>" for k, v in fields if v is not None)
    return f'  <metadata><vmwarden:vm xmlns:vmwarden="{VM_XMLNS}">{body}</vmwarden:vm></metadata>\n'


def _disk_letter(i: int) -> str:
    letters = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        letters = chr(ord("a") + r) + letters
    return letters


def _network_xml(name: str, index: int) -> str:
    return (
        f"<network><name>{escape(name)}</name>"
        f"<uuid>{uuid.uuid5(uuid.NAMESPACE_URL, 'vmwarden-net:' + name)}</uuid>"
        f"<bridge name='vwbr{index}'/>"
        # The test driver's interfaceAddresses() dereferences the network's first IPv4
        # definition without checking it: a network without <ip> crashes the client.
        f"<ip address='10.{index // 250}.{index % 250}.1' netmask='255.255.255.0'/></network>\n"
    )


def _pool_xml(pool: FleetPool) -> str:
    out = [
        f"<pool type='dir'><name>{escape(pool.name)}</name>"
        f"<uuid>{uuid.uuid5(uuid.NAMESPACE_URL, 'vmwarden-pool:' + pool.name)}</uuid>"
        f"<target><path>{escape(pool.path)}</path></target>\n"
    ]
    for vol in pool.volumes:
        backing = ""
        if vol.backing:
            fmt = f"<format type={quoteattr(vol.backing_format)}/>" if vol.backing_format else ""
            backing = f"<backingStore><path>{escape(vol.backing)}</path>{fmt}</backingStore>"
        out.append(
            f"  <volume type='file'><name>{escape(vol.name)}</name>"
            f"<capacity unit='bytes'>{int(vol.capacity)}</capacity>"
            f"<allocation unit='bytes'>{int(vol.allocation)}</allocation>"
            f"<target><path>{escape(vol.path)}</path>"
            f"<format type={quoteattr(vol.format)}/></target>"
            f"{backing}</volume>\n"
        )
    out.append("</pool>\n")
    return "".join(out)


# --- generated fleets -------------------------------------------------------------------------

_CLASSES = ("internal", "internal", "internal", "pci", "public")
_ZONE_NET = {"internal": "prod", "pci": "pci", "public": "dmz"}
_OWNERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
_ROLES = ("web", "db", "app", "cache", "batch", "build", "mq", "api")


def generate_fleet(
    n: int,
    *,
    seed: int = 0,
    hosts: int | Sequence[str] = 1,
    image_dir: str = "/var/lib/libvirt/images",
) -> dict[str, list[FleetVM]]:
    """A deterministic, varied fleet of ``n`` VMs spread over ``hosts``: host name → VMs.

    Same ``n``/``seed``/``hosts`` give the same fleet byte for byte. Roughly: 70% running,
    10% paused, 20% shut off; 5% of the live ones transient; 5% unregistered and 3% without
    metadata; 5% without disks; MACs unique. Disk paths point into ``image_dir`` (the files
    need not exist). Write each host with ``write_fleet(dir / f"{host}.xml", vms,
    FLEET_NETWORKS)`` or use :func:`write_generated_fleet`.
    """
    host_names = [f"hv-{i:02d}" for i in range(hosts)] if isinstance(hosts, int) else list(hosts)
    if not host_names:
        raise ValueError("generate_fleet needs at least one host")
    rng = random.Random(seed)
    fleet: dict[str, list[FleetVM]] = {h: [] for h in host_names}
    for i in range(n):
        host = host_names[i % len(host_names)]
        roll = rng.random()
        state = "running" if roll < 0.7 else "paused" if roll < 0.8 else "shutoff"
        transient = state != "shutoff" and rng.random() < 0.05
        cls = rng.choice(_CLASSES)
        name = f"{rng.choice(_ROLES)}-{i:06d}"
        meta_roll = rng.random()
        meta = None
        if meta_roll >= 0.03:
            meta = FleetMeta(
                owner=rng.choice(_OWNERS),
                classification=cls,
                template="debian12-base",
                registered=meta_roll >= 0.08,
            )
        n_disks = 0 if rng.random() < 0.05 else 1 + (rng.random() < 0.2)
        disks = [FleetDisk(f"{image_dir}/{name}-{d}.qcow2") for d in range(n_disks)]
        nics = [FleetNic(_mac(2 * i), _ZONE_NET[cls], vlan=100 + RUNSTATE[state])]
        if rng.random() < 0.1:
            nics.append(FleetNic(_mac(2 * i + 1), "prod"))
        fleet[host].append(
            FleetVM(
                uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                name=name,
                state=state,
                transient=transient,
                vcpus=rng.choice((1, 2, 4)),
                memory=rng.choice((262144, 524288, 1048576)),
                disks=disks,
                nics=nics,
                metadata=meta,
            )
        )
    return fleet


def write_generated_fleet(
    directory: str | os.PathLike[str],
    n: int,
    *,
    seed: int = 0,
    hosts: int | Sequence[str] = 1,
) -> list[Path]:
    """Generate a fleet (see :func:`generate_fleet`) and write one file per host into it."""
    fleet = generate_fleet(n, seed=seed, hosts=hosts)
    return [
        write_fleet(Path(directory) / f"{h}.xml", vms, FLEET_NETWORKS) for h, vms in fleet.items()
    ]


def _mac(index: int) -> str:
    """A locally administered MAC unique for indexes below 2**24."""
    return f"52:54:00:{(index >> 16) & 0xFF:02x}:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}"
