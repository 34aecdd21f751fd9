"""Acknowledged findings and time-limited policy exceptions (segregation of duties).

An *acknowledgement* says "we know about this finding" (who, why, optionally until when).
An *exception* lets one VM break one rule until a date; it is *requested* by one person and
only takes effect once *approved* by another (the store refuses a requester approving their
own request, whatever the caller checked). Every step is journaled in the same transaction.

Example::

    repo = ExceptionsRepo(store)
    ex = repo.request_exception("forbidden-software", vm_id, "web01", until, "vendor fix due",
                                actor="alice")
    repo.decide_exception(ex["id"], approve=True, actor="bob", reason="risk accepted")
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)

from vmwarden.errors import StoreError
from vmwarden.store.base import aware, chunks, utcnow
from vmwarden.store.journal import write_event
from vmwarden.store.tables import BigId, UTCDateTime, findings, metadata
from vmwarden.store.users import issuers_of, users

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

    from vmwarden.store.store import Store

REQUESTED, APPROVED, REJECTED = "requested", "approved", "rejected"
EXPIRED = "expired"  # shown, never stored: approved and past its ``until``


class SameActorError(StoreError):
    """The decider is not another person than the requester (see :func:`_not_another`)."""


class DecidedError(StoreError):
    """The exception was already approved or rejected."""


# Someone acknowledged a finding; the newest row of a finding is the one that counts.
finding_acks = Table(
    "finding_acks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("finding_id", BigId, ForeignKey("findings.id"), nullable=False, index=True),
    Column("actor", String(255), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("until", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
)

# One VM may break one rule until ``until``, once approved by someone else.
policy_exceptions = Table(
    "policy_exceptions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("rule", String(255), nullable=False),
    Column("vm_id", String(36), nullable=False),
    Column("vm_name", String(255), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("until", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("requested_by", String(255), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("decided_by", String(255)),
    Column("decided_at", UTCDateTime()),
    Column("decision_reason", Text()),
    Index("ix_policy_exceptions_vm_id_rule", "vm_id", "rule"),
)


def _ack(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "finding_id": row.finding_id,
        "actor": row.actor,
        "reason": row.reason,
        "until": row.until,
        "created_at": row.created_at,
    }


def _exception(row: Row[Any], now: datetime) -> dict[str, Any]:
    status = row.status
    if status == APPROVED and row.until <= now:
        status = EXPIRED
    return {
        "id": row.id,
        "rule": row.rule,
        "vm_id": row.vm_id,
        "vm_name": row.vm_name,
        "reason": row.reason,
        "until": row.until,
        "status": status,
        "requested_by": row.requested_by,
        "requested_at": row.requested_at,
        "decided_by": row.decided_by,
        "decided_at": row.decided_at,
        "decision_reason": row.decision_reason,
    }


class ExceptionsRepo:
    """Acknowledgements and exceptions, kept in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- acknowledgements -----------------------------------------------------------------

    def acknowledge(
        self, finding_id: int, *, actor: str, reason: str, until: datetime | None = None
    ) -> dict[str, Any] | None:
        """Acknowledge finding ``finding_id``; None when there is no such finding."""
        now = utcnow()
        until = aware(until, "until") if until else None
        with self._store._write() as conn:
            found = conn.execute(
                select(
                    findings.c.rule, findings.c.resource_id, findings.c.name, findings.c.host
                ).where(findings.c.id == finding_id)
            ).first()
            if found is None:
                return None
            ack_id = conn.execute(
                insert(finding_acks).values(
                    finding_id=finding_id, actor=actor, reason=reason, until=until, created_at=now
                )
            ).inserted_primary_key[0]
            details = {
                "finding_id": finding_id,
                "resource_id": found.resource_id,
                "until": until.isoformat() if until else None,
            }
            write_event(
                conn, "finding-acknowledge", actor, reason, details, now,
                vm_name=found.name, host=found.host, rule=found.rule,
            )  # fmt: skip
            row = conn.execute(select(finding_acks).where(finding_acks.c.id == ack_id)).one()
        return _ack(row)

    def acknowledgements(
        self, finding_ids: list[int], *, now: datetime | None = None
    ) -> dict[int, dict[str, Any]]:
        """Finding id → its newest acknowledgement still in force (no ``until`` or later)."""
        at = aware(now) if now else utcnow()
        out: dict[int, dict[str, Any]] = {}
        with self._store._read() as conn:
            for chunk in chunks(finding_ids):
                rows = conn.execute(
                    select(finding_acks)
                    .where(finding_acks.c.finding_id.in_(chunk))
                    .order_by(finding_acks.c.id)
                )
                for row in rows:
                    out[row.finding_id] = _ack(row)  # the newest wins
        return {k: v for k, v in out.items() if v["until"] is None or v["until"] > at}

    def acknowledged_ids(self, *, now: datetime | None = None) -> Any:
        """A subquery of finding ids acknowledged right now (for filtering in SQL)."""
        at = aware(now) if now else utcnow()
        newest = (
            select(finding_acks.c.finding_id, func.max(finding_acks.c.id).label("ack_id"))
            .group_by(finding_acks.c.finding_id)
            .subquery()
        )
        return (
            select(finding_acks.c.finding_id)
            .join(newest, finding_acks.c.id == newest.c.ack_id)
            .where(or_(finding_acks.c.until.is_(None), finding_acks.c.until > at))
        )

    # -- exceptions -----------------------------------------------------------------------

    def request_exception(
        self, rule: str, vm_id: str, vm_name: str, until: datetime, reason: str, *, actor: str
    ) -> dict[str, Any]:
        now = utcnow()
        until = aware(until, "until")
        with self._store._write() as conn:
            ex_id = conn.execute(
                insert(policy_exceptions).values(
                    rule=rule,
                    vm_id=vm_id,
                    vm_name=vm_name,
                    reason=reason,
                    until=until,
                    status=REQUESTED,
                    requested_by=actor,
                    requested_at=now,
                )
            ).inserted_primary_key[0]
            write_event(
                conn, "exception-request", actor, reason,
                {"exception_id": ex_id, "until": until.isoformat()}, now,
                vm_id=vm_id, vm_name=vm_name, rule=rule,
            )  # fmt: skip
            row = conn.execute(select(policy_exceptions).where(policy_exceptions.c.id == ex_id))
            return _exception(row.one(), now)

    def get_exception(self, ex_id: int) -> dict[str, Any] | None:
        with self._store._read() as conn:
            row = conn.execute(
                select(policy_exceptions).where(policy_exceptions.c.id == ex_id)
            ).first()
        return _exception(row, utcnow()) if row else None

    def decide_exception(
        self, ex_id: int, *, approve: bool, actor: str, reason: str | None
    ) -> dict[str, Any] | None:
        """Approve or reject a requested exception; None when there is no such exception.

        The one check behind the API, the dashboard and any other path, so none can skip it.
        A refusal is journaled (``exception-decide-refused``): a self-approval attempt is
        what an access review looks for.

        Raises:
            SameActorError: ``actor`` is not another person (segregation of duties).
            DecidedError: it was already approved or rejected.
        """
        now = utcnow()
        with self._store._write() as conn:
            row = conn.execute(
                select(policy_exceptions).where(policy_exceptions.c.id == ex_id)
            ).first()
            if row is None:
                return None
            refusal = _not_another(conn, row, actor)
            if refusal is not None:  # committed, then raised
                write_event(
                    conn, "exception-decide-refused", actor, refusal,
                    {"exception_id": ex_id, "requested_by": row.requested_by,
                     "approve": approve}, now,
                    vm_id=row.vm_id, vm_name=row.vm_name, rule=row.rule,
                )  # fmt: skip
            else:
                row = self._decide(conn, row, approve=approve, actor=actor, reason=reason, now=now)
        if refusal is not None:
            raise SameActorError(
                f"exception {ex_id}: {refusal}; another person must decide it",
                hint="ask an admin whose account and token the requester did not issue "
                "(one made on the server: vmwarden user add NAME --role admin)",
            )
        return _exception(row, now)

    @staticmethod
    def _decide(
        conn: Connection,
        row: Row[Any],
        *,
        approve: bool,
        actor: str,
        reason: str | None,
        now: datetime,
    ) -> Row[Any]:
        if row.status != REQUESTED:
            raise DecidedError(f"exception {row.id} is already {row.status}")
        t = policy_exceptions
        status = APPROVED if approve else REJECTED
        conn.execute(
            update(t)
            .where(t.c.id == row.id)
            .values(status=status, decided_by=actor, decided_at=now, decision_reason=reason)
        )
        decider = conn.execute(select(users).where(users.c.name == actor)).one()
        write_event(
            conn, f"exception-{'approve' if approve else 'reject'}", actor, reason,
            {"exception_id": row.id, "requested_by": row.requested_by,
             "until": row.until.isoformat(), "decider_created_by": decider.created_by,
             "decider_token_issued_by": decider.token_issued_by or decider.created_by},
            now,
            vm_id=row.vm_id, vm_name=row.vm_name, rule=row.rule,
        )  # fmt: skip
        return conn.execute(select(t).where(t.c.id == row.id)).one()

    def list_exceptions(
        self,
        *,
        status: str | None = None,
        vm_id: str | None = None,
        rule: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """Exceptions newest first, and how many match. ``status="expired"`` works too."""
        now = utcnow()
        t = policy_exceptions
        where = []
        if status == EXPIRED:
            where += [t.c.status == APPROVED, t.c.until <= now]
        elif status == APPROVED:
            where += [t.c.status == APPROVED, t.c.until > now]
        elif status is not None:
            where.append(t.c.status == status)
        if vm_id is not None:
            where.append(t.c.vm_id == vm_id)
        if rule is not None:
            where.append(t.c.rule == rule)
        cond = and_(True, *where)
        with self._store._read() as conn:
            total = conn.execute(select(func.count()).select_from(t).where(cond)).scalar_one()
            rows = conn.execute(
                select(t).where(cond).order_by(t.c.id.desc()).limit(limit).offset(offset)
            ).all()
        return [_exception(r, now) for r in rows], int(total)

    def active_exceptions(self, *, now: datetime | None = None) -> set[tuple[str, str]]:
        """(rule, vm_id) pairs an approved, unexpired exception covers (for the engine)."""
        at = aware(now) if now else utcnow()
        t = policy_exceptions
        with self._store._read() as conn:
            rows = conn.execute(
                select(t.c.rule, t.c.vm_id).where(t.c.status == APPROVED, t.c.until > at)
            ).all()
        return {(r.rule, r.vm_id) for r in rows}


def _not_another(conn: Connection, row: Row[Any], actor: str) -> str | None:
    """Why ``actor`` may not decide the exception ``row``; None when they may.

    Two people means two accounts the requester does not control: not the requester, not a
    user the requester created or minted a token for (directly or through such a user, see
    :func:`~vmwarden.store.users.issuers_of`), and not one created after the request (made
    to answer it). Deciders must be users: a name alone is no person.
    """
    requester = row.requested_by
    if actor == requester:
        return f"requested by {actor}"
    decider = conn.execute(select(users).where(users.c.name == actor)).first()
    if decider is None:
        return f"{actor!r} is no vmwarden user"
    if decider.created_at > row.requested_at:
        return f"{actor}'s account was created after the request"
    if requester in issuers_of(conn, actor):
        return f"{actor}'s account or token was issued by {requester} (or by an account of theirs)"
    return None
