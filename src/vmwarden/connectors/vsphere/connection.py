"""``VsphereConnector``: one vCenter session, registered for ``vsphere://`` URIs.

Inventory and lookups here; quarantine/release (``isolation``: every NIC to the quarantine
portgroup) and power, snapshot and custom-attribute actions (``actions``) are mixins.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from vmwarden.connectors.base import DiskUnavailableError, KnownDomains, register_connector
from vmwarden.connectors.vsphere import session
from vmwarden.connectors.vsphere.actions import VsphereActions
from vmwarden.connectors.vsphere.collect import Retrieved, retrieve
from vmwarden.connectors.vsphere.inventory import is_template, sweep, to_vm
from vmwarden.connectors.vsphere.isolation import VsphereIsolation
from vmwarden.connectors.vsphere.observe import covers, read_one
from vmwarden.connectors.vsphere.uri import parse_vsphere_uri
from vmwarden.errors import ConnectorError, DomainGoneError
from vmwarden.model.estate import HostInventory
from vmwarden.model.events import Observed
from vmwarden.model.isolation import QuarantineTarget
from vmwarden.model.ranged import RangedReader
from vmwarden.model.vm import VM, State


@register_connector("vsphere")
class VsphereConnector(VsphereIsolation, VsphereActions):
    """A vCenter session. Its disks are never this machine's files (``local`` is False)."""

    #: NICs move onto ``quarantine.vsphere.portgroup``, which must exist (inventory networks).
    quarantine_target = QuarantineTarget(
        "vsphere_portgroup", "quarantine.vsphere.portgroup", "portgroup"
    )

    def __init__(self, uri: str, *, timeout: float = 30.0) -> None:
        self.target = parse_vsphere_uri(uri)
        self.uri = uri
        self._si: Any = session.connect(self.target, timeout=timeout)
        self._timeout = timeout
        self._files: Any = None  # datastore file access, opened by the first open_disk
        self._scans: Any = None  # running VMs' scan snapshots (scan_snapshots), removed by close
        self._context: Retrieved | None = None  # what observe maps a VM with (observe.py)
        # vSphere templates (not runnable VMs) of the last inventory, mapped like VMs.
        self.templates: list[VM] = []

    @property
    def host(self) -> str:
        """The vCenter's host name (each VM's ``host`` is its ESXi host)."""
        return self.target.host

    def _retrieve(self) -> Retrieved:
        if self._si is None:
            raise ConnectorError(f"connection to {self.target.host} is closed")
        return retrieve(self._si, self.target.datacenter)

    def _all(self) -> tuple[list[VM], list[VM]]:
        got = self._retrieve()
        vms: list[VM] = []
        templates: list[VM] = []
        for moid, props in got.vms.items():
            (templates if is_template(props) else vms).append(to_vm(props, got, self.uri, moid))
        return vms, templates

    def inventory(self, known: KnownDomains | None = None) -> HostInventory:
        """Every VM and template under the URI's datacenter (or all), from one property
        retrieval, with datastores' orphaned VMDKs, tags and power-off times
        (``inventory.sweep``). ``known`` is unused: one retrieval costs less than a rebuild."""
        if self._si is None:
            raise ConnectorError(f"connection to {self.target.host} is closed")
        inv = sweep(self._si, self.target, self.uri, timeout=self._timeout)
        self.templates = inv.templates
        return inv

    def lookup(self, vm_id_or_name: str) -> VM:
        vms, templates = self._all()
        for vm in vms + templates:
            if vm_id_or_name in (vm.id, vm.name):
                return vm
        raise DomainGoneError(
            f"no VM {vm_id_or_name!r} on {self.host}",
            hint="give the VM's name or instanceUuid as `vmwarden scan` lists it",
        )

    def domain_state(self, vm_id: str) -> State:
        return self.lookup(vm_id).state

    def observe(self, vm_id: str) -> Observed:
        """The VM as vCenter has it now (``watch``'s read on an event): one VM's properties,
        mapped with what the last full retrieval knew (``observe``). ``run`` is None:
        vSphere names no start of a VM, so the gate judges every start it is told of."""
        if self._si is None:
            raise ConnectorError(f"connection to {self.target.host} is closed")
        found = read_one(self._si, vm_id)
        if found is not None:
            moid, props = found
            if self._context is None or not covers(self._context, props):
                self.observe_context()
            assert self._context is not None
            return Observed(to_vm(props, self._context, self.uri, moid), None)
        got = self.observe_context()  # by name or moId, or gone: the full read decides
        for moid, props in got.vms.items():
            if vm_id in (props.get("config.instanceUuid"), props.get("name"), moid):
                return Observed(to_vm(props, got, self.uri, moid), None)
        raise DomainGoneError(f"no VM {vm_id!r} on {self.host}")

    def observe_context(self) -> Retrieved:
        """Read (again) what ``observe`` maps a VM with: hosts, portgroups, custom fields
        (the event feed does it at connection, off the path of the first power-on)."""
        self._context = self._retrieve()
        return self._context

    def open_disk(self, path: str) -> RangedReader:
        """A ``[datastore] dir/file.vmdk`` read by ranged GETs over the datastore's HTTPS
        file access with this session's cookie (``connectors.vsphere.disks``); never a
        local path. Raises ``DiskUnavailableError`` with the reason."""
        if self._si is None:
            raise DiskUnavailableError(f"connection to {self.target.host} is closed")
        if self._files is None:
            from vmwarden.connectors.vsphere.disks import datastore_files

            self._files = datastore_files(self.target, self._si, timeout=self._timeout)
        return self._files.open(path)

    def prepare_disks(self, paths: list[str], stable: bool = True) -> None:
        """Before a sweep reads ``paths`` (the inventory's): snapshot each powered-on VM
        using one, so what the paths name stops changing (``scan_snapshots``); powered-off
        VMs are read as they are. ``stable=False`` (watch's reconciles): read live."""
        if self._si is None or not stable:
            return
        if self._scans is None:
            from vmwarden.connectors.vsphere.scan_snapshots import ScanSnapshots

            where = f"{self.target.host}:{self.target.port}"
            self._scans = ScanSnapshots(self._si, where, self.target.datacenter)
        self._scans.prepare(paths)

    def close(self) -> None:
        """Remove the scan snapshots taken (one that fails stays journaled for the next
        run), then end the session."""
        scans, self._scans = self._scans, None
        if scans is not None and self._si is not None:
            scans.release_all()
        si, self._si = self._si, None
        files, self._files = self._files, None
        if files is not None:
            files.close()
        if si is not None:
            session.disconnect(si)

    def __enter__(self) -> VsphereConnector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VsphereConnector({self.uri!r})"
