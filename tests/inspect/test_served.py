"""#12.3: layers that are not files here are served to the sandboxed worker by its parent.

The worker gets a socket per layer and asks for ranges; these tests drive real workers with
a :class:`RangedReader` over a real image file (the remote volume reader is exercised against
a real second libvirtd in tests/connectors/test_libvirt_volumes.py and
tests/engine/test_scan_remote_disks.py).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from vmwarden.errors import InspectError
from vmwarden.inspect.ranged_chain import resolve_ranged_chain
from vmwarden.inspect.sandbox import InspectorPool
from vmwarden.inspect.served import ANSWER, ERROR, MAX_READ, REQUEST, LayerServer, ServedSource

KEY = b"k" * 32


class FileReader:
    """A RangedReader over a real file (what a remote volume's reader offers)."""

    def __init__(self, path: Path, *, fail_after: int | None = None) -> None:
        self.path = str(path)
        self._fd = os.open(path, os.O_RDONLY)
        self.fail_after = fail_after
        self.served = 0

    @property
    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def read(self, offset: int, n: int) -> bytes:
        if self.fail_after is not None and self.served >= self.fail_after:
            raise OSError("cannot read vol.qcow2 from hostb through libvirt: connection reset")
        data = os.pread(self._fd, n, offset)
        self.served += len(data)
        return data

    def identity(self) -> dict[str, Any]:
        return {"host": "hostb", "path": self.path, "size": self.size, "mtime_ns": 1}


def _volatile_free(facts: Any) -> dict[str, Any]:
    out = facts.to_dict()
    for key in ("image", "identity", "inspected_at", "seconds"):
        out.pop(key, None)
    return out


def test_served_layers_give_the_facts_of_the_file(debian_image: Path) -> None:
    with InspectorPool(workers=1, fingerprint_key=KEY, allowed_dirs=None) as pool:
        local = pool.inspect(debian_image)
        chain = resolve_ranged_chain(str(debian_image), lambda p: FileReader(Path(p)))
        assert chain.error is None and [i.format for i in chain.infos] == ["qcow2"]
        served = pool.inspect_ranged("hostb:/d.qcow2", chain.readers, ["qcow2"], encrypted=False)
    assert _volatile_free(served) == _volatile_free(local)
    assert served.identity == {"layers": [chain.readers[0].identity()]}
    assert served.packages  # a real guest, read through the socket


def test_a_remote_read_error_is_uninspectable_with_its_reason(debian_image: Path) -> None:
    with InspectorPool(workers=1, fingerprint_key=KEY, allowed_dirs=None) as pool:
        failing = FileReader(debian_image, fail_after=200 * 1024)
        with pytest.raises(InspectError, match="through libvirt: connection reset"):
            pool.inspect_ranged("hostb:/d.qcow2", [failing], ["qcow2"], encrypted=False)
        # the pool goes on: the next disk is read
        ok = pool.inspect_ranged(
            "hostb:/d.qcow2", [FileReader(debian_image)], ["qcow2"], encrypted=False
        )
        assert ok.packages


def test_the_server_bounds_each_read(tmp_path: Path) -> None:
    image = tmp_path / "f"
    image.write_bytes(b"x" * 100)
    with LayerServer([FileReader(image)]) as server:
        fd = server.worker_fds()[0]
        sock = socket.socket(fileno=os.dup(fd))
        sock.sendall(REQUEST.pack(0, MAX_READ + 1))
        status, size = ANSWER.unpack(sock.recv(ANSWER.size))
        assert status == ERROR and b"refused" in sock.recv(size)
        sock.close()
        # the worker's side splits big reads and stops at the end of the layer
        source = ServedSource(os.dup(fd), 100)
        assert source.pread(MAX_READ * 3, 90) == b"x" * 10
        assert source.pread(10, 100) == b""
        os.close(source.fd)
