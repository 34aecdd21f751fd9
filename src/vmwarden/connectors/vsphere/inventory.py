"""vSphere VM properties (as ``collect.retrieve`` returned them) → neutral ``VM`` records.

pyvmomi objects are read by attribute only (no import): the mapping is plain data in, plain
data out. Known vcsim 0.24 behaviour this does not paper over: NICs of powered-on VMs
report ``connected=False``, so a NIC's link is judged up when it is connected *or* connects
at power-on (what an operator would worry about).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vmwarden.connectors.vsphere.collect import Retrieved
from vmwarden.model.vm import VM, Disk, Layer, Nic, State, VmMeta

FIELD_PREFIX = "vmwarden."

_STATES: dict[str, State] = {
    "poweredOn": State.RUNNING,
    "poweredOff": State.SHUTOFF,
    "suspended": State.PAUSED,
}


def meta_of(values: Iterable[Any], fields: dict[int, str]) -> VmMeta:
    """The ``vmwarden.*`` custom attributes; a ``registered`` that is neither yes nor no is
    unknown (None), never guessed."""
    attrs = {
        fields.get(v.key, ""): str(getattr(v, "value", "") or "").strip() for v in values or []
    }
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


def to_vm(props: dict[str, Any], got: Retrieved, uri: str, moid: str) -> VM:
    """One VM (or template) record; ``id`` is the instanceUuid (the moId when vCenter has
    none, e.g. an inaccessible VM, so the record is still unique and named)."""
    host_ref = props.get("runtime.host")
    host = got.hosts.get(host_ref._moId, "") if host_ref is not None else ""
    devices = list(props.get("config.hardware.device") or [])
    memory_mb = props.get("config.hardware.memoryMB")
    return VM(
        id=str(props.get("config.instanceUuid") or moid),
        name=str(props.get("name") or moid),
        host=host,
        uri=uri,
        state=_STATES.get(str(props.get("runtime.powerState")), State.NOSTATE),
        vcpus=props.get("config.hardware.numCPU"),
        memory_kib=int(memory_mb) * 1024 if memory_mb is not None else None,
        os_type=props.get("config.guestId"),
        disks=[_disk(d) for d in devices if _kind(d) == "VirtualDisk"],
        nics=[_nic(d, got) for d in devices if hasattr(d, "macAddress")],
        meta=meta_of(props.get("customValue") or [], got.fields),
    )


def _kind(device: Any) -> str:
    return type(device).__name__.rsplit(".", 1)[-1]


def _disk(device: Any) -> Disk:
    """A VMDK and its backing chain (``parent``: linked clones and snapshots), datastore
    paths as vSphere names them (``[datastore] folder/file.vmdk``)."""
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
        chain.append(Layer(path=path, format="vmdk", type="file"))
        backing = getattr(backing, "parent", None)
    label = getattr(getattr(device, "deviceInfo", None), "label", None)
    return Disk(
        target=str(label or f"disk-{getattr(device, 'key', '?')}"),
        device="disk",
        type="network",
        encrypted=encrypted,
        chain=chain,
    )


def _nic(device: Any, got: Retrieved) -> Nic:
    """A virtual ethernet card: a standard portgroup (``vsphere-portgroup``) or a
    distributed one (``vsphere-dvpg``); the portgroup's name is the network zones match."""
    backing = getattr(device, "backing", None)
    port = getattr(backing, "port", None)
    if port is not None and getattr(port, "portgroupKey", None):
        kind = "vsphere-dvpg"
        name = got.dvpgs.get(port.portgroupKey)
    elif getattr(backing, "opaqueNetworkId", None):
        kind, name = "vsphere-opaque", None
    else:
        kind = "vsphere-portgroup"
        net = getattr(backing, "network", None)
        name = getattr(backing, "deviceName", None) or (
            got.networks.get(net._moId) if net is not None else None
        )
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
    )
