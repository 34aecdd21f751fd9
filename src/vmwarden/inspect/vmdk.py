"""VMware vmdk: the sparse extent header and the text descriptor (size, parent link).

A vmdk is either a binary sparse extent (``KDMV``) with the descriptor embedded at
``descriptorOffset``, or a small text descriptor file naming its extents. A linked clone's
descriptor names its parent in ``parentFileNameHint`` (``parentCID=ffffffff`` means none).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from vmwarden.errors import InspectError
from vmwarden.inspect._io import OpenImage
from vmwarden.inspect.magic import VMDK_COWD_MAGIC, VMDK_SPARSE_MAGIC

SECTOR = 512
MAX_DESCRIPTOR = 64 * 1024
_SPARSE = struct.Struct("<4sIIQQQQ")
_EXTENT = re.compile(r"^\s*(RW|RDONLY|NOACCESS)\s+(\d+)\s+\w+", re.MULTILINE)
_PARENT_HINT = re.compile(r'^\s*parentFileNameHint\s*=\s*"([^"\n]*)"', re.MULTILINE)
_PARENT_CID = re.compile(r"^\s*parentCID\s*=\s*([0-9a-fA-F]+)", re.MULTILINE)
_NO_PARENT_CID = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class VmdkHeader:
    virtual_size: int | None
    parent: str | None
    create_type: str | None


def read_vmdk_header(img: OpenImage) -> VmdkHeader:
    """Parse a vmdk's size and parent link.

    Raises:
        InspectError: truncated header or descriptor out of bounds.
    """
    head = img.read_at(0, _SPARSE.size)
    capacity: int | None = None
    if head.startswith(VMDK_COWD_MAGIC):
        return VmdkHeader(virtual_size=None, parent=None, create_type="vmfsSparse")
    if head.startswith(VMDK_SPARSE_MAGIC):
        if len(head) < _SPARSE.size:
            raise InspectError(f"truncated vmdk header: {img.path}")
        _m, _v, _f, capacity_sectors, _grain, desc_offset, desc_size = _SPARSE.unpack(head)
        capacity = capacity_sectors * SECTOR
        text = b""
        if desc_offset and desc_size:
            start, length = desc_offset * SECTOR, min(desc_size * SECTOR, MAX_DESCRIPTOR)
            if start + length > img.size:
                raise InspectError(f"truncated vmdk (descriptor beyond end of file): {img.path}")
            text = img.read_at(start, length)
    else:
        text = img.read_at(0, MAX_DESCRIPTOR)
    descriptor = text.split(b"\x00", 1)[0].decode("utf-8", "replace")
    if capacity is None:
        sectors = [int(m.group(2)) for m in _EXTENT.finditer(descriptor)]
        capacity = sum(sectors) * SECTOR if sectors else None
    return VmdkHeader(
        virtual_size=capacity,
        parent=_parent(descriptor),
        create_type=_value(descriptor, "createType"),
    )


def _parent(descriptor: str) -> str | None:
    cid = _PARENT_CID.search(descriptor)
    if cid is not None and int(cid.group(1), 16) == _NO_PARENT_CID:
        return None
    hint = _PARENT_HINT.search(descriptor)
    return hint.group(1) if hint and hint.group(1) else None


def _value(descriptor: str, key: str) -> str | None:
    match = re.search(rf'^\s*{key}\s*=\s*"([^"\n]*)"', descriptor, re.MULTILINE)
    return match.group(1) if match else None
