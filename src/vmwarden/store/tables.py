"""The database tables, as SQLAlchemy Core ``Table`` objects on one ``MetaData``.

These describe the *current* schema for queries; the schema itself is created and changed
only by the Alembic migrations in ``migrations/versions`` (frozen copies, never generated
from these tables at run time). A test checks that the two agree. They are Core tables, not
ORM classes: every query is Core, and importing ``sqlalchemy.orm`` (declarative mapping
included) cost ``vmwarden report`` a quarter of its start-up.

Every timestamp column is :class:`UTCDateTime`: aware UTC datetimes in Python, naive UTC in
SQLite (which has no time zones), ``timestamptz`` in PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

# Named constraints, so that later migrations can alter them (SQLite batch mode needs names).
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# An autoincrementing 64-bit key that is still SQLite's rowid alias (BIGINT PRIMARY KEY is not).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, whatever the database does with time zones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: vmwarden stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# The store's tables; facts, users, sessions and exceptions add theirs from their own modules
# (see :func:`full_metadata`), so a command that reads findings does not import those.
metadata = MetaData(naming_convention=NAMING)


def full_metadata() -> MetaData:
    """:data:`metadata` with every table registered, for schema checks and Alembic."""
    from vmwarden.store import exceptions, facts, sessions, users  # noqa: F401

    return metadata


# Partial indexes over the VMs not gone (what the lists show by default)
_LIVE = {"postgresql_where": text("gone_at IS NULL"), "sqlite_where": text("gone_at IS NULL")}

# The latest known state of each VM (by UUID); ``record`` is ``VM.to_dict()``.
vms = Table(
    "vms",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False, index=True),
    Column("host", String(255), nullable=False, index=True),
    Column("uri", String(1024), nullable=False),
    Column("state", String(32), nullable=False),
    Column("persistent", Boolean(), nullable=False),
    Column("vcpus", Integer()),
    Column("memory_kib", BigInteger()),
    Column("owner", String(255)),
    Column("classification", String(255)),
    Column("template", String(255)),
    Column("registered", Boolean()),
    Column("record", JSON, nullable=False),
    # Fingerprint of the VM as last recorded: lets an unchanged re-scan skip the row entirely.
    Column("record_digest", String(64), nullable=False),
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("state_since", UTCDateTime()),
    Column("gone_at", UTCDateTime()),
    # Digest of what the platform said (definition + state + persistence + host + URI) when
    # ``record`` was written, and the disks' chains as that definition gave them (before
    # lineage): a re-scan finding the same digest rebuilds the VM from these instead of
    # parsing the definition. None: written without one (e.g. by watch), so the next scan
    # parses.
    Column("input_digest", String(64)),
    Column("input_chains", JSON),
    # paged lists (store/pages.py): filter columns, then the list's order (migration 0008)
    Index("ix_vms_host_name_id", "host", "name", "id", **_LIVE),
    Index("ix_vms_state_host_name_id", "state", "host", "name", "id", **_LIVE),
)

# When a host's listing of one kind (``vms`` or ``images``) was last read completely. A VM
# (or image) that is not gone and sits on a host was, by construction, seen at that host's
# listing time; this keeps an unchanged re-scan from rewriting every row.
host_listings = Table(
    "host_listings",
    metadata,
    Column("host", String(255), primary_key=True),
    Column("kind", String(16), primary_key=True),  # vms | images
    Column("last_seen", UTCDateTime(), nullable=False),
)

# One witnessed change of a VM's host, state, name, MAC or network (forensics).
vm_history = Table(
    "vm_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("vm_id", String(36), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("field", String(16), nullable=False),  # host | state | mac | network | name
    Column("old", String(1024)),
    Column("new", String(1024)),
    Column("source", String(64), nullable=False),
    Index("ix_vm_history_vm_id_at", "vm_id", "at"),
)

images = Table(
    "images",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("host", String(255), nullable=False),
    Column("path", String(4096), nullable=False),
    Column("format", String(32)),
    Column("size", BigInteger()),
    Column("digest", String(80), index=True),
    Column("mtime", UTCDateTime()),
    Column("backing", String(4096)),
    Column("pool", String(255)),
    Column("attached_to", JSON, nullable=False),
    Column("template", String(255)),
    Column("error", Text()),
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    # Image.to_dict() and its fingerprint (None on rows from revision 0001 until seen again).
    Column("record", JSON),
    Column("record_digest", String(64)),
    Column("gone_at", UTCDateTime()),
    UniqueConstraint("host", "path"),
)

# A file's digest, valid while (dev, inode, size, mtime_ns) are unchanged.
digest_cache = Table(
    "digest_cache",
    metadata,
    Column("path", String(4096), primary_key=True),
    Column("dev", BigInteger(), nullable=False),
    Column("inode", BigInteger(), nullable=False),
    Column("size", BigInteger(), nullable=False),
    Column("mtime_ns", BigInteger(), nullable=False),
    Column("digest", String(80), nullable=False),
    Column("computed_at", UTCDateTime(), nullable=False),
)

# An approved template image: the catalog.
templates = Table(
    "templates",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("digest", String(80), nullable=False, index=True),
    Column("path", String(4096)),
    Column("fingerprint", JSON, nullable=False),
    Column("approved_by", String(255), nullable=False),
    Column("approved_at", UTCDateTime(), nullable=False),
)

# A finding across sweeps: one row per (rule, resource, resource_id).
findings = Table(
    "findings",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("rule", String(255), nullable=False),
    Column("resource", String(16), nullable=False),
    Column("resource_id", String(4096), nullable=False),
    Column("name", String(4096), nullable=False),
    Column("host", String(255), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("status", String(16), nullable=False, index=True),  # open | resolved
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime()),
    UniqueConstraint("rule", "resource", "resource_id"),
    # paged lists by status/rule/host/severity in id order; per-host comparison (0008)
    Index("ix_findings_status_id", "status", "id"),
    Index("ix_findings_rule_status_id", "rule", "status", "id"),
    Index("ix_findings_host_status_id", "host", "status", "id"),
    Index("ix_findings_severity_status_id", "severity", "status", "id"),
)

# The audit journal: every action on a VM, and operator events (``vm_id`` NULL).
journal = Table(
    "journal",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("action", String(64), nullable=False),
    Column("vm_id", String(36)),
    Column("vm_name", String(255)),
    Column("host", String(255)),
    Column("uri", String(1024)),
    Column("actor", String(255), nullable=False),
    Column("reason", Text()),
    Column("rule", String(255)),
    Column("status", String(16), nullable=False, index=True),
    Column("changes", JSON, nullable=False),
    Column("error", Text()),
    Column("parent_id", BigId, ForeignKey("journal.id")),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_journal_vm_id_action", "vm_id", "action"),
    sqlite_autoincrement=True,  # never reuse an id, even after a purge
)

scans = Table(
    "scans",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("uris", JSON, nullable=False),
    Column("counts", JSON),
)
