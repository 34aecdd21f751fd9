"""A file read by ranges: the seam between where a disk's bytes are and who parses them.

A local image is read with ``pread`` on a descriptor; another host's volume is read through
its libvirt connection (``connectors.libvirt.volumes``). Header parsing, chain resolution,
digests, content-lineage signatures and the inspector worker need only this much of either,
so they work the same whatever host the bytes live on.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
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


def gather_blocks(
    blocks: OrderedDict[int, bytes],
    start: int,
    end: int,
    block: int,
    fetch: Callable[[int, int], list[bytes]],
) -> bytes:
    """Bytes ``start:end`` from a cache of ``block``-sized blocks (an LRU: a hit moves to its
    recent end), each run of missing blocks read by one ``fetch(first, stop)`` — which caches
    what it read and may return more than asked (read-ahead). The local reader
    (``inspect.reads``) and the remote volume reader (``connectors.libvirt.volumes``) share it.
    """
    first, last = start // block, (end - 1) // block
    pieces: list[bytes] = []
    index = first
    while index <= last:
        cached = blocks.get(index)
        if cached is not None:
            blocks.move_to_end(index)
            pieces.append(cached)
            index += 1
            continue
        gap = index
        while gap <= last and gap not in blocks:
            gap += 1
        pieces += fetch(index, gap)[: gap - index]
        index = gap
    data = b"".join(pieces)
    return data[start - first * block : end - first * block]
