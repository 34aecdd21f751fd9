"""What every repository module shares: transactions, error mapping, bulk upserts, UTC."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from vmwarden.errors import StoreError
from vmwarden.store.db import IMMEDIATE
from vmwarden.store.tables import UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.sql.expression import Executable

T = TypeVar("T")

# Rows per executemany / IN (...) batch: far below SQLite's and PostgreSQL's parameter limits.
CHUNK = 2000


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
    insert = _insert_of(conn.dialect.name)
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={name: stmt.excluded[name] for name in update}
    )
    execute_rows(conn, stmt, rows)


def _insert_of(dialect: str) -> Any:
    """The dialect's ``insert`` with ON CONFLICT, imported when first written with: the
    PostgreSQL dialect (and its asyncpg module) cost a read-only command ~20 ms to import."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - parse_url refuses other databases
        raise StoreError(f"bulk upsert is not implemented for {dialect}")
    return insert


def execute_rows(conn: Connection, stmt: Executable, rows: Sequence[dict[str, Any]]) -> None:
    """``stmt`` once per row of ``rows`` (all with the same keys), executemany in chunks.

    On SQLite the statement is compiled once and the driver gets plain tuples: SQLAlchemy's
    own executemany builds and type-processes a parameter dict per row (about 10 µs a row,
    more than SQLite's insert), and a sweep writes tens of thousands of rows. Timestamps
    repeat (a sweep's ``now``), so each distinct one is converted once. PostgreSQL keeps
    SQLAlchemy's path, which batches rows into multi-row ``VALUES`` (one round trip each).
    """
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        for chunk in chunks(rows):
            conn.execute(stmt, list(chunk))
        return
    names = list(rows[0])
    compiled = stmt.compile(dialect=conn.dialect, column_keys=names)
    order = list(compiled.positiontup or [])
    if sorted(order) != sorted(names):  # pragma: no cover - binds beyond the row's own keys
        for chunk in chunks(rows):
            conn.execute(stmt, list(chunk))
        return
    table = getattr(stmt, "table", None)
    processors = compiled._bind_processors
    convert = [
        (i, _converter(processors[n], table, n)) for i, n in enumerate(order) if n in processors
    ]
    for chunk in chunks(rows):
        params = [_values(row, order, convert) for row in chunk]
        conn.exec_driver_sql(compiled.string, params)


def _values(
    row: dict[str, Any], order: list[str], convert: list[tuple[int, Any]]
) -> tuple[Any, ...]:
    values = [row[n] for n in order]
    for i, proc in convert:
        values[i] = proc(values[i])
    return tuple(values)


def _converter(proc: Any, table: Table | None, name: str) -> Any:
    """The column's bind processor; for timestamps, remembering each distinct value's result."""
    if proc is None or table is None or name not in table.c:
        return proc
    if not isinstance(table.c[name].type, UTCDateTime):
        return proc
    seen: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        if value not in seen:
            seen[value] = proc(value)
        return seen[value]

    return convert
