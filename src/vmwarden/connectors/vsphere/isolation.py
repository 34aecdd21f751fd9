"""Quarantine of a vSphere VM's NICs, behind the connector contract (``isolate``,
``is_isolated``, ``changes_since``, ``restore_plan``, ``restore``).

Each NIC is moved to ``quarantine.vsphere.portgroup`` (a standard or distributed portgroup,
checked to exist and to be reachable from the VM's ESXi host first), disconnected and not
connected at power-on, in one step per NIC: one ``ReconfigVM_Task`` editing that device.
The record of a NIC (opaque outside this package, journaled by enforcement)::

    {"key": 4000, "mac": "00:50:56:…", "before": NicState, "step": "pending"[, "drift": NicState]}

``before`` is the NIC's backing (portgroup name and moid, or DVS uuid + portgroup key + port
key) and its two connect flags (``nicspec``); ``step`` is ``pending``, ``done``, ``gone``
or ``failed: …``. NICs are keyed by device key, not MAC: vcsim gives two VMs of one host
the same MAC, and an admin may change a MAC. The caller journals the records after every
step (``progress("nic")``), so a crash between NICs is repaired by calling the same method
again; a NIC that already looks as desired makes no call (idempotent).

vcsim 0.24 reports ``connected=False`` for the NICs of powered-on VMs. Nothing here infers
isolation from ``connected``: the portgroup move is what isolates, ``startConnected=False``
keeps it across a power cycle, and release writes back exactly the flags recorded (on
vcsim the False it reported; on vCenter the real value).

``VsphereRecords`` (registered for ``vsphere``) answers enforcement's two questions about a
record with no connection and no pyvmomi: which NIC (its MAC) and where it was before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vmwarden.connectors.capabilities import register_records
from vmwarden.connectors.vsphere.collect import container, objects
from vmwarden.connectors.vsphere.nicspec import (
    Networks,
    NicState,
    backing_problem,
    describe,
    nic_devices,
    reconfigure,
    same,
    state_of,
    target_backing,
)
from vmwarden.connectors.vsphere.tasks import find_vm
from vmwarden.errors import ConnectorError
from vmwarden.model.isolation import IsolationRecord, NicChange, QuarantineSpec
from vmwarden.model.vm import NicOrigin

_FINISHED = ("done", "gone")
STEP = "nic"
_KINDS = {"portgroup": "vsphere-portgroup", "dvpg": "vsphere-dvpg", "opaque": "vsphere-opaque"}


class VsphereRecords:
    """Reads vSphere isolation records for enforcement (see the module docstring)."""

    @staticmethod
    def key(record: Mapping[str, Any]) -> str:
        return str(record.get("mac") or "")

    @staticmethod
    def origin(record: Mapping[str, Any], network: str, *, live: bool) -> NicOrigin | None:
        """The NIC's portgroup before quarantine (None: nothing recorded, or it was on the
        quarantine portgroup already); ``ConnectorError`` for an unreadable record."""
        before = record.get("before")
        if not isinstance(before, Mapping) or not isinstance(before.get("backing"), Mapping):
            raise ConnectorError(f"unreadable vSphere isolation record of NIC {record.get('mac')}")
        backing = before["backing"]
        name = backing.get("network")
        if name is not None and name == network:
            return None
        up = bool(before.get("connected")) or bool(before.get("start_connected"))
        return NicOrigin(
            type=_KINDS.get(str(backing.get("kind")), "vsphere-other"),
            network=name,
            portgroup=name,
            link="up" if up else "down",
        )


RECORDS = register_records("vsphere")(VsphereRecords())


def quarantined(spec_backing: dict[str, Any]) -> NicState:
    """What quarantine makes of a NIC: on the quarantine portgroup, off, off at power-on."""
    return {"backing": spec_backing, "connected": False, "start_connected": False}


class VsphereIsolation:
    """Mixin of ``VsphereConnector``: isolation over its session (``_si``, ``target``)."""

    _si: Any
    target: Any

    @property
    def host(self) -> str:  # the connector's
        raise NotImplementedError

    def _vm(self, vm_id: str) -> Any:
        if self._si is None:
            raise ConnectorError(f"connection to {self.host} is closed")
        return find_vm(self._si, self.target.datacenter, vm_id, self.host)

    def _networks(self) -> Networks:
        """Every network (standard and distributed portgroups) under the URI's datacenter,
        by moId with its name: one property retrieval, not a call per portgroup."""
        from pyVmomi import vim, vmodl

        if self._si is None:
            raise ConnectorError(f"connection to {self.host} is closed")
        pc = vmodl.query.PropertyCollector
        content = self._si.content
        view = content.viewManager.CreateContainerView(
            container(self._si, self.target.datacenter), [vim.Network], True
        )
        try:
            traverse = pc.TraversalSpec(name="view", path="view", skip=False, type=type(view))
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
                propSet=[pc.PropertySpec(type=vim.Network, pathSet=["name"])],
            )
            return {
                o.obj._moId: (str(o.propSet[0].val), o.obj)
                for o in objects(content.propertyCollector, spec)
                if o.propSet
            }
        finally:
            view.DestroyView()

    def network_exists(self, name: str) -> bool:
        return any(found == name for found, _net in self._networks().values())

    def quarantine_target_problem(self, spec: QuarantineSpec) -> str | None:
        """vSphere isolates onto ``quarantine.vsphere.portgroup``: named and present."""
        where = f"vCenter {self.host}" + (
            f" (datacenter {self.target.datacenter})" if self.target.datacenter else ""
        )
        if not spec.vsphere_portgroup:
            return (
                f"the policy names no vSphere quarantine portgroup for {where} "
                "(quarantine: {vsphere: {portgroup: NAME}})"
            )
        if not self.network_exists(spec.vsphere_portgroup):
            return f"quarantine portgroup {spec.vsphere_portgroup!r} does not exist in {where}"
        return None

    def isolation_records(self, vm_id: str) -> list[IsolationRecord]:
        """One record per NIC as it is now (its original), its step still to do."""
        vm = self._vm(vm_id)
        return [_record(k, d, vm) for k, d in sorted(nic_devices(vm).items())]

    def _target(self, vm: Any, spec: QuarantineSpec) -> NicState | str:
        if not spec.vsphere_portgroup:
            return "the policy names no vSphere quarantine portgroup"
        got = target_backing(vm, self._networks(), spec.vsphere_portgroup)
        return got if isinstance(got, str) else quarantined(got)

    def isolate(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        spec: QuarantineSpec,
        *,
        progress: Callable[[str], None],
        on_live: Callable[[], None] | None = None,
    ) -> list[str]:
        """Move every NIC not yet moved; returns what is still unfinished (the entry's
        error). ``on_live``: called when a powered-on VM's NIC has just been moved."""
        vm = self._vm(vm_id)
        target = self._target(vm, spec)
        devices = nic_devices(vm)
        running = vm.runtime.powerState == "poweredOn"

        def step(nic: IsolationRecord) -> str:
            if isinstance(target, str):
                return f"failed: {target}"
            device = devices.get(nic["key"])
            if device is None:
                return "gone"
            if same(state_of(device, vm), target):
                return "done"
            try:
                reconfigure(vm, device, target, f"moving NIC {nic['mac']} to quarantine")
            except ConnectorError as exc:
                return f"failed: {exc}"
            if running and on_live is not None:
                on_live()
            return "done"

        return _steps(records, step, progress)

    def is_isolated(self, vm_id: str, records: list[IsolationRecord], spec: QuarantineSpec) -> bool:
        """Whether every NIC is still where quarantine put it. Marks each drifted NIC
        pending (keeping a hand change for release to report) and adds a NIC added since,
        its original recorded: ``isolate`` then re-applies only those."""
        vm = self._vm(vm_id)
        target = self._target(vm, spec)
        devices = nic_devices(vm)
        intact = not isinstance(target, str)
        known = {n["key"] for n in records}
        for key, device in sorted(devices.items()):
            if key not in known:
                records.append(_record(key, device, vm))
                intact = False
        for nic in records:
            device = devices.get(nic["key"])
            if device is None:
                continue
            now = state_of(device, vm)
            if isinstance(target, str) or not same(now, target):
                nic["step"] = "pending"
                intact = False
                _keep_drift(nic, now, target)
        return intact

    def changes_since(
        self, vm_id: str, records: list[IsolationRecord], spec: QuarantineSpec
    ) -> list[NicChange]:
        """Every NIC someone changed during quarantine, described for people."""
        vm = self._vm(vm_id)
        target = self._target(vm, spec)
        q = describe(target) if not isinstance(target, str) else repr(spec.vsphere_portgroup)
        return [
            NicChange(nic["mac"], f"device {nic['key']}", describe(now), q, describe(before), again)
            for nic, now, before, again in _found(records, nic_devices(vm), vm, spec)
        ]

    def restore_plan(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        spec: QuarantineSpec,
        changes: list[NicChange],
        *,
        keep_changes: bool,
    ) -> list[IsolationRecord]:
        """One release record per NIC; with ``keep_changes`` the state to leave in place of
        the original for each changed NIC (its new portgroup, connected as before)."""
        keep: dict[int, NicState] = {}
        if keep_changes and changes:
            vm = self._vm(vm_id)
            for nic, now, before, _again in _found(records, nic_devices(vm), vm, spec):
                keep[nic["key"]] = {
                    **now,
                    **{k: before[k] for k in ("connected", "start_connected")},
                }
        return [
            {
                "key": n["key"],
                "mac": n["mac"],
                "step": "pending",
                **({"keep": keep[n["key"]]} if n["key"] in keep else {}),
            }
            for n in records
        ]

    def restore(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        plan: list[IsolationRecord],
        *,
        progress: Callable[[str], None],
    ) -> list[str]:
        """Put every NIC back as its record says (or as the plan keeps it); what remains."""
        originals = {n["key"]: n for n in records}
        vm = self._vm(vm_id)
        devices = nic_devices(vm)
        networks: dict[str, tuple[str, Any]] = {}

        def step(nic: IsolationRecord) -> str:
            device = devices.get(nic["key"])
            if device is None or nic["key"] not in originals:
                return "gone"
            desired = nic.get("keep") or originals[nic["key"]]["before"]
            if same(state_of(device, vm), desired):
                return "done"
            if not networks:
                networks.update(self._networks())
            problem = backing_problem(vm, networks, desired)
            if problem is not None:  # never a reconfigure onto a portgroup that is gone
                return f"failed: {problem}"
            try:
                reconfigure(vm, device, desired, f"restoring NIC {nic['mac']}")
            except ConnectorError as exc:
                return f"failed: {exc}"
            return "done"

        return _steps(plan, step, progress)


