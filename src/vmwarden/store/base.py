"""What every repository module shares: transactions, error mapping, bulk upserts, UTC."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from vmwarden.errors import StoreError
from vmwarden.store.db import IMMEDIATE

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection, Engine

T = TypeVar("T")

# Rows per executemany / IN (...) batch: far below SQLite's and PostgreSQL's parameter limits.
CHUNK = 2000

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def aware(value: datetime, what: str = "now") -> datetime:
    """``value`` in UTC; a naive datetime is a caller bug, reported as such."""
    if value.tzinfo is None:
        raise StoreError(
            f"{what}={value!r} is a naive datetime",
            hint="pass an aware time, e.g. datetime.now(UTC)",
        )
    return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _describe(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


class StoreBase:
    """The engine and the two kinds of transaction every repository method uses."""

    _engine: Engine

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot in WAL mode)."""
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"database read failed: {_describe(exc)}") from exc

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction, committed (durably: synchronous=FULL) when the block ends.

        On SQLite it starts with BEGIN IMMEDIATE, so a read-then-write never fails half-way
        on a lock upgrade; other writers wait up to the busy timeout.
        """
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{IMMEDIATE: True})  # in place (SQLAlchemy 2)
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            hint = None
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                hint = "another vmwarden process holds the database; retry when it is done"
            raise StoreError(f"database write failed: {_describe(exc)}", hint=hint) from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"database write failed: {_describe(exc)}") from exc


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    keys: Iterable[str],
    update: Iterable[str],
) -> None:
    """Bulk ``INSERT … ON CONFLICT (keys) DO UPDATE SET update…``, executemany in chunks."""
    if not rows:
        return
    insert = _INSERTS.get(conn.dialect.name)
    if insert is None:  # pragma: no cover - parse_url refuses other databases
        raise StoreError(f"bulk upsert is not implemented for {conn.dialect.name}")
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={name: stmt.excluded[name] for name in update}
    )
    for chunk in chunks(rows):
        conn.execute(stmt, list(chunk))
