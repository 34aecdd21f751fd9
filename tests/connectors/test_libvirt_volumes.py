"""#12.3: another host's volumes read by range through a real libvirt connection.

Host B is a real second libvirtd (tests/hypervisors.py) with a dir pool over *its*
``/var/lib/libvirt/images`` (B's state directory on this machine).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.hypervisors import SecondHost, second_host
from vmwarden.connectors.libvirt.volumes import (
    BLOCK,
    RemoteVolumes,
    VolumeUnavailable,
    digest_volume,
)
from vmwarden.inspect.digest import digest_file

POOL_DIR = "/var/lib/libvirt/images"


@pytest.fixture(scope="module")
def host_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondHost]:
    for host in second_host(tmp_path_factory, "vmw-j-vols"):
        images = host.state / "lib" / "images"
        images.mkdir(parents=True, exist_ok=True)
        (images / "vmw-j-data.img").write_bytes(random.Random(7).randbytes(3 * 1024 * 1024 + 123))
        conn = libvirt.open(host.tcp_uri)
        pool = conn.storagePoolDefineXML(
            f"<pool type='dir'><name>vmw-j-vols</name><target><path>{POOL_DIR}</path>"
            "</target></pool>"
        )
        pool.create(0)
        conn.close()
        yield host


@pytest.fixture
def conn(host_b: SecondHost) -> Iterator[libvirt.virConnect]:
    c = libvirt.open(host_b.tcp_uri)
    yield c
    c.close()


def test_ranges_read_through_the_connection_are_the_files_bytes(host_b, conn) -> None:
    local = (host_b.state / "lib" / "images" / "vmw-j-data.img").read_bytes()
    reader = RemoteVolumes(conn, "vmw-j-vols").open(f"{POOL_DIR}/vmw-j-data.img")
    assert reader.size == len(local) and reader.format == "raw"
    rng = random.Random(1)
    asked = 0
    for _ in range(200):
        offset = rng.randrange(0, len(local) + 10)
        n = rng.choice([1, 512, 4096, 5000, 70_000])
        assert reader.read(offset, n) == local[offset : offset + n]
        asked += n
    sequential = b"".join(reader.read(i, 4096) for i in range(0, 512 * 1024, 4096))
    assert sequential == local[: 512 * 1024]
    # read-ahead grew: far fewer downloads than 4 KiB reads; every block came over once
    assert reader.downloads < 200 + 512 // 4
    assert reader.transferred <= len(local) + BLOCK
    assert reader.read(len(local), 10) == b"" and reader.read(-1, 10) == b""
    # a disk's own layer drops its cache once inspected; reads still right, downloaded again
    before = reader.downloads
    reader.drop_cache()
    assert reader.read(100, 10) == local[100:110] and reader.downloads == before + 1


def test_a_path_in_no_pool_is_unavailable_with_the_reason(host_b, conn) -> None:
    volumes = RemoteVolumes(conn, "vmw-j-vols")
    with pytest.raises(VolumeUnavailable, match="disk outside any storage pool on vmw-j-vols"):
        volumes.open("/etc/shadow")


def test_a_file_added_since_the_pool_was_listed_is_found(host_b, conn) -> None:
    late = host_b.state / "lib" / "images" / "vmw-j-late.img"
    late.write_bytes(b"late" * 1000)
    try:
        reader = RemoteVolumes(conn, "vmw-j-vols").open(f"{POOL_DIR}/vmw-j-late.img")
        assert reader.read(0, 8) == b"latelate"
    finally:
        os.unlink(late)


def test_the_root_digest_is_the_files(host_b, conn) -> None:
    path: Path = host_b.state / "lib" / "images" / "vmw-j-data.img"
    reader = RemoteVolumes(conn, "vmw-j-vols").open(f"{POOL_DIR}/vmw-j-data.img")
    digest, unchanged = digest_volume(reader)
    assert digest == digest_file(path) and unchanged
    assert reader.downloads == 1
