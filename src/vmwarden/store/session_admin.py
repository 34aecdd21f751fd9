"""Listing and ending sign-in sessions: what a security team asks of a session store.

A session is named in listings by a **public id**: the first 16 hex digits of its stored
``sid_hash`` (the SHA-256 of the cookie's secret id). It identifies the row without being the
cookie's secret nor enough to forge one, and it needs no column of its own: the unique index
on ``sid_hash`` answers a prefix lookup. Ending a session deletes its row (the cookie stops
working at the next request) and journals ``session-end`` with who, why and whose session,
in the same transaction.

Whether a row is still live depends on the server's limits (``idle``, ``max_age``), which the
caller passes; rows past them are not listed (they no longer sign anyone in).

Example::

    items, total = list_sessions(store, limits=SessionLimits(), user="olga")
    ended = end_session(store, items[0].id, actor="ada", reason="laptop stolen")
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from vmwarden.store.base import utcnow
from vmwarden.store.journal import write_event
from vmwarden.store.sessions import login_sessions
from vmwarden.store.users import users

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlalchemy.engine import Row

    from vmwarden.store.store import Store

PUBLIC_ID_LEN = 16
PUBLIC_ID_PATTERN = rf"^[0-9a-f]{{{PUBLIC_ID_LEN}}}$"


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """When a session ends by itself: ``idle`` without a request, or ``max_age`` in all."""

    idle: timedelta = timedelta(minutes=30)
    max_age: timedelta = timedelta(hours=8)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One live session as an operator sees it (never the cookie nor its full hash)."""

    id: str
    user: str
    role: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    source: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "role": self.role,
            "created_at": self.created_at,
            "last_seen_at": self.last_seen_at,
            "expires_at": self.expires_at,
            "source": self.source,
        }


def public_id(sid_hash: str) -> str:
    """The listing's name for the session stored under ``sid_hash``."""
    return sid_hash[:PUBLIC_ID_LEN]


def _info(row: Row[Any], limits: SessionLimits) -> SessionInfo:
    expires = min(row.created_at + limits.max_age, row.last_seen_at + limits.idle)
    return SessionInfo(
        public_id(row.sid_hash),
        row.name,
        row.role,
        row.created_at,
        row.last_seen_at,
        expires,
        row.source,
    )


def _live(limits: SessionLimits, now: datetime) -> ColumnElement[bool]:
    return (login_sessions.c.created_at > now - limits.max_age) & (
        login_sessions.c.last_seen_at > now - limits.idle
    )


def _prefix(pid: str) -> ColumnElement[bool]:
    """``sid_hash`` starts with ``pid``, as a range the unique index answers ('g' > 'f')."""
    return (login_sessions.c.sid_hash >= pid) & (login_sessions.c.sid_hash < pid + "g")


_COLUMNS = (
    login_sessions.c.id,
    login_sessions.c.sid_hash,
    login_sessions.c.user_id,
    login_sessions.c.created_at,
    login_sessions.c.last_seen_at,
    login_sessions.c.source,
    users.c.name,
    users.c.role,
)


def list_sessions(
    store: Store,
    *,
    limits: SessionLimits,
    user: str | None = None,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> tuple[list[SessionInfo], int]:
    """Live sessions (of ``user`` when given), most recently used first, and their total."""
    now = now or utcnow()
    where = _live(limits, now)
    if user is not None:
        where = where & (users.c.name == user)
    joined = login_sessions.join(users, users.c.id == login_sessions.c.user_id)
    query = (
        select(*_COLUMNS)
        .select_from(joined)
        .where(where)
        .order_by(login_sessions.c.last_seen_at.desc(), login_sessions.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    count = select(func.count()).select_from(joined).where(where)
    with store._read() as conn:
        rows = conn.execute(query).all()
        total = int(conn.execute(count).scalar_one())
    return [_info(r, limits) for r in rows], total


def is_public_id(text: str) -> bool:
    return re.fullmatch(PUBLIC_ID_PATTERN, text) is not None


def end_session(
    store: Store,
    pid: str,
    *,
    actor: str,
    reason: str,
    limits: SessionLimits,
    user: str | None = None,
    now: datetime | None = None,
) -> SessionInfo | None:
    """Delete the live session ``pid`` (only ``user``'s when given) and journal it.

    None when there is no such live session (unknown, ended, expired, or someone else's):
    nothing is written then. The delete and the journal entry are one transaction, so the
    audit log holds every end that took effect and no other.
    """
    if not is_public_id(pid):
        return None
    now = now or utcnow()
    where = _prefix(pid) & _live(limits, now)
    if user is not None:
        where = where & (users.c.name == user)
    joined = login_sessions.join(users, users.c.id == login_sessions.c.user_id)
    with store._write() as conn:
        rows = conn.execute(select(*_COLUMNS).select_from(joined).where(where)).all()
        if len(rows) != 1:  # none, or (2**-64 odds) an ambiguous prefix: end nothing
            return None
        info = _info(rows[0], limits)
        conn.execute(delete(login_sessions).where(login_sessions.c.id == rows[0].id))
        details = {
            "session": info.id,
            "user": info.user,
            "source": info.source,
            "signed_in_at": info.created_at.isoformat(),
        }
        write_event(conn, "session-end", actor, reason, details, now)
    return info
