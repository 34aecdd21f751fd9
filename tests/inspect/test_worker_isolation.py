"""#11.6: the inspection worker is isolated from the host whatever the parent's cwd.

The worker used to start with ``python -m``, so the parent's cwd was on its ``sys.path`` and
the audit hook let it read anything under every ``sys.path`` entry: from a parent whose cwd
is ``/``, every host file. These tests start real workers from cwd ``/`` and make them
misbehave (the pool's test hooks) as a hostile image exploiting a reader bug would."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inspect.conftest import KEY, GuestImages
from vmwarden.errors import InspectError
from vmwarden.inspect.sandbox import InspectorPool
from vmwarden.inspect.worker import MAX_FILES


@pytest.fixture
def pool_from_root_cwd(
    guest_images: GuestImages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InspectorPool]:
    monkeypatch.chdir("/")
    with InspectorPool(
        workers=1,
        timeout=60,
        allowed_dirs=[guest_images.root, tmp_path],
        fingerprint_key=KEY,
        test_hooks=True,
    ) as pool:
        yield pool


def _copy(guest_images: GuestImages, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    shutil.copy(guest_images.qcow2, path)
    return path


def test_worker_cannot_read_host_files_when_parent_cwd_is_root(
    pool_from_root_cwd: InspectorPool, guest_images: GuestImages, tmp_path: Path
) -> None:
    assert Path("/etc/hostname").exists()  # there to be read, were it allowed
    with pytest.raises(InspectError, match="may not open host path /etc/hostname"):
        pool_from_root_cwd.inspect(_copy(guest_images, tmp_path, "peek-host.qcow2"))
    # The worker that tried is replaced or reused; either way it still inspects normally.
    assert pool_from_root_cwd.inspect(guest_images.qcow2).hostname == "web01"
    (worker,) = pool_from_root_cwd._idle
    readable = worker.info["readable"]
    assert "/" not in readable
    assert not any(p in ("/etc/", "/tmp/", "/var/") for p in readable)


def test_worker_limits_open_files(pool_from_root_cwd: InspectorPool, guest_images: GuestImages):
    pool_from_root_cwd.inspect(guest_images.qcow2)
    (worker,) = pool_from_root_cwd._idle
    limits = Path(f"/proc/{worker.proc.pid}/limits").read_text()
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max open files"))
    assert line.split()[3:5] == [str(MAX_FILES), str(MAX_FILES)]


def test_worker_has_no_network(
    pool_from_root_cwd: InspectorPool, guest_images: GuestImages, tmp_path: Path
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        with pytest.raises(InspectError, match="may not use the network"):
            pool_from_root_cwd.inspect(_copy(guest_images, tmp_path, f"net-{port}-x.qcow2"))
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody called
    finally:
        listener.close()
    pool_from_root_cwd.inspect(guest_images.qcow2)
    (worker,) = pool_from_root_cwd._idle
    if os.geteuid() == 0:  # its own network namespace, not the host's
        assert worker.info["network"] == "own namespace"
        theirs = os.readlink(f"/proc/{worker.proc.pid}/ns/net")
        assert theirs != os.readlink("/proc/self/ns/net")
