"""Finding one VM and waiting for a vCenter task, each failure turned into a one-line error.

Everything that changes a VM (reconfigure, power, snapshot) is a vCenter task; pyvmomi's
``WaitForTask`` has no deadline, so a stuck task would hang enforcement: this waits with
one, polling ``info.state``. pyvmomi is imported inside the functions (see ``session``).
"""

from __future__ import annotations

import time
from typing import Any

from vmwarden.connectors.vsphere.collect import container
from vmwarden.errors import ConnectorError, DomainGoneError

#: How long a task may run before enforcement gives up on it (the task itself goes on).
TASK_TIMEOUT = 600.0


def find_vm(si: Any, datacenter: str | None, vm_id_or_name: str, host: str) -> Any:
    """The ``vim.VirtualMachine`` whose instanceUuid (the VM's id) or name is given."""
    from pyVmomi import vim

    content = si.content
    scope = container(si, datacenter)  # the URI's datacenter: never a VM outside it
    found = content.searchIndex.FindByUuid(
        datacenter=scope if datacenter is not None else None,
        uuid=vm_id_or_name,
        vmSearch=True,
        instanceUuid=True,
    )
    # vcsim 0.24 ignores FindByUuid's datacenter: the VM's own datacenter is checked too
    if found is not None and (datacenter is None or _datacenter_of(found) == scope._moId):
        return found
    view = content.viewManager.CreateContainerView(scope, [vim.VirtualMachine], True)
    try:
        for vm in view.view:
            if vm_id_or_name in (vm.name, vm._moId):
                return vm
    finally:
        view.DestroyView()
    raise DomainGoneError(
        f"no VM {vm_id_or_name!r} on {host}",
        hint="give the VM's name or instanceUuid as `vmwarden scan` lists it",
    )


def _datacenter_of(entity: Any) -> str | None:
    """The moId of the datacenter ``entity`` sits in (folders, vApps and pools walked up)."""
    from pyVmomi import vim

    for _ in range(64):
        if entity is None or isinstance(entity, vim.Datacenter):
            break
        entity = getattr(entity, "parent", None) or getattr(entity, "parentVApp", None)
    return entity._moId if entity is not None else None


def fault_text(exc: Any) -> str:
    """A vSphere fault in one line (its ``msg``, else its type)."""
    msg = getattr(exc, "msg", None) or getattr(exc, "localizedMessage", None)
    return str(msg or type(exc).__name__.rsplit(".", 1)[-1])


def wait(task: Any, what: str, *, timeout: float = TASK_TIMEOUT) -> Any:
    """The task's result once it succeeded; ``ConnectorError`` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        info = task.info
        if info.state == "success":
            return info.result
        if info.state == "error":
            raise ConnectorError(f"{what} failed in vCenter: {fault_text(info.error)}")
        if time.monotonic() > deadline:
            raise ConnectorError(
                f"{what}: vCenter task {task._moId} still {info.state} after {timeout:.0f} s",
                hint="look at the task in vCenter; vmwarden did not cancel it",
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def call(what: str, method: Any, /, **kwargs: Any) -> Any:
    """Start a vCenter method (a task or a direct call); its fault as ``ConnectorError``."""
    from pyVmomi import vmodl

    try:
        return method(**kwargs)
    except vmodl.MethodFault as exc:
        raise ConnectorError(f"{what} refused by vCenter: {fault_text(exc)}") from None
