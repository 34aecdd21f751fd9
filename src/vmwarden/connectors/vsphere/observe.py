"""One VM read on an event (``VsphereConnector.observe``), without a sweep's retrieval.

The power-on gate reads the VM an event names before it judges it, so this read is on the
path from power-on to quarantine. A sweep's retrieval costs seconds on a large vCenter
(7.7 s for 2,000 VMs on vcsim 0.24); one VM's properties cost one small call. What maps
those properties to a neutral ``VM`` (host names, portgroups, custom field names, VLANs,
cluster and datacenter: ``collect.Retrieved``) changes rarely, so it is kept from the last
full retrieval and read again only when the VM names something it does not know (a new
host, portgroup or custom field).
"""

from __future__ import annotations

from typing import Any

from vmwarden.connectors.vsphere.collect import VM_PROPS, Retrieved

Found = tuple[str, dict[str, Any]]  # (VM moId, its properties)


def read_one(si: Any, vm_id: str) -> Found | None:
    """The VM whose instanceUuid is ``vm_id``, by the search index and one property read;
    None when no VM has it (a name, a moId, or gone: the caller reads everything)."""
    from pyVmomi import vim, vmodl

    content = si.content
    ref = content.searchIndex.FindByUuid(uuid=vm_id, vmSearch=True, instanceUuid=True)
    if not isinstance(ref, vim.VirtualMachine):
        return None
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=ref, skip=False)],
        propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=VM_PROPS)],
    )
    try:
        result = content.propertyCollector.RetrievePropertiesEx(
            specSet=[spec], options=pc.RetrieveOptions(maxObjects=1)
        )
    except vmodl.fault.ManagedObjectNotFound:
        return None  # removed between the search and the read
    objects = (result.objects or []) if result is not None else []
    if not objects:
        return None
    return ref._moId, {p.name: p.val for p in objects[0].propSet}


def covers(got: Retrieved, props: dict[str, Any]) -> bool:
    """Whether ``got`` knows everything ``props`` refers to (host, portgroups, fields)."""
    host = props.get("runtime.host")
    if host is not None and host._moId not in got.hosts:
        return False
    if any(int(v.key) not in got.fields for v in props.get("customValue") or []):
        return False
    for device in props.get("config.hardware.device") or []:
        backing = getattr(device, "backing", None) if hasattr(device, "macAddress") else None
        port = getattr(backing, "port", None)
        if port is not None and getattr(port, "portgroupKey", None):
            if port.portgroupKey not in got.dvpgs:
                return False
            continue
        net = getattr(backing, "network", None)
        if net is not None and net._moId not in got.networks:
            return False
    return True
