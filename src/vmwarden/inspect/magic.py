"""Which image format a file holds, decided by its first bytes (never by its name).

Detection never raises on content: anything not recognised is ``raw``, which is also what
qemu would assume. Only a file that cannot be opened raises :class:`InspectError`.
"""

from __future__ import annotations

import os

from vmwarden.inspect._io import open_image

QCOW2_MAGIC = b"QFI\xfb"
VMDK_SPARSE_MAGIC = b"KDMV"
VMDK_COWD_MAGIC = b"COWD"
VMDK_DESCRIPTOR_MARKER = b"# Disk DescriptorFile"
VHDX_MAGIC = b"vhdxfile"
VPC_MAGIC = b"conectix"
QED_MAGIC = b"QED\x00"
LUKS_MAGIC = b"LUKS\xba\xbe"

#: Bytes of the file head that :func:`detect_format_bytes` looks at.
PROBE_SIZE = 1024

# Descriptor-only vmdk files are short text files; a larger file that merely starts with
# this comment is a raw disk whose guest wrote it there.
_MAX_DESCRIPTOR_FILE = 64 * 1024

_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (QCOW2_MAGIC, "qcow2"),
    (VMDK_SPARSE_MAGIC, "vmdk"),
    (VMDK_COWD_MAGIC, "vmdk"),
    (VHDX_MAGIC, "vhdx"),
    (VPC_MAGIC, "vpc"),
    (QED_MAGIC, "qed"),
    (LUKS_MAGIC, "luks"),
)


def detect_format_bytes(head: bytes, *, file_size: int | None = None) -> str:
    """Format name (qemu's names: qcow2, vmdk, vhdx, vpc, qed, luks, raw) from a file head.

    ``file_size`` lets a vmdk text descriptor be told from a raw disk starting with the same
    comment; without it a descriptor marker is trusted.
    """
    for magic, name in _PREFIXES:
        if head.startswith(magic):
            return name
    if VMDK_DESCRIPTOR_MARKER in head[:PROBE_SIZE] and (
        file_size is None or file_size <= _MAX_DESCRIPTOR_FILE
    ):
        return "vmdk"
    return "raw"


def detect_format(path: str | os.PathLike[str]) -> str:
    """Format of the image file at ``path``, by magic.

    Raises:
        InspectError: the file is missing, unreadable or not a regular file / block device.
    """
    with open_image(path, allow_block=True) as img:
        return detect_format_bytes(img.read_at(0, PROBE_SIZE), file_size=img.size)
