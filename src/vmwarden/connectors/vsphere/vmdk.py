"""VMDK text descriptors on a datastore, resolved to the guest-visible bytes of their extents.

Why here and not in the inspector: a descriptor names its extents by file name, and the
sandboxed worker opens no names (``inspect.worker``); the datastore reader can fetch them.
A descriptor whose extents are all flat (``monolithicFlat``, ``twoGbMaxExtentFlat``, a
``vmfs`` thick disk on ESXi) is the concatenation of those extents: presented as one
``raw`` layer (``presented_format``), so header parsing never probes guest bytes. A
descriptor with one sparse extent is that extent file (a ``KDMV`` image dissect reads).
A delta descriptor (a snapshot or linked clone: ESXi's ``vmfsSparse``/``seSparse``, a
hosted ``twoGbMaxExtentSparse``) of one sparse extent is that extent with the descriptor's
parent name (:class:`DeltaReader`). Several sparse extents are refused with that reason:
the disk is unknown, never misread.

Descriptors are tenant-influenced text: extent names must be plain names in the
descriptor's own directory (no ``/``, no ``..``), sizes are bounded, the text is capped.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vmwarden.model.ranged import RangedReader

SECTOR = 512
#: Largest descriptor file read as text (ESXi's are under 4 KiB; a hosted twoGbMaxExtent
#: disk of tens of TiB names ~32k extents in ~1 MiB). Larger is refused, never cut short.
MAX_DESCRIPTOR = 2 * 1024 * 1024
#: Most extents one descriptor may name (twoGbMaxExtent* of a 62 TiB disk: ~32k; refuse more).
MAX_EXTENTS = 40_000
DESCRIPTOR_MAGIC = b"# Disk DescriptorFile"
_EXTENT = re.compile(
    r'^\s*(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Za-z]+)(?:\s+"([^"\n]*)"(?:\s+(\d+))?)?\s*$'
)
_FLAT = ("FLAT", "VMFS", "VMFSRAW", "VMFSRDM")
_SPARSE = ("SPARSE",)
#: Extents of a delta disk: hosted sparse, ESXi's vmfsSparse (COWD) and seSparse.
_DELTA = ("SPARSE", "VMFSSPARSE", "SESPARSE")


class DescriptorError(ValueError):
    """A descriptor this reader will not resolve, with the reason (the disk is unknown)."""


@dataclass(frozen=True, slots=True)
class Extent:
    """One extent line: ``sectors`` of the guest disk from ``name`` (at ``offset`` sectors)."""

    access: str
    sectors: int
    kind: str
    name: str | None
    offset: int


@dataclass(frozen=True, slots=True)
class Descriptor:
    create_type: str | None
    parent_cid: str | None
    parent_hint: str | None
    extents: tuple[Extent, ...]

    @property
    def has_parent(self) -> bool:
        return self.parent_cid is not None and self.parent_cid.lower() != "ffffffff"


def is_descriptor(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a text descriptor (not a ``KDMV`` extent)."""
    return head.startswith(DESCRIPTOR_MAGIC)


def parse_descriptor(text: bytes) -> Descriptor:
    """The extents and parent link of a descriptor file's text.

    Raises:
        DescriptorError: no extents, too many, or an extent name outside its directory.
    """
    if len(text) > MAX_DESCRIPTOR:
        raise DescriptorError(f"descriptor of {len(text)} bytes is too large")
    body = text.split(b"\x00", 1)[0].decode("utf-8", "replace")
    extents: list[Extent] = []
    values: dict[str, str] = {}
    for line in body.splitlines():
        match = _EXTENT.match(line)
        if match is not None:
            access, sectors, kind, name, offset = match.groups()
            if name is not None:
                _check_name(name)
            extents.append(Extent(access, int(sectors), kind.upper(), name, int(offset or 0)))
            if len(extents) > MAX_EXTENTS:
                raise DescriptorError(f"more than {MAX_EXTENTS} extents")
            continue
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[key.strip()] = value.strip().strip('"')
    if not extents:
        raise DescriptorError("descriptor names no extents")
    return Descriptor(
        create_type=values.get("createType"),
        parent_cid=values.get("parentCID"),
        parent_hint=values.get("parentFileNameHint"),
        extents=tuple(extents),
    )


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise DescriptorError(f"extent {name!r} is not a file in the descriptor's directory")


