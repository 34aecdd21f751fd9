"""What the quarantine tests do to vcsim as an administrator would, through pyvmomi directly
(never through vmwarden): add quarantine portgroups, give a VM NICs, read its devices."""

from __future__ import annotations

from typing import Any

from pyVim.task import WaitForTask
from pyVmomi import vim

STD_PG = "vmw-v2-quarantine"  # a standard portgroup (AddPortGroup on one ESXi host)
DV_PG = "vmw-v2-quarantine-dv"  # a distributed portgroup on DVS0 (every member host)


def add_standard_portgroup(host: Any, name: str = STD_PG) -> None:
    """A standard portgroup on ``host``'s vSwitch0 (vcsim lists it in networkInfo only)."""
    spec = vim.host.PortGroup.Specification(
        name=name, vlanId=0, vswitchName="vSwitch0", policy=vim.host.NetworkPolicy()
    )
    host.configManager.networkSystem.AddPortGroup(portgrp=spec)


def add_distributed_portgroup(content: Any, name: str = DV_PG) -> None:
    """A distributed portgroup on the first distributed switch."""
    view = content.viewManager.CreateContainerView(
        content.rootFolder, [vim.DistributedVirtualSwitch], True
    )
    try:
        dvs = view.view[0]
    finally:
        view.DestroyView()
    spec = vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
        name=name, type="earlyBinding", numPorts=8
    )
    WaitForTask(dvs.AddDVPortgroup_Task(spec=[spec]))


def network_named(vm: Any, name: str) -> Any:
    return next(n for n in vm.runtime.host.network if n.name == name)


def add_nic(vm: Any, network: str, mac: str) -> None:
    """A second NIC with a manual MAC on ``network`` (a standard or distributed portgroup
    the VM's host has)."""
    net = network_named(vm, network)
    card = vim.vm.device.VirtualEthernetCard
    if isinstance(net, vim.dvs.DistributedVirtualPortgroup):
        backing: Any = card.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(
                switchUuid=net.config.distributedVirtualSwitch.uuid, portgroupKey=net.key
            )
        )
    else:
        backing = card.NetworkBackingInfo(deviceName=network, network=net)
    nic = vim.vm.device.VirtualVmxnet3(
        key=-1,
        addressType="manual",
        macAddress=mac,
        backing=backing,
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(
            startConnected=True, connected=True, allowGuestControl=True
        ),
    )
    change = vim.vm.device.VirtualDeviceSpec(operation="add", device=nic)
    WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))


def set_first_mac(vm: Any, mac: str) -> None:
    """Give the VM's first NIC a manual MAC (vcsim gives a host's VMs the same one)."""
    nic = nics(vm)[0]
    nic.addressType, nic.macAddress = "manual", mac
    change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=nic)
    WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))


def nics(vm: Any) -> list[Any]:
    return sorted(
        (d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)),
        key=lambda d: d.key,
    )


def fields(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Every field of a vSphere data object, flattened (``backing.port.portgroupKey``), so
    two device specs are compared field by field and a difference names its field."""
    if isinstance(obj, vim.ManagedObject):
        return {prefix: f"moref:{obj._moId}"}
    props = getattr(obj, "_GetPropertyList", None)
    if props is None:
        if isinstance(obj, list):
            out: dict[str, Any] = {}
            for i, item in enumerate(obj):
                out |= fields(item, f"{prefix}[{i}]")
            return out
        return {prefix: obj}
    out = {f"{prefix}@type": type(obj).__name__}
    for prop in props():
        if prop.name in ("dynamicType", "dynamicProperty"):
            continue
        out |= fields(getattr(obj, prop.name), f"{prefix}.{prop.name}" if prefix else prop.name)
    return out


def devices(vm: Any) -> dict[int, dict[str, Any]]:
    """Every virtual device of the VM by key, field by field."""
    return {d.key: fields(d) for d in vm.config.hardware.device}


def nic_where(vm: Any) -> list[tuple[str, str | None, bool, bool]]:
    """(MAC, portgroup name, connected, startConnected) of each NIC, by device key."""
    out = []
    for nic in nics(vm):
        b = nic.backing
        if isinstance(b, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
            name = next(
                (n.name for n in vm.runtime.host.network
                 if getattr(n, "key", None) == b.port.portgroupKey),
                None,
            )  # fmt: skip
        else:
            name = b.deviceName
        out.append(
            (nic.macAddress, name, nic.connectable.connected, nic.connectable.startConnected)
        )
    return out


def move_nic(vm: Any, mac: str, network: str) -> None:
    """An admin's fix: the NIC with ``mac`` onto a standard portgroup, connected again."""
    nic = next(n for n in nics(vm) if n.macAddress == mac)
    nic.backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
        deviceName=network, network=network_named(vm, network)
    )
    nic.connectable.connected = nic.connectable.startConnected = True
    change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=nic)
    WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))
