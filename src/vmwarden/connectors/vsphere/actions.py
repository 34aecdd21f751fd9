"""Power, snapshot and metadata actions on a vSphere VM, each a vCenter task waited for.

- ``pause``: suspend (``SuspendVM_Task``); ``resume``: power on from suspended.
- ``shutdown``: a guest shutdown when VMware Tools run in the guest (clean), else power off
  (nothing inside the guest could act on the request).
- ``destroy``: power off at once (the VM and its disks stay: it is the libvirt meaning).
- ``snapshot``: ``CreateSnapshot_Task`` without memory or quiescing; returns the snapshot's
  managed-object id.
- metadata: the custom attributes ``vmwarden.owner``, ``vmwarden.classification``,
  ``vmwarden.template``, ``vmwarden.registered`` (``yes``/``no``) and one
  ``vmwarden.tag.KEY`` per tag the ``tag`` action sets; a field is defined on first use and
  cleared by setting it empty (vCenter has no per-VM delete).

An action whose state already holds (suspending a suspended VM) is no call: vCenter would
refuse it with ``InvalidPowerState`` and enforcement would log a failure for nothing.
"""

from __future__ import annotations

from typing import Any

from vmwarden.connectors.vsphere.inventory import FIELD_PREFIX, meta_of
from vmwarden.connectors.vsphere.tasks import call, find_vm, wait
from vmwarden.errors import ConnectorError
from vmwarden.model.vm import VmMeta

TAG_PREFIX = FIELD_PREFIX + "tag."
_FIELDS = ("owner", "classification", "template")


class VsphereActions:
    """Mixin of ``VsphereConnector``: actions over its session (``_si``, ``target``)."""

    _si: Any
    target: Any

    @property
    def host(self) -> str:  # the connector's
        raise NotImplementedError

    def _action_vm(self, vm_id: str) -> Any:
        if self._si is None:
            raise ConnectorError(f"connection to {self.host} is closed")
        return find_vm(self._si, self.target.datacenter, vm_id, self.host)

    def _power(self, vm_id: str, verb: str, method: str, *, unless: tuple[str, ...]) -> None:
        vm = self._action_vm(vm_id)
        if vm.runtime.powerState in unless:
            return
        what = f"{verb} of VM {vm.name!r}"
        wait(call(what, getattr(vm, method)), what)

    def pause(self, vm_id: str) -> None:
        self._power(vm_id, "suspend", "SuspendVM_Task", unless=("suspended", "poweredOff"))

    def resume(self, vm_id: str) -> None:
        self._power(vm_id, "resume", "PowerOnVM_Task", unless=("poweredOn", "poweredOff"))

    def destroy(self, vm_id: str) -> None:
        self._power(vm_id, "power off", "PowerOffVM_Task", unless=("poweredOff",))

    def shutdown(self, vm_id: str) -> None:
        """A clean guest shutdown when Tools run (vCenter returns at once, the guest stops
        on its own), else a power off; a VM already off is left alone."""
        vm = self._action_vm(vm_id)
        state = vm.runtime.powerState
        if state == "poweredOff":
            return
        if state == "poweredOn" and vm.guest.toolsRunningStatus == "guestToolsRunning":
            call(f"guest shutdown of VM {vm.name!r}", vm.ShutdownGuest)
            return
        what = f"power off of VM {vm.name!r} (no VMware Tools running for a guest shutdown)"
        wait(call(what, vm.PowerOffVM_Task), what)

    def snapshot(self, vm_id: str, name: str, description: str) -> str:
        vm = self._action_vm(vm_id)
        what = f"snapshot {name!r} of VM {vm.name!r}"
        task = call(
            what, vm.CreateSnapshot_Task,
            name=name, description=description, memory=False, quiesce=False,
        )  # fmt: skip
        snap = wait(task, what)
        return str(getattr(snap, "_moId", snap))

    def get_metadata(self, vm_id: str) -> VmMeta:
        vm = self._action_vm(vm_id)
        return meta_of(vm.customValue or [], self._field_names())

    def _field_names(self) -> dict[int, str]:
        return {f.key: f.name for f in self._si.content.customFieldsManager.field or []}

    def set_metadata(self, vm_id: str, meta: VmMeta) -> None:
        """Write every vmwarden attribute of ``meta``; those it lacks are cleared."""
        from pyVmomi import vim, vmodl

        vm = self._action_vm(vm_id)
        cfm = self._si.content.customFieldsManager
        names = self._field_names()
        keys = {name: key for key, name in names.items()}
        current = {names.get(v.key, ""): str(v.value or "") for v in vm.customValue or []}
        wanted = {FIELD_PREFIX + f: getattr(meta, f) or "" for f in _FIELDS}
        wanted[FIELD_PREFIX + "registered"] = (
            "" if meta.registered is None else ("yes" if meta.registered else "no")
        )
        wanted |= {TAG_PREFIX + k: str(v) for k, v in meta.tags.items()}
        for name in current:
            if name.startswith(TAG_PREFIX) and name not in wanted:
                wanted[name] = ""
        try:
            for name, value in wanted.items():
                if current.get(name, "") == value:
                    continue
                if name not in keys:
                    keys[name] = cfm.AddCustomFieldDef(name=name, moType=vim.VirtualMachine).key
                cfm.SetField(entity=vm, key=keys[name], value=value)
        except vmodl.MethodFault as exc:
            from vmwarden.connectors.vsphere.tasks import fault_text

            raise ConnectorError(
                f"writing custom attributes of VM {vm.name!r} refused by vCenter: "
                f"{fault_text(exc)}",
                hint="the vCenter user needs Global.SetCustomField (and ManageCustomFields "
                "to define vmwarden.* attributes the first time)",
            ) from None
