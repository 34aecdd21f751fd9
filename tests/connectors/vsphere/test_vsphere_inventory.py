"""vSphere inventory → neutral VMs (#13.2), against vcsim: identity, ESXi host, state,
hardware, NICs on distributed vs standard portgroups, custom-attribute metadata, templates,
VMDK backing chains, a constant number of calls per sweep (more fields in
``test_vsphere_inventory_fields``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyVim.task import WaitForTask
from pyVmomi import SoapAdapter, vim

from tests.connectors.vsphere.conftest import Vcsim, start_vcsim
from tests.connectors.vsphere.vcsim_ops import (
    admin,
    power_off,
    reconfigure_nic,
    set_attribute,
    vm_named,
)
from vmwarden.connectors.base import open_connector
from vmwarden.connectors.vsphere.connection import VsphereConnector
from vmwarden.model.vm import State


@pytest.fixture
def conn(vcsim: Vcsim, vsphere_password: str) -> Iterator[VsphereConnector]:
    with open_connector(vcsim.uri()) as c:
        assert isinstance(c, VsphereConnector)
        yield c


def test_every_vm_as_vcenter_reports_it(vcsim: Vcsim, conn: VsphereConnector) -> None:
    inv = conn.inventory()
    assert inv.local is False and inv.host == "127.0.0.1"
    with admin(vcsim) as content:
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.VirtualMachine], True
        )
        truth = {
            vm.config.instanceUuid: (
                vm.name,
                vm.runtime.host.name,
                vm.config.hardware.numCPU,
                vm.config.hardware.memoryMB * 1024,
            )
            for vm in view.view
            if not vm.config.template
        }
    got = {vm.id: (vm.name, vm.host, vm.vcpus, vm.memory_kib) for vm in inv.vms}
    assert got == truth and len(got) >= 4
    assert {vm.host for vm in inv.vms} >= {"DC0_H0", "DC0_C0_H0"}
    assert all(vm.state is State.RUNNING and vm.uri == vcsim.uri() for vm in inv.vms)


def test_nics_on_distributed_and_standard_portgroups(vcsim: Vcsim, conn: VsphereConnector) -> None:
    with admin(vcsim) as content:
        reconfigure_nic(content, vm_named(content, "DC0_H0_VM1"), network="VM Network")
    vms = {vm.name: vm for vm in conn.inventory().vms}
    dv = vms["DC0_H0_VM0"].nics[0]
    assert (dv.type, dv.network, dv.portgroup) == ("vsphere-dvpg", "DC0_DVPG0", "DC0_DVPG0")
    std = vms["DC0_H0_VM1"].nics[0]
    assert (std.type, std.network) == ("vsphere-portgroup", "VM Network")
    assert dv.mac and dv.mac == dv.mac.lower() and dv.link == "up"


def test_custom_attributes_are_the_vms_metadata(vcsim: Vcsim, conn: VsphereConnector) -> None:
    with admin(vcsim) as content:
        vm = vm_named(content, "DC0_C0_RP0_VM0")
        set_attribute(content, vm, "vmwarden.owner", "alice")
        set_attribute(content, vm, "vmwarden.classification", "pci")
        set_attribute(content, vm, "vmwarden.registered", "yes")
        set_attribute(content, vm, "vmwarden.template", "debian12-base")
        set_attribute(
            content, vm_named(content, "DC0_C0_RP0_VM1"), "vmwarden.registered", "perhaps"
        )
        set_attribute(content, vm, "other.owner", "bob")  # not ours: ignored
    vms = {vm.name: vm for vm in conn.inventory().vms}
    meta = vms["DC0_C0_RP0_VM0"].meta
    assert (meta.owner, meta.classification, meta.registered, meta.template) == (
        "alice", "pci", True, "debian12-base",
    )  # fmt: skip
    assert vms["DC0_C0_RP0_VM1"].meta.registered is None  # neither yes nor no: unknown
    assert vms["DC0_H0_VM0"].meta.owner is None


def test_disks_are_datastore_paths(conn: VsphereConnector) -> None:
    vm = next(v for v in conn.inventory().vms if v.name == "DC0_H0_VM0")
    (disk,) = vm.disks
    assert disk.source == "[LocalDS_0] DC0_H0_VM0/disk1.vmdk"
    assert disk.chain[0].format == "vmdk" and disk.device == "disk"


def test_a_linked_clones_backing_chain_is_followed_to_its_parent(
    vcsim: Vcsim, conn: VsphereConnector
) -> None:
    """A linked clone's disk has a ``parent`` backing (the template's or snapshot's VMDK):
    the chain is read from the API, every layer unknown with the reason."""
    with admin(vcsim) as content:
        vm = vm_named(content, "DC0_H0_VM1")
        disk = next(
            d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)
        )
        disk.backing.parent = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            fileName="[LocalDS_0] base/base.vmdk", diskMode="persistent"
        )
        change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk)
        WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))
    clone = next(v for v in conn.inventory().vms if v.name == "DC0_H0_VM1")
    (disk_,) = clone.disks
    assert [layer.path for layer in disk_.chain] == [
        "[LocalDS_0] DC0_H0_VM1/disk1.vmdk",
        "[LocalDS_0] base/base.vmdk",
    ]
    assert disk_.root is not None and disk_.root.path == "[LocalDS_0] base/base.vmdk"
    # the parent is in use: not an orphan, even where the datastore lists no such file
    assert "[LocalDS_0] base/base.vmdk" not in {
        v.path for p in conn.inventory().pools for v in p.volumes
    }


def test_a_template_is_not_a_vm_but_is_listed(vcsim: Vcsim, conn: VsphereConnector) -> None:
    with admin(vcsim) as content:
        vm = vm_named(content, "DC0_C0_RP0_VM1")
        power_off(vm)
        vm.MarkAsTemplate()
    inv = conn.inventory()
    assert "DC0_C0_RP0_VM1" not in {vm.name for vm in inv.vms}
    assert [t.name for t in conn.templates] == ["DC0_C0_RP0_VM1"]
    assert conn.lookup("DC0_C0_RP0_VM1").state is State.SHUTOFF


def test_a_powered_off_vm_is_shutoff(vcsim: Vcsim, conn: VsphereConnector) -> None:
    with admin(vcsim) as content:
        power_off(vm_named(content, "DC0_H0_VM0"))
        WaitForTask(vm_named(content, "DC0_H0_VM1").SuspendVM_Task())
    vms = {vm.name: vm for vm in conn.inventory().vms}
    assert vms["DC0_H0_VM0"].state is State.SHUTOFF
    assert vms["DC0_H0_VM1"].state is State.PAUSED


def _soap_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every SOAP method the real pyvmomi stub sends (the calls still go to vcsim)."""
    calls: list[str] = []
    real = SoapAdapter.SoapStubAdapter.InvokeMethod

    def counted(self: object, mo: object, info: object, args: object) -> object:
        calls.append(getattr(info, "wsdlName", "?"))
        return real(self, mo, info, args)

    monkeypatch.setattr(SoapAdapter.SoapStubAdapter, "InvokeMethod", counted)
    return calls


