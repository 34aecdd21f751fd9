"""``open_disk`` for a libvirt connection: where a disk layer's bytes come from.

A daemon on this machine names files of this machine: they are read with ``pread`` on a
descriptor opened once (:class:`LocalFileReader`). Another host's daemon names files of
*its* machine (#10.2): they are read through the connection itself, as storage volumes
(``volumes.RemoteVolumes``, ranged ``vol.download``). Callers get a ``RangedReader`` either
way and never learn which (#12: nothing outside ``connectors/`` knows libvirt).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import threading
from collections.abc import Callable
from typing import Any

from vmwarden.connectors.base import DiskUnavailableError

#: Chunk of a whole-file digest read.
DIGEST_CHUNK = 4 * 1024 * 1024


class LocalFileReader:
    """One local image layer read by ranges (``RangedReader``); the descriptor is opened
    once, so a path swapped after the open does not change what is read."""

    def __init__(self, path: str, host: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise DiskUnavailableError(f"cannot open {path} on {host}: {exc.strerror}") from None
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            os.close(fd)
            raise DiskUnavailableError(f"{path} on {host} is not a regular file or block device")
        self.fd = fd
        self.path = path
        self.host = host
        self._st = st
        self._size = os.lseek(fd, 0, os.SEEK_END) if stat.S_ISBLK(st.st_mode) else st.st_size
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    def identity(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "path": self.path,
            "size": self._size,
            "mtime_ns": self._st.st_mtime_ns,
        }

    def read(self, offset: int, n: int) -> bytes:
        end = min(self._size, offset + max(0, n))
        if offset < 0 or end <= offset:
            return b""
        pieces: list[bytes] = []
        while offset < end:
            piece = os.pread(self.fd, end - offset, offset)
            if not piece:
                break
            pieces.append(piece)
            offset += len(piece)
        return b"".join(pieces)

    def still_unchanged(self) -> bool:
        """Whether the file still has the size and mtime it had when opened."""
        try:
            now = os.fstat(self.fd)
        except OSError:
            return False
        return (now.st_size, now.st_mtime_ns) == (self._st.st_size, self._st.st_mtime_ns)

    def digest(self, cancelled: Callable[[], bool] | None = None) -> tuple[str, bool]:
        """``sha256:<hex>`` of the whole file and whether it was unchanged meanwhile."""
        h = hashlib.sha256()
        for offset in range(0, self._size, DIGEST_CHUNK):
            h.update(self.read(offset, DIGEST_CHUNK))
            if cancelled is not None and cancelled():
                raise OSError(f"hashing {self.host}:{self.path} cancelled")
        return "sha256:" + h.hexdigest(), self.still_unchanged()

    def close(self) -> None:
        with self._lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nobody to tell
            self.close()
