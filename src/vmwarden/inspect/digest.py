"""Content digests of image files, a cache so a sweep never re-hashes an unchanged file,
and the fingerprint recorded when a template is approved.

The cache itself belongs to the store; this module takes its two operations as callables,
keyed by what :func:`cache_key` returns (device, inode, size, mtime in ns)::

    digest = digest_with_cache(path, lookup=store.lookup_digest, remember=store.remember_digest)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any, Protocol

from vmwarden.errors import InspectError
from vmwarden.inspect._io import open_image
from vmwarden.inspect.header import read_image_info

CHUNK = 1024 * 1024
DIGEST_PREFIX = "sha256:"

Lookup = Callable[[str, os.stat_result], "str | None"]
Remember = Callable[[str, os.stat_result, str], None]


class DigestCache(Protocol):
    """What a digest cache offers (the store implements it; see :class:`MemoryDigestCache`)."""

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        """The digest remembered for this file in this exact state, or ``None``."""

    def remember(self, path: str, st: os.stat_result, digest: str) -> None:
        """Remember ``digest`` for this file in this exact state."""


def cache_key(st: os.stat_result) -> tuple[int, int, int, int]:
    """The identity of a file's content as far as the cache is concerned.

    A change of any of device, inode, size or modification time (ns) invalidates the entry.
    """
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class MemoryDigestCache:
    """A process-local :class:`DigestCache` (for ``vmwarden inspect`` and tests)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[int, int, int, int], str] = {}

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        return self._entries.get(cache_key(st))

    def remember(self, path: str, st: os.stat_result, digest: str) -> None:
        self._entries[cache_key(st)] = digest

    def __len__(self) -> int:
        return len(self._entries)


def digest_file(path: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` of the file's bytes, read in 1 MiB chunks.

    Raises:
        InspectError: the file is missing, unreadable or not a regular file.
    """
    with open_image(path) as img:
        return _digest_fd(img.fd, img.path)


def digest_with_cache(
    path: str | os.PathLike[str],
    lookup: Lookup,
    remember: Remember,
    cancelled: Callable[[], bool] | None = None,
) -> str:
    """The digest of ``path``, read from the cache when the file has not changed.

    A hit costs one ``stat`` and no read. On a miss the file is hashed and the digest is
    remembered only if the file did not change while it was being read (same
    :func:`cache_key` before and after), so a file being written is never cached wrongly.

    ``cancelled``: asked between chunks; when it says so the hash stops (a background hasher
    of a 40 GiB image must not outlive its daemon).

    Raises:
        InspectError: the file is missing, unreadable or not a regular file (or cancelled).
    """
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except OSError as exc:
        raise InspectError(f"cannot stat image {name}: {exc.strerror}") from None
    cached = lookup(name, st)
    if cached is not None:
        return cached
    with open_image(name) as img:
        digest = _digest_fd(img.fd, name, cancelled)
        after = os.fstat(img.fd)
        if cache_key(after) == cache_key(img.st):
            remember(name, img.st, digest)
    return digest


def _digest_fd(fd: int, name: str, cancelled: Callable[[], bool] | None = None) -> str:
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    offset = 0
    try:
        while True:
            n = os.preadv(fd, [buf], offset)
            if n == 0:
                break
            h.update(view[:n])
            offset += n
            if cancelled is not None and cancelled():
                raise InspectError(f"hashing {name} cancelled")
    except OSError as exc:
        raise InspectError(f"cannot read image {name}: {exc.strerror}") from None
    return DIGEST_PREFIX + h.hexdigest()


def fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``template approve`` records beside the digest: the image's shape from its header.

    Returns a JSON-ready dict: ``path``, ``format``, ``virtual_size`` (bytes, from the header),
    ``size`` (bytes on disk as the file length), ``backing`` and ``backing_format`` (as the
    header names them), ``encrypted`` and ``data_file``.

    Raises:
        InspectError: the file cannot be opened or its header is malformed.
    """
    with open_image(path) as img:
        info = read_image_info(img)
    return {
        "path": os.path.abspath(os.fspath(path)),
        "format": info.format,
        "virtual_size": info.virtual_size,
        "size": info.size,
        "backing": info.backing,
        "backing_format": info.backing_format,
        "encrypted": info.encrypted,
        "data_file": info.data_file,
    }
