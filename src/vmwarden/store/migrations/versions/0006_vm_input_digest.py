"""Per-VM digest of the inventory input, so an unchanged re-scan skips parsing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Frozen: states the schema as of this revision; does not import the table classes.
Existing rows get NULL (no digest): the first scan after the upgrade parses every domain
and writes its digest, as before this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("input_digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("input_chains", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.drop_column("input_chains")
        batch.drop_column("input_digest")
