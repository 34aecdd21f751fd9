"""Storage discovery: disk images in directories, recognised by content, never by name.

A file is an image when its head carries a container magic (qcow2, vmdk, vhdx, vpc, qed,
LUKS) or, for raw files, a partition table or filesystem signature (MBR, GPT, ext, XFS,
btrfs, ISO 9660). Symlinks are not followed (a link out of a storage directory is how a
hostile guest owner would point vmwarden at host files); other file types are skipped.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from vmwarden.inspect.magic import detect_format_bytes
from vmwarden.model import Image

_HEAD = 70 * 1024  # far enough for btrfs' superblock at 64 KiB
_MIN_SIZE = 512
_CONTAINERS = {"qcow2", "vmdk", "vhdx", "vpc", "qed", "luks"}


def raw_signature(head: bytes) -> str | None:
    """What a raw image starts with, if anything a disk image would."""
    checks = (
        (512, b"EFI PART", "gpt"),
        (1080, b"\x53\xef", "ext"),
        (0, b"XFSB", "xfs"),
        (0x10040, b"_BHRfS_M", "btrfs"),
        (0x8001, b"CD001", "iso9660"),
    )
    for offset, magic, name in checks:
        if head[offset : offset + len(magic)] == magic:
            return name
    if head[510:512] == b"\x55\xaa":
        return "mbr"
    return None


def sniff(path: str, size: int) -> str | None:
    """The image format of ``path`` (``raw`` only with a disk signature), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        head = os.read(fd, _HEAD)
    except OSError:
        return None
    finally:
        os.close(fd)
    fmt = detect_format_bytes(head[:1024], file_size=size)
    if fmt in _CONTAINERS or fmt == "vmdk":
        return fmt
    return "raw" if raw_signature(head) else None


def discover(dirs: Iterable[Path], *, host: str | None = None) -> list[Image]:
    """Every disk image under ``dirs`` (recursively), as Image records with stat facts."""
    host = host or socket.gethostname()
    found: dict[str, Image] = {}
    for top in dirs:
        for root, subdirs, files in os.walk(top, followlinks=False):
            subdirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                img = _image(path, host)
                if img is not None:
                    found[path] = img
    return list(found.values())


def _image(path: str, host: str) -> Image | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size < _MIN_SIZE:
        return None
    fmt = sniff(path, st.st_size)
    if fmt is None:
        return None
    return Image(
        path=path,
        host=host,
        format=fmt,
        size=st.st_size,
        mtime=datetime.fromtimestamp(st.st_mtime, UTC),
        mode=stat.S_IMODE(st.st_mode),
    )
