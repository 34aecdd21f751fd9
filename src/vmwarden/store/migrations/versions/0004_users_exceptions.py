"""API users (hashed tokens), finding acknowledgements, time-limited policy exceptions.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04

Frozen: states the schema as of this revision; does not import the table classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token_rotated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sa.UniqueConstraint("token_id", name="uq_users_token_id"),
    )
    op.create_table(
        "finding_acks",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("finding_id", BigId, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["finding_id"], ["findings.id"], name="fk_finding_acks_finding_id_findings"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_finding_acks"),
    )
    op.create_index("ix_finding_acks_finding_id", "finding_acks", ["finding_id"])
    op.create_table(
        "policy_exceptions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(255), nullable=False),
        sa.Column("vm_id", sa.String(36), nullable=False),
        sa.Column("vm_name", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_policy_exceptions"),
    )
    op.create_index("ix_policy_exceptions_status", "policy_exceptions", ["status"])
    op.create_index("ix_policy_exceptions_vm_id_rule", "policy_exceptions", ["vm_id", "rule"])


def downgrade() -> None:
    op.drop_index("ix_policy_exceptions_vm_id_rule", table_name="policy_exceptions")
    op.drop_index("ix_policy_exceptions_status", table_name="policy_exceptions")
    op.drop_table("policy_exceptions")
    op.drop_index("ix_finding_acks_finding_id", table_name="finding_acks")
    op.drop_table("finding_acks")
    op.drop_table("users")
