"""Changes the tests make to vcsim's inventory through the vSphere API itself (pyvmomi),
as an administrator would in vCenter: no fake objects, the simulator's own state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.connectors.vsphere.conftest import Vcsim


@contextmanager
def admin(sim: Vcsim) -> Iterator[Any]:
    """A pyvmomi session to the simulator (its content)."""
    si = SmartConnect(
        host=sim.host, port=sim.port, user=sim.user, pwd=sim.password,
        disableSslCertValidation=True,
    )  # fmt: skip
    try:
        yield si.RetrieveContent()
    finally:
        Disconnect(si)


def vm_named(content: Any, name: str) -> Any:
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return next(vm for vm in view.view if vm.name == name)
    finally:
        view.DestroyView()


def set_attribute(content: Any, vm: Any, name: str, value: str) -> None:
    """A custom attribute on ``vm`` (its definition created once)."""
    cfm = content.customFieldsManager
    field = next((f for f in cfm.field or [] if f.name == name), None)
    if field is None:
        field = cfm.AddCustomFieldDef(name=name, moType=vim.VirtualMachine)
    cfm.SetField(entity=vm, key=field.key, value=value)


def reconfigure_nic(content: Any, vm: Any, *, mac: str | None = None,
                    network: str | None = None) -> None:  # fmt: skip
    """Give the VM's first NIC a manual MAC and/or move it to a standard portgroup. The
    portgroup is checked to exist first: vcsim 0.24 crashes the request otherwise."""
    nic = next(
        d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)
    )
    if mac is not None:
        nic.addressType, nic.macAddress = "manual", mac
    if network is not None:
        net = next((n for n in vm.runtime.host.network if n.name == network), None)
        assert net is not None, f"no portgroup {network} on {vm.runtime.host.name}"
        nic.backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
            deviceName=network, network=net
        )
    change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=nic)
    WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))


def power_off(vm: Any) -> None:
    if vm.runtime.powerState != "poweredOff":
        WaitForTask(vm.PowerOffVM_Task())
