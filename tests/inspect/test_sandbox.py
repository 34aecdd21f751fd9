"""The InspectorPool: same facts as in-process, parallel, and confined: a hanging, spinning
or ballooning worker is killed and replaced, and the pool keeps working."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inspect.conftest import KEY, GuestImages
from vmwarden.errors import InspectError
from vmwarden.inspect.facts import inspect_image, inspect_image_json
from vmwarden.inspect.sandbox import InspectorPool
from vmwarden.model import GuestFacts


@pytest.fixture(params=[6.0])
def hooked(
    guest_images: GuestImages, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[InspectorPool]:
    """A pool whose workers misbehave on images named hang-*, spin-*, oom-* (test hooks)."""
    with InspectorPool(
        workers=2,
        timeout=request.param,
        memory_mb=768,
        cpu_seconds=2,
        allowed_dirs=[guest_images.root, tmp_path],
        fingerprint_key=KEY,
        test_hooks=True,
    ) as pool:
        yield pool


def _volatile_free(facts: GuestFacts) -> dict[str, object]:
    data = facts.to_dict()
    for key in ("inspected_at", "seconds"):
        data.pop(key)
    return data


def test_pool_gives_the_same_facts_as_in_process(guest_images: GuestImages) -> None:
    with InspectorPool(workers=2, allowed_dirs=[guest_images.root], fingerprint_key=KEY) as pool:
        results = pool.inspect_many(
            [guest_images.qcow2, guest_images.clone, guest_images.vmdk, guest_images.mbr]
        )
        assert set(results) == {
            str(p)
            for p in (guest_images.qcow2, guest_images.clone, guest_images.vmdk, guest_images.mbr)
        }
        for path, result in results.items():
            assert isinstance(result, GuestFacts), result
            local = inspect_image(path, allowed_dirs=[guest_images.root], fingerprint_key=KEY)
            assert _volatile_free(result) == _volatile_free(local)
        stats = pool.stats[str(guest_images.qcow2)]
        assert stats["bytes_read"] > 0
        assert stats["image_bytes"] == guest_images.qcow2.stat().st_size
        # Long-lived: four images, at most two workers started.
        assert pool.started <= 2


def test_workers_drop_privileges_and_limit_memory(guest_images: GuestImages) -> None:
    with InspectorPool(
        workers=1, memory_mb=900, allowed_dirs=[guest_images.root], fingerprint_key=KEY
    ) as pool:
        pool.inspect(guest_images.raw)
        (worker,) = pool._idle
        if os.geteuid() == 0:
            assert worker.info["uid"] == 65534  # nobody
            assert worker.info["gid"] == 65534
        else:
            assert worker.info["uid"] == os.geteuid()
        assert worker.info["memory_mb"] == 900
        status = Path(f"/proc/{worker.proc.pid}/status").read_text()
        assert "NoNewPrivs:\t1" in status
        limits = Path(f"/proc/{worker.proc.pid}/limits").read_text()
        line = next(ln for ln in limits.splitlines() if ln.startswith("Max address space"))
        assert str(900 * 1024 * 1024) in line


def test_hanging_image_times_out_and_worker_is_replaced(
    hooked: InspectorPool, guest_images: GuestImages, tmp_path: Path
) -> None:
    hang = tmp_path / "hang-forever.qcow2"
    shutil.copy(guest_images.qcow2, hang)
    first = hooked.inspect(guest_images.qcow2)
    pids = set(hooked.worker_pids)
    with pytest.raises(InspectError, match="timed out after 6s"):
        hooked.inspect(hang)
    for pid in pids:  # the worker that hung is gone (killed, reaped)
        assert not Path(f"/proc/{pid}").exists() or pid in hooked.worker_pids
    again = hooked.inspect(guest_images.qcow2)
    assert again.os_name == first.os_name == "debian"
    assert hooked.started >= 2


@pytest.mark.parametrize("hooked", [120.0], indirect=True)  # the CPU limit, not the clock
def test_cpu_and_memory_limits_end_the_worker_not_the_parent(
    hooked: InspectorPool, guest_images: GuestImages, tmp_path: Path
) -> None:
    spin = tmp_path / "spin-cpu.qcow2"
    oom = tmp_path / "oom-memory.qcow2"
    for path in (spin, oom):
        shutil.copy(guest_images.qcow2, path)
    seen: list[str] = []
    results = hooked.inspect_many(
        [spin, oom, guest_images.qcow2], on_done=lambda path, _result: seen.append(path)
    )
    assert sorted(seen) == sorted(results)
    assert isinstance(results[str(spin)], InspectError)
    assert "CPU time limit exceeded" in str(results[str(spin)])
    assert isinstance(results[str(oom)], InspectError)
    assert "memory limit exceeded" in str(results[str(oom)])
    ok = results[str(guest_images.qcow2)]
    assert isinstance(ok, GuestFacts) and ok.hostname == "web01"
    assert hooked.inspect(guest_images.raw).hostname == "web01"


def test_missing_image_and_closed_pool(tmp_path: Path) -> None:
    pool = InspectorPool(workers=1, allowed_dirs=[tmp_path], fingerprint_key=KEY)
    with pool, pytest.raises(InspectError, match="missing"):
        pool.inspect(tmp_path / "nope.qcow2")
    with pytest.raises(InspectError, match="closed"):
        pool.inspect(tmp_path / "nope.qcow2")


def test_a_short_key_is_refused() -> None:
    with pytest.raises(InspectError, match="fingerprint_key"):
        InspectorPool(fingerprint_key=b"short")


def test_inspect_image_json(guest_images: GuestImages) -> None:
    out = inspect_image_json(guest_images.clone, allowed_dirs=[guest_images.root])
    assert out["format"] == "qcow2"
    assert out["digest"].startswith("sha256:")
    assert out["backing"] == "../gpt.qcow2"
    assert out["guest"]["hostname"] == "web01"
    # The default allowed directory is the image's own: the clone's base is outside it.
    refused = inspect_image_json(guest_images.clone)
    assert refused["guest"] is None
    assert "outside allowed directories" in refused["guest_error"]
