"""vSphere VM properties (as ``collect.retrieve`` returned them) → neutral ``VM`` records.

pyvmomi objects are read by attribute only (no import): the mapping is plain data in, plain
data out. Known vcsim 0.24 behaviour this does not paper over: NICs of powered-on VMs
report ``connected=False``, so a NIC's link is judged up when it is connected *or* connects
at power-on (what an operator would worry about); both flags are kept on the NIC.

What the sweep read besides the VM properties (``Extras``: tag values, last power-off
events, datastore file times) is laid over the record here, so ``to_vm`` stays the one
place a vSphere VM becomes a neutral one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vmwarden.connectors.vsphere.collect import Retrieved, container, retrieve
from vmwarden.connectors.vsphere.datastores import DatastoreFile, browse, datastore_pools, normal
from vmwarden.connectors.vsphere.poweroffs import last_power_offs
from vmwarden.connectors.vsphere.tags import read_tags
from vmwarden.connectors.vsphere.uri import VsphereTarget
from vmwarden.model.estate import HostInventory, Network
from vmwarden.model.vm import VM, Disk, Layer, Nic, State, VmMeta

FIELD_PREFIX = "vmwarden."

_STATES: dict[str, State] = {
    "poweredOn": State.RUNNING,
    "poweredOff": State.SHUTOFF,
    "suspended": State.PAUSED,
}


@dataclass
class Extras:
    """What the sweep read beside the one property retrieval, by VM moId."""

    tags: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    powered_off: Mapping[str, datetime] = field(default_factory=dict)
    files: Mapping[str, DatastoreFile] = field(default_factory=dict)


def meta_of(
    values: Iterable[Any], fields: dict[int, str], tags: Mapping[str, str] | None = None
) -> VmMeta:
    """The ``vmwarden.*`` custom attributes, then ``vmwarden.*`` tags for what attributes
    leave unset (an attribute is set on the VM itself; a tag may be inherited policy). A
    ``registered`` that is neither yes nor no is unknown (None), never guessed."""
    attrs = {
        fields.get(v.key, ""): str(getattr(v, "value", "") or "").strip() for v in values or []
    }
    for key, value in (tags or {}).items():
        if not attrs.get(FIELD_PREFIX + key):
            attrs[FIELD_PREFIX + key] = value
    raw = attrs.get(FIELD_PREFIX + "registered", "").lower()
    return VmMeta(
        owner=attrs.get(FIELD_PREFIX + "owner") or None,
        classification=attrs.get(FIELD_PREFIX + "classification") or None,
        template=attrs.get(FIELD_PREFIX + "template") or None,
        registered={"yes": True, "true": True, "no": False, "false": False}.get(raw),
        tags={
            k.removeprefix(FIELD_PREFIX + "tag."): v
            for k, v in attrs.items()
            if k.startswith(FIELD_PREFIX + "tag.") and v
        },
    )


def is_template(props: dict[str, Any]) -> bool:
    return bool(props.get("config.template"))


def to_vm(
    props: dict[str, Any], got: Retrieved, uri: str, moid: str, extras: Extras | None = None
) -> VM:
    """One VM (or template) record; ``id`` is the instanceUuid (the moId when vCenter has
    none, e.g. an inaccessible VM, so the record is still unique and named)."""
    extras = extras or Extras()
    host_ref = props.get("runtime.host")
    host_id = host_ref._moId if host_ref is not None else ""
    host = got.hosts.get(host_id, "")
    vlans = got.host_vlans.get(host_id, {})
    cluster, datacenter = got.placement.get(host_id, (None, None))
    devices = list(props.get("config.hardware.device") or [])
    memory_mb = props.get("config.hardware.memoryMB")
    state = _STATES.get(str(props.get("runtime.powerState")), State.NOSTATE)
    return VM(
        id=str(props.get("config.instanceUuid") or moid),
        name=str(props.get("name") or moid),
        host=host,
        uri=uri,
        state=state,
        vcpus=props.get("config.hardware.numCPU"),
        memory_kib=int(memory_mb) * 1024 if memory_mb is not None else None,
        os_type=props.get("config.guestId"),
        disks=[_disk(d, extras.files) for d in devices if _kind(d) == "VirtualDisk"],
        nics=[_nic(d, got, vlans) for d in devices if hasattr(d, "macAddress")],
        meta=meta_of(props.get("customValue") or [], got.fields, extras.tags.get(moid)),
        cluster=cluster,
        datacenter=datacenter,
        created=_aware(props.get("config.createDate")),
        # only a VM that is off now was powered off "since" its last event
        powered_off_at=extras.powered_off.get(moid) if state is State.SHUTOFF else None,
    )


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or not isinstance(moment, datetime):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def used_files(props: dict[str, Any]) -> list[str]:
    """Every datastore file a VM or template uses: its files (``layoutEx``: snapshot
    deltas too) and every layer of its disks' backing chains (a linked clone's parent)."""
    out = [str(f.name) for f in props.get("layoutEx.file") or [] if getattr(f, "name", None)]
    for device in props.get("config.hardware.device") or []:
        backing = getattr(device, "backing", None) if _kind(device) == "VirtualDisk" else None
        for _ in range(64):
            if backing is None:
                break
            if getattr(backing, "fileName", None):
                out.append(str(backing.fileName))
            backing = getattr(backing, "parent", None)
    return out


def _kind(device: Any) -> str:
    return type(device).__name__.rsplit(".", 1)[-1]


def _disk(device: Any, files: Mapping[str, DatastoreFile]) -> Disk:
    """A VMDK and its backing chain (``parent``: linked clones and snapshots), datastore
    paths as vSphere names them (``[datastore] folder/file.vmdk``); thin when its backing
    says ``thinProvisioned``; each layer's modification time from the datastore browse."""
    chain: list[Layer] = []
    backing = getattr(device, "backing", None)
    seen: set[str] = set()
    encrypted = False
    while backing is not None and len(chain) < 64:
        path = getattr(backing, "fileName", None)
        if path in seen:
            break  # a cycle in what the API said: stop, the chain is what was read
        seen.add(path)
        encrypted = encrypted or getattr(backing, "keyId", None) is not None
        # a datastore file, read by the sweep over HTTPS (``connectors.vsphere.disks``)
        found = files.get(normal(path)) if path else None
        chain.append(
            Layer(
                path=path,
                format="vmdk",
                type="file",
                mtime=found.mtime if found is not None else None,
            )
        )
        backing = getattr(backing, "parent", None)
    label = getattr(getattr(device, "deviceInfo", None), "label", None)
    thin = getattr(getattr(device, "backing", None), "thinProvisioned", None)
    return Disk(
        target=str(label or f"disk-{getattr(device, 'key', '?')}"),
        device="disk",
        type="network",
        encrypted=encrypted,
        thin=bool(thin) if thin is not None else None,
        chain=chain,
    )


