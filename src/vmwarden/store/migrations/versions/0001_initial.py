"""Initial schema: inventory, history, images, digests, catalog, findings, journal, scans.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen: this file states the schema as of revision 0001 and must not import the table
classes (they describe the *latest* schema).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "vms",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("uri", sa.String(1024), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("persistent", sa.Boolean(), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=True),
        sa.Column("memory_kib", sa.BigInteger(), nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("classification", sa.String(255), nullable=True),
        sa.Column("template", sa.String(255), nullable=True),
        sa.Column("registered", sa.Boolean(), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("record_digest", sa.String(64), nullable=False),
        _ts("first_seen"),
        _ts("last_seen"),
        _ts("state_since", nullable=True),
        _ts("gone_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_vms"),
    )
    op.create_index("ix_vms_name", "vms", ["name"])
    op.create_index("ix_vms_host", "vms", ["host"])

    op.create_table(
        "hosts",
        sa.Column("host", sa.String(255), nullable=False),
        _ts("last_seen"),
        sa.PrimaryKeyConstraint("host", name="pk_hosts"),
    )

    op.create_table(
        "vm_history",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("vm_id", sa.String(36), nullable=False),
        _ts("at"),
        sa.Column("field", sa.String(16), nullable=False),
        sa.Column("old", sa.String(1024), nullable=True),
        sa.Column("new", sa.String(1024), nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vm_history"),
    )
    op.create_index("ix_vm_history_vm_id_at", "vm_history", ["vm_id", "at"])

    op.create_table(
        "images",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("path", sa.String(4096), nullable=False),
        sa.Column("format", sa.String(32), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("digest", sa.String(80), nullable=True),
        _ts("mtime", nullable=True),
        sa.Column("backing", sa.String(4096), nullable=True),
        sa.Column("pool", sa.String(255), nullable=True),
        sa.Column("attached_to", sa.JSON(), nullable=False),
        sa.Column("template", sa.String(255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("first_seen"),
        _ts("last_seen"),
        sa.PrimaryKeyConstraint("id", name="pk_images"),
        sa.UniqueConstraint("host", "path", name="uq_images_host_path"),
    )
    op.create_index("ix_images_digest", "images", ["digest"])

    op.create_table(
        "digest_cache",
        sa.Column("path", sa.String(4096), nullable=False),
        sa.Column("dev", sa.BigInteger(), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        _ts("computed_at"),
        sa.PrimaryKeyConstraint("path", name="pk_digest_cache"),
    )

    op.create_table(
        "templates",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("path", sa.String(4096), nullable=True),
        sa.Column("fingerprint", sa.JSON(), nullable=False),
        sa.Column("approved_by", sa.String(255), nullable=False),
        _ts("approved_at"),
        sa.PrimaryKeyConstraint("id", name="pk_templates"),
        sa.UniqueConstraint("name", name="uq_templates_name"),
    )
    op.create_index("ix_templates_digest", "templates", ["digest"])

    op.create_table(
        "findings",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(255), nullable=False),
        sa.Column("resource", sa.String(16), nullable=False),
        sa.Column("resource_id", sa.String(4096), nullable=False),
        sa.Column("name", sa.String(4096), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("first_seen"),
        _ts("last_seen"),
        _ts("resolved_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_findings"),
        sa.UniqueConstraint(
            "rule", "resource", "resource_id", name="uq_findings_rule_resource_resource_id"
        ),
    )
    op.create_index("ix_findings_status", "findings", ["status"])

    op.create_table(
        "journal",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("vm_id", sa.String(36), nullable=True),
        sa.Column("vm_name", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("uri", sa.String(1024), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("rule", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("parent_id", BigId, nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_journal"),
        sa.ForeignKeyConstraint(["parent_id"], ["journal.id"], name="fk_journal_parent_id_journal"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_journal_vm_id_action", "journal", ["vm_id", "action"])
    op.create_index("ix_journal_status", "journal", ["status"])

    op.create_table(
        "scans",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.Column("uris", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_scans"),
    )


def downgrade() -> None:
    for table in (
        "scans",
        "journal",
        "findings",
        "templates",
        "digest_cache",
        "images",
        "vm_history",
        "hosts",
        "vms",
    ):
        op.drop_table(table)
