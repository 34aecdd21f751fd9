"""Quarantine and release: move every NIC to the quarantine network and back, exactly.

The journal entry is written *before* anything changes, holding each NIC's original XML (live
and persistent), and updated after each step. That makes the three promises hold:

- running quarantine twice is a no-op (the desired state is computed from the journal and
  compared with what libvirt reports before any call);
- a crash halfway leaves a ``pending`` entry whose remaining steps ``resume`` carries out with
  the *recorded* originals (re-reading them would record the quarantine network as original);
- release puts back the recorded XML, so network, portgroup, VLAN and link state come back
  exactly as they were — but never over a change someone made during quarantine without
  being told how to resolve it (``enforce.changed``): a reconcile that re-isolates a drifted
  NIC keeps the drifted XML in the entry for that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vmwarden.connectors.libvirt.nicxml import quarantine_interface
from vmwarden.enforce.changed import (
    ReleaseConflict,
    changes_since,
    is_change,
    kept,
    original_of,
)
from vmwarden.enforce.faults import fault_point
from vmwarden.enforce.journal import journal_begin
from vmwarden.enforce.nics import same_interface, with_live_handles
from vmwarden.errors import ConnectorError, EnforceError
from vmwarden.model import VM, ActionRecord

_SCOPES = ("live", "config")
_FINISHED = ("done", "skipped", "gone")


@dataclass(frozen=True, slots=True)
class QuarantineSpec:
    """The policy's ``quarantine:`` block."""

    network: str
    link_down: bool = True


class NicPort(Protocol):
    """What quarantine needs from a connector (see ``LibvirtConnector``)."""

    uri: str

    def nic_snapshot(self, vm_id: str) -> list[Any]: ...
    def set_interface(self, vm_id: str, iface_xml: str, *, live: bool, config: bool) -> None: ...


