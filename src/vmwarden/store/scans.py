"""Sweeps: when each ran, over which connections, and what it counted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select, update

from vmwarden.errors import StoreError
from vmwarden.store.base import StoreBase, utcnow
from vmwarden.store.tables import scans


class ScansRepo(StoreBase):
    def begin_scan(self, uris: Iterable[str]) -> int:
        with self._write() as conn:
            return int(
                conn.execute(
                    insert(scans).values(started_at=utcnow(), uris=list(uris))
                ).inserted_primary_key[0]
            )

    def finish_scan(self, scan_id: int, counts: dict[str, Any]) -> None:
        with self._write() as conn:
            result = conn.execute(
                update(scans)
                .where(scans.c.id == scan_id)
                .values(finished_at=utcnow(), counts=dict(counts))
            )
            if result.rowcount == 0:
                raise StoreError(f"scan {scan_id} does not exist")

    def recent_scans(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest sweeps, newest first."""
        with self._read() as conn:
            rows = conn.execute(select(scans).order_by(scans.c.id.desc()).limit(limit)).all()
        return [
            {
                "id": r.id,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "uris": list(r.uris or []),
                "counts": r.counts,
            }
            for r in rows
        ]
