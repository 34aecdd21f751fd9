"""One PropertyCollector retrieval per sweep: every VM, host, portgroup and datastore.

A container view over the datacenter (or the whole inventory) and a traversal of its
``view`` property (and from each host to its network system, where standard portgroups
keep their VLAN) feed a single ``RetrievePropertiesEx`` (continued by token for large
estates): the cost is a few pages, never a call per VM. Folders, datacenters and compute
resources come in the same retrieval so that each host's cluster and datacenter are found
by walking ``parent`` references in memory.
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
    "config.createDate",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.hardware.device",
    "runtime.powerState",
    "runtime.host",
    "customValue",
    "layoutEx.file",
]
HOST_PROPS = ["name", "parent", "configManager.networkSystem"]
PAGE = 500


@dataclass
class Retrieved:
    """What the sweep's retrieval returned: properties by managed-object id and type."""

    vms: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)  # host moId → name
    networks: dict[str, str] = field(default_factory=dict)  # network moId → name
    dvpgs: dict[str, str] = field(default_factory=dict)  # portgroup key → name
    fields: dict[int, str] = field(default_factory=dict)  # custom field key → name
    # distributed portgroup key → VLAN ids of its default port config
    dvpg_vlans: dict[str, list[int]] = field(default_factory=dict)
    # host moId → {standard portgroup name → VLAN ids} (from the host's network system)
    host_vlans: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # host moId → (cluster name or None, datacenter name or None)
    placement: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    # datastore moId → (name, HostDatastoreBrowser reference)
    datastores: dict[str, tuple[str, Any]] = field(default_factory=dict)


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


def filter_spec(view: Any, vm_props: list[str] = VM_PROPS) -> Any:
    """The one FilterSpec of a sweep (the bench's floor retrieves ``vm_props`` with it)."""
    from pyVmomi import vim, vmodl

    pc = vmodl.query.PropertyCollector
    to_netsys = pc.TraversalSpec(
        name="netsys", path="configManager.networkSystem", skip=False, type=vim.HostSystem
    )
    return pc.FilterSpec(
        objectSet=[
            pc.ObjectSpec(
                obj=view,
                skip=True,
                selectSet=[
                    pc.TraversalSpec(
                        name="view", path="view", skip=False, type=type(view), selectSet=[to_netsys]
                    )
                ],
            )
        ],
        propSet=[
            pc.PropertySpec(type=vim.VirtualMachine, pathSet=vm_props),
            pc.PropertySpec(type=vim.HostSystem, pathSet=HOST_PROPS),
            pc.PropertySpec(type=vim.Network, pathSet=["name"]),
            pc.PropertySpec(
                type=vim.dvs.DistributedVirtualPortgroup,
                pathSet=["key", "config.defaultPortConfig"],
            ),
            pc.PropertySpec(type=vim.host.NetworkSystem, pathSet=["networkInfo.portgroup"]),
            pc.PropertySpec(type=vim.ComputeResource, pathSet=["name", "parent"]),
            pc.PropertySpec(type=vim.Folder, pathSet=["parent"]),
            pc.PropertySpec(type=vim.Datacenter, pathSet=["name", "parent"]),
            pc.PropertySpec(type=vim.Datastore, pathSet=["name", "browser"]),
        ],
    )


VIEW_TYPES = (
    "VirtualMachine",
    "HostSystem",
    "Network",
    "ComputeResource",
    "Folder",
    "Datacenter",
    "Datastore",
)


def open_view(si: Any, datacenter: str | None, root: Any = None) -> Any:
    """A container view of every type the sweep reads, under ``root`` (else the URI's
    datacenter, else everything)."""
    from pyVmomi import vim

    types = [getattr(vim, name) for name in VIEW_TYPES]
    root = root if root is not None else container(si, datacenter)
    return si.content.viewManager.CreateContainerView(root, types, True)