def plan(desc: Descriptor) -> str:
    """``"flat"``, ``"sparse"`` (one sparse extent: read that file), ``"delta"`` (one sparse
    extent over the parent the descriptor names), or raises why not.

    Raises:
        DescriptorError: a delta of several extents or without a parent name, several
            sparse extents, or an extent kind this reader does not know.
    """
    kinds = {e.kind for e in desc.extents}
    if desc.has_parent:
        if len(desc.extents) == 1 and kinds <= set(_DELTA) and desc.parent_hint:
            return "delta"
        raise DescriptorError(
            f"delta disk (createType {desc.create_type}, parent {desc.parent_hint!r}, "
            f"extents {sorted(kinds)}): only a delta of one sparse extent is read over HTTPS"
        )
    if kinds <= set(_FLAT) | {"ZERO"}:
        return "flat"
    if kinds <= set(_SPARSE) and len(desc.extents) == 1:
        return "sparse"
    raise DescriptorError(
        f"createType {desc.create_type} with extents {sorted(kinds)} is not read over HTTPS "
        "(flat extents or one monolithic sparse extent are)"
    )


class DeltaReader:
    """A delta disk of a descriptor: its one sparse extent's bytes (a ``KDMV``, ``COWD`` or
    seSparse file dissect reads), with the parent the *descriptor* names
    (``presented_backing``: the extent's own header has none), resolved like a header's
    (``backing_path``). ``identity`` covers the descriptor and the extent."""

    def __init__(
        self, descriptor: RangedReader, extent: RangedReader, parent_hint: str, resolve: Any
    ) -> None:
        self.path = descriptor.path
        self.host = str(descriptor.identity()["host"])
        self.presented_backing = parent_hint
        self._descriptor = descriptor
        self._extent = extent
        self._resolve = resolve

    @property
    def size(self) -> int:
        return self._extent.size

    def read(self, offset: int, n: int) -> bytes:
        return self._extent.read(offset, n)

    def backing_path(self, hint: str) -> str:
        return str(self._resolve(hint))

    def identity(self) -> dict[str, Any]:
        own = dict(self._descriptor.identity())
        extent = self._extent.identity()
        own["size"] = extent["size"]
        own["mtime_ns"] = max(int(own.get("mtime_ns") or 0), int(extent["mtime_ns"]))
        own["extents"] = [[extent["path"], extent["size"], extent["mtime_ns"]]]
        return own

    def still_unchanged(self) -> bool:
        return all(
            getattr(r, "still_unchanged", lambda: False)() for r in (self._descriptor, self._extent)
        )

    def drop_cache(self) -> None:
        for r in (self._descriptor, self._extent):
            drop = getattr(r, "drop_cache", None)
            if callable(drop):
                drop()


class ExtentsReader:
    """The guest disk of a flat descriptor: its extents' bytes one after the other.

    Implements :class:`~vmwarden.model.ranged.RangedReader`; ``presented_format`` tells the
    chain reader these are guest bytes (``raw``), not the descriptor file's. ``identity``
    covers the descriptor and every extent (a cache is stale when any of them changed).
    """

    presented_format = "raw"

    def __init__(
        self,
        descriptor: RangedReader,
        pieces: list[tuple[RangedReader | None, int, int]],
    ) -> None:
        """``pieces``: ``(reader or None for a ZERO extent, byte offset in it, length)``."""
        self.path = descriptor.path
        self.host = str(descriptor.identity()["host"])
        self._descriptor = descriptor
        self._pieces = pieces
        self._starts: list[int] = []
        total = 0
        for _reader, _offset, length in pieces:
            self._starts.append(total)
            total += length
        self._size = total

    @property
    def size(self) -> int:
        return self._size

    @property
    def readers(self) -> list[RangedReader]:
        return [r for r, _o, _n in self._pieces if r is not None]

    def identity(self) -> dict[str, Any]:
        own = dict(self._descriptor.identity())
        extents = [r.identity() for r in self.readers]
        own["size"] = self._size
        own["mtime_ns"] = max(
            [int(own.get("mtime_ns") or 0)] + [int(e["mtime_ns"]) for e in extents]
        )
        own["extents"] = [[e["path"], e["size"], e["mtime_ns"]] for e in extents]
        return own

    def read(self, offset: int, n: int) -> bytes:
        end = min(self._size, offset + max(0, n))
        out: list[bytes] = []
        pos = max(0, offset)
        index = max(0, bisect.bisect_right(self._starts, pos) - 1)  # the extent holding pos
        while pos < end and index < len(self._pieces):
            reader, base, length = self._pieces[index]
            start = self._starts[index]
            index += 1
            if pos >= start + length:
                continue  # an empty extent
            take = min(end, start + length) - pos
            if reader is None:
                out.append(bytes(take))
            else:
                data = reader.read(base + pos - start, take)
                if len(data) < take:
                    raise OSError(f"extent {reader.path} is shorter than its descriptor says")
                out.append(data)
            pos += take
        return b"".join(out)

    def still_unchanged(self) -> bool:
        checks: list[Callable[[], bool]] = [
            getattr(r, "still_unchanged", lambda: False) for r in [self._descriptor, *self.readers]
        ]
        return all(check() for check in checks)

    def drop_cache(self) -> None:
        for r in [self._descriptor, *self.readers]:
            drop = getattr(r, "drop_cache", None)
            if callable(drop):
                drop()
