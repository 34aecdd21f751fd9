"""Quarantine and release: isolate every NIC through the connector and put it back, exactly.

The connector does the platform's part (``Connector.isolate``/``restore``: libvirt moves each
``<interface>`` to the quarantine network) and hands back one opaque record per NIC; this
module journals those records without reading them. The journal entry is written *before*
anything changes, holding each NIC's record (its original state), and updated after each
step. That makes the three promises hold:

- running quarantine twice is a no-op (``is_isolated`` compares the VM with the records
  before any change);
- a crash halfway leaves a ``pending`` entry whose remaining steps ``resume`` carries out with
  the *recorded* originals (re-reading them would record the quarantine as original);
- release puts back what the records hold — but never over a change someone made during
  quarantine without being told how to resolve it (``Connector.changes_since``,
  ``ReleaseConflict``): a reconcile that re-isolates a drifted NIC keeps the change in its
  record for that reason.

Entries written before the connector contract hold libvirt's records in the same form, so
crash repair and release read them as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vmwarden.enforce.changed import ReleaseConflict
from vmwarden.enforce.faults import fault_point
from vmwarden.enforce.journal import journal_begin
from vmwarden.errors import EnforceError
from vmwarden.model import VM, ActionRecord
from vmwarden.model.isolation import QuarantineSpec

__all__ = ["QuarantineSpec", "Quarantiner"]


def _spec_of(changes: dict[str, Any], default: QuarantineSpec | None = None) -> QuarantineSpec:
    """The spec an entry was made with (its own network and link setting, not today's)."""
    return QuarantineSpec.from_journal(changes, default)


class Quarantiner:
    """Carries out quarantine/release for one actor, journaling every step in the store."""

    def __init__(self, store: Any, actor: str) -> None:
        self.store = store
        self.actor = actor

    # -- quarantine ---------------------------------------------------------------------
    def quarantine(
        self,
        conn: Any,
        vm: VM,
        spec: QuarantineSpec,
        *,
        reason: str,
        rule: str | None,
        on_live: Callable[[], None] | None = None,
    ) -> ActionRecord:
        """Isolate ``vm`` (or re-check an existing quarantine). ``on_live``: called the
        moment the running VM's NICs were moved (the watch daemon times exposure by it)."""
        active = self.store.active_quarantine(vm.id)
        if active is not None:
            return self._reconcile(conn, active, spec, on_live)
        problem = conn.quarantine_target_problem(spec)
        if problem is not None:
            raise EnforceError(
                f"{problem}; nothing changed",
                hint="create the quarantine target on that host (libvirt: an isolated network, "
                "virsh net-define with no <forward> and no <ip>) or fix the policy's quarantine:",
            )
        nics = conn.isolation_records(vm.id)
        changes = {**spec.to_journal(), "nics": nics}
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
        return self._apply(conn, entry_id, changes, on_live)

    def resume(self, conn: Any, entry: ActionRecord) -> ActionRecord:
        """Finish a quarantine or release that a crash left ``pending``."""
        if entry.action == "quarantine":
            return self._apply(conn, entry.journal_id, dict(entry.changes), None)
        if entry.action == "release":
            parent = self.store.journal_get(entry.changes["parent_id"])
            return self._apply_release(conn, entry.journal_id, parent, dict(entry.changes))
        raise EnforceError(f"cannot resume a {entry.action!r} journal entry")

    def _reconcile(
        self,
        conn: Any,
        active: ActionRecord,
        spec: QuarantineSpec,
        on_live: Callable[[], None] | None,
    ) -> ActionRecord:
        """Re-check an existing quarantine; re-apply only what drifted (no-op when intact)."""
        changes = dict(active.changes)
        changes.setdefault("network", spec.network)
        intact = conn.is_isolated(active.id, changes["nics"], _spec_of(changes))
        if intact and active.status == "done":
            return _noop(active)
        return self._apply(conn, active.journal_id, changes, on_live)

    def _apply(
        self,
        conn: Any,
        entry_id: int,
        changes: dict[str, Any],
        on_live: Callable[[], None] | None,
    ) -> ActionRecord:
        vm_id = self.store.journal_get(entry_id).id
        failed = conn.isolate(
            vm_id,
            changes["nics"],
            _spec_of(changes),
            progress=self._progress(entry_id, changes, "quarantine"),
            on_live=on_live,
        )
        status = "partial" if failed else "done"
        self.store.journal_update(
            entry_id, status=status, changes=changes, error="; ".join(failed) or None
        )
        return self.store.journal_get(entry_id)

    def _progress(self, entry_id: int, changes: dict[str, Any], kind: str) -> Callable[[str], None]:
        """After every step the connector takes: journal it (a crash resumes at the next)."""

        def step_done(step: str) -> None:
            self.store.journal_update(entry_id, status="pending", changes=changes)
            fault_point(f"{kind}.{step}")

        return step_done

    # -- release ------------------------------------------------------------------------
    def release(
        self,
        conn: Any,
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
        spec = _spec_of(parent.changes)
        found = conn.changes_since(parent.id, parent.changes["nics"], spec)
        if found and not (force or keep_changes):
            raise ReleaseConflict(parent.name or vm_id, found)
        changes: dict[str, Any] = {
            "parent_id": parent.journal_id,
            "nics": conn.restore_plan(
                parent.id, parent.changes["nics"], spec, found, keep_changes=keep_changes
            ),
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
        self, conn: Any, entry_id: int, parent: ActionRecord, changes: dict[str, Any]
    ) -> ActionRecord:
        failed = conn.restore(
            parent.id,
            parent.changes["nics"],
            changes["nics"],
            progress=self._progress(entry_id, changes, "release"),
        )
        if failed:
            self.store.journal_update(
                entry_id, status="partial", changes=changes, error="; ".join(failed)
            )
        else:
            self.store.journal_update(entry_id, status="done", changes=changes)
            self.store.journal_update(parent.journal_id, status="released")
        return self.store.journal_get(entry_id)


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