def retrieve(si: Any, datacenter: str | None) -> Retrieved:
    """Every VM, host, network and datastore under ``datacenter`` (or everywhere), at once."""
    from pyVmomi import vim

    content = si.content
    root = container(si, datacenter)
    view = open_view(si, datacenter, root)
    # a view starting at a datacenter holds what is under it, not the datacenter itself
    top = root.name if datacenter is not None else None
    try:
        out = Retrieved()
        host_netsys: dict[str, str] = {}  # host moId → its network system's moId
        netsys_vlans: dict[str, dict[str, list[int]]] = {}
        parents: dict[str, tuple[str, str | None, str | None]] = {}  # moId → kind, name, parent
        host_parent: dict[str, str | None] = {}
        for obj in objects(content.propertyCollector, filter_spec(view)):
            props = {p.name: p.val for p in obj.propSet}
            ref = obj.obj
            moid = ref._moId
            if isinstance(ref, vim.VirtualMachine):
                out.vms[moid] = props
            elif isinstance(ref, vim.HostSystem):
                out.hosts[moid] = str(props.get("name", moid))
                host_parent[moid] = _moid(props.get("parent"))
                netsys = _moid(props.get("configManager.networkSystem"))
                if netsys is not None:
                    host_netsys[moid] = netsys
            elif isinstance(ref, vim.Network):
                out.networks[moid] = str(props.get("name", moid))
                if "key" in props:
                    key = str(props["key"])
                    out.dvpgs[key] = out.networks[moid]
                    out.dvpg_vlans[key] = dvpg_vlan(props.get("config.defaultPortConfig"))
            elif isinstance(ref, vim.host.NetworkSystem):
                netsys_vlans[moid] = {
                    str(pg.spec.name): vlan_ids(getattr(pg.spec, "vlanId", 0))
                    for pg in props.get("networkInfo.portgroup") or []
                    if getattr(pg, "spec", None) is not None
                }
            elif isinstance(ref, vim.Datastore):
                out.datastores[moid] = (str(props.get("name", moid)), props.get("browser"))
            else:
                kind = type(ref).__name__.rsplit(".", 1)[-1]
                parents[moid] = (kind, props.get("name"), _moid(props.get("parent")))
        for host, netsys in host_netsys.items():
            out.host_vlans[host] = netsys_vlans.get(netsys, {})
        for host, parent in host_parent.items():
            cluster, dc = _placement(parent, parents)
            out.placement[host] = (cluster, dc or top)
        out.fields = {f.key: f.name for f in (content.customFieldsManager.field or [])}
        return out
    finally:
        view.DestroyView()


def _moid(ref: Any) -> str | None:
    return getattr(ref, "_moId", None) if ref is not None else None


def _placement(
    parent: str | None, parents: dict[str, tuple[str, str | None, str | None]]
) -> tuple[str | None, str | None]:
    """(cluster, datacenter) of a host from its ``parent`` chain: a standalone host's
    parent is a plain ComputeResource (no cluster)."""
    cluster = datacenter = None
    seen: set[str] = set()
    while parent is not None and parent not in seen and parent in parents:
        seen.add(parent)
        kind, name, parent_ = parents[parent]
        if kind == "ClusterComputeResource" and cluster is None:
            cluster = name
        if kind == "Datacenter":
            datacenter = name
            break
        parent = parent_
    return cluster, datacenter


def vlan_ids(vlan: Any) -> list[int]:
    """A standard portgroup's ``vlanId``: 0 is untagged (no VLAN), 4095 all VLANs (trunk)."""
    try:
        value = int(vlan or 0)
    except (TypeError, ValueError):
        return []
    return [value] if 0 < value <= 4095 else []


def dvpg_vlan(setting: Any) -> list[int]:
    """VLAN ids of a distributed portgroup's default port setting: one id, a trunk's ranges
    (expanded), or a private VLAN's id; none when untagged or not said."""
    vlan = getattr(setting, "vlan", None)
    if vlan is None:
        return []
    kind = type(vlan).__name__
    if kind.endswith("TrunkVlanSpec"):
        ids: list[int] = []
        for r in getattr(vlan, "vlanId", None) or []:
            ids.extend(range(max(0, int(r.start)), min(4094, int(r.end)) + 1))
        return sorted(set(ids))
    if kind.endswith("PvlanSpec"):
        return vlan_ids(getattr(vlan, "pvlanId", 0))
    return vlan_ids(getattr(vlan, "vlanId", 0))


def objects(collector: Any, spec: Any) -> Iterator[Any]:
    """The retrieval's objects, page by page (continued by token)."""
    from pyVmomi import vmodl

    options = vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=PAGE)
    result = collector.RetrievePropertiesEx(specSet=[spec], options=options)
    while result is not None:
        yield from result.objects or []
        if not result.token:
            return
        result = collector.ContinueRetrievePropertiesEx(token=result.token)
