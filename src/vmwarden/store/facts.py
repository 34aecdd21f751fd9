"""The guest-facts cache and the installation's fingerprint key.

Inspecting an image costs a worker ~0.1-1 s and reads part of the disk; re-scanning an
unchanged estate should cost neither. :class:`FactsCache` keeps the last
:class:`~vmwarden.model.GuestFacts` of each image keyed by its *identity*: for every layer of
its backing chain, (path, device, inode, size, mtime_ns), plus the digest where the caller
knows it. A hit costs one ``stat`` per layer (one for a plain image) and one indexed read.

The fingerprint key (HMAC secret of password-hash fingerprints) is created once per
installation, 32 random bytes, and kept in the ``settings`` table: fingerprints then compare
across scans, and mean nothing outside this database.

Example::

    cache = FactsCache(store)
    facts = cache.lookup(path)
    if facts is None:
        facts = pool.inspect(path)
        cache.remember(facts)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, Column, String, Table, Text, delete, select

from vmwarden.errors import StoreError
from vmwarden.model import GuestFacts
from vmwarden.store.base import chunks, upsert, utcnow
from vmwarden.store.tables import UTCDateTime, metadata

if TYPE_CHECKING:
    from vmwarden.store.store import Store

FINGERPRINT_KEY = "fingerprint_key"
_U64 = 1 << 64
_I64 = 1 << 63


# The last facts read from one image, valid while ``identity`` still matches.
guest_facts = Table(
    "guest_facts",
    metadata,
    Column("path", String(4096), primary_key=True),
    Column("dev", BigInteger(), nullable=False),
    Column("inode", BigInteger(), nullable=False),
    Column("size", BigInteger(), nullable=False),
    Column("mtime_ns", BigInteger(), nullable=False),
    Column("digest", String(80)),
    # {"layers": [{path, dev, inode, size, mtime_ns}, ...]}: the whole backing chain
    Column("identity", JSON, nullable=False),
    Column("facts", JSON, nullable=False),
    Column("inspected_at", UTCDateTime(), nullable=False),
)

# Per-installation values (the fingerprint key, hex).
settings = Table(
    "settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text(), nullable=False),
)


def _signed(value: int) -> int:
    """st_dev/st_ino are unsigned 64-bit; SQL BIGINT is signed. Same bits, stored signed."""
    return value - _U64 if value >= _I64 else value


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (_signed(st.st_dev), _signed(st.st_ino), st.st_size, st.st_mtime_ns)


def _layer_key(layer: dict[str, Any]) -> tuple[int, int, int, int]:
    return (_signed(layer["dev"]), _signed(layer["inode"]), layer["size"], layer["mtime_ns"])


class FactsCache:
    """Guest facts by image identity, and the fingerprint key, kept in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- fingerprint key ---------------------------------------------------------------------

    def fingerprint_key(self) -> bytes:
        """This installation's 32-byte HMAC key, created on first use (race-safe)."""
        with self._store._read() as conn:
            value = conn.execute(
                select(settings.c.value).where(settings.c.name == FINGERPRINT_KEY)
            ).scalar()
        if value is None:
            with self._store._write() as conn:
                value = conn.execute(
                    select(settings.c.value).where(settings.c.name == FINGERPRINT_KEY)
                ).scalar()
                if value is None:
                    value = secrets.token_bytes(32).hex()
                    conn.execute(settings.insert().values(name=FINGERPRINT_KEY, value=value))
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise StoreError(
                "the stored fingerprint key is corrupt",
                hint="delete the 'fingerprint_key' row of table settings to make a new one "
                "(fingerprints recorded before will no longer compare)",
            ) from None

    # -- facts -------------------------------------------------------------------------------

    def lookup(self, path: str, *, digest: str | None = None) -> GuestFacts | None:
        """The cached facts of ``path`` if every layer is unchanged, else ``None``.

        ``digest`` (when the caller knows it) must also match the one remembered, if any.
        """
        return self.lookup_many([path], digests={path: digest} if digest else None).get(path)

    def lookup_many(
        self, paths: Iterable[str], *, digests: dict[str, str] | None = None
    ) -> dict[str, GuestFacts]:
        """Batch :meth:`lookup`: path → facts, for the hits only."""
        current: dict[str, tuple[int, int, int, int]] = {}
        for path in paths:
            name = os.path.abspath(path)
            try:
                current[name] = _stat_key(os.stat(name))
            except OSError:
                continue
        hits: dict[str, GuestFacts] = {}
        rows = []
        with self._store._read() as conn:
            for chunk in chunks(list(current)):
                rows += conn.execute(select(guest_facts).where(guest_facts.c.path.in_(chunk))).all()
        for row in rows:
            if (row.dev, row.inode, row.size, row.mtime_ns) != current[row.path]:
                continue
            wanted = (digests or {}).get(row.path)
            if wanted and row.digest and wanted != row.digest:
                continue
            if not _backing_unchanged(row.identity):
                continue
            hits[row.path] = GuestFacts.from_dict(row.facts)
        return hits

    def stored_many(self, paths: Iterable[str]) -> dict[str, dict[str, Any]]:
        """path → the facts last read from it (JSON, as remembered), for display: unlike
        :meth:`lookup_many` nothing is stat'ed, so the answer is "what the last inspection
        saw", valid or not; ``facts["identity"]`` says which backing chain that was."""
        names = sorted({os.path.abspath(p) for p in paths})
        rows = []
        with self._store._read() as conn:
            for chunk in chunks(names):
                rows += conn.execute(
                    select(guest_facts.c.path, guest_facts.c.facts).where(
                        guest_facts.c.path.in_(chunk)
                    )
                ).all()
        return {row.path: dict(row.facts) for row in rows if isinstance(row.facts, dict)}

    def remember(self, facts: GuestFacts, *, digest: str | None = None) -> None:
        """Cache ``facts`` under the identity they were read with (``facts.identity``)."""
        self.remember_many([facts], digests={facts.image: digest} if digest else None)

    def remember_many(
        self, items: Iterable[GuestFacts], *, digests: dict[str, str] | None = None
    ) -> None:
        now = utcnow()
        rows: dict[str, dict[str, Any]] = {}
        for facts in items:
            layers = (facts.identity or {}).get("layers") or []
            if not layers:
                continue  # facts without an identity cannot be validated later
            dev, inode, size, mtime_ns = _layer_key(layers[0])
            rows[facts.image] = {
                "path": facts.image,
                "dev": dev,
                "inode": inode,
                "size": size,
                "mtime_ns": mtime_ns,
                "digest": (digests or {}).get(facts.image),
                "identity": facts.identity,
                "facts": facts.to_dict(),
                "inspected_at": now,
            }
        if not rows:
            return
        with self._store._write() as conn:
            upsert(
                conn,
                guest_facts,
                list(rows.values()),
                keys=["path"],
                update=[
                    "dev",
                    "inode",
                    "size",
                    "mtime_ns",
                    "digest",
                    "identity",
                    "facts",
                    "inspected_at",
                ],
            )

    def update_facts(self, items: Iterable[GuestFacts]) -> None:
        """Store facts computed after the read (benchmark results) in the rows they extend:
        only where the row is still of that identity, keeping its digest and read time."""
        items = [f for f in items if (f.identity or {}).get("layers")]
        if not items:
            return
        with self._store._write() as conn:
            for facts in items:
                dev, inode, size, mtime_ns = _layer_key((facts.identity or {})["layers"][0])
                conn.execute(
                    guest_facts.update()
                    .where(guest_facts.c.path == facts.image)
                    .where(guest_facts.c.dev == dev, guest_facts.c.inode == inode)
                    .where(guest_facts.c.size == size, guest_facts.c.mtime_ns == mtime_ns)
                    .values(facts=facts.to_dict())
                )

    def forget(self, paths: Iterable[str]) -> None:
        names = [os.path.abspath(p) for p in paths]
        with self._store._write() as conn:
            for chunk in chunks(names):
                conn.execute(delete(guest_facts).where(guest_facts.c.path.in_(chunk)))


def _backing_unchanged(identity: dict[str, Any] | None) -> bool:
    """Every backing layer (beyond the image itself) still has its remembered identity."""
    for layer in ((identity or {}).get("layers") or [])[1:]:
        try:
            if _stat_key(os.stat(layer["path"])) != _layer_key(layer):
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True
