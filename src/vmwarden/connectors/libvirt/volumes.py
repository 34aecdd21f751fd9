"""Another host's disk images, read through its libvirt connection (storage volume download).

A remote host's disk paths name files on *that* host; this machine's file of the same name
is not its disk (#10.2). libvirt can serve a volume's bytes by range
(``virStorageVolDownload(offset, length)``), so the host's disks are read agentlessly over
the connection vmwarden already has: no agent, no SSH of our own, no network filesystem.

Only volumes of the host's storage pools can be read this way: a disk outside every pool
is unknown, and says so (:class:`VolumeUnavailable`). That is also the remote side of the
allowed-directories rule (#10.3): backing files are followed only into the host's pools.

A ranged download costs two RPC round trips (~0.35 ms for 64 KiB on an idle loopback), so
:class:`VolumeReader` keeps a block cache (16 KiB blocks, the granularity that keeps the
bytes transferred within ~2x of what dissect asks for) and reads ahead when reads run
sequentially (a directory or a file being read through), doubling up to 1 MiB. Sampled
reads (content lineage) ask for exactly their bytes instead (:meth:`VolumeReader.read_exact`).
On a qcow2 volume the download returns the *file's* bytes, not the guest's: the qcow2 and
backing-chain parsing stay vmwarden's own (``inspect.qcow2`` and friends).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import libvirt

from vmwarden.connectors.base import DiskUnavailableError
from vmwarden.model.ranged import gather_blocks

#: The unit of remote reads and of the cache.
BLOCK = 16 * 1024
#: Most bytes one sequential read-ahead fetches.
MAX_READAHEAD = 1024 * 1024
#: Bytes of cached blocks per volume (dissect reads ~1 MiB of a typical disk; the worker
#: keeps its own cache, so this one serves chain headers and roots shared by many clones).
CACHE_BYTES = 8 * 1024 * 1024
#: Volume readers kept per host (a template root is shared by many clones: its blocks are
#: read once per sweep, not once per clone).
MAX_READERS = 64
#: Chunk of a streamed whole-file read (digests).
STREAM_CHUNK = 4 * 1024 * 1024


class RemoteReadError(OSError):
    """A remote volume's bytes could not be read (libvirt refused or failed)."""


class VolumeUnavailable(DiskUnavailableError):
    """A path of a remote host that is no volume of its storage pools (or not readable)."""


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    """What the volume's XML says: file size, mtime (ns), format."""

    path: str
    size: int
    mtime_ns: int
    format: str | None


def parse_volume_xml(xml: str, path: str) -> VolumeInfo:
    """Physical size (the file's length; ``capacity`` is the guest's), mtime and format."""
    root = ET.fromstring(xml)
    size_text = root.findtext("physical") or root.findtext("allocation") or "0"
    mtime = root.findtext("target/timestamps/mtime") or "0"
    seconds, _, frac = mtime.partition(".")
    mtime_ns = int(seconds or 0) * 1_000_000_000 + int((frac + "000000000")[:9])
    fmt_el = root.find("target/format")
    fmt = fmt_el.get("type") if fmt_el is not None else None
    return VolumeInfo(path, int(size_text), mtime_ns, fmt if fmt not in (None, "none") else None)


