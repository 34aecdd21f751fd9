"""People who may use vmwarden's API and dashboard: name, role, and a hashed API token.

The store never sees a token in clear. It keeps the token's *id* (a short prefix, indexed, so
that verifying a token is one indexed read and one hash check, never a scan of all users)
and its argon2 hash; minting and hashing are the API layer's (``vmwarden.api.tokens``).
Every change is journaled in the same transaction (``user-add``, ``user-disable``,
``user-rotate``), so the audit log proves who granted whom what. ``token_issued_by`` names who
minted the current token (the creator, or the last rotator): whoever mints a token may keep a
copy, so the two-person rule (``store.exceptions``) treats that account as theirs too.

Example::

    users = UsersRepo(store)
    token, token_id, token_hash = mint()      # vmwarden.api.tokens
    users.add_user("alice", "operator", token_id, token_hash, actor="root", reason="on call")
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Column, String, Table, Text, insert, select, update

from vmwarden.errors import StoreError
from vmwarden.store.base import utcnow
from vmwarden.store.journal import write_event
from vmwarden.store.tables import BigId, UTCDateTime, metadata

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

    from vmwarden.store.store import Store

ROLES = ("auditor", "operator", "admin")  # each may do what the ones before it may
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
SIGN_IN_GRANULARITY = timedelta(minutes=1)  # users.last_sign_in_at is at most this stale


# One person (or robot) allowed in; ``token_id`` finds the row, ``token_hash`` proves it.
users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("token_id", String(32), nullable=False, unique=True),
    Column("token_hash", Text(), nullable=False),
    Column("disabled", Boolean(), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("token_rotated_at", UTCDateTime(), nullable=False),
    Column("disabled_at", UTCDateTime()),
    # who minted the current token (its holder may be them): the creator, or the last rotator
    Column("token_issued_by", String(255)),
    Column("last_sign_in_at", UTCDateTime()),
)


@dataclass(frozen=True, slots=True)
class User:
    """A user as the API sees one (no hash). ``token_id`` changes when the token is rotated."""

    id: int
    name: str
    role: str
    disabled: bool
    token_id: str
    created_by: str
    created_at: datetime
    token_rotated_at: datetime
    disabled_at: datetime | None = None
    token_issued_by: str = ""
    last_sign_in_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "disabled": self.disabled,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "token_rotated_at": self.token_rotated_at,
            "token_issued_by": self.token_issued_by,
            "disabled_at": self.disabled_at,
            "last_sign_in_at": self.last_sign_in_at,
        }


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        name=row.name,
        role=row.role,
        disabled=row.disabled,
        token_id=row.token_id,
        created_by=row.created_by,
        created_at=row.created_at,
        token_rotated_at=row.token_rotated_at,
        disabled_at=row.disabled_at,
        token_issued_by=row.token_issued_by or row.created_by,
        last_sign_in_at=row.last_sign_in_at,
    )


def check_role(role: str) -> str:
    if role not in ROLES:
        raise StoreError(f"unknown role {role!r} (valid: {', '.join(ROLES)})")
    return role


class UsersRepo:
    """Users and their token hashes, kept in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add_user(
        self,
        name: str,
        role: str,
        token_id: str,
        token_hash: str,
        *,
        actor: str,
        reason: str | None = None,
    ) -> User:
        """Create ``name``; a name already taken (even by a disabled user) is an error."""
        check_role(role)
        now = utcnow()
        with self._store._write() as conn:
            if conn.execute(select(users.c.id).where(users.c.name == name)).first():
                raise StoreError(
                    f"user {name!r} already exists",
                    hint="pick another name, or rotate that user's token (vmwarden user rotate)",
                )
            conn.execute(
                insert(users).values(
                    name=name,
                    role=role,
                    token_id=token_id,
                    token_hash=token_hash,
                    disabled=False,
                    created_by=actor,
                    created_at=now,
                    token_rotated_at=now,
                    disabled_at=None,
                    token_issued_by=actor,
                )
            )
            details = {"user": name, "role": role, "created_by": actor}
            write_event(conn, "user-add", actor, reason, details, now)
            row = conn.execute(select(users).where(users.c.name == name)).one()
        return _user(row)

    def get_user(self, name: str) -> User | None:
        with self._store._read() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        return _user(row) if row else None

    def get_user_by_id(self, user_id: int) -> User | None:
        with self._store._read() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
        return _user(row) if row else None

    def credentials(self, token_id: str) -> tuple[User, str] | None:
        """The user holding the token with this id, and the token's hash (for verification)."""
        with self._store._read() as conn:
            row = conn.execute(select(users).where(users.c.token_id == token_id)).first()
        return (_user(row), row.token_hash) if row else None

    def record_sign_in(self, user: User, *, now: datetime | None = None) -> None:
        """Note a successful sign-in (for access reviews), at most one write a minute per user.

        Every bearer request is a sign-in; a polling client must not cost a write each.
        """
        now = now or utcnow()
        last = user.last_sign_in_at
        if last is not None and timedelta(0) <= now - last < SIGN_IN_GRANULARITY:
            return
        with self._store._write() as conn:
            conn.execute(update(users).where(users.c.id == user.id).values(last_sign_in_at=now))

    def list_users(self) -> list[User]:
        with self._store._read() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.name))]

    def rotate_token(
        self, name: str, token_id: str, token_hash: str, *, actor: str, reason: str | None = None
    ) -> User:
        """Replace ``name``'s token (the old one stops working); re-enables a disabled user."""
        now = utcnow()
        with self._store._write() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
            if row is None:
                raise StoreError(f"no user {name!r}", hint="vmwarden user list shows who exists")
            issued_by = (row.token_issued_by or row.created_by) if actor == name else actor
            conn.execute(
                update(users)
                .where(users.c.id == row.id)
                .values(
                    token_id=token_id,
                    token_hash=token_hash,
                    token_rotated_at=now,
                    # rotating one's own token keeps its provenance: whoever minted the old
                    # one (and may hold it) can mint its successor too
                    token_issued_by=issued_by,
                    disabled=False,
                    disabled_at=None,
                )
            )
            details = {"user": name, "re_enabled": bool(row.disabled), "token_issued_by": issued_by}
            write_event(conn, "user-rotate", actor, reason, details, now)
            row = conn.execute(select(users).where(users.c.id == row.id)).one()
        return _user(row)


def issuers_of(conn: Connection, name: str) -> set[str]:
    """Everyone who created ``name``'s account or minted its current token, transitively.

    Whoever mints a token may keep a copy, and whoever creates an account chose who holds it:
    for the two-person rule, an account is also the person of everyone in this set. Names
    that are no user (the CLI's login names) end the walk; a cycle cannot loop.
    """
    found: set[str] = set()
    todo = [name]
    while todo:
        row = conn.execute(
            select(users.c.created_by, users.c.token_issued_by).where(users.c.name == todo.pop())
        ).first()
        if row is None:
            continue
        for issuer in {row.created_by, row.token_issued_by or row.created_by}:
            if issuer != name and issuer not in found:
                found.add(issuer)
                todo.append(issuer)
    return found
