"""A VM's virtual NICs as plain state (what isolation records and compares) and back.

A NIC's state is ``{"backing": {...}, "connected": bool, "start_connected": bool}``, with
the backing one of

- ``{"kind": "portgroup", "network": NAME, "moid": "network-7"}`` (standard portgroup),
- ``{"kind": "dvpg", "network": NAME, "moid": …, "switch_uuid": …, "portgroup_key": …,
  "port_key": … | None}`` (distributed portgroup),
- ``{"kind": "opaque", "network": None, "opaque_id": …, "opaque_type": …}`` (NSX).

The device is changed with one ``ReconfigVM_Task`` ``edit`` of the device as vCenter
returned it, only the backing and the two connect flags replaced: every other field (MAC,
key, slot, label) goes back as it was. pyvmomi is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vmwarden.connectors.vsphere.tasks import call, wait
from vmwarden.errors import ConnectorError

NicState = dict[str, Any]
#: Networks under the URI's datacenter: moId -> (name, the ``vim.Network``).
Networks = Mapping[str, tuple[str, Any]]


def nic_devices(vm: Any) -> dict[int, Any]:
    """The VM's virtual ethernet cards by device key (fresh objects, safe to modify)."""
    from pyVmomi import vim

    devices = (vm.config.hardware.device if vm.config is not None else None) or []
    return {d.key: d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)}


def state_of(device: Any, vm: Any) -> NicState:
    """The NIC's backing and connect flags as plain data."""
    conn = device.connectable
    return {
        "backing": _backing_of(device.backing, vm),
        "connected": bool(conn is not None and conn.connected),
        "start_connected": bool(conn is not None and conn.startConnected),
    }


def _backing_of(backing: Any, vm: Any) -> dict[str, Any]:
    from pyVmomi import vim

    card = vim.vm.device.VirtualEthernetCard
    if isinstance(backing, card.DistributedVirtualPortBackingInfo):
        port = backing.port
        pg = _dvpg(vm, port.portgroupKey)
        return {
            "kind": "dvpg",
            "network": pg.name if pg is not None else None,
            "moid": pg._moId if pg is not None else None,
            "switch_uuid": port.switchUuid,
            "portgroup_key": port.portgroupKey,
            "port_key": port.portKey,
        }
    if isinstance(backing, card.OpaqueNetworkBackingInfo):
        return {
            "kind": "opaque",
            "network": None,
            "opaque_id": backing.opaqueNetworkId,
            "opaque_type": backing.opaqueNetworkType,
        }
    if isinstance(backing, card.NetworkBackingInfo):
        net = backing.network
        return {
            "kind": "portgroup",
            "network": backing.deviceName,
            "moid": net._moId if net is not None else None,
        }
    return {"kind": "other", "network": None, "type": type(backing).__name__}


def _dvpg(vm: Any, key: str) -> Any:
    """The distributed portgroup ``key`` among the networks of the VM's host, or None. A
    portgroup's key is its moId on vCenter and vcsim: matched without a call per network."""
    from pyVmomi import vim

    host = vm.runtime.host
    nets = [
        n
        for n in ((host.network if host is not None else None) or [])
        if isinstance(n, vim.dvs.DistributedVirtualPortgroup)
    ]
    by_moid = [n for n in nets if n._moId == key]
    return by_moid[0] if by_moid else next((n for n in nets if n.key == key), None)


def where(state: NicState) -> tuple[Any, ...]:
    """What decides where a NIC is attached: the portgroup (by moid, else name), the DVS
    and its portgroup, or the opaque network; never the DVS port vCenter hands out."""
    b = state["backing"]
    kind = b.get("kind")
    if kind == "portgroup":
        return (kind, b.get("moid") or b.get("network"))
    if kind == "dvpg":
        return (kind, b.get("switch_uuid"), b.get("portgroup_key"))
    if kind == "opaque":
        return (kind, b.get("opaque_type"), b.get("opaque_id"))
    return (kind, b.get("type"))


def same(a: NicState | None, b: NicState | None) -> bool:
    """Whether two NIC states mean the same attachment and the same connect flags."""
    if a is None or b is None:
        return a is b
    return (where(a), a["connected"], a["start_connected"]) == (
        where(b), b["connected"], b["start_connected"]
    )  # fmt: skip


