"""Digests, and the cache that keeps a sweep from re-reading unchanged files."""

from __future__ import annotations

import hashlib
import os

import pytest

from vmwarden.errors import InspectError
from vmwarden.inspect.digest import (
    CHUNK,
    MemoryDigestCache,
    cache_key,
    digest_file,
    digest_with_cache,
)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def blob(tmp_path):
    data = os.urandom(3 * CHUNK + 12345)  # crosses chunk boundaries
    path = tmp_path / "blob.img"
    path.write_bytes(data)
    return path, data


def test_digest_file_matches_hashlib(blob):
    path, data = blob
    assert digest_file(path) == sha(data)


def test_digest_of_real_qcow2(images):
    img = images.qcow2("base.qcow2")
    assert digest_file(img) == sha(img.read_bytes())


def test_digest_empty_file(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    assert digest_file(tmp_path / "empty") == sha(b"")


def test_digest_refuses_devices_and_missing():
    with pytest.raises(InspectError, match="not a regular file"):
        digest_file("/dev/zero")
    with pytest.raises(InspectError, match="image missing"):
        digest_file("/nonexistent/x.qcow2")


class Counting:
    def __init__(self, inner=None):
        self.inner = inner or MemoryDigestCache()
        self.lookups = 0
        self.remembers = 0

    def lookup(self, path, st):
        self.lookups += 1
        return self.inner.lookup(path, st)

    def remember(self, path, st, digest):
        self.remembers += 1
        self.inner.remember(path, st, digest)


def test_miss_then_hit(blob, opened):
    path, data = blob
    cache = Counting()
    assert digest_with_cache(path, cache.lookup, cache.remember) == sha(data)
    assert (cache.lookups, cache.remembers) == (1, 1)
    opened.clear()
    assert digest_with_cache(path, cache.lookup, cache.remember) == sha(data)
    assert (cache.lookups, cache.remembers) == (2, 1)
    assert opened == []  # a hit does not even open the file


def test_hit_is_trusted_without_reading(blob, opened):
    path, _ = blob
    opened.clear()
    got = digest_with_cache(path, lambda p, st: "sha256:cached", lambda *a: pytest.fail())
    assert got == "sha256:cached"
    assert opened == []


def test_changed_file_is_rehashed(blob):
    path, data = blob
    cache = Counting()
    digest_with_cache(path, cache.lookup, cache.remember)
    new = data + b"more"
    path.write_bytes(new)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert digest_with_cache(path, cache.lookup, cache.remember) == sha(new)
    assert cache.remembers == 2


def test_lookup_receives_path_and_stat(blob):
    path, _ = blob
    seen = []
    digest_with_cache(path, lambda p, st: seen.append((p, st)), lambda p, st, d: seen.append(d))
    (p, st), digest = seen
    assert p == str(path)
    assert cache_key(st) == cache_key(os.stat(path))
    assert digest.startswith("sha256:")


def test_cache_key_changes_with_mtime_and_size(blob):
    path, _ = blob
    before = cache_key(os.stat(path))
    os.utime(path, ns=(0, 10**9))
    assert cache_key(os.stat(path)) != before
    with path.open("ab") as f:
        f.write(b"x")
    assert cache_key(os.stat(path))[2] == before[2] + 1


def test_memory_cache_counts_entries(blob):
    path, _ = blob
    cache = MemoryDigestCache()
    digest_with_cache(path, cache.lookup, cache.remember)
    digest_with_cache(path, cache.lookup, cache.remember)
    assert len(cache) == 1


def test_missing_file_raises(tmp_path):
    cache = MemoryDigestCache()
    with pytest.raises(InspectError):
        digest_with_cache(tmp_path / "nope", cache.lookup, cache.remember)
