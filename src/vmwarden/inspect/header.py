"""One image's own facts, whatever its format: format, virtual size, backing link, encryption.

:func:`read_image_info` is the single dispatcher that :mod:`~vmwarden.inspect.chain` and
:func:`~vmwarden.inspect.digest.fingerprint` share. When the caller knows the format (from
libvirt's ``<driver type=...>`` or a backing format recorded in the parent's header) that
format is trusted and checked against the magic; ``raw`` is never probed, so a guest that
writes a qcow2 header into its raw disk cannot make vmwarden follow a "backing file".
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from vmwarden.errors import InspectError
from vmwarden.inspect._io import OpenImage
from vmwarden.inspect.magic import PROBE_SIZE, detect_format_bytes
from vmwarden.inspect.qcow2 import read_qcow2_header
from vmwarden.inspect.vhdx import read_vhdx_header
from vmwarden.inspect.vmdk import read_vmdk_header

_VPC_DIFFERENCING = 4
_QED_HAS_BACKING = 0x01
_QED_BACKING_IS_RAW = 0x04
_QED = struct.Struct("<4sIIIQQQQQII")


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """Header facts of one image file. ``backing`` is the name exactly as the header has it."""

    format: str
    virtual_size: int | None
    size: int
    backing: str | None = None
    backing_format: str | None = None
    encrypted: bool = False
    data_file: str | None = None
    # Set when the image has a parent vmwarden does not follow (e.g. a differencing vhdx).
    unfollowed_parent: str | None = None


def read_image_info(img: OpenImage, fmt: str | None = None) -> ImageInfo:
    """Header facts of an opened image; ``fmt`` is the declared format, if any.

    Raises:
        InspectError: the header is malformed, or the magic contradicts ``fmt``.
    """
    size = img.size
    detected = detect_format_bytes(img.read_at(0, PROBE_SIZE), file_size=size)
    if fmt == "raw":
        return ImageInfo(format="raw", virtual_size=size, size=size)
    if fmt is not None and fmt != detected:
        raise InspectError(f"format mismatch: declared {fmt}, found {detected}: {img.path}")
    if detected == "qcow2":
        q = read_qcow2_header(img)
        return ImageInfo(
            format="qcow2",
            virtual_size=q.virtual_size,
            size=size,
            backing=q.backing_file,
            backing_format=q.backing_format,
            encrypted=q.encrypted,
            data_file=q.data_file,
        )
    if detected == "vmdk":
        v = read_vmdk_header(img)
        return ImageInfo(format="vmdk", virtual_size=v.virtual_size, size=size, backing=v.parent)
    if detected == "vhdx":
        h = read_vhdx_header(img)
        parent = "vhdx differencing disk: parent locator not followed" if h.differencing else None
        return ImageInfo(
            format="vhdx", virtual_size=h.virtual_size, size=size, unfollowed_parent=parent
        )
    if detected == "vpc":
        return _vpc_info(img, size)
    if detected == "qed":
        return _qed_info(img, size)
    if detected == "luks":
        return ImageInfo(format="luks", virtual_size=None, size=size, encrypted=True)
    return ImageInfo(format="raw", virtual_size=size, size=size)


def _vpc_info(img: OpenImage, size: int) -> ImageInfo:
    footer = img.read_at(0, 64)
    if len(footer) < 64:
        raise InspectError(f"truncated vpc footer: {img.path}")
    (current_size,) = struct.unpack_from(">Q", footer, 48)
    (disk_type,) = struct.unpack_from(">I", footer, 60)
    parent = "vpc differencing disk: parent locator not followed"
    return ImageInfo(
        format="vpc",
        virtual_size=current_size,
        size=size,
        unfollowed_parent=parent if disk_type == _VPC_DIFFERENCING else None,
    )


def _qed_info(img: OpenImage, size: int) -> ImageInfo:
    head = img.read_at(0, _QED.size)
    if len(head) < _QED.size:
        raise InspectError(f"truncated qed header: {img.path}")
    fields = _QED.unpack(head)
    features, image_size, name_offset, name_size = fields[4], fields[8], fields[9], fields[10]
    backing = None
    if features & _QED_HAS_BACKING:
        if not 0 < name_size <= 1023 or name_offset + name_size > min(size, 64 * 1024):
            raise InspectError(f"invalid qed backing file name: {img.path}")
        backing = os.fsdecode(img.read_at(name_offset, name_size))
    return ImageInfo(
        format="qed",
        virtual_size=image_size,
        size=size,
        backing=backing,
        backing_format="raw" if features & _QED_BACKING_IS_RAW else None,
    )
