"""Content lineage: is this disk a (full) clone of that template, whatever its format?

Why: a full clone (``virt-clone``, ``cp``, ``qemu-img convert``, a vSphere full clone) has
no backing chain, and its file digest changes the moment the guest writes, so the chain-root
digest calls it rogue. What survives a full copy and a format conversion is the guest-visible
content at the same virtual offsets: a guest that changes its hostname, adds a package and
writes 25 MB of files rewrites a few percent of the template's blocks; another build of the
same release places and stamps its blocks differently (ext4 checksums every metadata block
with the filesystem's UUID, so even identical package files sit among differing blocks).

The *signature* of a template is a sample of its informative 4 KiB blocks, chosen at
pseudo-random among the virtual ranges the image allocates (a fresh ext4 image is mostly
holes), skipping blocks of a few byte values that unrelated disks share (:func:`trivial`);
each is stored as its virtual offset and a 64-bit BLAKE2b of its bytes. The *similarity* of
a disk to a template is the fraction of those blocks found byte-identical at the same
offsets of the disk. Signing reads about 1% of the image (:data:`BUDGET`; at least
:data:`MIN_SAMPLES`, at most :data:`MAX_SAMPLES` blocks); comparing reads the sampled
blocks of the disk and the qcow2 tables that locate them.

Example::

    >>> sig = sign_image("/var/lib/libvirt/images/debian12.qcow2")          # doctest: +SKIP
    >>> disk = "/var/lib/libvirt/images/web01.raw"
    >>> similarity({"debian12": sig}, disk, allowed_dirs=[...])["debian12"].score
    0.97
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vmwarden.inspect.virtual import VirtualDisk, open_virtual

BLOCK = 4096
VERSION = 1
#: Fraction of the image's bytes a signature may read for its samples.
BUDGET = 0.01
MIN_SAMPLES = 64
MAX_SAMPLES = 1024
#: Fewer non-trivial samples than this (an almost empty template) decide nothing.
MIN_DECIDING = 32
#: Candidate blocks tried per sample wanted (the rest were of too little information).
TRIES = 4
#: A sampled block needs at least this many distinct byte values (see :func:`trivial`).
MIN_DISTINCT = 24
_SEED = 0x766D7761  # fixed: the same image always gets the same signature
_HASH_BYTES = 8


@dataclass(frozen=True, slots=True)
class Signature:
    """Sampled block hashes of a template's guest-visible content (JSON via ``to_json``)."""

    virtual_size: int
    offsets: tuple[int, ...]
    hashes: tuple[str, ...]
    bytes_read: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "block": BLOCK,
            "virtual_size": self.virtual_size,
            "offsets": list(self.offsets),
            "hashes": "".join(self.hashes),
            "bytes_read": self.bytes_read,
        }

    @classmethod
    def from_json(cls, data: Any) -> Signature | None:
        """The signature in ``data``, or None when it is absent or not one this code wrote."""
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return None
        offsets, hashes = data.get("offsets"), data.get("hashes")
        width = 2 * _HASH_BYTES
        if (
            data.get("block") != BLOCK
            or not isinstance(offsets, list)
            or not isinstance(hashes, str)
            or len(offsets) > MAX_SAMPLES
            or len(hashes) != width * len(offsets)
            or not all(isinstance(o, int) and o >= 0 for o in offsets)
        ):
            return None
        return cls(
            virtual_size=int(data.get("virtual_size") or 0),
            offsets=tuple(offsets),
            hashes=tuple(hashes[i : i + width] for i in range(0, len(hashes), width)),
            bytes_read=int(data.get("bytes_read") or 0),
        )

    @property
    def deciding(self) -> bool:
        """Whether there are enough samples for a sound similarity."""
        return len(self.offsets) >= MIN_DECIDING


@dataclass(frozen=True, slots=True)
class Similarity:
    """How many of a signature's blocks a disk holds unchanged, and what reading cost."""

    matched: int
    sampled: int
    bytes_read: int

    @property
    def score(self) -> float:
        return self.matched / self.sampled if self.sampled else 0.0


def block_hash(block: bytes) -> str:
    return hashlib.blake2b(block, digest_size=_HASH_BYTES).hexdigest()


