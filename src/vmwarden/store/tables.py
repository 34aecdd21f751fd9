"""The database tables, as SQLAlchemy 2 typed declarative classes.

These classes describe the *current* schema for queries; the schema itself is created and
changed only by the Alembic migrations in ``migrations/versions`` (frozen copies, never
generated from these classes at run time). A test checks that the two agree.

Every timestamp column is :class:`UTCDateTime`: aware UTC datetimes in Python, naive UTC in
SQLite (which has no time zones), ``timestamptz`` in PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class VmRow(Base):
    """The latest known state of each VM (by UUID); ``record`` is ``VM.to_dict()``."""

    __tablename__ = "vms"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    uri: Mapped[str] = mapped_column(String(1024))
    state: Mapped[str] = mapped_column(String(32))
    persistent: Mapped[bool] = mapped_column(Boolean)
    vcpus: Mapped[int | None] = mapped_column(Integer)
    memory_kib: Mapped[int | None] = mapped_column(BigInteger)
    owner: Mapped[str | None] = mapped_column(String(255))
    classification: Mapped[str | None] = mapped_column(String(255))
    template: Mapped[str | None] = mapped_column(String(255))
    registered: Mapped[bool | None] = mapped_column(Boolean)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Fingerprint of the VM as last recorded: lets an unchanged re-scan skip the row entirely.
    record_digest: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    state_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    gone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Digest of what libvirt said (XMLDesc + state + persistence + host + URI) when ``record``
    # was written, and the disks' chains as that XML gave them (before lineage): a re-scan
    # finding the same digest rebuilds the VM from these instead of parsing the XML.
    # None: written without one (e.g. by watch), so the next scan parses.
    input_digest: Mapped[str | None] = mapped_column(String(64))
    input_chains: Mapped[list[Any] | None] = mapped_column(JSON)


class HostListingRow(Base):
    """When a host's listing of one kind (``vms`` or ``images``) was last read completely.

    A VM (or image) that is not gone and sits on a host was, by construction, seen at that
    host's listing time; this keeps an unchanged re-scan from rewriting every row.
    """

    __tablename__ = "host_listings"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # vms | images
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class VmHistoryRow(Base):
    """One witnessed change of a VM's host, state, name, MAC or network (forensics)."""

    __tablename__ = "vm_history"
    __table_args__ = (Index("ix_vm_history_vm_id_at", "vm_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vm_id: Mapped[str] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    field: Mapped[str] = mapped_column(String(16))  # host | state | mac | network | name
    old: Mapped[str | None] = mapped_column(String(1024))
    new: Mapped[str | None] = mapped_column(String(1024))
    source: Mapped[str] = mapped_column(String(64))


class ImageRow(Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("host", "path"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(4096))
    format: Mapped[str | None] = mapped_column(String(32))
    size: Mapped[int | None] = mapped_column(BigInteger)
    digest: Mapped[str | None] = mapped_column(String(80), index=True)
    mtime: Mapped[datetime | None] = mapped_column(UTCDateTime())
    backing: Mapped[str | None] = mapped_column(String(4096))
    pool: Mapped[str | None] = mapped_column(String(255))
    attached_to: Mapped[list[Any]] = mapped_column(JSON)
    template: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    # Image.to_dict() and its fingerprint (None on rows from revision 0001 until seen again).
    record: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    record_digest: Mapped[str | None] = mapped_column(String(64))
    gone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DigestCacheRow(Base):
    """A file's digest, valid while (dev, inode, size, mtime_ns) are unchanged."""

    __tablename__ = "digest_cache"

    path: Mapped[str] = mapped_column(String(4096), primary_key=True)
    dev: Mapped[int] = mapped_column(BigInteger)
    inode: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(80))
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TemplateRow(Base):
    """An approved template image: the catalog."""

    __tablename__ = "templates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    digest: Mapped[str] = mapped_column(String(80), index=True)
    path: Mapped[str | None] = mapped_column(String(4096))
    fingerprint: Mapped[dict[str, Any]] = mapped_column(JSON)
    approved_by: Mapped[str] = mapped_column(String(255))
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FindingRow(Base):
    """A finding across sweeps: one row per (rule, resource, resource_id)."""

    __tablename__ = "findings"
    __table_args__ = (UniqueConstraint("rule", "resource", "resource_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(255))
    resource: Mapped[str] = mapped_column(String(16))
    resource_id: Mapped[str] = mapped_column(String(4096))
    name: Mapped[str] = mapped_column(String(4096))
    host: Mapped[str] = mapped_column(String(255))
    severity: Mapped[str] = mapped_column(String(16))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)  # open | resolved
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JournalRow(Base):
    """The audit journal: every action on a VM, and operator events (``vm_id`` NULL)."""

    __tablename__ = "journal"
    __table_args__ = (
        Index("ix_journal_vm_id_action", "vm_id", "action"),
        {"sqlite_autoincrement": True},  # never reuse an id, even after a purge
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(64))
    vm_id: Mapped[str | None] = mapped_column(String(36))
    vm_name: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    uri: Mapped[str | None] = mapped_column(String(1024))
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    rule: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), index=True)
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("journal.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ScanRow(Base):
    __tablename__ = "scans"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    uris: Mapped[list[Any]] = mapped_column(JSON)
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)


vms = VmRow.__table__
host_listings = HostListingRow.__table__
vm_history = VmHistoryRow.__table__
images = ImageRow.__table__
digest_cache = DigestCacheRow.__table__
templates = TemplateRow.__table__
findings = FindingRow.__table__
journal = JournalRow.__table__
scans = ScanRow.__table__
