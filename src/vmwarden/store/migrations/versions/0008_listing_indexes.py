"""Indexes for the dashboard's and API's paged lists at estate scale (issue 16).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Frozen: states the schema as of this revision; does not import the table classes.

Each index serves one paged list in ``store/pages.py`` (filter columns first, then the
list's ORDER BY, so a page is read in order and stops at LIMIT) and the per-host findings
comparison of a streaming sweep (``engine/stream.py``):
- VMs by host (and the unfiltered list), ordered by host, name, id;
- VMs by state, same order;
  both partial (``WHERE gone_at IS NULL``): the lists show live VMs unless asked for gone
  ones, and counting a page's total then reads only the index;
- findings by status, by rule, by host and by severity, ordered by id.
A VM's history already has ``ix_vm_history_vm_id_at``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "gone_at IS NULL"
INDEXES: dict[str, tuple[str, list[str]]] = {
    "ix_vms_host_name_id": ("vms", ["host", "name", "id"]),
    "ix_vms_state_host_name_id": ("vms", ["state", "host", "name", "id"]),
    "ix_findings_status_id": ("findings", ["status", "id"]),
    "ix_findings_rule_status_id": ("findings", ["rule", "status", "id"]),
    "ix_findings_host_status_id": ("findings", ["host", "status", "id"]),
    "ix_findings_severity_status_id": ("findings", ["severity", "status", "id"]),
}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        where = {"postgresql_where": sa.text(LIVE), "sqlite_where": sa.text(LIVE)}
        op.create_index(name, table, columns, **(where if table == "vms" else {}))


def downgrade() -> None:
    for name, (table, _columns) in INDEXES.items():
        op.drop_index(name, table_name=table)