class VolumeReader:
    """One remote volume, read by ranges through ``vol.download``, block-cached.

    Implements :class:`vmwarden.model.ranged.RangedReader`. Thread-safe (one lock per
    volume: the inspector's parent serves a worker while the digest of another disk runs).
    ``transferred`` counts the bytes that came over the connection, ``downloads`` the
    ranged downloads issued: the bench compares them with what dissect needed.
    """

    def __init__(
        self, conn: libvirt.virConnect, vol: libvirt.virStorageVol, host: str, info: VolumeInfo
    ) -> None:
        self._conn = conn
        self._vol = vol
        self.host = host
        self.path = info.path
        self.info = info
        self.format = info.format
        self.transferred = 0
        self.downloads = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._capacity = max(1, CACHE_BYTES // BLOCK)
        self._next = -1  # the block after the last fetch: a read there is sequential
        self._ahead = 0  # read-ahead blocks, doubled while reads stay sequential
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self.info.size

    def identity(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "path": self.path,
            "size": self.info.size,
            "mtime_ns": self.info.mtime_ns,
        }

    def read(self, offset: int, n: int) -> bytes:
        end = min(self.size, offset + max(0, n))
        if offset < 0 or end <= offset:
            return b""
        with self._lock:
            return gather_blocks(self._blocks, offset, end, BLOCK, self._fetch)

    def read_exact(self, offset: int, n: int) -> bytes:
        """The same bytes as :meth:`read`, fetched without block rounding or read-ahead:
        for scattered sampled reads (content lineage compares 4 KiB blocks at pseudo-random
        offsets; through :meth:`read` each cost a 16 KiB block, plus read-ahead when two
        samples happened to be adjacent: ~4% of a disk instead of ~1%). Cached blocks still
        serve it; what it downloads is not cached and leaves the read-ahead state alone."""
        end = min(self.size, offset + max(0, n))
        if offset < 0 or end <= offset:
            return b""
        with self._lock:
            if all(i in self._blocks for i in range(offset // BLOCK, (end - 1) // BLOCK + 1)):
                return gather_blocks(self._blocks, offset, end, BLOCK, self._fetch)
            data = self.download(offset, end - offset)
        if len(data) < end - offset:
            raise RemoteReadError(
                f"{self.host}:{self.path} is shorter than its volume says ({offset + len(data)} "
                f"< {end} bytes): changed while being read?"
            )
        return data

    def _fetch(self, first: int, stop: int) -> list[bytes]:
        """Blocks ``first``..``stop`` (exclusive), plus read-ahead when sequential."""
        if first == self._next:
            self._ahead = min(max(1, self._ahead * 2), MAX_READAHEAD // BLOCK)
        else:
            self._ahead = 0
        last_block = (self.size - 1) // BLOCK
        fetch_stop = min(stop + self._ahead, last_block + 1)
        while fetch_stop > stop and (fetch_stop - 1) in self._blocks:
            fetch_stop -= 1
        offset = first * BLOCK
        length = min(self.size, fetch_stop * BLOCK) - offset
        data = self.download(offset, length)
        if len(data) < length:
            raise RemoteReadError(
                f"{self.host}:{self.path} is shorter than its volume says ({offset + len(data)} "
                f"< {offset + length} bytes): changed while being read?"
            )
        blocks = [data[i : i + BLOCK] for i in range(0, len(data), BLOCK)]
        for i, block in enumerate(blocks):
            self._blocks[first + i] = block
        while len(self._blocks) > self._capacity:
            self._blocks.popitem(last=False)
        self._next = fetch_stop
        return blocks

    def digest(self, cancelled: Callable[[], bool] | None = None) -> tuple[str, bool]:
        """The whole volume's digest in one streamed download (see :func:`digest_volume`)."""
        return digest_volume(self, cancelled)

    def drop_cache(self) -> None:
        """Forget the cached blocks (a disk's own layer, once inspected: a sweep of a
        thousand remote disks must not keep a thousand caches)."""
        with self._lock:
            self._blocks.clear()
            self._next, self._ahead = -1, 0

    def download(self, offset: int, length: int) -> bytes:
        """Exactly the bytes ``offset``..``offset+length`` as the host has them (uncached)."""
        return b"".join(self.stream(offset, length, chunk=max(length, 1)))

    def stream(self, offset: int, length: int, *, chunk: int = STREAM_CHUNK) -> Iterator[bytes]:
        """The range in pieces of at most ``chunk`` bytes (a whole-file digest: one download)."""
        stream = self._conn.newStream(0)
        done = False
        try:
            self._vol.download(stream, offset, length, 0)
            self.downloads += 1
            buf = bytearray()
            got = 0
            while True:
                piece = stream.recv(min(1024 * 1024, max(1, length - got + 1)))
                if isinstance(piece, int) or not piece:  # -2 never comes: a blocking stream
                    break
                got += len(piece)
                if got > length:
                    raise RemoteReadError(f"{self.host}:{self.path}: more bytes than asked for")
                self.transferred += len(piece)
                buf += piece
                if len(buf) >= chunk:
                    yield bytes(buf)
                    buf.clear()
            stream.finish()
            done = True
            if buf:
                yield bytes(buf)
        except libvirt.libvirtError as exc:
            raise RemoteReadError(
                f"cannot read {self.path} from {self.host} through libvirt: {_message(exc)}"
            ) from None
        finally:
            if not done:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()

    def still_unchanged(self) -> bool:
        """Whether the host still reports this volume's size and mtime (for caching)."""
        try:
            now = parse_volume_xml(self._vol.XMLDesc(0), self.path)
        except (libvirt.libvirtError, ET.ParseError, ValueError):
            return False
        return (now.size, now.mtime_ns) == (self.info.size, self.info.mtime_ns)


def digest_volume(
    reader: VolumeReader, cancelled: Callable[[], bool] | None = None
) -> tuple[str, bool]:
    """``sha256:<hex>`` of the whole remote file (one streamed download), and whether the
    volume was unchanged while it was read (only then may the digest be cached)."""
    h = hashlib.sha256()
    for piece in reader.stream(0, reader.size):
        h.update(piece)
        if cancelled is not None and cancelled():
            raise RemoteReadError(f"hashing {reader.host}:{reader.path} cancelled")
    return "sha256:" + h.hexdigest(), reader.still_unchanged()


class RemoteVolumes:
    """The volumes of one remote host, by path, over its (open) libvirt connection."""

    def __init__(self, conn: libvirt.virConnect, host: str) -> None:
        self._conn = conn
        self.host = host
        self._readers: OrderedDict[str, VolumeReader] = OrderedDict()
        self._refreshed = False
        self._lock = threading.Lock()

    def open(self, path: str) -> VolumeReader:
        """A reader of the volume at ``path`` on this host.

        Raises:
            VolumeUnavailable: no pool of the host has a volume there (after one refresh of
                its pools), or libvirt would not describe it.
        """
        with self._lock:
            reader = self._readers.get(path)
            if reader is not None:
                self._readers.move_to_end(path)
                return reader
            vol = self._lookup(path)
            try:
                info = parse_volume_xml(vol.XMLDesc(0), path)
            except (libvirt.libvirtError, ET.ParseError, ValueError) as exc:
                raise VolumeUnavailable(
                    f"cannot describe volume {path} on {self.host}: {exc}"
                ) from None
            reader = VolumeReader(self._conn, vol, self.host, info)
            self._readers[path] = reader
            while len(self._readers) > MAX_READERS:
                self._readers.popitem(last=False)
            return reader

    def _lookup(self, path: str) -> libvirt.virStorageVol:
        try:
            return self._conn.storageVolLookupByPath(path)
        except libvirt.libvirtError:
            pass
        if not self._refreshed:  # a file created since the pool was last listed
            self._refreshed = True
            self._refresh_pools()
            with contextlib.suppress(libvirt.libvirtError):
                return self._conn.storageVolLookupByPath(path)
        raise VolumeUnavailable(
            f"disk outside any storage pool on {self.host}: {path} (another host's disks are "
            "read through its libvirt storage pools; define a pool over its directory there)"
        )

    def _refresh_pools(self) -> None:
        try:
            pools = self._conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
        except libvirt.libvirtError:
            return
        for pool in pools:
            with contextlib.suppress(libvirt.libvirtError):
                pool.refresh(0)


def _message(exc: libvirt.libvirtError) -> str:
    return (exc.get_error_message() or str(exc)).strip()
