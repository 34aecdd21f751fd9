"""Quarantine of a libvirt domain's NICs, behind the connector contract (``isolate``,
``is_isolated``, ``changes_since``, ``restore_plan``, ``restore``).

Each NIC is moved to the quarantine network (link down by default) in two steps, the running
VM's NIC (``live``) and the persistent definition's (``config``), and put back exactly from
its record (``nicstate``: the ``<interface>`` XML before, both scopes). The caller journals the
records before the first step and after every step (``progress``), so a crash between two
steps is repaired by calling the same method again with the journaled records; a step whose
NIC already looks as desired makes no call, so every method is idempotent.

Release never overwrites silently what someone changed during quarantine: ``changes_since``
lists each NIC scope that is neither the original nor what quarantine set (now, or as a
reconcile found it before re-isolating it, kept in the record as ``drift``); the caller
refuses, or passes ``keep_changes`` (keep each changed scope, raise the link quarantine took
down; a running VM whose persistent NIC was fixed gets the fix live too) or restores the
originals over them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from vmwarden.connectors.libvirt.nicstate import (
    SCOPE_NAME,
    STEPS,
    NicSnapshot,
    describe,
    is_change,
    link_state,
    original_of,
    quarantined_xml,
    same_interface,
    with_link_of,
    with_live_handles,
)
from vmwarden.errors import ConnectorError
from vmwarden.model.isolation import IsolationRecord, NicChange, QuarantineSpec

_FINISHED = ("done", "skipped", "gone")
Step = Callable[[IsolationRecord, str], str]


class LibvirtIsolation:
    """Mixin of ``LibvirtConnector``: isolation over its ``nic_snapshot``/``set_interface``."""

    def nic_snapshot(self, vm_id: str) -> list[NicSnapshot]:  # the connector's
        raise NotImplementedError

    def set_interface(self, vm_id: str, iface_xml: str, *, live: bool, config: bool) -> None:
        raise NotImplementedError  # the connector's

    def _current(self, vm_id: str) -> dict[str, NicSnapshot]:
        return {s.mac: s for s in self.nic_snapshot(vm_id)}

    def isolation_records(self, vm_id: str) -> list[IsolationRecord]:
        """One record per NIC as it is now (its original), both steps still to do."""
        return [_record(s) for s in self.nic_snapshot(vm_id)]

    def isolate(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        spec: QuarantineSpec,
        *,
        progress: Callable[[str], None],
        on_live: Callable[[], None] | None = None,
    ) -> list[str]:
        """Carry out every unfinished step; returns what is still unfinished (for the
        entry's error). ``on_live``: called when a running VM's NIC has just been moved."""
        current = self._current(vm_id)

        def step(nic: IsolationRecord, scope: str) -> str:
            snap = current.get(nic["mac"])
            if snap is None:
                return "gone"
            xml = snap.live_xml if scope == "live" else snap.config_xml
            if xml is None:  # not running (live) or transient (config): nothing to change
                return "skipped"
            target = quarantined_xml(xml, spec.network, spec.link_down)
            return self._attach(vm_id, xml, target, scope, on_live)

        return _steps(records, step, progress)

    def is_isolated(self, vm_id: str, records: list[IsolationRecord], spec: QuarantineSpec) -> bool:
        """Whether every NIC is still where quarantine put it. Marks each drifted step
        pending (keeping a hand change for release to report) and adds a NIC hot-plugged
        since, its original recorded: ``isolate`` then re-applies only those."""
        current = self._current(vm_id)
        intact = True
        known = {n["mac"] for n in records}
        for mac, snap in current.items():
            if mac not in known:
                records.append(_record(snap))
                intact = False
        for nic in records:
            snap = current.get(nic["mac"])
            for scope in STEPS:
                xml = None if snap is None else getattr(snap, f"{scope}_xml")
                target = None if xml is None else quarantined_xml(xml, spec.network, spec.link_down)
                if xml is not None and not same_interface(xml, target):
                    nic[scope] = "pending"
                    intact = False
                    _keep_drift(nic, scope, xml, spec)
        return intact

    def changes_since(
        self, vm_id: str, records: list[IsolationRecord], spec: QuarantineSpec
    ) -> list[NicChange]:
        """Every NIC scope someone changed during quarantine, described for people."""
        return [
            NicChange(
                mac,
                SCOPE_NAME[scope],
                describe(now),
                describe(target),
                describe(before),
                reisolated,
            )
            for mac, scope, now, target, before, reisolated in _found(
                records, self._current(vm_id), spec
            )
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
        """One release record per NIC: both steps to do, and with ``keep_changes`` the XML
        to leave in place of the original for each changed scope."""
        keep: dict[str, dict[str, str]] = {}
        if keep_changes and changes:
            keep = _kept(records, self._current(vm_id), spec)
        return [
            {
                "mac": n["mac"],
                "live": "pending",
                "config": "pending",
                **{f"keep_{scope}": xml for scope, xml in keep.get(n["mac"], {}).items()},
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
        originals = {n["mac"]: n for n in records}
        current = self._current(vm_id)

        def step(nic: IsolationRecord, scope: str) -> str:
            snap = current.get(nic["mac"])
            if snap is None:
                return "gone"
            before = nic.get(f"keep_{scope}") or original_of(originals[nic["mac"]], scope)
            now = snap.live_xml if scope == "live" else snap.config_xml
            if now is None or before is None:
                return "skipped"
            desired = with_live_handles(before, now) if scope == "live" else before
            return self._attach(vm_id, now, desired, scope, None)

        return _steps(plan, step, progress)

    def _attach(
        self,
        vm_id: str,
        current: str,
        desired: str,
        scope: str,
        on_live: Callable[[], None] | None,
    ) -> str:
        """Make one NIC scope look like ``desired`` (no call when it already does)."""
        if same_interface(current, desired):
            return "done"
        try:
            self.set_interface(vm_id, desired, live=scope == "live", config=scope == "config")
        except ConnectorError as exc:
            return f"failed: {exc}"
        if scope == "live" and on_live is not None:
            on_live()
        return "done"


def _record(snap: NicSnapshot) -> IsolationRecord:
    return {
        "mac": snap.mac,
        "live_before": snap.live_xml,
        "config_before": snap.config_xml,
        "live": "pending",
        "config": "pending",
    }


def _steps(
    records: list[IsolationRecord], step: Step, progress: Callable[[str], None]
) -> list[str]:
    """Each NIC's unfinished steps, ``progress(step)`` after every one (the caller journals)."""
    for nic in records:
        for scope in STEPS:
            if nic[scope] in _FINISHED:
                continue
            nic[scope] = step(nic, scope)
            progress(scope)
    return [f"{n['mac']} {s}: {n[s]}" for n in records for s in STEPS if n[s] not in _FINISHED]


def _keep_drift(nic: IsolationRecord, scope: str, xml: str, spec: QuarantineSpec) -> None:
    """Remember a scope someone changed before it is isolated again, so that release reports
    it rather than silently restoring the old original. The latest hand change counts: one
    back to the original (a hand undo of the quarantine) forgets an earlier change."""
    before = original_of(nic, scope)
    if before is not None and is_change(xml, before, spec.network, spec.link_down):
        nic.setdefault("drift", {})[scope] = xml
    elif scope in (nic.get("drift") or {}):
        del nic["drift"][scope]


def _found(
    records: list[IsolationRecord], current: Mapping[str, NicSnapshot], spec: QuarantineSpec
) -> list[tuple[str, str, str, str, str, bool]]:
    """(mac, scope, changed XML, quarantined XML, original XML, re-isolated since)."""
    found = []
    for nic in records:
        snap = current.get(nic["mac"])
        for scope in STEPS:
            before = original_of(nic, scope)
            if before is None:
                continue
            xml = None if snap is None else getattr(snap, f"{scope}_xml")
            target = quarantined_xml(before, spec.network, spec.link_down)
            if xml is not None and is_change(xml, before, spec.network, spec.link_down):
                found.append((nic["mac"], scope, xml, target, before, False))
            elif (drifted := (nic.get("drift") or {}).get(scope)) is not None:
                found.append((nic["mac"], scope, drifted, target, before, True))
    return found


def _kept(
    records: list[IsolationRecord], current: Mapping[str, NicSnapshot], spec: QuarantineSpec
) -> dict[str, dict[str, str]]:
    """MAC → {scope: XML to leave in place}; scopes not listed are restored. The link
    quarantine took down is raised to the original's; a running VM's live NIC follows a
    persistent fix nobody applied live."""
    plan: dict[str, dict[str, str]] = {}
    for mac, scope, now, _target, before, _again in _found(records, current, spec):
        up = with_link_of(now, before) if spec.link_down and link_state(now) == "down" else now
        plan.setdefault(mac, {})[scope] = up
    for mac, scopes in plan.items():
        snap = current.get(mac)
        if "config" in scopes and "live" not in scopes and snap is not None and snap.live_xml:
            scopes["live"] = scopes["config"]
    return plan
