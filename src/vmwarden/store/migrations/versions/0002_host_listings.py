"""Images get their full record, a fingerprint and ``gone_at``; per-host listing times by kind.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02

``hosts.last_seen`` (when a host's VM listing was last complete) becomes a row of kind
``vms`` in ``host_listings``; kind ``images`` does the same for a host's image listing, so an
unchanged image is not rewritten at every sweep either. ``images.record`` holds
``Image.to_dict()`` (guest facts included); rows from 0001 have none until next seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("record", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("record_digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("gone_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "host_listings",
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("host", "kind", name="pk_host_listings"),
    )
    op.execute(
        "INSERT INTO host_listings (host, kind, last_seen) SELECT host, 'vms', last_seen FROM hosts"
    )
    op.drop_table("hosts")


def downgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("host", name="pk_hosts"),
    )
    op.execute(
        "INSERT INTO hosts (host, last_seen) SELECT host, last_seen FROM host_listings "
        "WHERE kind = 'vms'"
    )
    op.drop_table("host_listings")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("gone_at")
        batch.drop_column("record_digest")
        batch.drop_column("record")