class Quarantiner:
    """Carries out quarantine/release for one actor, journaling every step in the store."""

    def __init__(self, store: Any, actor: str) -> None:
        self.store = store
        self.actor = actor

    # -- quarantine ---------------------------------------------------------------------
    def quarantine(
        self, conn: NicPort, vm: VM, spec: QuarantineSpec, *, reason: str, rule: str | None
    ) -> ActionRecord:
        active = self.store.active_quarantine(vm.id)
        if active is not None:
            return self._reconcile(conn, active, spec)
        check = getattr(conn, "network_exists", None)
        if check is not None and not check(spec.network):
            raise EnforceError(
                f"quarantine network {spec.network!r} does not exist on {vm.host}; nothing changed",
                hint=f"define an isolated network named {spec.network!r} on that host "
                "(virsh net-define; no <forward>, no <ip>) or fix quarantine.network",
            )
        nics = [_nic_entry(snap) for snap in conn.nic_snapshot(vm.id)]
        changes = {"network": spec.network, "link_down": spec.link_down, "nics": nics}
        entry_id = journal_begin(
            self.store,
            "quarantine",
            vm,
            actor=self.actor,
            reason=reason,
            rule=rule,
            changes=changes,
        )
        fault_point("quarantine.begun")
        return self._apply(conn, entry_id, changes)

    def resume(self, conn: NicPort, entry: ActionRecord) -> ActionRecord:
        """Finish a quarantine or release that a crash left ``pending``."""
        if entry.action == "quarantine":
            return self._apply(conn, entry.journal_id, dict(entry.changes))
        if entry.action == "release":
            parent = self.store.journal_get(entry.changes["parent_id"])
            return self._apply_release(conn, entry.journal_id, parent, dict(entry.changes))
        raise EnforceError(f"cannot resume a {entry.action!r} journal entry")

    def _reconcile(self, conn: NicPort, active: ActionRecord, spec: QuarantineSpec) -> ActionRecord:
        """Re-check an existing quarantine; re-apply only what drifted (no-op when intact)."""
        changes = dict(active.changes)
        changes.setdefault("network", spec.network)
        current = {s.mac: s for s in conn.nic_snapshot(active.id)}
        drift = self._adopt_new_nics(changes, current)
        for nic in changes["nics"]:
            snap = current.get(nic["mac"])
            for scope in _SCOPES:
                xml = None if snap is None else getattr(snap, f"{scope}_xml")
                if xml is not None and not same_interface(xml, self._target(xml, changes)):
                    nic[scope] = "pending"
                    drift = True
                    _keep_drift(nic, scope, xml, changes)
        if not drift and active.status == "done":
            return _noop(active)
        return self._apply(conn, active.journal_id, changes)

    @staticmethod
    def _adopt_new_nics(changes: dict[str, Any], current: dict[str, Any]) -> bool:
        """A NIC hot-plugged after quarantine is quarantined too, its original recorded."""
        known = {n["mac"] for n in changes["nics"]}
        added = False
        for mac, snap in current.items():
            if mac not in known:
                changes["nics"].append(_nic_entry(snap))
                added = True
        return added

    @staticmethod
    def _target(xml: str, changes: dict[str, Any]) -> str:
        return quarantine_interface(
            xml, changes["network"], link_down=changes.get("link_down", True)
        )

    def _apply(self, conn: NicPort, entry_id: int, changes: dict[str, Any]) -> ActionRecord:
        vm_id = self.store.journal_get(entry_id).id
        current = {s.mac: s for s in conn.nic_snapshot(vm_id)}
        failed = self._steps(
            entry_id,
            changes,
            "quarantine",
            lambda nic, scope: self._step(conn, vm_id, current.get(nic["mac"]), scope, changes),
        )
        status = "partial" if failed else "done"
        self.store.journal_update(
            entry_id, status=status, changes=changes, error="; ".join(failed) or None
        )
        return self.store.journal_get(entry_id)

    def _steps(
        self,
        entry_id: int,
        changes: dict[str, Any],
        kind: str,
        step: Callable[[dict[str, Any], str], str],
    ) -> list[str]:
        """Carry out each NIC's unfinished scopes, journaling after every one (so a crash
        resumes at the next); returns what is still unfinished, for the entry's error."""
        for nic in changes["nics"]:
            for scope in _SCOPES:
                if nic[scope] in _FINISHED:
                    continue
                nic[scope] = step(nic, scope)
                self.store.journal_update(entry_id, status="pending", changes=changes)
                fault_point(f"{kind}.{scope}")
        return [
            f"{n['mac']} {s}: {n[s]}"
            for n in changes["nics"]
            for s in _SCOPES
            if n[s] not in _FINISHED
        ]

    def _step(
        self, conn: NicPort, vm_id: str, snap: Any, scope: str, changes: dict[str, Any]
    ) -> str:
        if snap is None:
            return "gone"
        xml = getattr(snap, f"{scope}_xml")
        if xml is None:  # not running (live) or transient (config): nothing to change there
            return "skipped"
        return _attach(conn, vm_id, xml, self._target(xml, changes), scope)

    # -- release ------------------------------------------------------------------------
    def release(
        self,
        conn: NicPort,
        vm_id: str,
        *,
        reason: str,
        force: bool = False,
        keep_changes: bool = False,
    ) -> ActionRecord:
        """Undo the quarantine holding ``vm_id``. A NIC someone changed during quarantine
        raises ``ReleaseConflict`` (nothing touched) unless ``force`` (put the originals back
        over it) or ``keep_changes`` (leave the change, raise the link) says what to do."""
        if not reason or not reason.strip():
            raise EnforceError("release needs a reason", hint="pass --reason 'what was fixed'")
        if force and keep_changes:
            raise EnforceError("--force and --keep-changes exclude each other; choose one")
        parent = self.store.active_quarantine(vm_id)
        if parent is None:
            raise EnforceError(f"VM {vm_id} is not quarantined by vmwarden; nothing to release")
        current = {s.mac: s for s in conn.nic_snapshot(parent.id)}
        found = changes_since(parent.changes, current)
        if found and not (force or keep_changes):
            raise ReleaseConflict(parent.name or vm_id, found)
        keep = kept(found, parent.changes, current) if keep_changes else {}
        changes: dict[str, Any] = {
            "parent_id": parent.journal_id,
            "nics": [
                {
                    "mac": n["mac"],
                    "live": "pending",
                    "config": "pending",
                    **{f"keep_{scope}": xml for scope, xml in keep.get(n["mac"], {}).items()},
                }
                for n in parent.changes["nics"]
            ],
        }
        if found:  # the audit log says what was overwritten, or kept
            changes["changed_during_quarantine"] = [c.describe() for c in found]
            changes["resolution"] = "force" if force else "keep-changes"
        entry_id = journal_begin(
            self.store,
            "release",
            parent,
            actor=self.actor,
            reason=reason,
            rule=parent.rule,
            changes=changes,
            parent_id=parent.journal_id,
        )
        fault_point("release.begun")
        return self._apply_release(conn, entry_id, parent, changes)

    def _apply_release(
        self, conn: NicPort, entry_id: int, parent: ActionRecord, changes: dict[str, Any]
    ) -> ActionRecord:
        originals = {n["mac"]: n for n in parent.changes["nics"]}
        current = {s.mac: s for s in conn.nic_snapshot(parent.id)}
        failed = self._steps(
            entry_id,
            changes,
            "release",
            lambda nic, scope: self._restore(
                conn,
                parent.id,
                current.get(nic["mac"]),
                nic.get(f"keep_{scope}") or original_of(originals[nic["mac"]], scope),
                scope,
            ),
        )
        if failed:
            self.store.journal_update(
                entry_id, status="partial", changes=changes, error="; ".join(failed)
            )
        else:
            self.store.journal_update(entry_id, status="done", changes=changes)
            self.store.journal_update(parent.journal_id, status="released")
        return self.store.journal_get(entry_id)

    @staticmethod
    def _restore(conn: NicPort, vm_id: str, snap: Any, before: str | None, scope: str) -> str:
        """Make one scope ``before`` (the recorded original, or the change kept)."""
        if snap is None:
            return "gone"
        current = getattr(snap, f"{scope}_xml")
        if current is None or before is None:
            return "skipped"
        desired = with_live_handles(before, current) if scope == "live" else before
        return _attach(conn, vm_id, current, desired, scope)


