"""Server-side sign-in sessions and failed-login throttling.

A dashboard cookie is signed, but a signature alone cannot be taken back: a copied cookie
would work until it expires. So the cookie carries a random session id, and the store keeps
only its SHA-256 (``sid_hash``: a database leak yields no usable cookie). A session is valid
while its row exists, is younger than the maximum age and was used within the idle limit;
signing out deletes the row, and disabling a user or rotating their token deletes all of
theirs (:meth:`SessionsRepo.revoke_user`).

Throttling lives here too, so that it survives a restart and is shared by every worker
process: one row per (scope, subject) -- ``address``/``account`` -- counts failures in the
current window; at the limit the subject is blocked, for twice as long at each further
failure (capped). A successful sign-in deletes nothing: failures age out with their window
(else valid requests interleaved with guesses would keep an address from ever being blocked).

Example::

    repo = SessionsRepo(store)
    repo.create(sid_hash, user_id, source="192.0.2.1")
    session = repo.touch(sid_hash, max_age=timedelta(hours=8), idle=timedelta(minutes=30))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    delete,
    false,
    insert,
    or_,
    select,
    update,
)

from vmwarden.errors import StoreError
from vmwarden.store.base import upsert, utcnow
from vmwarden.store.journal import write_event
from vmwarden.store.tables import BigId, UTCDateTime, metadata
from vmwarden.store.users import User, UsersRepo, users

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Select
    from sqlalchemy.engine import Connection, Row

    from vmwarden.store.store import Store


# One signed-in browser; the cookie holds the id whose hash is ``sid_hash``.
login_sessions = Table(
    "login_sessions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("sid_hash", String(64), nullable=False, unique=True),
    Column("user_id", BigId, ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("source", String(64)),
)

# Failed sign-ins of one source address or one account in the current window.
login_throttle = Table(
    "login_throttle",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("failures", Integer(), nullable=False),
    Column("window_start", UTCDateTime(), nullable=False),
    Column("last_failure_at", UTCDateTime(), nullable=False),
    Column("blocked_until", UTCDateTime()),
)
_THROTTLE_KEY = ("scope", "subject")


@dataclass(frozen=True, slots=True)
class LoginSession:
    """A live session: whose it is and when it started (for the age limit)."""

    id: int
    user_id: int
    created_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    """``limit`` failures within ``window`` block for ``base``, doubling per extra failure."""

    limit: int = 5
    window: timedelta = timedelta(minutes=15)
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(minutes=15)

    def block_for(self, failures: int) -> timedelta | None:
        """How long ``failures`` failures in one window block; None below the limit."""
        if failures < self.limit:
            return None
        extra = min(failures - self.limit, 20)  # 2**20 * base is far past any cap
        return min(self.base * (2**extra), self.cap)


class SessionsRepo:
    """Sessions of users (``vmwarden.store.users``), kept in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def create(
        self, sid_hash: str, user_id: int, *, source: str | None = None, now: datetime | None = None
    ) -> None:
        now = now or utcnow()
        with self._store._write() as conn:
            conn.execute(
                insert(login_sessions).values(
                    sid_hash=sid_hash,
                    user_id=user_id,
                    created_at=now,
                    last_seen_at=now,
                    source=(source or None) and source[:64],
                )
            )

    def touch(
        self,
        sid_hash: str,
        *,
        max_age: timedelta,
        idle: timedelta,
        now: datetime | None = None,
    ) -> LoginSession | None:
        """The live session with this hash, its last use set to now; expired ones are deleted.

        Writes at most once a minute per session, so a busy dashboard does not turn every
        page view into a database write.
        """
        now = now or utcnow()
        with self._store._read() as conn:
            row = conn.execute(
                select(login_sessions).where(login_sessions.c.sid_hash == sid_hash)
            ).first()
        if row is None:
            return None
        if now - row.created_at >= max_age or now - row.last_seen_at >= idle:
            self.revoke(sid_hash)
            return None
        if now - row.last_seen_at >= timedelta(minutes=1):
            with self._store._write() as conn:
                conn.execute(
                    update(login_sessions)
                    .where(login_sessions.c.id == row.id)
                    .values(last_seen_at=now)
                )
        return LoginSession(row.id, row.user_id, row.created_at, now)

    def revoke(self, sid_hash: str) -> bool:
        """Delete this session; False when it was already gone."""
        with self._store._write() as conn:
            result = conn.execute(
                delete(login_sessions).where(login_sessions.c.sid_hash == sid_hash)
            )
        return bool(result.rowcount)

    def revoke_user(self, user_id: int) -> int:
        """Delete all of a user's sessions (disabled, token rotated); how many there were."""
        with self._store._write() as conn:
            return revoke_user_sessions(conn, user_id)

    def count(self, user_id: int) -> int:
        with self._store._read() as conn:
            rows = conn.execute(
                select(login_sessions.c.id).where(login_sessions.c.user_id == user_id)
            )
            return len(rows.all())

    def purge_expired(
        self, *, max_age: timedelta, idle: timedelta, now: datetime | None = None
    ) -> int:
        """Delete every session past either limit (rows of browsers that never came back)."""
        now = now or utcnow()
        with self._store._write() as conn:
            result = conn.execute(
                delete(login_sessions).where(
                    (login_sessions.c.created_at <= now - max_age)
                    | (login_sessions.c.last_seen_at <= now - idle)
                )
            )
        return int(result.rowcount or 0)


