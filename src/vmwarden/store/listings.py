"""Per-host listing times: how an unchanged re-scan gets ``last_seen`` without writing rows.

When a host's VMs (or images) are listed completely at time T, every stored VM (image) on
that host that is not gone was seen at T: anything missing was just marked gone. So the
store records T once per host and kind, and a row's ``last_seen`` is the later of its own
column and its host's listing time while it is not gone.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, update

from vmwarden.store.base import chunks, upsert
from vmwarden.store.tables import host_listings

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection
    from sqlalchemy.sql.expression import ColumnElement

VMS, IMAGES = "vms", "images"


def listing_join(table: Table, kind: str) -> tuple[Any, ColumnElement[bool]]:
    """(listing alias, ON clause) to outer-join ``table`` to its host's listing time."""
    listing = host_listings.alias(f"listing_{kind}")
    return listing, and_(listing.c.host == table.c.host, listing.c.kind == kind)


def bump(conn: Connection, kind: str, hosts: set[str], now: datetime) -> None:
    """Record that ``hosts`` were listed completely (for ``kind``) at ``now``."""
    upsert(
        conn,
        host_listings,
        [{"host": h, "kind": kind, "last_seen": now} for h in sorted(hosts)],
        keys=["host", "kind"],
        update=["last_seen"],
    )


def seen(last_seen: datetime, gone_at: datetime | None, host_seen: datetime | None) -> datetime:
    """A row's effective ``last_seen``."""
    if gone_at is None and host_seen is not None and host_seen > last_seen:
        return host_seen
    return last_seen


def mark_gone(
    conn: Connection, table: Table, rows: list[tuple[Any, datetime]], now: datetime
) -> None:
    """Mark rows (id, effective last_seen) of a completely listed host gone at ``now``; their
    ``last_seen`` keeps the listing time they were last seen by (it stops applying once gone)."""
    stmt = (
        update(table)
        .where(table.c.id == bindparam("rid"))
        .values(gone_at=bindparam("gone"), last_seen=bindparam("seen"))
    )
    params = [{"rid": rid, "gone": now, "seen": last} for rid, last in rows]
    for chunk in chunks(params):
        conn.execute(stmt, list(chunk))
