"""The digest cache: hashing a 100 GB image once, not at every sweep.

A cached digest is trusted only while the file's (dev, inode, size, mtime_ns) are all
unchanged; anything else is a miss and the caller hashes again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from vmwarden.store.base import StoreBase, chunks, upsert, utcnow
from vmwarden.store.tables import digest_cache

_U64 = 1 << 64
_I64 = 1 << 63


def _signed(value: int) -> int:
    """st_dev/st_ino are unsigned 64-bit; SQL BIGINT is signed. Same bits, stored signed."""
    return value - _U64 if value >= _I64 else value


def _key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (_signed(st.st_dev), _signed(st.st_ino), st.st_size, st.st_mtime_ns)


class DigestsRepo(StoreBase):
    def cached_digest(self, path: str, st: os.stat_result) -> str | None:
        """The remembered digest of ``path`` if the file is unchanged, else None."""
        return self.cached_digests([(path, st)]).get(path)

    def cached_digests(self, items: Iterable[tuple[str, os.stat_result]]) -> dict[str, str]:
        """Batch :meth:`cached_digest`: path → digest for the hits only."""
        wanted = {path: _key(st) for path, st in items}
        hits: dict[str, str] = {}
        with self._read() as conn:
            for chunk in chunks(list(wanted)):
                for row in conn.execute(select(digest_cache).where(digest_cache.c.path.in_(chunk))):
                    if (row.dev, row.inode, row.size, row.mtime_ns) == wanted[row.path]:
                        hits[row.path] = row.digest
        return hits

    def remember_digest(self, path: str, st: os.stat_result, digest: str) -> None:
        self.remember_digests([(path, st, digest)])

    def remember_digests(self, items: Iterable[tuple[str, os.stat_result, str]]) -> None:
        now = utcnow()
        rows: dict[str, dict[str, Any]] = {}
        for path, st, digest in items:
            dev, inode, size, mtime_ns = _key(st)
            rows[path] = {
                "path": path,
                "dev": dev,
                "inode": inode,
                "size": size,
                "mtime_ns": mtime_ns,
                "digest": digest,
                "computed_at": now,
            }
        with self._write() as conn:
            upsert(
                conn,
                digest_cache,
                list(rows.values()),
                keys=["path"],
                update=["dev", "inode", "size", "mtime_ns", "digest", "computed_at"],
            )
