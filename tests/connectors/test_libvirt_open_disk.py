"""``open_disk`` on a local libvirt connection reads this machine's file by ranges, and
refuses what is not a disk (a FIFO would hang a plain open; a directory has no bytes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmwarden.connectors.base import DiskUnavailableError, open_connector


@pytest.fixture
def conn(tmp_path: Path):
    fleet = tmp_path / "fleet.xml"
    fleet.write_text("<node></node>")
    with open_connector(f"test://{fleet}") as opened:
        yield opened


def test_a_local_file_is_read_by_ranges_from_one_descriptor(conn, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    data = os.urandom(100_000)
    disk.write_bytes(data)
    reader = conn.open_disk(str(disk))
    disk.rename(tmp_path / "moved.img")
    disk.write_bytes(b"impostor")  # a swap after the open changes nothing read
    assert reader.size == len(data)
    assert reader.read(99_990, 100) == data[99_990:]
    assert reader.read(5, 7) == data[5:12] and reader.read(len(data), 5) == b""
    assert reader.identity()["path"] == str(disk) and reader.identity()["size"] == len(data)


@pytest.mark.parametrize("kind", ["fifo", "directory", "missing"])
def test_what_is_not_a_disk_is_unavailable_with_the_reason(conn, tmp_path: Path, kind) -> None:
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(DiskUnavailableError, match=str(path)):
        conn.open_disk(str(path))
