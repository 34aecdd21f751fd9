"""The digest cache: a hit only while dev, inode, size and mtime_ns are all unchanged."""

from __future__ import annotations

import os
from pathlib import Path

from vmwarden.store import Store

DIGEST = "sha256:" + "11" * 32


def _image(tmp_path: Path, name: str = "disk.qcow2", data: bytes = b"QFI\xfb" + b"\0" * 60) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_hit_when_unchanged(store: Store, tmp_path: Path) -> None:
    path = _image(tmp_path)
    assert store.cached_digest(str(path), path.stat()) is None
    store.remember_digest(str(path), path.stat(), DIGEST)
    assert store.cached_digest(str(path), path.stat()) == DIGEST


def test_miss_when_mtime_changes(store: Store, tmp_path: Path) -> None:
    path = _image(tmp_path)
    store.remember_digest(str(path), path.stat(), DIGEST)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # 1 ns is enough
    assert store.cached_digest(str(path), path.stat()) is None


def test_miss_when_size_changes(store: Store, tmp_path: Path) -> None:
    path = _image(tmp_path)
    st = path.stat()
    store.remember_digest(str(path), st, DIGEST)
    with path.open("ab") as f:
        f.write(b"more")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, other size
    assert store.cached_digest(str(path), path.stat()) is None


def test_miss_when_inode_changes(store: Store, tmp_path: Path) -> None:
    path = _image(tmp_path)
    st = path.stat()
    store.remember_digest(str(path), st, DIGEST)
    replacement = _image(tmp_path, "new.qcow2")
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    keep_alive = path.open("rb")  # holds the old inode so it cannot be reused
    os.replace(replacement, path)
    try:
        new = path.stat()
        assert (new.st_size, new.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
        assert new.st_ino != st.st_ino
        assert store.cached_digest(str(path), new) is None
    finally:
        keep_alive.close()


def test_remember_replaces(store: Store, tmp_path: Path) -> None:
    path = _image(tmp_path)
    store.remember_digest(str(path), path.stat(), DIGEST)
    store.remember_digest(str(path), path.stat(), "sha256:" + "22" * 32)
    assert store.cached_digest(str(path), path.stat()) == "sha256:" + "22" * 32


def test_batch_variants(store: Store, tmp_path: Path) -> None:
    paths = [_image(tmp_path, f"d{i}.img", bytes([i]) * (i + 1)) for i in range(5)]
    store.remember_digests([(str(p), p.stat(), f"sha256:{i:064x}") for i, p in enumerate(paths)])
    with paths[0].open("ab") as f:
        f.write(b"changed")
    hits = store.cached_digests([(str(p), p.stat()) for p in paths])
    assert hits == {str(p): f"sha256:{i:064x}" for i, p in enumerate(paths) if i}


def test_unsigned_64_bit_inode_and_device(store: Store, tmp_path: Path) -> None:
    """NFS and overlay file systems report inode numbers above 2**63."""
    path = _image(tmp_path)
    real = path.stat()
    fields = list(real)
    fields[1] = 2**64 - 3  # st_ino
    fields[2] = 2**63 + 7  # st_dev
    extra = {"st_mtime_ns": real.st_mtime_ns}
    st = os.stat_result(fields, extra)
    store.remember_digest(str(path), st, DIGEST)
    assert store.cached_digest(str(path), st) == DIGEST
    fields[1] = 2**64 - 4
    assert store.cached_digest(str(path), os.stat_result(fields, extra)) is None
