"""The vSphere backend of the conformance suite: its own vcsim (govmomi's simulator), an
estate made with pyvmomi directly (never through vmwarden).

VMs ``vmw-v2-conf-<role>`` are created powered off on the standalone ESXi host ``DC0_H0``
with manual MACs, a NIC on the distributed portgroup ``DC0_DVPG0`` and (roles with two) one
on the standard ``VM Network``, and a new thin disk vCenter names. Quarantine goes to a
distributed portgroup the backend adds (``vmw-v2-conf-quarantine``). ``open_disk`` reads
VMDKs the backend converts into the datastore's directory (vcsim keeps each datastore in a
real directory and serves it over HTTPS): the Debian template, the lineage fixture's used
full clone of it and an unrelated build, all ``monolithicSparse``.

vCenter's connection host (``Estate.host``) is not a VM's host: each ``VmSpec.host`` is the
ESXi host, as inventory and events name it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.connectors.conformance.conftest import Estate, VmSpec
from tests.connectors.conformance.libvirt_backend import TEMPLATE, UNRELATED, full_clone
from tests.connectors.vsphere.conftest import Vcsim, start_vcsim
from vmwarden.model.isolation import QuarantineSpec
from vmwarden.model.vm import State

PREFIX = "vmw-v2-conf"
HOST = "DC0_H0"
DATASTORE = "LocalDS_0"
QUARANTINE = f"{PREFIX}-quarantine"
ROLES = {"plain": 2, "isolate": 2, "crash": 2, "events": 1}
NETS = ("DC0_DVPG0", "VM Network")


def _mac(name: str, i: int) -> str:
    """A manual MAC in VMware's static range (00:50:56:00-3f), stable per VM and NIC."""
    h = uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{i}").hex
    return f"00:50:56:{int(h[0:2], 16) & 0x3F:02x}:{h[2:4]}:{h[4:6]}"


