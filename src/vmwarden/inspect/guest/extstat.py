"""The four stat fields OVAL file checks need, read straight from an ext2/3/4 inode.

dissect parses an inode's whole structure (~60 fields, through cstruct) to answer ``stat``:
about 0.2 ms each, 1.3 s of the 2 s that walking the Debian test image's 6.7k files took.
Mode, owner, group and size are four little-endian fields at fixed offsets of the on-disk
inode (ext4 layout: i_mode 0, i_uid 2, i_size_lo 4, i_gid 24, i_size_high 108, and the high
halves of uid/gid at 120/122 in osd2), read here with one 128-byte read. It reaches into
dissect.extfs' internals (its group descriptor reader), so anything unexpected returns
``None`` and the caller asks dissect the ordinary way; the test compares both on every file of
the Debian image.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

_HEAD = struct.Struct("<HHI")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_HIGH = struct.Struct("<HH")


class InodeStat(NamedTuple):
    """The part of a ``stat_result`` the OVAL evaluator reads."""

    st_mode: int
    st_uid: int
    st_gid: int
    st_size: int


def ext_lstat(entry: Any) -> InodeStat | None:
    """The stat of a dissect extfs directory entry's inode, ``None`` when it is not one."""
    ino = getattr(entry, "entry", None)
    fsx = getattr(ino, "extfs", None)
    if fsx is None or not hasattr(fsx, "_read_group_desc"):
        return None
    try:
        from dissect.extfs.c_ext import c_ext

        group, index = divmod(ino.inum - 1, fsx.sb.s_inodes_per_group)
        desc = fsx._read_group_desc(group)
        table = desc.bg_inode_table_lo
        if fsx._group_desc_struct == c_ext.ext4_group_desc:
            table |= desc.bg_inode_table_hi << 32
        fsx.fh.seek(table * fsx.block_size + index * fsx.sb.s_inode_size)
        raw = fsx.fh.read(128)
        if len(raw) < 128:
            return None
        mode, uid_lo, size_lo = _HEAD.unpack_from(raw, 0)
        (gid_lo,) = _U16.unpack_from(raw, 24)
        (size_hi,) = _U32.unpack_from(raw, 108)
        uid_hi, gid_hi = _HIGH.unpack_from(raw, 120)
    except Exception:  # another dissect version, a corrupt table: the ordinary way decides
        return None
    return InodeStat(mode, uid_hi << 16 | uid_lo, gid_hi << 16 | gid_lo, size_hi << 32 | size_lo)
