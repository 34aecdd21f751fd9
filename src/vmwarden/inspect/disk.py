"""The untrusted half: open descriptors of a disk's layers → a dissect.target ``Target``.

dissect is given file objects only (never a path), so its own "open the backing file next to
this one" logic has nothing to open: the backing chain is assembled here from the layers the
parent already checked and opened. dissect then finds partitions (MBR/GPT), LVM, and the
filesystems (ext4, xfs, btrfs, NTFS, FAT) and mounts the guest's root at ``target.fs``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from vmwarden.errors import InspectError
from vmwarden.inspect.magic import LUKS_MAGIC
from vmwarden.inspect.reads import CountingFile
from vmwarden.inspect.served import ServedSource

if TYPE_CHECKING:
    from dissect.target import Target

# dissect logs every failed detection as a warning; vmwarden records failures as facts.
logging.getLogger("dissect").setLevel(logging.CRITICAL)


@dataclass(slots=True)
class GuestDisk:
    """A guest disk opened by dissect, and what it took to open it."""

    target: Target | None
    files: list[CountingFile] = field(default_factory=list)
    encrypted: bool = False
    filesystems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what went wrong but did not stop us
    virtual_size: int = 0  # bytes of the disk the guest sees (the top layer's virtual size)

    @property
    def bytes_read(self) -> int:
        return sum(f.bytes_read for f in self.files)

    @property
    def image_size(self) -> int:
        return sum(f.size for f in self.files)


def open_guest(layers: list[tuple[int | ServedSource, str]], *, name: str) -> GuestDisk:
    """Open the disk whose layers are ``[(fd, format), ...]``, top first, root last (a
    ``ServedSource`` for a layer the parent serves: another host's volume).

    A LUKS volume (whole disk or a partition) makes ``encrypted`` true; it is not opened.

    Raises:
        InspectError: dissect could not make sense of the disk.
    """
    from dissect.target import Target
    from dissect.target.containers.raw import RawContainer

    files = [CountingFile(fd) for fd, _ in layers]
    disk = GuestDisk(target=None, files=files)
    if layers and layers[0][1] == "luks":
        disk.encrypted = True
        return disk
    stream = _assemble(files, [fmt for _, fmt in layers])
    disk.virtual_size = int(getattr(stream, "size", None) or files[0].size)
    # No path: dissect would look for a ``.targetcfg.py`` beside it and run it.
    target = Target()
    target.props["vmwarden_name"] = name
    try:
        target.disks.add(stream if hasattr(stream, "vs") else RawContainer(stream))
        target.disks.apply()
        target.volumes.apply()
        target.filesystems.apply()
    except InspectError:
        raise
    except Exception as exc:  # the boundary with a third-party parser of hostile bytes
        raise InspectError(f"cannot read disk: {_describe(exc)}{_hint(exc)}") from None
    disk.encrypted = any(_is_luks(vol) for vol in target.volumes)
    disk.filesystems = sorted({getattr(fs, "__type__", "?") for fs in target.filesystems})
    if not len(target.filesystems):
        if disk.encrypted:
            return disk
        raise InspectError("no filesystem found on the disk")
    try:
        target._init_os()
    except Exception as exc:  # as above: e.g. a symlink loop on a file OS detection reads
        root = _filesystem_with_etc(target)
        if root is None:
            raise InspectError(f"cannot mount the guest filesystems: {_describe(exc)}") from None
        target.fs.mount("/", root)
        disk.notes.append(f"os detection failed ({_describe(exc)}); mounted the root by /etc")
    try:
        target._mount_others()
    except Exception as exc:  # as above: the guest root is mounted, the rest is a note
        disk.notes.append(f"other filesystems not mounted: {_describe(exc)}")
    target._applied = True
    disk.target = target
    return disk


def _assemble(files: list[CountingFile], formats: list[str]) -> BinaryIO:
    """The virtual disk: the chain built from the root upwards, each layer over its backing."""
    from dissect.hypervisor.disk import vhdx, vmdk

    from vmwarden.inspect.qcow2_stream import open_qcow2

    try:
        below: BinaryIO | None = None
        for fh, fmt in reversed(list(zip(files, formats, strict=True))):
            if fmt == "qcow2":
                below = open_qcow2(fh, below)
            elif fmt == "vmdk":
                below = vmdk.VMDK(fh) if below is None else _sparse_over(fh, below)
            elif fmt == "vhdx":
                below = vhdx.VHDX(fh)
            elif fmt == "raw":
                below = fh
            else:
                raise InspectError(f"image format {fmt} is not supported")
    except InspectError:
        raise
    except Exception as exc:  # hostile headers: anything dissect raises is "unreadable"
        raise InspectError(f"cannot open {formats[0]} image: {_describe(exc)}") from None
    if below is None:
        raise InspectError("no image layers to open")
    return below


def _sparse_over(fh: BinaryIO, parent: Any) -> BinaryIO:
    """A sparse vmdk delta (linked clone, snapshot) over its parent layer: dissect's
    ``VMDK`` would open the parent by the name in the header, which the worker may not (and
    the parent already checked and passed it); unallocated grains read from ``parent``."""
    from dissect.hypervisor.disk import vmdk
    from dissect.util.stream import AlignedStream

    class SparseOver(AlignedStream):
        def __init__(self) -> None:
            self.disk = vmdk.SparseDisk(fh, parent=parent)
            super().__init__(self.disk.sector_count * vmdk.SECTOR_SIZE)

        def read_sectors(self, sector: int, count: int) -> bytes:
            return bytes(self.disk.read_sectors(sector, count))

        def _read(self, offset: int, length: int) -> bytes:
            first = offset // vmdk.SECTOR_SIZE
            count = (offset + length + vmdk.SECTOR_SIZE - 1) // vmdk.SECTOR_SIZE - first
            return self.read_sectors(first, count)

    return SparseOver()  # type: ignore[return-value]


def _filesystem_with_etc(target: Target) -> Any:
    for fs in target.filesystems:
        try:
            if fs.path("/etc").is_dir():
                return fs
        except Exception:  # a broken filesystem is simply not the root
            continue
    return None


def _is_luks(volume: Any) -> bool:
    try:
        volume.seek(0)
        return bool(volume.read(len(LUKS_MAGIC)) == LUKS_MAGIC)
    except Exception:  # a volume we cannot even read is not known to be LUKS
        return False


def _hint(exc: BaseException) -> str:
    """What an operator needs beyond dissect's words, for failures with a known cause."""
    if type(exc).__name__ == "LVM2Error" and "Physical volume not found" in str(exc):
        return " (the LVM volume group spans other disks; each disk is inspected alone)"
    return ""


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause):
        text = f"{text}: {str(cause).splitlines()[0]}" if text else str(cause).splitlines()[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
