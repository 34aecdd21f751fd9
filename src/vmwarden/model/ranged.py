"""A file read by ranges: the seam between where a disk's bytes are and who parses them.

A local image is read with ``pread`` on a descriptor; another host's volume is read through
its libvirt connection (``connectors.libvirt.volumes``). Header parsing, chain resolution,
digests, content-lineage signatures and the inspector worker need only this much of either,
so they work the same whatever host the bytes live on.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RangedReader(Protocol):
    """Read-only random access to one file (an image layer), wherever it is.

    ``identity`` is what a cache compares to decide the file is unchanged (for a remote
    volume: host, path, size, mtime_ns); ``path`` is the file's name on *its* host, for
    messages only: it is never opened here.
    """

    path: str

    @property
    def size(self) -> int:
        """Bytes in the file."""
        ...

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (shorter only at the end of the file).

        Raises:
            OSError: the bytes could not be read (a remote error, the file went away).
        """
        ...

    def identity(self) -> dict[str, Any]:
        """What a cache keys this file's content by."""
        ...
