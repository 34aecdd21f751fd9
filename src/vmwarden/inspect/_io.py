"""Opening image files without being tricked: no FIFOs, no devices, no blocking, no writes.

Every read of an image in this package goes through :func:`open_image`, so that the rules
("only regular files, or block devices where the caller allows it") live in one place.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from vmwarden.errors import InspectError

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class OpenImage:
    """A file descriptor opened read-only, with the ``fstat`` taken right after opening."""

    fd: int
    path: str
    st: os.stat_result

    @property
    def is_block(self) -> bool:
        return stat.S_ISBLK(self.st.st_mode)

    @property
    def size(self) -> int:
        """Bytes in the file (for a block device, its length found by seeking to the end)."""
        if self.is_block:
            return os.lseek(self.fd, 0, os.SEEK_END)
        return self.st.st_size

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; shorter only at end of file."""
        chunks: list[bytes] = []
        while length > 0:
            chunk = os.pread(self.fd, length, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            length -= len(chunk)
        return b"".join(chunks)


@contextmanager
def open_image(path: str | os.PathLike[str], *, allow_block: bool = False) -> Iterator[OpenImage]:
    """Open ``path`` for reading if it is a regular file (or a block device, when allowed).

    The type is checked on the opened descriptor (``fstat``), not on the name, so a file
    swapped for a FIFO between a check and the open is still refused; ``O_NONBLOCK`` keeps
    such an open from hanging.

    Raises:
        InspectError: the file cannot be opened or is not of an allowed type.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, _OPEN_FLAGS)
    except FileNotFoundError:
        raise InspectError(f"image missing: {name}") from None
    except OSError as exc:
        raise InspectError(f"cannot open image {name}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or (allow_block and stat.S_ISBLK(st.st_mode))):
            kind = "block device" if stat.S_ISBLK(st.st_mode) else "special file"
            raise InspectError(f"not a regular file ({kind}): {name}")
        yield OpenImage(fd=fd, path=name, st=st)
    finally:
        os.close(fd)
