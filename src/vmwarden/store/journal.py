"""The audit journal: every action on a VM, and operator events, committed as they happen.

Enforcement writes ``pending`` *before* touching a hypervisor and the outcome after, so a
crash in between leaves a ``pending`` entry that :meth:`JournalRepo.incomplete_actions`
returns for reconciliation. Each call is its own transaction, committed with
``synchronous=FULL`` on SQLite.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update

from vmwarden.errors import StoreError
from vmwarden.model import ActionRecord
from vmwarden.store.base import StoreBase, utcnow
from vmwarden.store.tables import journal

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

STATUSES = ("pending", "done", "partial", "failed", "noop", "released", "skipped")
QUARANTINE, RELEASE = "quarantine", "release"
# A quarantine in these states may be holding the VM (partial: some NICs were isolated).
ACTIVE = ("done", "pending", "partial")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise StoreError(
            f"unknown journal status {status!r} (valid: {', '.join(STATUSES)})",
        )


def _record(row: Row[Any]) -> ActionRecord:
    return ActionRecord(
        journal_id=row.id,
        action=row.action,
        id=row.vm_id or "",
        name=row.vm_name or "",
        host=row.host or "",
        uri=row.uri or "",
        status=row.status,
        actor=row.actor,
        reason=row.reason,
        rule=row.rule,
        changes=dict(row.changes or {}),
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def write_event(
    conn: Connection,
    event: str,
    actor: str,
    reason: str | None,
    details: dict[str, Any],
    at: datetime,
    *,
    vm_id: str | None = None,
    vm_name: str | None = None,
    host: str | None = None,
    rule: str | None = None,
) -> int:
    """One operator event in the journal, inside the caller's transaction; returns its id."""
    return int(
        conn.execute(
            insert(journal).values(
                action=event,
                vm_id=vm_id,
                vm_name=vm_name,
                host=host,
                actor=actor,
                reason=reason,
                rule=rule,
                status="done",
                changes=dict(details),
                created_at=at,
                updated_at=at,
            )
        ).inserted_primary_key[0]
    )


class JournalRepo(StoreBase):
    def journal_begin(
        self,
        action: str,
        *,
        vm_id: str,
        vm_name: str,
        host: str,
        uri: str,
        actor: str,
        reason: str | None = None,
        rule: str | None = None,
        changes: dict[str, Any] | None = None,
        parent_id: int | None = None,
        status: str = "pending",
    ) -> int:
        """Journal an action about to be carried out; returns the entry id (committed)."""
        _check_status(status)
        now = utcnow()
        with self._write() as conn:
            if (
                parent_id is not None
                and not conn.execute(select(journal.c.id).where(journal.c.id == parent_id)).first()
            ):
                raise StoreError(f"journal entry {parent_id} (parent) does not exist")
            return int(
                conn.execute(
                    insert(journal).values(
                        action=action,
                        vm_id=vm_id,
                        vm_name=vm_name,
                        host=host,
                        uri=uri,
                        actor=actor,
                        reason=reason,
                        rule=rule,
                        status=status,
                        changes=dict(changes or {}),
                        parent_id=parent_id,
                        created_at=now,
                        updated_at=now,
                    )
                ).inserted_primary_key[0]
            )

    def journal_update(
        self,
        entry_id: int,
        *,
        status: str,
        changes: dict[str, Any] | None = None,
        error: str | None = None,
        replace_changes: bool = False,
    ) -> ActionRecord:
        """Record an outcome. ``changes`` is merged key by key (or replaces, if asked)."""
        _check_status(status)
        with self._write() as conn:
            row = conn.execute(select(journal).where(journal.c.id == entry_id)).first()
            if row is None:
                raise StoreError(f"journal entry {entry_id} does not exist")
            merged = dict(row.changes or {})
            if replace_changes:
                merged = dict(changes or {})
            elif changes:
                merged.update(changes)
            values: dict[str, Any] = {
                "status": status,
                "changes": merged,
                "updated_at": utcnow(),
            }
            if error is not None:
                values["error"] = error
            conn.execute(update(journal).where(journal.c.id == entry_id).values(**values))
            row = conn.execute(select(journal).where(journal.c.id == entry_id)).one()
        return _record(row)

    def journal_get(self, entry_id: int) -> ActionRecord:
        with self._read() as conn:
            row = conn.execute(select(journal).where(journal.c.id == entry_id)).first()
        if row is None:
            raise StoreError(f"journal entry {entry_id} does not exist")
        return _record(row)

    def journal_parent(self, entry_id: int) -> int | None:
        """The entry this one follows up (e.g. the quarantine a release undoes)."""
        with self._read() as conn:
            return conn.execute(
                select(journal.c.parent_id).where(journal.c.id == entry_id)
            ).scalar()

    def journal_entries(
        self,
        vm_id: str | None = None,
        action: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
    ) -> list[ActionRecord]:
        """Journal entries, newest first; ``since``: created at or after that time."""
        query = select(journal).order_by(journal.c.id.desc())
        if since is not None:
            query = query.where(journal.c.created_at >= since)
        if vm_id is not None:
            query = query.where(journal.c.vm_id == vm_id)
        if action is not None:
            query = query.where(journal.c.action == action)
        if status is not None:
            query = query.where(journal.c.status == status)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [_record(row) for row in conn.execute(query)]

    def incomplete_actions(self) -> list[ActionRecord]:
        """Actions journaled as pending and never completed, oldest first (replay order)."""
        query = (
            select(journal)
            .where(journal.c.status == "pending", journal.c.vm_id.is_not(None))
            .order_by(journal.c.id)
        )
        with self._read() as conn:
            return [_record(row) for row in conn.execute(query)]

    def active_quarantine(self, vm_id: str) -> ActionRecord | None:
        """The quarantine currently holding ``vm_id``, if any.

        The latest quarantine entry that is done, pending or partial, unless a release of the
        VM completed (``done``) after it, or the entry itself was marked ``released``.
        """
        with self._read() as conn:
            row = conn.execute(
                select(journal)
                .where(
                    journal.c.vm_id == vm_id,
                    journal.c.action == QUARANTINE,
                    journal.c.status.in_(ACTIVE),
                )
                .order_by(journal.c.id.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            released = conn.execute(
                select(journal.c.id).where(
                    journal.c.vm_id == vm_id,
                    journal.c.action == RELEASE,
                    journal.c.status == "done",
                    journal.c.id > row.id,
                )
            ).first()
        return None if released else _record(row)

    def held_quarantines(self) -> dict[str, ActionRecord]:
        """``active_quarantine`` of every VM at once (VM id → entry): two queries a sweep,
        instead of two per VM."""
        with self._read() as conn:
            rows = conn.execute(
                select(journal)
                .where(journal.c.action == QUARANTINE, journal.c.status.in_(ACTIVE))
                .order_by(journal.c.id)
            ).all()
            if not rows:
                return {}
            released = dict(
                conn.execute(
                    select(journal.c.vm_id, func.max(journal.c.id))
                    .where(journal.c.action == RELEASE, journal.c.status == "done")
                    .group_by(journal.c.vm_id)
                ).all()
            )
        latest = {row.vm_id: row for row in rows if row.vm_id}  # ordered by id: newest wins
        return {
            vm_id: _record(row) for vm_id, row in latest.items() if released.get(vm_id, 0) < row.id
        }

    def audit(self, event: str, actor: str, details: dict[str, Any] | None = None) -> int:
        """Journal an operator event that concerns no VM (policy load, template approval)."""
        with self._write() as conn:
            return write_event(conn, event, actor, None, dict(details or {}), utcnow())