def _sweep_calls(per_host: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    proc, sim = start_vcsim("-vm", str(per_host))
    try:
        monkeypatch.setenv("VMWARDEN_VSPHERE_PASSWORD", sim.password)
        with open_connector(sim.uri()) as c, monkeypatch.context() as m:
            calls = _soap_calls(m)
            inv = c.inventory()
        assert len(inv.vms) == 2 * per_host  # per standalone host + per cluster
        return calls
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_one_property_retrieval_per_sweep_whatever_the_estate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Property retrievals, datastore browses and event reads per sweep are the same for 4
    and 200 VMs; only the polls of the browse task (``RetrieveContents``) vary, with timing."""

    def shape(calls: list[str]) -> dict[str, int]:
        return {c: calls.count(c) for c in set(calls) if c != "RetrieveContents"}

    small, large = _sweep_calls(2, monkeypatch), _sweep_calls(100, monkeypatch)
    assert shape(small) == shape(large), (small, large)  # none per VM
    assert shape(large)["RetrievePropertiesEx"] == 1, large
    assert shape(large)["SearchDatastoreSubFolders_Task"] == 1  # one datastore, one browse
    assert shape(large)["CreateCollectorForEvents"] == 1  # one power-off event query
    assert large.count("RetrieveContents") <= 20 and len(large) <= 40, large


def test_the_connector_meets_the_contract(conn: VsphereConnector) -> None:
    from vmwarden.connectors.base import Connector

    assert isinstance(conn, Connector)
