"""``vmwarden report findings`` from an up-to-date SQLite store, without SQLAlchemy.

Why: a report is one indexed read, but importing SQLAlchemy (engine, SQL compiler, dialect)
was most of the command's start-up: ~0.13 of ~0.35 s on an idle machine, where Python and
Typer take 0.05 s. On the common store (an SQLite file already at the newest migration) the
open findings are read here through the standard ``sqlite3`` module with the query of
:meth:`~vmwarden.store.findings.FindingsRepo.open_findings` (a test holds the two to the same
findings, in the same order). Everything else goes through :class:`~vmwarden.store.Store`:
PostgreSQL, a URL with a driver or options, a missing store (it is created) and one an
older vmwarden wrote (it is migrated first). The schema stays the migrations'; nothing here
creates or changes a table.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from vmwarden.model import Finding, Severity
from vmwarden.store import private
from vmwarden.store.location import BUSY_TIMEOUT_MS, default_url, newest_revision

# A plain SQLite file URL, as SQLAlchemy reads it (sqlite:///relative, sqlite:////absolute);
# a driver (sqlite+pysqlite), query options or memory databases go the general way.
_SQLITE_FILE = re.compile(r"^sqlite:///(?P<path>[^?#]+)$")
_OPEN_FINDINGS = (
    "SELECT rule, resource, resource_id, name, host, severity, evidence "
    "FROM findings WHERE status = 'open' ORDER BY id"
)


def sqlite_file(url: str | None) -> Path | None:
    """The database file of a plain SQLite URL that exists (None: not one of those)."""
    m = _SQLITE_FILE.match(url or default_url())
    if m is None or m["path"] == ":memory:":
        return None
    path = Path(m["path"]).expanduser()
    return path if path.is_file() else None


def open_findings(url: str | None) -> list[Finding] | None:
    """The open findings, oldest first, as ``Store.open_findings`` gives them; None when
    this store must be read through ``Store`` (see the module docstring)."""
    path = sqlite_file(url)
    if path is None:
        return None
    # as Store.open does: the file and SQLite's companions are the owner's only
    try:
        private.create_private(path)
        for suffix in ("-wal", "-shm"):
            private.tighten(f"{path}{suffix}")
    except OSError:
        return None  # not ours to write: Store says what is wrong, with the hint
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        conn.execute("BEGIN")  # one snapshot for both reads
        got = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        if got != [(newest_revision(),)]:
            return None  # an older (or newer) schema: Store migrates or refuses it
        rows = conn.execute(_OPEN_FINDINGS).fetchall()
    except sqlite3.Error:
        return None  # let Store open it and say what is wrong
    finally:
        conn.close()
    return [
        Finding(
            rule=rule,
            resource=resource,
            id=resource_id,
            name=name,
            host=host,
            severity=Severity.parse(severity),
            evidence=dict(json.loads(evidence) if evidence else {}),
        )
        for rule, resource, resource_id, name, host, severity, evidence in rows
    ]
