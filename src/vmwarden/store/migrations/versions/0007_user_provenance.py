"""Who issued each user's current token, and when they last signed in.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Frozen: states the schema as of this revision; does not import the table classes.

``users.token_issued_by``: whoever holds a freshly minted token is whoever minted it, so the
two-person rule (``store.exceptions``) must know who minted each account's current token:
its creator, or whoever rotated it last. Existing rows are filled from the journal (the
newest ``user-rotate`` event of the user), else from ``created_by``.
``users.last_sign_in_at``: for access reviews (auditors); NULL until the next sign-in.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("token_issued_by", sa.String(255), nullable=True))
        batch.add_column(sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True))
    conn = op.get_bind()
    users = sa.table(
        "users",
        sa.column("name", sa.String),
        sa.column("created_by", sa.String),
        sa.column("token_issued_by", sa.String),
    )
    journal = sa.table(
        "journal",
        sa.column("id", sa.Integer),
        sa.column("action", sa.String),
        sa.column("actor", sa.String),
        sa.column("changes", sa.JSON),
    )
    conn.execute(sa.update(users).values(token_issued_by=users.c.created_by))
    rotated: dict[str, str] = {}
    rows = conn.execute(
        sa.select(journal.c.actor, journal.c.changes)
        .where(journal.c.action == "user-rotate")
        .order_by(journal.c.id)
    )
    for actor, changes in rows:
        name = (changes or {}).get("user") if isinstance(changes, dict) else None
        if isinstance(name, str):
            rotated[name] = actor  # the newest wins
    for name, actor in rotated.items():
        conn.execute(sa.update(users).where(users.c.name == name).values(token_issued_by=actor))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("last_sign_in_at")
        batch.drop_column("token_issued_by")
