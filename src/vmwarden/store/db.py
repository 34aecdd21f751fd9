"""Opening a database: URL resolution, engine set-up, SQLite pragmas, migrations to head.

Nothing here runs at import time; :func:`connect` builds one engine per ``Store``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from vmwarden.errors import StoreError
from vmwarden.store import private
from vmwarden.store.location import (  # noqa: F401 - part of this module's interface
    BUSY_TIMEOUT_MS,
    ENV_VAR,
    MIGRATIONS,
    default_url,
    newest_revision,
)

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

IMMEDIATE = "vmwarden_immediate"  # execution option: open a SQLite write transaction eagerly
URL_EXAMPLES = "sqlite:////var/lib/vmwarden/vmwarden.db or postgresql+psycopg://user@host/vmwarden"
SUPPORTED = ("sqlite", "postgresql")


def _shown(url: URL | str) -> str:
    return url.render_as_string(hide_password=True) if isinstance(url, URL) else url


def parse_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise StoreError(
            f"cannot open store {raw!r}: not a database URL",
            hint=f"use a URL such as {URL_EXAMPLES} (or set ${ENV_VAR})",
        ) from None
    if url.get_backend_name() not in SUPPORTED:
        raise StoreError(
            f"cannot open store {_shown(url)!r}: unsupported database "
            f"{url.get_backend_name()!r} (valid: {', '.join(SUPPORTED)})",
            hint=f"use a URL such as {URL_EXAMPLES}",
        )
    return url


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or str(url.database).startswith("file::memory:")


def _prepare_sqlite_file(url: URL) -> None:
    """Create the parent directory (0700) and the database file (0600) if missing.

    An existing file readable by other users (it holds password hashes) is made 0600, with
    a warning, and so are SQLite's ``-wal``/``-shm`` files beside it (SQLite gives new ones
    the database file's mode, but leftovers keep theirs).
    """
    path = Path(str(url.database))
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private.create_private(path)
        for suffix in ("-wal", "-shm"):
            private.tighten(f"{path}{suffix}")
        if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK):
            raise PermissionError(f"{path} (or its directory) is not writable")
    except OSError as exc:
        raise StoreError(
            f"cannot open store {_shown(url)!r}: {exc.strerror or exc}: {path}",
            hint=f"choose a writable location with --db or ${ENV_VAR}",
        ) from None


def _sqlite_events(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so that
        # DDL is transactional and writers can take the lock up front (BEGIN IMMEDIATE).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA synchronous = FULL")  # the action journal must survive power loss
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def connect(raw_url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Engine:
    """Build the engine for ``raw_url`` and check that a connection can be made."""
    url = parse_url(raw_url)
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        if _is_memory(url):
            kwargs["poolclass"] = StaticPool  # one connection, or each would see its own DB
        else:
            url = url.set(database=str(Path(str(url.database)).expanduser()))
            _prepare_sqlite_file(url)
        kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(
            f"cannot open store {_shown(url)!r}: database driver not installed ({exc})",
            hint="install the driver (e.g. pip install 'psycopg[binary]') or use SQLite",
        ) from None
    if url.get_backend_name() == "sqlite":
        _sqlite_events(engine, busy_timeout_ms=busy_timeout_ms)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(
            f"cannot open store {_shown(url)!r}: {getattr(exc, 'orig', None) or exc}",
            hint=f"check the URL, that the database is reachable and writable (--db, ${ENV_VAR})",
        ) from None
    return engine


def alembic_config() -> Config:
    """An Alembic config built in code: no alembic.ini is shipped or needed."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def stored_revision(engine: Engine) -> str | None:
    """The store's ``alembic_version``, read with plain SQL (None when there is none)."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> None:
    """Upgrade the schema to head, in one transaction that holds the write lock.

    Two processes opening a fresh database at once serialise on that lock: the second finds
    the schema at head and does nothing.
    """
    if stored_revision(engine) == newest_revision():
        return
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    cfg = alembic_config()
    head = ScriptDirectory.from_config(cfg).get_current_head()
    try:
        if current_revision(engine) == head:
            return
        with engine.connect() as conn:
            conn.execution_options(**{IMMEDIATE: True})  # in place (SQLAlchemy 2)
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(7406220117)"))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
    except CommandError as exc:
        raise StoreError(
            f"cannot migrate the store: {exc}",
            hint="the database may come from a newer vmwarden; upgrade vmwarden",
        ) from None
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot migrate the store: {getattr(exc, 'orig', None) or exc}",
            hint="check that the database is writable and not locked by another program",
        ) from None
