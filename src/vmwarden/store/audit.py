"""Operator events with a reason, for the writes the API makes.

The API's writes must say *why* (the journal's ``reason`` column) as well as who and when,
in the same transaction as the change they describe (``journal.write_event``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vmwarden.store.base import utcnow
from vmwarden.store.journal import write_event

if TYPE_CHECKING:
    from vmwarden.store.store import Store


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
    return store.approve_template(name, digest, path, fingerprint, actor, reason=reason)
