"""A disk's guest-visible bytes at virtual offsets, read in the parent, through the chain.

Why this exists: the content lineage signature (:mod:`vmwarden.inspect.lineage_sig`) compares
what the *guest* sees at a few offsets, so a template converted qcow2 → raw → qcow2 still
matches. Reading a handful of 4 KiB blocks does not justify starting the sandboxed worker and
dissect; a qcow2 cluster lookup is two table reads, written here in a few lines that are
bounds-checked like :mod:`vmwarden.inspect.qcow2`: every host offset is checked against the
file size, compressed clusters inflate to at most one cluster, and formats or features this
module does not read (encryption, external data files, zstd, extended L2, vhdx) are an
:class:`InspectError`, never a guess. Sparse vmdk extents: :mod:`.virtual_vmdk`.

Each layer reads its host file through a *ranged reader* ``(offset, length) -> bytes``
(:data:`Ranged`): locally a block-cached, counting descriptor (:class:`CountingFile`);
another host's disk the connector's ranged readers (:func:`virtual_of`), read exactly: the
samples are scattered 4 KiB blocks, which a read-ahead cache would round up and read past.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vmwarden.errors import InspectError
from vmwarden.inspect.opener import open_disk
from vmwarden.inspect.reads import CountingFile
from vmwarden.inspect.virtual_vmdk import VmdkLayer

if TYPE_CHECKING:
    from vmwarden.model.ranged import RangedReader

#: ``read(offset, length)``: bytes of a host file, shorter only at its end.
Ranged = Callable[[int, int], bytes]

_HEAD = struct.Struct(">4sIQIIQIIQQIIQ")
_INCOMPAT = struct.Struct(">Q")
_OFFSET_MASK = 0x00FFFFFFFFFFFE00
_COMPRESSED = 1 << 62
_ZERO = 1
#: qemu's own ceiling for the L1 table (32 MiB of entries).
MAX_L1_ENTRIES = 32 * 1024 * 1024 // 8
#: incompatible feature bits refused: external data file, zstd compression, extended L2.
_REFUSED_FEATURES = {1 << 2: "external data file", 1 << 3: "zstd", 1 << 4: "extended L2"}
MAX_EXTENTS = 1_000_000


@dataclass
class RawLayer:
    """A raw image: virtual offset = file offset. ``fd`` (local only) finds sparse holes."""

    read: Ranged
    size: int
    fd: int | None = None

    def read_at(self, offset: int, length: int) -> bytes | None:
        return self.read(offset, length) if offset < self.size else None

    def data_ranges(self) -> list[tuple[int, int]]:
        """Where the file holds data (SEEK_DATA/SEEK_HOLE; the whole file without an fd)."""
        if self.fd is None or not hasattr(os, "SEEK_DATA"):
            return [(0, self.size)] if self.size else []
        ranges: list[tuple[int, int]] = []
        pos = 0
        try:
            while pos < self.size and len(ranges) < MAX_EXTENTS:
                start = os.lseek(self.fd, pos, os.SEEK_DATA)
                end = os.lseek(self.fd, start, os.SEEK_HOLE)
                ranges.append((start, min(end, self.size)))
                pos = end
        except OSError:  # ENXIO: no data after pos
            pass
        return ranges


@dataclass
class Qcow2Layer:
    """One qcow2 file's clusters; ``None`` from :meth:`read_at` means "ask the backing file"."""

    read: Ranged
    file_size: int
    name: str
    size: int = 0
    cluster_bits: int = 16
    l1: list[int] = field(default_factory=list)
    _l2: dict[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        head = self.read(0, _HEAD.size + _INCOMPAT.size)
        if len(head) < _HEAD.size or head[:4] != b"QFI\xfb":
            raise InspectError(f"not a qcow2 image: {self.name}")
        fields = _HEAD.unpack_from(head)
        version, bits, size, crypt, l1_size, l1_offset = (
            fields[1],
            fields[4],
            fields[5],
            fields[6],
            fields[7],
            fields[8],
        )
        if version not in (2, 3) or not 9 <= bits <= 21:
            raise InspectError(f"unsupported qcow2 header (v{version}, bits {bits}): {self.name}")
        if crypt:
            raise InspectError(f"encrypted qcow2 is not read for content lineage: {self.name}")
        if version == 3 and len(head) >= _HEAD.size + _INCOMPAT.size:
            (incompat,) = _INCOMPAT.unpack_from(head, _HEAD.size)
            for bit, what in _REFUSED_FEATURES.items():
                if incompat & bit:
                    raise InspectError(f"qcow2 with {what} is not read: {self.name}")
        self.size, self.cluster_bits = size, bits
        cluster = 1 << bits
        needed = -(-size // (cluster * (cluster // 8))) if size else 0
        if l1_size < needed or l1_size > MAX_L1_ENTRIES:
            raise InspectError(f"invalid qcow2 L1 table size {l1_size}: {self.name}")
        if l1_size and (l1_offset % 8 or l1_offset + 8 * l1_size > self.file_size):
            raise InspectError(f"qcow2 L1 table beyond end of file: {self.name}")
        raw = self.read(l1_offset, 8 * l1_size) if l1_size else b""
        if len(raw) != 8 * l1_size:
            raise InspectError(f"truncated qcow2 L1 table: {self.name}")
        self.l1 = [e & _OFFSET_MASK for e in struct.unpack(f">{l1_size}Q", raw)]

    @property
    def cluster(self) -> int:
        return 1 << self.cluster_bits

    def _entry(self, index: int) -> int:
        """The L2 entry of virtual cluster ``index`` (0: unallocated here)."""
        per_table = self.cluster // 8
        l1_index, l2_index = divmod(index, per_table)
        if l1_index >= len(self.l1) or not self.l1[l1_index]:
            return 0
        table = self._table(self.l1[l1_index])
        return int.from_bytes(table[8 * l2_index : 8 * l2_index + 8], "big")

    def _table(self, offset: int) -> bytes:
        table = self._l2.get(offset)
        if table is None:
            if offset + self.cluster > self.file_size:
                raise InspectError(f"qcow2 L2 table beyond end of file: {self.name}")
            table = self.read(offset, self.cluster)
            if len(self._l2) > 64:
                self._l2.clear()
            self._l2[offset] = table
        return table

    def read_at(self, offset: int, length: int) -> bytes | None:
        """Bytes at virtual ``offset`` within one cluster; None: not allocated in this file."""
        if offset >= self.size:
            return None
        index, into = divmod(offset, self.cluster)
        length = min(length, self.cluster - into, self.size - offset)
        entry = self._entry(index)
        if entry & _COMPRESSED:
            return self._compressed(entry)[into : into + length]
        if entry & _ZERO:  # reads as zeros, even where a (preallocated) cluster is named
            return bytes(length)
        host = entry & _OFFSET_MASK
        if host:
            if host % self.cluster or host + into + length > self.file_size:
                raise InspectError(f"qcow2 cluster beyond end of file: {self.name}")
            return self.read(host + into, length)
        return None

    def _compressed(self, entry: int) -> bytes:
        shift = 62 - (self.cluster_bits - 8)
        host = entry & ((1 << shift) - 1)
        sectors = ((entry >> shift) & ((1 << (self.cluster_bits - 8)) - 1)) + 1
        length = sectors * 512 - (host & 511)
        if host + 1 > self.file_size:
            raise InspectError(f"qcow2 compressed cluster beyond end of file: {self.name}")
        data = self.read(host, min(length, self.file_size - host))
        try:
            out = zlib.decompressobj(-12).decompress(data, self.cluster)
        except zlib.error:
            raise InspectError(f"corrupt compressed qcow2 cluster: {self.name}") from None
        return out.ljust(self.cluster, b"\0")

    def data_ranges(self) -> list[tuple[int, int]]:
        """Virtual ranges this file holds data for (zero clusters and holes excluded)."""
        ranges: list[tuple[int, int]] = []
        per_table = self.cluster // 8
        seen: set[int] = set()
        for l1_index, l2_offset in enumerate(self.l1):
            if not l2_offset:
                continue
            if l2_offset in seen:  # qemu never shares one: a loop to make us scan forever
                raise InspectError(f"qcow2 L2 table referenced twice: {self.name}")
            seen.add(l2_offset)
            table = self._table(l2_offset)
            entries = struct.unpack(f">{per_table}Q", table)
            base = l1_index * per_table
            for i, entry in enumerate(entries):
                if entry & _COMPRESSED or (entry & _OFFSET_MASK and not entry & _ZERO):
                    if not entry & _COMPRESSED and (entry & _OFFSET_MASK) >= self.file_size:
                        raise InspectError(f"qcow2 cluster beyond end of file: {self.name}")
                    start = (base + i) * self.cluster
                    if start >= self.size:
                        break
                    end = min(start + self.cluster, self.size)
                    if ranges and ranges[-1][1] == start:
                        ranges[-1] = (ranges[-1][0], end)
                    elif len(ranges) < MAX_EXTENTS:
                        ranges.append((start, end))
        return ranges


Layer = RawLayer | Qcow2Layer | VmdkLayer


@dataclass
class VirtualDisk:
    """What the guest sees: the top layer over its backing layers (top first)."""

    layers: list[Layer]
    files: list[CountingFile] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.layers[0].size if self.layers else 0

    @property
    def bytes_read(self) -> int:
        return sum(f.bytes_read for f in self.files)

    @property
    def reads(self) -> int:
        """Host reads issued: the round trips a remote ranged reader would make."""
        return sum(f.reads for f in self.files)

    @property
    def file_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` guest bytes at ``offset`` (zeros past the end and where nothing is)."""
        out = bytearray()
        while length > 0:
            if offset >= self.size:
                out += bytes(length)
                break
            piece = self._piece(offset, min(length, self.size - offset))
            out += piece
            offset += len(piece)
            length -= len(piece)
        return bytes(out)

    def _piece(self, offset: int, length: int) -> bytes:
        for layer in self.layers:
            if isinstance(layer, Qcow2Layer | VmdkLayer):  # one cluster (grain) at a time
                unit = layer.cluster if isinstance(layer, Qcow2Layer) else layer.grain
                length = min(length, unit - offset % unit)
            data = layer.read_at(offset, length)
            if data is not None:
                return data.ljust(length, b"\0")
        return bytes(length)

    def data_ranges(self) -> list[tuple[int, int]]:
        """Virtual ranges some layer holds data for (a superset of the non-zero content)."""
        merged: list[tuple[int, int]] = []
        spans = sorted(
            (start, min(end, self.size))
            for layer in self.layers
            for start, end in layer.data_ranges()
            if start < self.size
        )
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged


def layer_from(read: Ranged, size: int, fmt: str, name: str, fd: int | None = None) -> Layer:
    """One layer over a ranged reader (the seam a remote reader plugs into).

    Raises:
        InspectError: a format or feature this module does not read.
    """
    if fmt == "raw":
        return RawLayer(read, size, fd)
    if fmt == "qcow2":
        return Qcow2Layer(read, size, name)
    if fmt == "vmdk":
        return VmdkLayer(read, size, name)
    raise InspectError(f"content lineage reads qcow2, raw and vmdk images, not {fmt}: {name}")


@contextmanager
def open_virtual(
    path: str | os.PathLike[str], *, allowed_dirs: list[str] | None, fmt: str | None = None
) -> Iterator[VirtualDisk]:
    """The disk at ``path`` through its backing chain (the rules of :func:`open_disk`).

    Raises:
        InspectError: the chain cannot be followed or holds a format not read here.
    """
    with open_disk(path, allowed_dirs=allowed_dirs, fmt=fmt) as opened:
        disk = VirtualDisk(layers=[])
        for layer in opened.layers:
            counted = CountingFile(layer.fd)
            disk.files.append(counted)
            disk.layers.append(
                layer_from(_ranged(counted), counted.size, layer.format, layer.path, layer.fd)
            )
        yield disk


def sampling_read(reader: RangedReader) -> Ranged:
    """``reader``'s read for scattered small reads: its optional ``read_exact(offset, n)``
    (the same bytes, without the block rounding and read-ahead that serve dissect's
    clustered reads; a remote volume has one), else its ``read``."""
    exact = getattr(reader, "read_exact", None)
    return exact if callable(exact) else reader.read


def virtual_of(readers: Sequence[RangedReader], formats: Sequence[str], name: str) -> VirtualDisk:
    """The guest-visible disk over a chain of ranged readers (top first), e.g. another host's
    volumes from its connector, each read exactly (:func:`sampling_read`).

    Raises:
        InspectError: a format or feature this module does not read.
    """
    return VirtualDisk(
        [
            layer_from(sampling_read(r), r.size, fmt, f"{name}:{r.path}")
            for r, fmt in zip(readers, formats, strict=True)
        ]
    )


def _ranged(f: CountingFile) -> Ranged:
    def read(offset: int, length: int) -> bytes:
        f.seek(offset)
        return f.read(length)

    return read