def _attach(conn: NicPort, vm_id: str, current: str, desired: str, scope: str) -> str:
    """Make one NIC scope look like ``desired`` (no call when it already does); its status."""
    if same_interface(current, desired):
        return "done"
    try:
        conn.set_interface(vm_id, desired, live=scope == "live", config=scope == "config")
    except ConnectorError as exc:
        return f"failed: {exc}"
    return "done"


def _keep_drift(nic: dict[str, Any], scope: str, xml: str, entry: dict[str, Any]) -> None:
    """Remember a scope someone changed before it is isolated again, so that release reports
    it rather than silently restoring the old original. The latest hand change counts: one
    back to the original (a hand undo of the quarantine) forgets an earlier change."""
    before = original_of(nic, scope)
    if before is not None and is_change(xml, before, entry):
        nic.setdefault("drift", {})[scope] = xml
    elif scope in (nic.get("drift") or {}):
        del nic["drift"][scope]


def _nic_entry(snap: Any) -> dict[str, Any]:
    """A NIC as the quarantine entry records it: its original XML, both scopes still to do."""
    return {
        "mac": snap.mac,
        "live_before": snap.live_xml,
        "config_before": snap.config_xml,
        "live": "pending",
        "config": "pending",
    }


def _noop(entry: ActionRecord) -> ActionRecord:
    """The action already holds: report it without writing to the journal."""
    return ActionRecord(
        journal_id=entry.journal_id,
        action=entry.action,
        id=entry.id,
        name=entry.name,
        host=entry.host,
        uri=entry.uri,
        status="noop",
        actor=entry.actor,
        reason=entry.reason,
        rule=entry.rule,
        changes=entry.changes,
    )
