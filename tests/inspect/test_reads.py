"""Reading layers cheaply without changing a byte: the block cache and 4 KiB qcow2 reads,
checked against the raw disk they were converted from (plain, compressed, linked clone)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.conftest import qemu_img
from tests.inspect.conftest import KEY, GuestImages
from vmwarden.inspect.disk import _assemble
from vmwarden.inspect.facts import inspect_image
from vmwarden.inspect.reads import BLOCK, CountingFile


def _ranges(size: int, n: int, seed: int) -> list[tuple[int, int]]:
    """Unaligned offsets and lengths, some crossing blocks, some past the end."""
    rng = random.Random(seed)
    out = [(0, 1), (size - 1, 10), (size, 5), (BLOCK - 3, 7), (BLOCK * 3 + 1, BLOCK * 5)]
    for _ in range(n):
        out.append((rng.randrange(0, size), rng.choice([1, 13, 512, BLOCK, 9000, 70_000])))
    return out


def test_counting_file_returns_the_files_bytes_and_reads_each_block_once(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(300 * BLOCK + 123)
    path = tmp_path / "blob"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        fh = CountingFile(fd)
        for offset, length in _ranges(len(data), 400, seed=2):
            fh.seek(offset)
            assert fh.read(length) == data[offset : offset + length]
            assert fh.tell() == min(offset + length, len(data)) or offset >= len(data)
        assert 0 < fh.bytes_read <= len(data)
        before = fh.bytes_read
        fh.seek(0)
        assert fh.read() == data  # everything was cached or is read now, once
        assert fh.bytes_read <= len(data)
        fh.seek(BLOCK * 7 + 5)
        buf = bytearray(20)
        assert fh.readinto(buf) == 20 and bytes(buf) == data[BLOCK * 7 + 5 : BLOCK * 7 + 25]
        assert fh.bytes_read == len(data) and before <= fh.bytes_read
    finally:
        os.close(fd)


def test_a_small_cache_evicts_and_still_returns_the_right_bytes(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(64 * BLOCK)
    path = tmp_path / "blob"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        fh = CountingFile(fd, cache_bytes=2 * BLOCK)
        for offset, length in _ranges(len(data), 200, seed=4):
            fh.seek(offset)
            assert fh.read(length) == data[offset : offset + length]
        # Evicted blocks are read again: more than the file, which a full cache never does.
        assert fh.bytes_read > len(data)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def compressed(guest_images: GuestImages) -> Path:
    out = guest_images.root / "gpt-compressed.qcow2"
    if not out.exists():
        qemu_img("convert", "-q", "-c", "-f", "raw", "-O", "qcow2", guest_images.gpt, out)
    return out


@pytest.mark.parametrize("layout", ["qcow2", "compressed", "clone"])
def test_fine_qcow2_stream_reads_what_the_raw_disk_holds(
    guest_images: GuestImages, compressed: Path, layout: str
) -> None:
    raw = guest_images.gpt.read_bytes()
    chain = {
        "qcow2": [guest_images.qcow2],
        "compressed": [compressed],
        "clone": [guest_images.clone, guest_images.qcow2],
    }[layout]
    fds = [os.open(p, os.O_RDONLY) for p in chain]
    try:
        files = [CountingFile(fd) for fd in fds]
        stream = _assemble(files, ["qcow2"] * len(files))
        assert stream.size == len(raw)
        for offset, length in _ranges(len(raw), 300, seed=5):
            stream.seek(offset)
            assert stream.read(length) == raw[offset : offset + length], (offset, length)
        assert sum(f.bytes_read for f in files) <= sum(f.size for f in files)
    finally:
        for fd in fds:
            os.close(fd)


def test_compressed_qcow2_gives_the_same_facts(guest_images: GuestImages, compressed: Path) -> None:
    dirs = [guest_images.root]
    plain = inspect_image(guest_images.qcow2, allowed_dirs=dirs, fingerprint_key=KEY).to_dict()
    packed = inspect_image(compressed, allowed_dirs=dirs, fingerprint_key=KEY).to_dict()
    for data in (plain, packed):
        for key in ("image", "inspected_at", "seconds", "identity"):
            data.pop(key, None)
    assert packed == plain
    assert plain["os_name"] == "debian" and plain["packages"]
