"""A minimal writer of Windows registry hive files (regf), for building Windows guest disks.

No Debian package ships an empty hive to merge keys into, so the tests write their own:
the format is small and documented (the base block, one hive bin, and the cells a reader
walks: ``nk`` keys, ``lh`` subkey lists, value lists, ``vk`` values and their data cells).
The result is a real, checksummed hive that Windows' own layout rules hold for (subkey
lists sorted by upper-cased name with their hashes, small data inline in the value cell),
so dissect.regf, hivex or Windows read it the same way.

A hive is described as nested dicts: a ``dict`` value is a subkey, anything else a value:
``str`` → REG_SZ, :class:`Expand` → REG_EXPAND_SZ, ``int`` → REG_DWORD, ``list[str]`` →
REG_MULTI_SZ, ``bytes`` → REG_BINARY.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Union

REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD, REG_MULTI_SZ = 1, 2, 3, 4, 7
_NK = struct.Struct("<2sHQ15IHH")  # CM_KEY_NODE up to its name (76 bytes)
_VK = struct.Struct("<2sHIIIHH")  # CM_KEY_VALUE up to its name (20 bytes)
_NO_CELL = 0xFFFFFFFF
_HBIN_HEADER = 32
_FILETIME = 133_500_000_000_000_000  # 2024-01-21, a fixed "last written" for every key
_KEY_COMP_NAME, _KEY_HIVE_ENTRY, _KEY_NO_DELETE = 0x20, 0x04, 0x08
_MAX_INLINE_CELL = 16_344  # larger data needs "db" big-data cells, which nothing here needs


class Expand(str):
    """A REG_EXPAND_SZ value (``%SystemRoot%\\...``), as ProfileImagePath is stored."""


Value = Union[str, int, bytes, list[str]]  # noqa: UP007 (a runtime alias, not an annotation)
Tree = dict[str, Union["Tree", Value]]


def write_hive(path: Path, tree: Tree, *, name: str) -> Path:
    """Write ``tree`` as the hive file ``path``; ``name`` is the base block's file name
    (Windows stores e.g. ``\\SystemRoot\\System32\\Config\\SOFTWARE``)."""
    path.write_bytes(hive_bytes(tree, name=name))
    return path


def hive_bytes(tree: Tree, *, name: str) -> bytes:
    """The regf file of ``tree``: base block (4 KiB) + one hive bin holding every cell."""
    cells = _Cells()
    root = cells.key("ROOT", tree, parent=_NO_CELL, root=True)
    data = cells.finish()
    return _base_block(root, len(data), name) + data


def _base_block(root: int, bins_size: int, name: str) -> bytes:
    block = bytearray(4096)
    struct.pack_into("<4sIIQIIIIII", block, 0, b"regf", 1, 1, _FILETIME, 1, 5, 0, 1, root,
                     bins_size)  # fmt: skip
    struct.pack_into("<I", block, 0x2C, 1)  # clustering factor
    file_name = name.encode("utf-16-le")[:64]
    block[0x30 : 0x30 + len(file_name)] = file_name
    checksum = 0
    for (word,) in struct.iter_unpack("<I", bytes(block[:508])):
        checksum ^= word
    checksum = {0: 1, 0xFFFFFFFF: 0xFFFFFFFE}.get(checksum, checksum)
    struct.pack_into("<I", block, 0x1FC, checksum)
    return bytes(block)


def hashname(name: str) -> int:
    """The ``lh`` list's hash of a key name (Windows: ``h = h * 37 + upper(c)``)."""
    value = 0
    for char in name.upper():
        value = (value * 37 + ord(char)) & 0xFFFFFFFF
    return value


class _Cells:
    """One hive bin's cells, allocated in order; offsets are relative to the first bin."""

    def __init__(self) -> None:
        self.data = bytearray(_HBIN_HEADER)

    def alloc(self, payload: bytes) -> int:
        if len(payload) > _MAX_INLINE_CELL:
            raise ValueError(f"cell of {len(payload)} bytes needs big-data cells")
        offset = len(self.data)
        size = (4 + len(payload) + 7) & ~7
        self.data += struct.pack("<i", -size) + payload.ljust(size - 4, b"\0")
        return offset

    def key(self, name: str, tree: Tree, *, parent: int, root: bool = False) -> int:
        """Allocate the key node first (its children point back at it), then fill it in."""
        encoded = name.encode("ascii")
        me = self.alloc(bytes(_NK.size + len(encoded)))
        subkeys = sorted(((k, v) for k, v in tree.items() if isinstance(v, dict)),
                         key=lambda kv: kv[0].upper())  # fmt: skip
        values = [(k, v) for k, v in tree.items() if not isinstance(v, dict)]
        children = [(k, self.key(k, sub, parent=me)) for k, sub in subkeys]
        sub_list = _NO_CELL
        if children:
            entries = b"".join(struct.pack("<II", off, hashname(k)) for k, off in children)
            sub_list = self.alloc(struct.pack("<2sH", b"lh", len(children)) + entries)
        encoded_values = [(k, *_encode(v)) for k, v in values]
        value_cells = [self.value(k, kind, raw) for k, kind, raw in encoded_values]
        value_list = self.alloc(struct.pack(f"<{len(value_cells)}I", *value_cells))
        flags = _KEY_COMP_NAME | (_KEY_HIVE_ENTRY | _KEY_NO_DELETE if root else 0)
        header = _NK.pack(
            b"nk", flags, _FILETIME, 0, parent, len(children), 0, sub_list, _NO_CELL,
            len(value_cells), value_list if value_cells else _NO_CELL, _NO_CELL, _NO_CELL,
            2 * max((len(k) for k, _ in children), default=0), 0,
            2 * max((len(k) for k, _, _ in encoded_values), default=0),
            max((len(raw) for _, _, raw in encoded_values), default=0), 0,
            len(encoded), 0,
        )  # fmt: skip
        self.data[me + 4 : me + 4 + _NK.size + len(encoded)] = header + encoded
        return me

    def value(self, name: str, kind: int, raw: bytes) -> int:
        encoded = name.encode("ascii")
        if len(raw) <= 4:  # small data lives in the offset field itself
            size, where = len(raw) | 0x80000000, int.from_bytes(raw.ljust(4, b"\0"), "little")
        else:
            size, where = len(raw), self.alloc(raw)
        return self.alloc(_VK.pack(b"vk", len(encoded), size, where, kind, 1, 0) + encoded)

    def finish(self) -> bytes:
        """The hive bin: header, the cells, and one free cell up to the 4 KiB boundary."""
        used = len(self.data)
        total = (used + 8 + 4095) & ~4095  # room for the free cell's 8 bytes at least
        self.data += struct.pack("<i", total - used) + bytes(total - used - 4)
        struct.pack_into("<4sII", self.data, 0, b"hbin", 0, total)
        struct.pack_into("<Q", self.data, 20, _FILETIME)
        return bytes(self.data)


def _encode(value: Value) -> tuple[int, bytes]:
    if isinstance(value, bool):
        raise TypeError("registry values have no bool; use 0 or 1")
    if isinstance(value, int):
        return REG_DWORD, struct.pack("<I", value)
    if isinstance(value, Expand):
        return REG_EXPAND_SZ, (value + "\0").encode("utf-16-le")
    if isinstance(value, str):
        return REG_SZ, (value + "\0").encode("utf-16-le")
    if isinstance(value, bytes):
        return REG_BINARY, value
    return REG_MULTI_SZ, ("\0".join(value) + "\0\0").encode("utf-16-le")
