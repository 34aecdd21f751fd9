"""Admission never hashes inline (#11.5): unknown roots go to ``BackgroundHasher``.

Four VMs on 40 GiB sparse roots nobody hashed yet once made every decision thread run past
the deadline, so the gate refused every start on the host, approved VMs included. Here the
same four (real sparse files, real qcow2 overlays, a real SQLite store) are judged at once
with their roots unknown ("digest pending"), an approved VM beside them is answered in a
fraction of the hook's 5 s, and a small unknown root is later judged on its digest.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import qemu_img
from tests.engine.test_admission_decider import decider, domain, policy, uid
from vmwarden.engine.admission_hasher import BackgroundHasher, DigestPending
from vmwarden.errors import InspectError
from vmwarden.inspect.digest import MemoryDigestCache, digest_file
from vmwarden.store import Store

FAST = 2.0  # seconds, far below the hook's 5 s (a decision takes ms; 2 s: a loaded 2-core CI)


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "images"
    d.mkdir()
    base, clone = d / "base.qcow2", d / "clone.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "16M")
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(clone))
    return {"base": base, "clone": clone}


@pytest.fixture
def store(db_url: str, images: dict[str, Path]):
    """The approved template's digest is known, as a sweep of the host leaves it."""
    with Store.open(db_url) as s:
        s.remember_digest(str(images["base"]), images["base"].stat(), digest_file(images["base"]))
        yield s


def pool(images: dict[str, Path]) -> Path:
    """The directory the images are in, as the host's dir pool (backing files are followed
    only into pools, #10.3)."""
    return images["base"].parent


def big_clone(d: Path, name: str) -> Path:
    """A qcow2 overlay over a 40 GiB sparse raw root (``truncate -s 40G``)."""
    root = d / f"{name}-root.raw"
    with root.open("wb") as f:
        f.truncate(40 * 1024**3)
    clone = d / f"{name}.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(root), "-F", "raw", str(clone))
    return clone


def timed(fn, *args):
    t0 = time.monotonic()
    answer = fn(*args)
    return answer, time.monotonic() - t0


def wait_for(what, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_big_unknown_roots_never_delay_an_approved_vm(store: Store, images, tmp_path: Path):
    d = decider(store, policy(images, "{deny: [not-approved-template]}"), image_dirs=[pool(images)])
    try:
        small = tmp_path / "images" / "small-rogue.qcow2"
        qemu_img("create", "-q", "-f", "qcow2", str(small), "8M")
        first, took = timed(d, domain("small", uid(20), small))
        assert took < FAST
        assert first.decision == "deny"
        assert "digest pending" in first.reason
        assert "unknown" in first.reasons[0]
        for i in range(4):
            clone = big_clone(tmp_path / "images", f"big{i}")
            answer, took = timed(d, domain(f"big{i}", uid(30 + i), clone))
            assert took < FAST
            assert answer.decision == "deny"
            assert "digest pending" in answer.reason
        # the hasher is busy with 40 GiB roots now; the approved VM is not behind them
        assert d.hasher.pending >= 2
        for _ in range(3):
            good, took = timed(d, domain("web", uid(1), images["clone"]))
            assert (good.decision, good.hold) == ("allow", False)
            assert took < FAST
        # the small root's hash was done in the background: now judged on its digest
        wait_for(lambda: store.cached_digest(str(small), small.stat()) is not None)
        later = d(domain("small", uid(20), small))
        assert later.decision == "deny"
        assert "pending" not in later.reason
        assert later.reasons[0]["digest"] == digest_file(small)
        assert later.reasons[0]["root"] == str(small)
    finally:
        t0 = time.monotonic()
        d.close()  # a 40 GiB hash in progress stops at its next chunk
        assert time.monotonic() - t0 < 5


def test_an_unknown_root_is_held_at_once_when_the_gate_holds(store: Store, images, tmp_path):
    d = decider(store, policy(images, "{hold: [not-approved-template]}"), image_dirs=[pool(images)])
    try:
        clone = big_clone(tmp_path / "images", "held")
        answer, took = timed(d, domain("held", uid(40), clone))
        assert took < FAST
        assert (answer.decision, answer.hold) == ("allow", True)
        assert "digest pending" in answer.reason
        assert uid(40) in d.held
    finally:
        d.close()


def test_the_queue_is_bounded_and_a_file_is_queued_once(tmp_path: Path):
    cache = MemoryDigestCache()
    hasher = BackgroundHasher(cache.remember, workers=1, max_queued=2)
    try:
        paths = [tmp_path / f"r{i}.raw" for i in range(3)]
        for p in paths:
            with p.open("wb") as f:
                f.truncate(8 * 1024**3)
        for p in paths[:2]:
            with pytest.raises(DigestPending, match="queued for hashing"):
                hasher.request(str(p), p.stat())
        with pytest.raises(DigestPending, match="being hashed in the background"):
            hasher.request(str(paths[0]), paths[0].stat())  # not queued twice
        with pytest.raises(DigestPending, match="2 images already wait"):
            hasher.request(str(paths[2]), paths[2].stat())
        assert hasher.pending == 2
    finally:
        hasher.close()


def test_a_root_that_cannot_be_hashed_says_why_and_is_not_retried(tmp_path: Path):
    cache = MemoryDigestCache()
    done: list[tuple[str, str | None]] = []
    hasher = BackgroundHasher(cache.remember, on_done=lambda p, dg: done.append((p, dg)))
    fifo = tmp_path / "not-an-image"
    os.mkfifo(fifo)
    try:
        with pytest.raises(DigestPending):
            hasher.request(str(fifo), fifo.stat())
        wait_for(lambda: done)
        assert done == [(str(fifo), None)]
        with pytest.raises(InspectError) as why:
            hasher.request(str(fifo), fifo.stat())
        assert not isinstance(why.value, DigestPending)
        assert len(cache) == 0
    finally:
        hasher.close()