def vcsim_backend() -> Iterator[VsphereBackend]:
    """A fresh simulator for the module, its password where the connector looks for it."""
    proc, sim = start_vcsim()
    old = os.environ.get("VMWARDEN_VSPHERE_PASSWORD")
    os.environ["VMWARDEN_VSPHERE_PASSWORD"] = sim.password  # children inherit it
    try:
        yield VsphereBackend(sim)
    finally:
        if old is None:
            os.environ.pop("VMWARDEN_VSPHERE_PASSWORD", None)
        else:
            os.environ["VMWARDEN_VSPHERE_PASSWORD"] = old
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class VsphereBackend:
    name = "vsphere"

    def __init__(self, sim: Vcsim) -> None:
        self.sim = sim
        self.si: Any = SmartConnect(
            host=sim.host, port=sim.port, user=sim.user, pwd=sim.password,
            disableSslCertValidation=True,
        )  # fmt: skip
        self.content = self.si.RetrieveContent()
        self.made: list[Any] = []
        self.disk_dir: Path | None = None

    def _find(self, kind: Any, name: str) -> Any:
        view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [kind], True)
        try:
            return next(o for o in view.view if o.name == name)
        finally:
            view.DestroyView()

    def _vm(self, vm_id: str) -> Any:
        search = self.content.searchIndex
        return search.FindByUuid(uuid=vm_id, vmSearch=True, instanceUuid=True)

    def build(self, work: Path) -> Estate:
        for image in (TEMPLATE, UNRELATED, full_clone()):
            if not image.is_file():
                raise AssertionError(f"test image missing: {image} (make test-images)")
        dvs = self._find(vim.DistributedVirtualSwitch, "DVS0")
        pg_spec = vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
            name=QUARANTINE, type="earlyBinding", numPorts=16
        )
        WaitForTask(dvs.AddDVPortgroup_Task(spec=[pg_spec]))
        host = self._find(vim.HostSystem, HOST)
        vms = {role: self._make_vm(host, role, n) for role, n in ROLES.items()}
        ds = self._find(vim.Datastore, DATASTORE)
        self.disk_dir = Path(ds.info.url) / f"{PREFIX}-images"
        self.disk_dir.mkdir(exist_ok=True)
        paths = {
            role: self._vmdk(source, role)
            for role, source in (
                ("template", TEMPLATE), ("clone", full_clone()), ("unrelated", UNRELATED)
            )
        }  # fmt: skip
        return Estate(
            uri=self.sim.uri(),
            host=self.sim.host,
            vms=vms,
            spec=QuarantineSpec(vsphere_portgroup=QUARANTINE),
            image=paths["template"],
            image_local=self.disk_dir / "template.vmdk",
            template=paths["template"],
            full_clone=paths["clone"],
            unrelated=paths["unrelated"],
            missing=f"[{DATASTORE}] {PREFIX}-images/no-such-disk.vmdk",
        )

    def _vmdk(self, source: Path, role: str) -> str:
        assert self.disk_dir is not None
        out = self.disk_dir / f"{role}.vmdk"
        subprocess.run(
            ["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=monolithicSparse",
             str(source), str(out)],
            check=True, capture_output=True,
        )  # fmt: skip
        return f"[{DATASTORE}] {PREFIX}-images/{role}.vmdk"

    def _make_vm(self, host: Any, role: str, n_nics: int) -> VmSpec:
        name = f"{PREFIX}-{role}"
        nets = {n.name: n for n in host.network}
        card = vim.vm.device.VirtualEthernetCard
        changes = []
        nics = []
        for i, net_name in enumerate(NETS[:n_nics]):
            net = nets[net_name]
            if isinstance(net, vim.dvs.DistributedVirtualPortgroup):
                backing: Any = card.DistributedVirtualPortBackingInfo(
                    port=vim.dvs.PortConnection(
                        switchUuid=net.config.distributedVirtualSwitch.uuid, portgroupKey=net.key
                    )
                )
            else:
                backing = card.NetworkBackingInfo(deviceName=net_name, network=net)
            mac = _mac(name, i)
            nics.append((mac, net_name))
            nic = vim.vm.device.VirtualVmxnet3(
                key=-10 - i, addressType="manual", macAddress=mac, backing=backing,
                connectable=vim.vm.device.VirtualDevice.ConnectInfo(
                    startConnected=True, connected=False, allowGuestControl=True
                ),
            )  # fmt: skip
            changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=nic))
        scsi = vim.vm.device.VirtualLsiLogicController(key=-100, busNumber=0, sharedBus="noSharing")
        disk = vim.vm.device.VirtualDisk(
            key=-101, controllerKey=-100, unitNumber=0, capacityInKB=1024,
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                fileName=f"[{DATASTORE}]", diskMode="persistent", thinProvisioned=True
            ),
        )  # fmt: skip
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=scsi))
        changes.append(
            vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create", device=disk)
        )
        config = vim.vm.ConfigSpec(
            name=name, numCPUs=1, memoryMB=64, guestId="debian12_64Guest",
            files=vim.vm.FileInfo(vmPathName=f"[{DATASTORE}]"), deviceChange=changes,
        )  # fmt: skip
        dc = self._find(vim.Datacenter, "DC0")
        task = dc.vmFolder.CreateVM_Task(config=config, pool=host.parent.resourcePool, host=host)
        WaitForTask(task)
        vm = task.info.result
        self.made.append(vm)
        paths = tuple(
            d.backing.fileName
            for d in vm.config.hardware.device
            if isinstance(d, vim.vm.device.VirtualDisk)
        )
        assert vm.runtime.powerState == "poweredOff"
        return VmSpec(
            vm.config.instanceUuid, name, State.SHUTOFF, frozenset(nics), paths, host=HOST
        )

    def start(self, vm_id: str) -> None:
        WaitForTask(self._vm(vm_id).PowerOnVM_Task())

    def stop(self, vm_id: str) -> None:
        vm = self._vm(vm_id)
        if vm.runtime.powerState != "poweredOff":
            WaitForTask(vm.PowerOffVM_Task())

    def teardown(self) -> None:
        """Only what ``build`` made (the simulator itself goes with the module)."""
        try:
            for vm in self.made:
                if vm.runtime.powerState != "poweredOff":
                    WaitForTask(vm.PowerOffVM_Task())
                WaitForTask(vm.Destroy_Task())
        finally:
            if self.disk_dir is not None:
                shutil.rmtree(self.disk_dir, ignore_errors=True)
            Disconnect(self.si)