def _record(key: int, device: Any, vm: Any) -> IsolationRecord:
    mac = str(device.macAddress or "").lower()
    return {"key": key, "mac": mac, "before": state_of(device, vm), "step": "pending"}


def _steps(
    records: list[IsolationRecord],
    step: Callable[[IsolationRecord], str],
    progress: Callable[[str], None],
) -> list[str]:
    """Each NIC's unfinished step, ``progress`` after every one (the caller journals)."""
    for nic in records:
        if nic["step"] in _FINISHED:
            continue
        nic["step"] = step(nic)
        progress(STEP)
    return [f"{n['mac']} (device {n['key']}): {n['step']}" for n in records
            if n["step"] not in _FINISHED]  # fmt: skip


def _keep_drift(nic: IsolationRecord, now: NicState, target: NicState | str) -> None:
    """Remember a NIC someone changed before it is isolated again, so that release reports
    it rather than silently restoring the old original; one put back by hand to the
    original forgets an earlier change."""
    quarantine = None if isinstance(target, str) else target
    if not same(now, nic["before"]) and not same(now, quarantine):
        nic["drift"] = now
    else:
        nic.pop("drift", None)


def _found(
    records: list[IsolationRecord], devices: Mapping[int, Any], vm: Any, spec: QuarantineSpec
) -> list[tuple[IsolationRecord, NicState, NicState, bool]]:
    """(record, changed state, original, re-isolated since) per NIC someone changed: now
    neither its original nor as quarantine left it, or so found by a reconcile before."""
    found = []
    for nic in records:
        device = devices.get(nic["key"])
        before = nic["before"]
        if device is not None:
            now = state_of(device, vm)
            if not same(now, before) and not _is_quarantine(now, spec):
                found.append((nic, now, before, False))
                continue
        if (drift := nic.get("drift")) is not None:
            found.append((nic, drift, before, True))
    return found


def _is_quarantine(state: NicState, spec: QuarantineSpec) -> bool:
    """Whether a NIC is as quarantine leaves it (on its portgroup, both flags off)."""
    return (
        state["backing"].get("network") == spec.vsphere_portgroup
        and not state["connected"]
        and not state["start_connected"]
    )
