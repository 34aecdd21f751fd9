"""Disk images seen on hosts: pool volumes, VM disks and their backing files."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from vmwarden.model import Image
from vmwarden.store.base import StoreBase, aware, upsert
from vmwarden.store.tables import images

_UPDATED = (
    "format",
    "size",
    "digest",
    "mtime",
    "backing",
    "pool",
    "attached_to",
    "template",
    "error",
    "last_seen",
)


def _row(image: Image, now: datetime) -> dict[str, Any]:
    return {
        "host": image.host,
        "path": image.path,
        "format": image.format,
        "size": image.size,
        "digest": image.digest,
        "mtime": image.mtime,
        "backing": image.backing,
        "pool": image.pool,
        "attached_to": list(image.attached_to),
        "template": image.template,
        "error": image.error,
        "first_seen": now,
        "last_seen": now,
    }


class ImagesRepo(StoreBase):
    def record_images(self, found: Iterable[Image], *, now: datetime) -> int:
        """Upsert images by (host, path), keeping ``first_seen``. Returns how many."""
        now = aware(now)
        rows = list({(i.host, i.path): _row(i, now) for i in found}.values())
        with self._write() as conn:
            upsert(conn, images, rows, keys=["host", "path"], update=_UPDATED)
        return len(rows)

    def list_images(self, host: str | None = None) -> list[dict[str, Any]]:
        """Images as ``Image.to_dict()`` plus ``first_seen``/``last_seen`` (aware datetimes)."""
        query = select(images).order_by(images.c.host, images.c.path)
        if host is not None:
            query = query.where(images.c.host == host)
        with self._read() as conn:
            rows = conn.execute(query).all()
        out = []
        for r in rows:
            image = Image(
                path=r.path,
                host=r.host,
                format=r.format,
                size=r.size,
                digest=r.digest,
                mtime=r.mtime,
                backing=r.backing,
                pool=r.pool,
                attached_to=list(r.attached_to or []),
                template=r.template,
                error=r.error,
            )
            out.append(image.to_dict() | {"first_seen": r.first_seen, "last_seen": r.last_seen})
        return out