def _nic(device: Any, got: Retrieved, host_vlans: Mapping[str, list[int]]) -> Nic:
    """A virtual ethernet card: a standard portgroup (``vsphere-portgroup``) or a
    distributed one (``vsphere-dvpg``); the portgroup's name is the network zones match.
    VLAN from the portgroup's config: a DVPG's default port setting, a standard
    portgroup's ``vlanId`` on the VM's host (portgroups are per host there)."""
    backing = getattr(device, "backing", None)
    port = getattr(backing, "port", None)
    vlan: list[int] = []
    if port is not None and getattr(port, "portgroupKey", None):
        kind = "vsphere-dvpg"
        name = got.dvpgs.get(port.portgroupKey)
        vlan = list(got.dvpg_vlans.get(port.portgroupKey, []))
    elif getattr(backing, "opaqueNetworkId", None):
        kind, name = "vsphere-opaque", None
    else:
        kind = "vsphere-portgroup"
        net = getattr(backing, "network", None)
        name = getattr(backing, "deviceName", None) or (
            got.networks.get(net._moId) if net is not None else None
        )
        vlan = list(host_vlans.get(name or "", []))
    conn = getattr(device, "connectable", None)
    up = conn is None or bool(conn.connected) or bool(conn.startConnected)
    mac = getattr(device, "macAddress", None)
    return Nic(
        mac=str(mac).lower() if mac else None,
        type=kind,
        network=name,
        portgroup=name,
        model=_kind(device).removeprefix("Virtual").lower() or None,
        link="up" if up else "down",
        vlan=vlan,
        connected=bool(conn.connected) if conn is not None else None,
        start_connected=bool(conn.startConnected) if conn is not None else None,
    )


def sweep(si: Any, target: VsphereTarget, uri: str, *, timeout: float = 30.0) -> HostInventory:
    """One sweep of a vCenter: the property retrieval (VMs, templates, hosts, portgroups,
    datastores), one browse per datastore, one power-off event query, and the tags (REST).
    Each of the last three may fail alone: that part is then unknown, with a warning."""
    got = retrieve(si, target.datacenter)
    warnings: list[str] = []
    browsed = browse(si, got.datastores)
    warnings += browsed.warnings
    try:
        powered_off = last_power_offs(si, container(si, target.datacenter))
    except Exception as exc:  # the event history is a boundary: unknown, not a failed sweep
        powered_off = {}
        warnings.append(f"power-off events not read ({exc}); power-off times unknown")
    tagged = read_tags(target, timeout=timeout)
    if tagged.warning:
        warnings.append(tagged.warning)
    extras = Extras(tags=tagged.by_vm, powered_off=powered_off, files=browsed.files)
    vms: list[VM] = []
    templates: list[VM] = []
    used: list[str] = []
    for moid, props in got.vms.items():
        vm = to_vm(props, got, uri, moid, extras)
        (templates if is_template(props) else vms).append(vm)
        used += used_files(props)
    return HostInventory(
        uri=uri,
        host=target.host,
        vms=vms,
        templates=templates,
        pools=datastore_pools(browsed, used),
        # portgroups and networks by name: where quarantine can move NICs (scan checks it)
        networks=[Network(name, None, True) for name in sorted(set(got.networks.values()))],
        warnings=warnings,
        local=False,
    )
