"""The worker's reads, without a cluster: only under its storage directories, whatever a
tenant's domain names (a symlink out, a backing file elsewhere), and warm pools bounded."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import qemu_img
from tests.distributed.conftest import Estate
from vmwarden.distributed.reader import POOLS, DiskReader, DiskRequest, read_with

KEY = b"k" * 32


def _request(path: Path | str, host: str = "host-a") -> DiskRequest:
    return DiskRequest(host, str(path), "qcow2", frozenset(), (), KEY, timeout=120)


def test_a_disk_under_the_storage_dir_is_read_whole(estate: Estate) -> None:
    reader = DiskReader("host-a", [str(estate.storage["host-a"])], 1)
    try:
        result = read_with(reader, _request(estate.disks["web-a1"]))
    finally:
        reader.teardown(None)
    assert [layer.error for layer in result.chain] == [None, None]  # clone + golden
    assert result.chain[-1].path == str(estate.golden)
    assert (result.chain[-1].digest or "").startswith("sha256:")
    assert result.facts is not None and result.facts.os_name == "debian"


def test_an_unchanged_disk_is_not_read_again_a_changed_one_is(estate: Estate) -> None:
    """The worker remembers a disk's facts while every layer's identity is the same (as the
    store's facts cache does for this machine's disks): warm sweeps cost a stat per layer."""
    reader = DiskReader("host-a", [str(estate.storage["host-a"])], 1)
    disk = estate.disks["db-a"]
    try:
        first = read_with(reader, _request(disk))
        again = read_with(reader, _request(disk))
        st = disk.stat()
        os.utime(disk, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # written since
        changed = read_with(reader, _request(disk))
    finally:
        os.utime(disk, ns=(st.st_atime_ns, st.st_mtime_ns))
        reader.teardown(None)
    assert (first.cached, again.cached, changed.cached) == (False, True, False)
    assert first.facts is not None and again.facts is not None and changed.facts is not None
    assert again.facts.package_versions() == first.facts.package_versions()
    assert changed.facts.os_name == "debian"


def test_a_symlink_out_of_the_storage_dir_is_refused(estate: Estate, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "evil.qcow2").symlink_to(estate.disks["db-b"])  # another host's disk
    reader = DiskReader("host-a", [str(storage)], 1)
    result = read_with(reader, _request(storage / "evil.qcow2"))
    assert "not under its storage directories" in (result.chain[0].error or "")
    assert result.facts is None and len(result.chain) == 1


def test_a_backing_file_outside_the_storage_dir_is_not_followed(
    estate: Estate, tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    clone = storage / "clone.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", estate.golden, "-F", "qcow2", clone)
    reader = DiskReader("host-a", [str(storage)], 1)
    result = read_with(reader, _request(clone))
    assert "outside allowed directories" in (result.chain[-1].error or "")
    assert result.chain[-1].digest is None and result.facts is None


def test_a_request_for_another_host_is_refused(estate: Estate) -> None:
    reader = DiskReader("host-b", [str(estate.storage["host-a"])], 1)
    result = read_with(reader, _request(estate.disks["web-a1"], host="host-a"))
    assert result.chain[0].error == "sent to the wrong host" and result.facts is None


def test_warm_pools_are_bounded_the_oldest_closed(tmp_path: Path) -> None:
    reader = DiskReader("host-a", [str(tmp_path)], 1)
    pools = [reader.pool(bytes([i]) * 32, 60.0) for i in range(POOLS + 1)]
    assert reader.pool(bytes([POOLS]) * 32, 60.0) is pools[-1]  # reused while kept
    assert pools[0]._closed and not any(p._closed for p in pools[1:])
    reader.teardown(None)
    assert all(p._closed for p in pools)