def revoke_user_sessions(conn: Connection, user_id: int) -> int:
    """Within the caller's transaction: delete ``user_id``'s sessions."""
    result = conn.execute(delete(login_sessions).where(login_sessions.c.user_id == user_id))
    return int(result.rowcount or 0)


Subject = tuple[str, str]  # (scope, subject): ("address", "192.0.2.1"), ("account", "alice")


@dataclass(frozen=True, slots=True)
class ThrottleState:
    """Where a set of subjects stands: blocked until when (if at all), and any failures."""

    blocked_until: datetime | None
    failures: int


class ThrottleRepo:
    """Failed sign-in counts per (scope, subject); see :class:`ThrottleRule`.

    Each failure is journaled (``login-failed``) in the same transaction as its count, so
    the audit log shows every refused attempt; the submitted secret never reaches it.
    """

    def __init__(self, store: Store, rule: ThrottleRule | None = None) -> None:
        self._store = store
        self.rule = rule or ThrottleRule()

    def state(self, subjects: list[Subject], now: datetime | None = None) -> ThrottleState:
        """One indexed read: the latest running block among ``subjects`` and their failures."""
        now = now or utcnow()
        with self._store._read() as conn:
            rows = conn.execute(select(login_throttle).where(_any(subjects))).all()
        blocks = [r.blocked_until for r in rows if r.blocked_until and r.blocked_until > now]
        return ThrottleState(max(blocks, default=None), sum(r.failures for r in rows))

    def fail(
        self,
        subjects: list[Subject],
        *,
        actor: str,
        details: dict[str, Any],
        now: datetime | None = None,
    ) -> datetime | None:
        """Count one failure against each subject and journal it; the block it starts, if any."""
        now = now or utcnow()
        with self._store._write() as conn:
            untils = [self._count(conn, scope, subject, now) for scope, subject in subjects]
            until = max((u for u in untils if u), default=None)
            event = details | ({"blocked_until": until.isoformat()} if until else {})
            write_event(conn, "login-failed", actor, None, event, now)
        return until

    def _count(self, conn: Connection, scope: str, subject: str, now: datetime) -> datetime | None:
        row = conn.execute(_select_one(scope, subject).with_for_update()).first()
        if row is None or _window_over(row, now, self.rule.window):
            failures, start = 1, now
        else:
            failures, start = row.failures + 1, row.window_start
        span = self.rule.block_for(failures)
        until = now + span if span else None
        values = {
            "failures": failures,
            "window_start": start,
            "last_failure_at": now,
            "blocked_until": until,
        }
        # an upsert: a concurrent first failure of the same subject (PostgreSQL) is no error
        row_values = {"scope": scope, "subject": subject[:255], **values}
        upsert(conn, login_throttle, [row_values], keys=_THROTTLE_KEY, update=list(values))
        return until


def _key(scope: str, subject: str) -> ColumnElement[bool]:
    return (login_throttle.c.scope == scope) & (login_throttle.c.subject == subject[:255])


def _any(subjects: list[Subject]) -> ColumnElement[bool]:
    return or_(false(), *(_key(scope, subject) for scope, subject in subjects))


def _select_one(scope: str, subject: str) -> Select[Any]:
    return select(login_throttle).where(_key(scope, subject[:255]))


def _window_over(row: Row[Any], now: datetime, window: timedelta) -> bool:
    """A new window starts once the old one has passed and no block is running."""
    blocked = row.blocked_until is not None and row.blocked_until > now
    return now - row.window_start >= window and not blocked


# -- users: disabling, guarded -------------------------------------------------------------


class LastAdminError(StoreError):
    """Disabling this user would leave no enabled admin: nobody could manage users again."""


def disable_user(store: Store, name: str, *, actor: str, reason: str | None = None) -> User:
    """Disable ``name`` and end all their sessions, unless they are the last enabled admin.

    One write transaction (``BEGIN IMMEDIATE`` on SQLite): two admins disabling each other at
    once cannot both pass the check. Idempotent for a user already disabled.
    """
    now = utcnow()
    with store._write() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            raise StoreError(f"no user {name!r}", hint="vmwarden user list shows who exists")
        if not row.disabled:
            _refuse_last_admin(conn, row)
            conn.execute(
                update(users).where(users.c.id == row.id).values(disabled=True, disabled_at=now)
            )
            ended = revoke_user_sessions(conn, row.id)
            details = {"user": name, "sessions_ended": ended}
            write_event(conn, "user-disable", actor, reason, details, now)
    user = UsersRepo(store).get_user(name)
    assert user is not None
    return user


def _refuse_last_admin(conn: Connection, row: Row[Any]) -> None:
    """Refuse when ``row`` is the only enabled admin.

    The enabled admins are read ``FOR UPDATE`` (PostgreSQL; SQLite's write transaction is
    exclusive anyway), so a concurrent disable of another admin waits and then sees this one.
    """
    if row.role != "admin":
        return
    admins = conn.execute(
        select(users.c.id)
        .where((users.c.role == "admin") & users.c.disabled.is_(False))
        .with_for_update()
    ).all()
    if not {a.id for a in admins} - {row.id}:
        raise LastAdminError(
            f"{row.name!r} is the last enabled admin; disabling them would leave nobody "
            "able to manage users",
            hint="add another admin first (vmwarden user add NAME --role admin)",
        )
