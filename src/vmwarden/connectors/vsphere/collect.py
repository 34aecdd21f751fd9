"""One PropertyCollector retrieval per sweep: every VM, host and portgroup under a view.

A container view over the datacenter (or the whole inventory) and a traversal of its
``view`` property feed a single ``RetrievePropertiesEx`` (continued by token for large
estates): the cost is a few pages, never a call per VM.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from vmwarden.errors import ConnectorError

VM_PROPS = [
    "name",
    "config.instanceUuid",
    "config.template",
    "config.guestId",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.hardware.device",
    "runtime.powerState",
    "runtime.host",
    "customValue",
]
PAGE = 500


@dataclass
class Retrieved:
    """What the sweep's retrieval returned: properties by managed-object id and type."""

    vms: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)  # host moId → name
    networks: dict[str, str] = field(default_factory=dict)  # network moId → name
    dvpgs: dict[str, str] = field(default_factory=dict)  # portgroup key → name
    fields: dict[int, str] = field(default_factory=dict)  # custom field key → name


def container(si: Any, datacenter: str | None) -> Any:
    """The folder the view starts at: the named datacenter, or the root folder."""
    from pyVmomi import vim

    content = si.content
    if datacenter is None:
        return content.rootFolder
    found = content.searchIndex.FindByInventoryPath(datacenter)
    if not isinstance(found, vim.Datacenter):
        raise ConnectorError(
            f"no datacenter {datacenter!r} in this vCenter",
            hint="the URI path names a datacenter (vsphere://USER@HOST/DATACENTER)",
        )
    return found


def retrieve(si: Any, datacenter: str | None) -> Retrieved:
    """Every VM, host and network under ``datacenter`` (or everywhere) in one retrieval."""
    from pyVmomi import vim, vmodl

    pc = vmodl.query.PropertyCollector
    content = si.content
    view = content.viewManager.CreateContainerView(
        container(si, datacenter), [vim.VirtualMachine, vim.HostSystem, vim.Network], True
    )
    try:
        spec = pc.FilterSpec(
            objectSet=[
                pc.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[
                        pc.TraversalSpec(name="view", path="view", skip=False, type=type(view))
                    ],
                )
            ],
            propSet=[
                pc.PropertySpec(type=vim.VirtualMachine, pathSet=VM_PROPS),
                pc.PropertySpec(type=vim.HostSystem, pathSet=["name"]),
                pc.PropertySpec(type=vim.Network, pathSet=["name"]),
                pc.PropertySpec(type=vim.dvs.DistributedVirtualPortgroup, pathSet=["key"]),
            ],
        )
        out = Retrieved()
        for obj in _objects(content.propertyCollector, spec):
            props = {p.name: p.val for p in obj.propSet}
            moid = obj.obj._moId
            if isinstance(obj.obj, vim.VirtualMachine):
                out.vms[moid] = props
            elif isinstance(obj.obj, vim.HostSystem):
                out.hosts[moid] = str(props.get("name", moid))
            elif isinstance(obj.obj, vim.Network):
                out.networks[moid] = str(props.get("name", moid))
                if "key" in props:
                    out.dvpgs[str(props["key"])] = out.networks[moid]
        out.fields = {f.key: f.name for f in (content.customFieldsManager.field or [])}
        return out
    finally:
        view.DestroyView()


def _objects(collector: Any, spec: Any) -> Iterator[Any]:
    from pyVmomi import vmodl

    options = vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=PAGE)
    result = collector.RetrievePropertiesEx(specSet=[spec], options=options)
    while result is not None:
        yield from result.objects or []
        if not result.token:
            return
        result = collector.ContinueRetrievePropertiesEx(token=result.token)
