"""Operator events with a reason, for the writes the API makes.

``journal.write_audit`` records who and when; the API's writes must also say *why* (the
journal's ``reason`` column), in the same transaction as the change they describe.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from vmwarden.errors import StoreError
from vmwarden.store.base import upsert, utcnow
from vmwarden.store.tables import journal, templates

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from vmwarden.store.store import Store


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


def record_event(
    store: Store,
    event: str,
    actor: str,
    reason: str | None,
    details: dict[str, Any] | None = None,
    **vm: str | None,
) -> int:
    """:func:`write_event` in a transaction of its own (e.g. "a scan was requested")."""
    with store._write() as conn:
        return write_event(conn, event, actor, reason, dict(details or {}), utcnow(), **vm)


def approve_template_with_reason(
    store: Store,
    name: str,
    digest: str,
    path: str,
    fingerprint: dict[str, Any],
    *,
    actor: str,
    reason: str | None,
) -> str | None:
    """``CatalogRepo.approve_template`` with the approver's reason in the same commit.

    Returns the digest the name had before (None when new).
    """
    if not name or not digest:
        raise StoreError("a template needs a name and a digest")
    at = utcnow()
    row = {
        "name": name,
        "digest": digest,
        "path": path,
        "fingerprint": fingerprint,
        "approved_by": actor,
        "approved_at": at,
    }
    with store._write() as conn:
        previous = conn.execute(select(templates.c.digest).where(templates.c.name == name)).scalar()
        upsert(conn, templates, [row], keys=["name"], update=list(row)[1:])
        write_event(
            conn,
            "template-approve",
            actor,
            reason,
            {"name": name, "digest": digest, "path": path, "previous_digest": previous},
            at,
        )
    return previous