def describe(state: NicState | None) -> str:
    """For people: ``distributed portgroup 'DC0_DVPG0', disconnected, connects at power-on``."""
    if state is None:
        return "absent"
    b = state["backing"]
    names = {"portgroup": "portgroup", "dvpg": "distributed portgroup", "opaque": "NSX network"}
    name = b.get("network") or b.get("opaque_id") or b.get("portgroup_key") or b.get("type")
    place = f"{names.get(b.get('kind'), 'network')} {name!r}"
    conn = "connected" if state["connected"] else "disconnected"
    start = "connects at power-on" if state["start_connected"] else "stays off at power-on"
    return f"{place}, {conn}, {start}"


def target_backing(vm: Any, networks: Networks, portgroup: str) -> dict[str, Any] | str:
    """The backing of ``portgroup`` as the VM's host reaches it, or why it cannot: a
    standard portgroup must be on the host (its networks or, for one added by
    ``AddPortGroup``, its network system), a distributed one on a DVS the host belongs to.
    Checked before any reconfigure: vcsim 0.24 crashes a request naming a missing one."""
    from pyVmomi import vim

    host = vm.runtime.host
    hostname = host.name if host is not None else "?"
    for net in (host.network if host is not None else None) or []:
        name = networks[net._moId][0] if net._moId in networks else net.name
        if name == portgroup:
            return _backing_for(net, name)
    local = set()
    if host is not None and host.configManager.networkSystem is not None:
        info = host.configManager.networkSystem.networkInfo
        local = {pg.spec.name for pg in (info.portgroup if info is not None else None) or []}
    if portgroup in local:
        for name, net in networks.values():
            if name == portgroup and not isinstance(net, vim.dvs.DistributedVirtualPortgroup):
                return _backing_for(net, name)
    return f"quarantine portgroup {portgroup!r} is not reachable from ESXi host {hostname}"


def _backing_for(net: Any, name: str) -> dict[str, Any]:
    from pyVmomi import vim

    if isinstance(net, vim.dvs.DistributedVirtualPortgroup):
        return {
            "kind": "dvpg",
            "network": name,
            "moid": net._moId,
            "switch_uuid": net.config.distributedVirtualSwitch.uuid,
            "portgroup_key": net.key,
            "port_key": None,
        }
    return {"kind": "portgroup", "network": name, "moid": net._moId}


def backing_problem(vm: Any, networks: Networks, state: NicState) -> str | None:
    """Why the VM cannot be put on ``state``'s backing now (its portgroup is gone), or None."""
    b = state["backing"]
    if b.get("kind") == "other":
        return f"a {b.get('type')} backing cannot be written back by vmwarden"
    if b.get("kind") == "portgroup":
        got = target_backing(vm, networks, str(b.get("network")))
        return got if isinstance(got, str) else None
    return None


def reconfigure(vm: Any, device: Any, state: NicState, what: str) -> None:
    """Put ``device`` on ``state``'s backing with its connect flags (one vCenter task)."""
    from pyVmomi import vim

    device.backing = _backing(vm, state["backing"])
    if device.connectable is None:
        device.connectable = vim.vm.device.VirtualDevice.ConnectInfo(allowGuestControl=False)
    device.connectable.connected = state["connected"]
    device.connectable.startConnected = state["start_connected"]
    change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=device)
    spec = vim.vm.ConfigSpec(deviceChange=[change])
    wait(call(what, vm.ReconfigVM_Task, spec=spec), what)


def _backing(vm: Any, b: dict[str, Any]) -> Any:
    from pyVmomi import vim

    card = vim.vm.device.VirtualEthernetCard
    stub = vm._stub
    if b["kind"] == "dvpg":
        return card.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(
                switchUuid=b["switch_uuid"],
                portgroupKey=b["portgroup_key"],
                portKey=b.get("port_key"),
            )
        )
    if b["kind"] == "opaque":
        return card.OpaqueNetworkBackingInfo(
            opaqueNetworkId=b["opaque_id"], opaqueNetworkType=b["opaque_type"]
        )
    if b["kind"] == "portgroup":
        net = vim.Network(b["moid"], stub) if b.get("moid") else None
        return card.NetworkBackingInfo(deviceName=b["network"], network=net)
    raise ConnectorError(f"cannot write a NIC backing of kind {b['kind']!r}")
