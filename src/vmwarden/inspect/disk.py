"""The untrusted half: open descriptors of a disk's layers → a dissect.target ``Target``.

dissect is given file objects only (never a path), so its own "open the backing file next to
this one" logic has nothing to open: the backing chain is assembled here from the layers the
parent already checked and opened. dissect then finds partitions (MBR/GPT), LVM, and the
filesystems (ext4, xfs, btrfs, NTFS, FAT) and mounts the guest's root at ``target.fs``.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from vmwarden.errors import InspectError
from vmwarden.inspect.magic import LUKS_MAGIC

if TYPE_CHECKING:
    from dissect.target import Target

# dissect logs every failed detection as a warning; vmwarden records failures as facts.
logging.getLogger("dissect").setLevel(logging.CRITICAL)


class CountingFile(io.RawIOBase):
    """A read-only file object over a descriptor that counts the bytes it returns.

    It has no ``name``: dissect derives sibling paths (vmdk extents, qcow2 backing files)
    from a file object's name, and this one must not lead it to any host path.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._pos = 0
        self.size = os.fstat(fd).st_size
        self.bytes_read = 0
        self.reads = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        elif whence == io.SEEK_END:
            self._pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if self._pos < 0:
            raise OSError("negative seek position")
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = os.preadv(self._fd, [view], self._pos) if len(view) else 0
        self._pos += n
        self.bytes_read += n
        self.reads += 1
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(self.size - self._pos, 0)
        data = os.pread(self._fd, size, self._pos) if size else b""
        self._pos += len(data)
        self.bytes_read += len(data)
        self.reads += 1
        return data


@dataclass(slots=True)
class GuestDisk:
    """A guest disk opened by dissect, and what it took to open it."""

    target: Target | None
    files: list[CountingFile] = field(default_factory=list)
    encrypted: bool = False
    filesystems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what went wrong but did not stop us

    @property
    def bytes_read(self) -> int:
        return sum(f.bytes_read for f in self.files)

    @property
    def image_size(self) -> int:
        return sum(f.size for f in self.files)


def open_guest(layers: list[tuple[int, str]], *, name: str) -> GuestDisk:
    """Open the disk whose layers are ``[(fd, format), ...]``, top first, root last.

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
        raise InspectError(f"cannot read disk: {_describe(exc)}") from None
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
    from dissect.hypervisor.disk import qcow2, vhdx, vmdk

    try:
        below: BinaryIO | None = None
        for fh, fmt in reversed(list(zip(files, formats, strict=True))):
            if fmt == "qcow2":
                below = qcow2.QCow2(fh, backing_file=below).open()
            elif fmt == "vmdk":
                below = vmdk.VMDK(fh)
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


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause):
        text = f"{text}: {str(cause).splitlines()[0]}" if text else str(cause).splitlines()[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
