"""VMDK text descriptors (``connectors.vsphere.vmdk``): parsed and resolved to guest bytes.

Descriptors are tenant-influenced text (a VM's own folder on a shared datastore): extent
names must stay in the descriptor's directory, counts are bounded, and an extents reader
gives exactly the concatenation of its extents (ZERO extents as zeros), never a byte of
anything else. No simulator needed: the readers here are bytes in memory.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from vmwarden.connectors.vsphere import vmdk


class Bytes:
    """A RangedReader over bytes (as a datastore file reader is, without HTTPS)."""

    def __init__(self, path: str, data: bytes) -> None:
        self.path, self.data = path, data
        self.host = "vc"

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset : offset + n]

    def identity(self) -> dict[str, Any]:
        return {"host": "vc", "path": self.path, "size": len(self.data), "mtime_ns": 7}


def desc(*lines: str, parent: str = "ffffffff", kind: str = "twoGbMaxExtentFlat") -> bytes:
    head = f'# Disk DescriptorFile\nversion=1\nCID=1\nparentCID={parent}\ncreateType="{kind}"\n'
    return (head + "\n".join(lines) + "\n").encode()


def test_a_flat_descriptor_is_its_extents_one_after_the_other() -> None:
    one, two = os.urandom(4 * 512), os.urandom(6 * 512)
    d = vmdk.parse_descriptor(
        desc(
            'RW 4 FLAT "disk-f001.vmdk" 0',
            "RW 2 ZERO",
            'RW 3 FLAT "disk-f002.vmdk" 3',  # from sector 3 of its file
        )
    )
    assert vmdk.plan(d) == "flat"
    assert [(e.kind, e.name, e.sectors, e.offset) for e in d.extents] == [
        ("FLAT", "disk-f001.vmdk", 4, 0),
        ("ZERO", None, 2, 0),
        ("FLAT", "disk-f002.vmdk", 3, 3),
    ]
    guest = one + bytes(2 * 512) + two[3 * 512 : 6 * 512]
    reader = vmdk.ExtentsReader(
        Bytes("[ds] vm/disk.vmdk", b"descriptor"),
        [
            (Bytes("[ds] vm/disk-f001.vmdk", one), 0, 4 * 512),
            (None, 0, 2 * 512),
            (Bytes("[ds] vm/disk-f002.vmdk", two), 3 * 512, 3 * 512),
        ],
    )
    assert reader.size == len(guest) and reader.presented_format == "raw"
    for offset in range(0, len(guest), 317):  # every boundary crossed, odd sizes
        for n in (1, 511, 1500, 5000):
            assert reader.read(offset, n) == guest[offset : offset + n], (offset, n)
    assert reader.read(len(guest), 10) == b""
    ident = reader.identity()
    assert ident["size"] == len(guest) and ident["path"] == "[ds] vm/disk.vmdk"
    assert [e[0] for e in ident["extents"]] == ["[ds] vm/disk-f001.vmdk", "[ds] vm/disk-f002.vmdk"]


def test_a_short_extent_is_an_error_not_short_guest_bytes() -> None:
    reader = vmdk.ExtentsReader(
        Bytes("[ds] d.vmdk", b"x"), [(Bytes("[ds] d-flat.vmdk", b"\1" * 100), 0, 512)]
    )
    with pytest.raises(OSError, match="shorter than its descriptor says"):
        reader.read(0, 512)


@pytest.mark.parametrize(
    "name", ["../other-vm/disk-flat.vmdk", "/etc/shadow", "a/b.vmdk", "..", "c:\\x.vmdk"]
)
def test_an_extent_outside_the_descriptors_directory_is_refused(name: str) -> None:
    with pytest.raises(vmdk.DescriptorError, match="not a file in the descriptor's directory"):
        vmdk.parse_descriptor(desc(f'RW 8 FLAT "{name}" 0'))


def test_what_is_not_read_says_why() -> None:
    with pytest.raises(vmdk.DescriptorError, match="names no extents"):
        vmdk.parse_descriptor(desc())
    many = vmdk.parse_descriptor(desc('RW 8 SPARSE "a-s001.vmdk"', 'RW 8 SPARSE "a-s002.vmdk"'))
    with pytest.raises(vmdk.DescriptorError, match="one monolithic sparse extent"):
        vmdk.plan(many)
    split_delta = vmdk.parse_descriptor(
        desc('RW 8 VMFSSPARSE "a-delta.vmdk"', 'RW 8 VMFSSPARSE "b-delta.vmdk"', parent="1a2b")
    )
    with pytest.raises(vmdk.DescriptorError, match="only a delta of one sparse extent"):
        vmdk.plan(split_delta)
    too_many = desc(*[f'RW 1 FLAT "f{i}.vmdk" 0' for i in range(vmdk.MAX_EXTENTS + 1)])
    with pytest.raises(vmdk.DescriptorError, match="more than"):
        vmdk.parse_descriptor(too_many)


def test_a_delta_names_its_parent_and_reads_its_extent() -> None:
    text = desc(
        'parentFileNameHint="../tpl/base.vmdk"',
        'RW 16 VMFSSPARSE "clone-delta.vmdk"',
        parent="fe12",
        kind="vmfsSparse",
    )
    d = vmdk.parse_descriptor(text)
    assert vmdk.plan(d) == "delta" and d.parent_hint == "../tpl/base.vmdk"
    extent = Bytes("[ds] vm/clone-delta.vmdk", b"COWD" + os.urandom(2000))
    reader = vmdk.DeltaReader(
        Bytes("[ds] vm/clone.vmdk", text), extent, str(d.parent_hint), lambda h: f"<{h}>"
    )
    assert reader.read(0, 2004) == extent.data and reader.size == extent.size
    assert reader.presented_backing == "../tpl/base.vmdk"
    assert reader.backing_path("x.vmdk") == "<x.vmdk>"
    assert reader.identity()["path"] == "[ds] vm/clone.vmdk"
