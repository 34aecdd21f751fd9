"""The qcow2 header, parsed in Python from the first cluster of the file.

Layout (big-endian), from qemu's docs/interop/qcow2.txt: magic, version, backing file offset
and size, cluster bits, virtual size, crypt method, L1/refcount/snapshot tables; version 3
adds feature bits and ``header_length``; header extensions (type, length, data padded to 8)
follow the header, the backing format name among them (type ``0xE2792ACA``).
Everything is bounds-checked: a malformed header is an :class:`InspectError`, never a crash
or a read of an arbitrary offset.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from vmwarden.errors import InspectError
from vmwarden.inspect._io import OpenImage
from vmwarden.inspect.magic import QCOW2_MAGIC

EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857
EXT_FULL_DISK_ENCRYPTION = 0x0537BE77
EXT_BITMAPS = 0x23852875
EXT_DATA_FILE = 0x44415441

V2_HEADER_LENGTH = 72
V3_MIN_HEADER_LENGTH = 104
MAX_BACKING_NAME = 1023  # qemu's own limit
MAX_EXTENSIONS = 256
INCOMPAT_EXTERNAL_DATA_FILE = 1 << 2

_V2 = struct.Struct(">4sIQIIQIIQQIIQ")
_V3_EXTRA = struct.Struct(">QQQII")


@dataclass(frozen=True, slots=True)
class Qcow2Header:
    version: int
    virtual_size: int
    cluster_size: int
    backing_file: str | None
    backing_format: str | None
    crypt_method: int  # 0 none, 1 AES (legacy), 2 LUKS
    incompatible_features: int = 0
    data_file: str | None = None

    @property
    def encrypted(self) -> bool:
        return self.crypt_method != 0


def read_qcow2_header(img: OpenImage) -> Qcow2Header:
    """Parse the qcow2 header of an opened image.

    Raises:
        InspectError: not qcow2, unsupported version, truncated or inconsistent header.
    """
    file_size = img.size
    fixed = img.read_at(0, V2_HEADER_LENGTH)
    if not fixed.startswith(QCOW2_MAGIC):
        raise InspectError(f"not a qcow2 image: {img.path}")
    if len(fixed) < V2_HEADER_LENGTH:
        raise InspectError(f"truncated qcow2 header: {img.path}")
    (
        _magic,
        version,
        backing_offset,
        backing_size,
        cluster_bits,
        virtual_size,
        crypt_method,
        l1_size,
        l1_offset,
        refcount_offset,
        _refcount_clusters,
        _nb_snapshots,
        _snapshots_offset,
    ) = _V2.unpack(fixed)
    if version not in (2, 3):
        raise InspectError(f"unsupported qcow2 version {version}: {img.path}")
    if not 9 <= cluster_bits <= 21:
        raise InspectError(f"invalid qcow2 cluster size (bits={cluster_bits}): {img.path}")
    cluster_size = 1 << cluster_bits

    header_length = V2_HEADER_LENGTH
    incompatible = 0
    if version == 3:
        extra = img.read_at(V2_HEADER_LENGTH, _V3_EXTRA.size)
        if len(extra) < _V3_EXTRA.size:
            raise InspectError(f"truncated qcow2 header: {img.path}")
        incompatible, _compat, _autoclear, _refcount_order, header_length = _V3_EXTRA.unpack(extra)
        if header_length < V3_MIN_HEADER_LENGTH or header_length > cluster_size:
            raise InspectError(f"invalid qcow2 header length {header_length}: {img.path}")
    if file_size < header_length:
        raise InspectError(f"truncated qcow2 header: {img.path}")
    if refcount_offset >= file_size or (l1_size and l1_offset + 8 * l1_size > file_size):
        raise InspectError(f"truncated qcow2 image (tables beyond end of file): {img.path}")

    head = img.read_at(0, min(cluster_size, file_size))
    backing_file = None
    if backing_offset:
        if backing_size == 0 or backing_size > MAX_BACKING_NAME:
            raise InspectError(f"invalid qcow2 backing file name length: {img.path}")
        end = backing_offset + backing_size
        if backing_offset < header_length or end > cluster_size:
            raise InspectError(f"invalid qcow2 backing file offset: {img.path}")
        if end > len(head):
            raise InspectError(f"truncated qcow2 header (backing file name): {img.path}")
        raw_name = head[backing_offset:end]
        if b"\x00" in raw_name:
            raise InspectError(f"invalid qcow2 backing file name: {img.path}")
        backing_file = os.fsdecode(raw_name)

    ext_limit = backing_offset if backing_offset else len(head)
    extensions = _read_extensions(head, header_length, ext_limit, img.path)
    backing_format = None
    if EXT_BACKING_FORMAT in extensions:
        backing_format = extensions[EXT_BACKING_FORMAT].rstrip(b"\x00").decode("ascii", "replace")
    data_file = None
    if EXT_DATA_FILE in extensions:
        data_file = os.fsdecode(extensions[EXT_DATA_FILE].rstrip(b"\x00"))
    if EXT_FULL_DISK_ENCRYPTION in extensions and crypt_method == 0:
        raise InspectError(f"qcow2 encryption header without crypt method: {img.path}")
    return Qcow2Header(
        version=version,
        virtual_size=virtual_size,
        cluster_size=cluster_size,
        backing_file=backing_file,
        backing_format=backing_format or None,
        crypt_method=crypt_method,
        incompatible_features=incompatible,
        data_file=data_file,
    )


def _read_extensions(head: bytes, start: int, limit: int, path: str) -> dict[int, bytes]:
    """Header extensions between the header and ``limit`` (the backing name, or the cluster)."""
    found: dict[int, bytes] = {}
    offset = start
    for _ in range(MAX_EXTENSIONS):
        if offset + 8 > limit:
            # qemu writes an end marker, but a header without extensions may stop right here.
            return found
        ext_type, length = struct.unpack_from(">II", head, offset)
        if ext_type == EXT_END:
            return found
        data_start = offset + 8
        if data_start + length > limit:
            raise InspectError(f"truncated qcow2 header extension 0x{ext_type:08x}: {path}")
        found[ext_type] = head[data_start : data_start + length]
        offset = data_start + ((length + 7) & ~7)
    raise InspectError(f"too many qcow2 header extensions: {path}")
