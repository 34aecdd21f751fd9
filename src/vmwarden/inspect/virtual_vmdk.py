"""A sparse vmdk's guest-visible bytes (monolithicSparse and streamOptimized), parent-side.

Why: content lineage must not depend on the format a full clone was converted to (qcow2 →
raw → vmdk), and reading a few grains does not justify dissect in the sandbox. The layout,
from VMware's "Virtual Disk Format 5.0": a 512-byte ``KDMV`` header (capacity and grain size
in sectors, the grain directory's sector), a grain directory of 32-bit sector offsets of
grain tables, grain tables of 32-bit sector offsets of grains (0: not allocated; 1: a zeroed
grain). streamOptimized images compress each grain (zlib) behind a 12-byte marker and may
keep the directory at the end (``gdOffset`` -1: the footer, a copy of the header, holds it).
Bounds are checked as in :mod:`vmwarden.inspect.virtual`: tables and grains inside the file,
a grain inflates to one grain at most.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from vmwarden.errors import InspectError

SECTOR = 512
_HEADER = struct.Struct("<4sIIQQQQIQQQB4sH")
_GD_AT_END = 0xFFFFFFFFFFFFFFFF
_COMPRESSED = 1 << 16
_MARKER = struct.Struct("<QI")
MAX_GRAIN_SECTORS = 2048  # 1 MiB; VMware uses 128 (64 KiB)
MAX_GTES = 4096  # VMware uses 512 entries per grain table


@dataclass
class VmdkLayer:
    """One sparse extent; ``None`` from :meth:`read_at` means "not allocated here"."""

    read: Callable[[int, int], bytes]
    file_size: int
    name: str
    size: int = 0
    grain: int = 0  # bytes
    per_table: int = 0
    compressed: bool = False
    directory: list[int] = field(default_factory=list)
    _tables: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        header = self._header(0)
        _m, _v, flags, capacity, grain, _do, _ds, gtes, _rgd, gd, _oh, _u, _nl, _alg = header
        if gd == _GD_AT_END:  # streamOptimized: the footer before the end-of-stream marker
            if self.file_size < 3 * SECTOR:
                raise InspectError(f"truncated vmdk (no footer): {self.name}")
            footer = self._header(self.file_size - 2 * SECTOR)
            flags, capacity, grain, gtes, gd = footer[2], footer[3], footer[4], footer[7], footer[9]
        if not 1 <= grain <= MAX_GRAIN_SECTORS or grain & (grain - 1):
            raise InspectError(f"invalid vmdk grain size {grain}: {self.name}")
        if not 1 <= gtes <= MAX_GTES:
            raise InspectError(f"invalid vmdk grain table size {gtes}: {self.name}")
        self.size, self.grain, self.per_table = capacity * SECTOR, grain * SECTOR, gtes
        self.compressed = bool(flags & _COMPRESSED)
        entries = -(-capacity // (grain * gtes)) if capacity else 0
        start = gd * SECTOR
        if entries and (gd == _GD_AT_END or start + 4 * entries > self.file_size):
            raise InspectError(f"vmdk grain directory beyond end of file: {self.name}")
        raw = self.read(start, 4 * entries) if entries else b""
        if len(raw) != 4 * entries:
            raise InspectError(f"truncated vmdk grain directory: {self.name}")
        self.directory = list(struct.unpack(f"<{entries}I", raw))

    def _header(self, offset: int) -> tuple[int | bytes, ...]:
        head = self.read(offset, _HEADER.size)
        if len(head) < _HEADER.size or head[:4] != b"KDMV":
            raise InspectError(f"not a sparse vmdk extent: {self.name}")
        return _HEADER.unpack(head)

    def _table(self, index: int) -> tuple[int, ...]:
        sector = self.directory[index] if index < len(self.directory) else 0
        if not sector:
            return ()
        table = self._tables.get(sector)
        if table is None:
            start, length = sector * SECTOR, 4 * self.per_table
            if start + length > self.file_size:
                raise InspectError(f"vmdk grain table beyond end of file: {self.name}")
            table = struct.unpack(f"<{self.per_table}I", self.read(start, length))
            if len(self._tables) > 64:
                self._tables.clear()
            self._tables[sector] = table
        return table

    def _grain(self, sector: int) -> bytes:
        start = sector * SECTOR
        if not self.compressed:
            if start + self.grain > self.file_size:
                raise InspectError(f"vmdk grain beyond end of file: {self.name}")
            return self.read(start, self.grain)
        head = self.read(start, _MARKER.size)
        if len(head) < _MARKER.size:
            raise InspectError(f"vmdk grain beyond end of file: {self.name}")
        _lba, length = _MARKER.unpack(head)
        if length > 2 * self.grain or start + _MARKER.size + length > self.file_size:
            raise InspectError(f"invalid compressed vmdk grain: {self.name}")
        try:
            data = zlib.decompressobj().decompress(
                self.read(start + _MARKER.size, length), self.grain
            )
        except zlib.error:
            raise InspectError(f"corrupt compressed vmdk grain: {self.name}") from None
        return data.ljust(self.grain, b"\0")

    def read_at(self, offset: int, length: int) -> bytes | None:
        """Bytes at virtual ``offset`` within one grain; None: not allocated in this file."""
        if offset >= self.size:
            return None
        index, into = divmod(offset, self.grain)
        length = min(length, self.grain - into, self.size - offset)
        table = self._table(index // self.per_table)
        sector = table[index % self.per_table] if table else 0
        if sector == 0:
            return None
        if sector == 1:
            return bytes(length)
        return self._grain(sector)[into : into + length]

    def data_ranges(self) -> list[tuple[int, int]]:
        """Virtual ranges of allocated grains."""
        ranges: list[tuple[int, int]] = []
        seen: set[int] = set()
        for t, sector in enumerate(self.directory):
            if not sector:
                continue
            if sector in seen:
                raise InspectError(f"vmdk grain table referenced twice: {self.name}")
            seen.add(sector)
            for i, grain in enumerate(self._table(t)):
                if grain > 1:
                    start = (t * self.per_table + i) * self.grain
                    end = min(start + self.grain, self.size)
                    if start >= end:
                        break
                    if ranges and ranges[-1][1] == start:
                        ranges[-1] = (ranges[-1][0], end)
                    else:
                        ranges.append((start, end))
        return ranges
