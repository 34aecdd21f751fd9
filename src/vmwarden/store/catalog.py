"""The approved-template catalog: which image digests VMs may be cloned from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from vmwarden.errors import StoreError
from vmwarden.store.base import StoreBase, aware, upsert, utcnow
from vmwarden.store.journal import write_event
from vmwarden.store.tables import templates


class CatalogRepo(StoreBase):
    def approve_template(
        self,
        name: str,
        digest: str,
        path: str | None,
        fingerprint: dict[str, Any],
        actor: str,
        *,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> str | None:
        """Approve (or re-approve, replacing) template ``name``; journaled in the same commit,
        with the approver's ``reason``. Returns the digest the name had before (None: new)."""
        if not name or not digest:
            raise StoreError("a template needs a name and a digest")
        at = aware(now) if now else utcnow()
        row = {
            "name": name,
            "digest": digest,
            "path": path,
            "fingerprint": fingerprint,
            "approved_by": actor,
            "approved_at": at,
        }
        with self._write() as conn:
            previous = conn.execute(
                select(templates.c.digest).where(templates.c.name == name)
            ).scalar()
            upsert(conn, templates, [row], keys=["name"], update=list(row)[1:])
            write_event(
                conn,
                "template-approve",
                actor,
                reason,
                {"name": name, "digest": digest, "path": path, "previous_digest": previous},
                at,
            )
        return previous

    def revoke_template(self, name: str, actor: str, *, now: datetime | None = None) -> bool:
        """Remove ``name`` from the catalog; False if it was not there. Journaled."""
        at = aware(now) if now else utcnow()
        with self._write() as conn:
            digest = conn.execute(
                select(templates.c.digest).where(templates.c.name == name)
            ).scalar()
            if digest is None:
                return False
            conn.execute(delete(templates).where(templates.c.name == name))
            write_event(conn, "template-revoke", actor, None, {"name": name, "digest": digest}, at)
        return True

    def templates(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(select(templates).order_by(templates.c.name)).all()
        return [
            {
                "name": r.name,
                "digest": r.digest,
                "path": r.path,
                "fingerprint": r.fingerprint,
                "approved_by": r.approved_by,
                "approved_at": r.approved_at,
            }
            for r in rows
        ]

    def catalog(self) -> dict[str, str]:
        """Approved digest → template name (what ``Estate.catalog`` wants)."""
        with self._read() as conn:
            rows = conn.execute(
                select(templates.c.digest, templates.c.name).order_by(templates.c.name)
            ).all()
        out: dict[str, str] = {}
        for digest, name in rows:
            out.setdefault(digest, name)
        return out
