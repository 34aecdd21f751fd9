"""Disk images seen on hosts: pool volumes, VM disks and their backing files.

Like the VM inventory, an unchanged image on a completely listed host is not rewritten at
each sweep (its ``last_seen`` is its host's image-listing time), and an image that left a
completely listed host is marked gone rather than deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from vmwarden.model import Image
from vmwarden.store.base import StoreBase, aware, chunks, upsert
from vmwarden.store.listings import IMAGES, bump, listing_join, mark_gone, seen
from vmwarden.store.records import fingerprint, record_of
from vmwarden.store.tables import images

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

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
    "record",
    "record_digest",
    "last_seen",
    "gone_at",
)

Key = tuple[str, str]  # (host, path)


@dataclass(slots=True)
class ImagesDelta:
    """(host, path) of the images by what the sweep did to them."""

    new: list[Key] = field(default_factory=list)
    changed: list[Key] = field(default_factory=list)
    gone: list[Key] = field(default_factory=list)
    unchanged: list[Key] = field(default_factory=list)

    def __len__(self) -> int:
        """How many images the sweep reported."""
        return len(self.new) + len(self.changed) + len(self.unchanged)


def _row(image: Image, digest: str, now: datetime) -> dict[str, Any]:
    return {
        "host": image.host,
        "path": image.path,
        "format": image.format,
        "size": image.size,
        "digest": image.digest,
        "mtime": aware(image.mtime, "Image.mtime") if image.mtime else None,
        "backing": image.backing,
        "pool": image.pool,
        "attached_to": list(image.attached_to),
        "template": image.template,
        "error": image.error,
        "record": record_of(image),
        "record_digest": digest,
        "first_seen": now,
        "last_seen": now,
        "gone_at": None,
    }


def _stored(conn: Connection, hosts: set[str]) -> dict[Key, Row[Any]]:
    """Only what the comparison needs: decoding every stored record would cost more than
    the whole comparison (the times only the gone ones need are read by ``_last_seen``)."""
    query = select(
        images.c.id, images.c.host, images.c.path, images.c.record_digest, images.c.gone_at
    )
    out: dict[Key, Row[Any]] = {}
    for chunk in chunks(sorted(hosts)):
        for row in conn.execute(query.where(images.c.host.in_(chunk))):
            out[row.host, row.path] = row
    return out


def _last_seen(conn: Connection, ids: list[int]) -> list[tuple[int, datetime]]:
    """(id, effective last_seen) of the images about to be marked gone: on an unchanged
    estate none, so the two datetime conversions a row are not paid for every image."""
    listing, on = listing_join(images, IMAGES)
    query = select(
        images.c.id, images.c.last_seen, listing.c.last_seen.label("host_seen")
    ).outerjoin(listing, on)
    out: list[tuple[int, datetime]] = []
    for chunk in chunks(ids):
        rows = conn.execute(query.where(images.c.id.in_(chunk)))
        out += [(r.id, seen(r.last_seen, None, r.host_seen)) for r in rows]
    return out


class ImagesRepo(StoreBase):
    def record_images(
        self,
        found: Iterable[Image],
        *,
        now: datetime,
        complete_hosts: set[str] | None = None,
    ) -> ImagesDelta:
        """Upsert images by (host, path), keeping ``first_seen``.

        ``complete_hosts``: hosts whose images are all in ``found``; their unchanged images
        are not rewritten, and their images missing from ``found`` are marked gone.
        """
        now = aware(now)
        complete = complete_hosts or set()
        batch = {(i.host, i.path): i for i in found}
        delta = ImagesDelta()
        with self._write() as conn:
            stored = _stored(conn, {host for host, _ in batch} | complete)
            rows: list[dict[str, Any]] = []
            touched: list[int] = []
            for key, image in batch.items():
                old = stored.get(key)
                digest = fingerprint(image)  # the record itself is built only when written
                if old is None:
                    delta.new.append(key)
                    rows.append(_row(image, digest, now))
                elif old.gone_at is None and old.record_digest == digest:
                    delta.unchanged.append(key)
                    if key[0] not in complete:
                        touched.append(old.id)
                else:
                    delta.changed.append(key)
                    rows.append(_row(image, digest, now))
            upsert(conn, images, rows, keys=["host", "path"], update=_UPDATED)
            for chunk in chunks(touched):
                conn.execute(update(images).where(images.c.id.in_(chunk)).values(last_seen=now))
            missing = [
                old
                for key, old in stored.items()
                if key[0] in complete and key not in batch and old.gone_at is None
            ]
            mark_gone(conn, images, _last_seen(conn, [old.id for old in missing]), now)
            delta.gone.extend((old.host, old.path) for old in missing)
            bump(conn, IMAGES, complete, now)
        return delta

    def list_images(
        self, host: str | None = None, *, include_gone: bool = False
    ) -> list[dict[str, Any]]:
        """Images as ``Image.to_dict()`` plus ``first_seen``/``last_seen``/``gone_at``."""
        listing, on = listing_join(images, IMAGES)
        query = (
            select(images, listing.c.last_seen.label("host_seen"))
            .outerjoin(listing, on)
            .order_by(images.c.host, images.c.path)
        )
        if host is not None:
            query = query.where(images.c.host == host)
        if not include_gone:
            query = query.where(images.c.gone_at.is_(None))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            _as_dict(r)
            | {
                "first_seen": r.first_seen,
                "last_seen": seen(r.last_seen, r.gone_at, r.host_seen),
                "gone_at": r.gone_at,
            }
            for r in rows
        ]


def _as_dict(r: Row[Any]) -> dict[str, Any]:
    """The stored ``Image.to_dict()``; rebuilt from the columns for rows older than 0002."""
    if r.record is not None:
        return dict(r.record)
    return Image(
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
    ).to_dict()
