"""FactsCache: facts by image identity, hit on an unchanged image, miss on any change."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inspect.conftest import KEY, GuestImages
from vmwarden.inspect.facts import inspect_image
from vmwarden.store import Store
from vmwarden.store.facts import FactsCache


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[FactsCache]:
    with Store.open(f"sqlite:///{tmp_path / 'vmwarden.db'}") as store:
        yield FactsCache(store)


def test_fingerprint_key_is_made_once_and_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    with Store.open(url) as store:
        key = FactsCache(store).fingerprint_key()
        assert len(key) == 32
        assert FactsCache(store).fingerprint_key() == key
    with Store.open(url) as store:
        assert FactsCache(store).fingerprint_key() == key
    with Store.open(f"sqlite:///{tmp_path / 'other.db'}") as store:
        assert FactsCache(store).fingerprint_key() != key


def test_hit_miss_and_backing_changes(
    cache: FactsCache, guest_images: GuestImages, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    base = images / "gpt.qcow2"
    shutil.copy(guest_images.qcow2, base)
    clone = images / "clones" / "web02.qcow2"
    clone.parent.mkdir()
    shutil.copy(guest_images.clone, clone)
    facts = inspect_image(clone, allowed_dirs=[images], fingerprint_key=KEY)
    assert cache.lookup(str(clone)) is None
    cache.remember(facts, digest="sha256:abc")
    hit = cache.lookup(str(clone))
    assert hit is not None and hit.to_dict() == facts.to_dict()
    assert cache.lookup(str(clone), digest="sha256:abc") is not None
    assert cache.lookup(str(clone), digest="sha256:other") is None
    # The base under the clone changes: the clone's facts may have changed too.
    st = base.stat()
    os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert cache.lookup(str(clone)) is None
    # A fresh inspection is remembered; then the clone itself changes.
    cache.remember(inspect_image(clone, allowed_dirs=[images], fingerprint_key=KEY))
    assert set(cache.lookup_many([str(clone), str(base)])) == {str(clone)}
    with clone.open("ab") as f:
        f.write(b"\0" * 512)
    assert cache.lookup(str(clone)) is None
    cache.forget([str(clone)])
    assert cache.lookup_many([str(clone)]) == {}
