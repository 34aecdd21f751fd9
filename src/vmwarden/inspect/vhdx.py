"""Hyper-V vhdx: virtual size and whether the disk is differencing (has a parent).

Reads the region table at 192 KiB, finds the metadata region, and looks up two metadata
items: Virtual Disk Size and Parent Locator. Parent locators are not followed (their paths
are Windows paths); a differencing vhdx is reported so its lineage counts as unknown.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from vmwarden.errors import InspectError
from vmwarden.inspect._io import OpenImage

REGION_TABLE_OFFSET = 192 * 1024
METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
VIRTUAL_DISK_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
PARENT_LOCATOR = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
MAX_ENTRIES = 2047


@dataclass(frozen=True, slots=True)
class VhdxHeader:
    virtual_size: int | None
    differencing: bool


def read_vhdx_header(img: OpenImage) -> VhdxHeader:
    """Parse what vmwarden needs from a vhdx.

    Raises:
        InspectError: region table or metadata table missing or out of bounds.
    """
    table = img.read_at(REGION_TABLE_OFFSET, 16 + 32 * 64)
    if len(table) < 16 or table[:4] != b"regi":
        raise InspectError(f"truncated or invalid vhdx region table: {img.path}")
    (count,) = struct.unpack_from("<I", table, 8)
    meta_offset = meta_length = None
    for i in range(min(count, 64)):
        pos = 16 + 32 * i
        if pos + 32 > len(table):
            raise InspectError(f"truncated vhdx region table: {img.path}")
        guid = uuid.UUID(bytes_le=table[pos : pos + 16])
        offset, length = struct.unpack_from("<QI", table, pos + 16)
        if guid == METADATA_REGION:
            meta_offset, meta_length = offset, length
    if meta_offset is None or meta_length is None or meta_offset + meta_length > img.size:
        raise InspectError(f"vhdx metadata region missing or out of bounds: {img.path}")
    meta = img.read_at(meta_offset, min(meta_length, 64 * 1024))
    if meta[:8] != b"metadata":
        raise InspectError(f"invalid vhdx metadata table: {img.path}")
    (entries,) = struct.unpack_from("<H", meta, 10)
    size = None
    differencing = False
    for i in range(min(entries, MAX_ENTRIES)):
        pos = 32 + 32 * i
        if pos + 32 > len(meta):
            raise InspectError(f"truncated vhdx metadata table: {img.path}")
        item = uuid.UUID(bytes_le=meta[pos : pos + 16])
        item_offset, item_length = struct.unpack_from("<II", meta, pos + 16)
        if item == PARENT_LOCATOR:
            differencing = True
        elif item == VIRTUAL_DISK_SIZE and item_length >= 8:
            value = img.read_at(meta_offset + item_offset, 8)
            if len(value) == 8:
                (size,) = struct.unpack("<Q", value)
    return VhdxHeader(virtual_size=size, differencing=differencing)