def trivial(block: bytes) -> bool:
    """A block of too little information to tell one disk's lineage from another's.

    Zeros and one repeated byte (unused space) obviously; but also structured blocks of a
    few byte values, which mkfs writes identically on *unrelated* disks of the same size:
    block and inode bitmaps, the ext4 resize inode's lists of block numbers, a bare partition
    table. In the demo's two unrelated 64 MiB images these were 49 of 64 samples, and all
    identical. File contents, inode tables, directories and superblocks (which carry the
    filesystem's random UUID) have many more distinct byte values.
    """
    return len(set(block)) < MIN_DISTINCT


def sample_count(file_bytes: int) -> int:
    """How many blocks to sample for an image of ``file_bytes`` bytes on the host."""
    return max(MIN_SAMPLES, min(MAX_SAMPLES, int(file_bytes * BUDGET) // BLOCK))


def sign(disk: VirtualDisk, samples: int | None = None) -> Signature:
    """Sample ``disk``'s non-trivial blocks (see the module docstring).

    Raises:
        InspectError: the image's tables are malformed.
    """
    want = samples if samples is not None else sample_count(disk.file_bytes)
    ranges = [(s, e) for s, e in _block_ranges(disk.data_ranges())]
    total = sum(e - s for s, e in ranges)
    rng = random.Random(_SEED)
    picks = rng.sample(range(total), min(total, want * TRIES)) if total else []
    starts, cumulative = [], 0
    for s, e in ranges:
        starts.append((cumulative, s))
        cumulative += e - s
    found: dict[int, str] = {}
    for pick in picks:
        offset = _locate(starts, pick) * BLOCK
        block = disk.read(offset, BLOCK)
        if not trivial(block):
            found[offset] = block_hash(block)
            if len(found) >= want:
                break
    offsets = tuple(sorted(found))
    return Signature(
        virtual_size=disk.size,
        offsets=offsets,
        hashes=tuple(found[o] for o in offsets),
        bytes_read=disk.bytes_read,
    )


def compare(sig: Signature, disk: VirtualDisk) -> Similarity:
    """The fraction of ``sig``'s blocks that ``disk`` holds identical at the same offsets."""
    matched = 0
    for offset, digest in zip(sig.offsets, sig.hashes, strict=True):
        if offset + BLOCK <= disk.size and block_hash(disk.read(offset, BLOCK)) == digest:
            matched += 1
    return Similarity(matched=matched, sampled=len(sig.offsets), bytes_read=disk.bytes_read)


def sign_image(
    path: str | os.PathLike[str],
    *,
    allowed_dirs: Iterable[str | os.PathLike[str]] | None = None,
    fmt: str | None = None,
) -> Signature:
    """The signature of the image at ``path`` (through its backing chain).

    ``allowed_dirs=None``: an image named by hand (``template approve``), as in ``open_disk``.

    Raises:
        InspectError: unreadable, or a format content lineage does not read.
    """
    dirs = [os.fspath(d) for d in allowed_dirs] if allowed_dirs is not None else None
    with open_virtual(path, allowed_dirs=dirs, fmt=fmt) as disk:
        return sign(disk)


def similarity(
    sigs: dict[str, Signature],
    path: str | os.PathLike[str],
    *,
    allowed_dirs: Iterable[str | os.PathLike[str]] | None,
    fmt: str | None = None,
) -> dict[str, Similarity]:
    """``path``'s similarity to each named signature, the disk opened once.

    Raises:
        InspectError: unreadable, or a format content lineage does not read.
    """
    dirs = [os.fspath(d) for d in allowed_dirs] if allowed_dirs is not None else None
    out: dict[str, Similarity] = {}
    with open_virtual(path, allowed_dirs=dirs, fmt=fmt) as disk:
        for name, sig in sigs.items():
            before = disk.bytes_read
            sim = compare(sig, disk)
            out[name] = Similarity(sim.matched, sim.sampled, disk.bytes_read - before)
    return out


def _block_ranges(ranges: list[tuple[int, int]]) -> Iterable[tuple[int, int]]:
    """Byte ranges → ranges of whole 4 KiB block indexes (a partial block counts)."""
    for start, end in ranges:
        first, last = start // BLOCK, -(-end // BLOCK)
        if last > first:
            yield first, last


def _locate(starts: list[tuple[int, int]], pick: int) -> int:
    """The block index of the ``pick``-th allocated block (binary search over ``starts``)."""
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid][0] <= pick:
            lo = mid
        else:
            hi = mid - 1
    base, first = starts[lo]
    return first + (pick - base)
