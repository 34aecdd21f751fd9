"""Real hypervisors for locality tests: the machine's libvirtd, a second libvirtd that is
another host in all that matters, and TCP tunnels to either (what ``ssh -L`` gives).

``SecondHost`` runs ``scripts/second-libvirtd.sh``: a libvirtd in its own mount, UTS and PID
namespaces with its own host UUID, hostname, configuration and state, listening on
127.0.0.1:PORT (TCP, no auth) and on its own unix socket. Its domains' disk paths are paths on
*that* host: a file of the same name here is not their disk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.conftest import REPO

LOCAL_SOCKET = "/run/libvirt/libvirt-sock"
SCRIPT = REPO / "scripts" / "second-libvirtd.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_root_libvirtd() -> None:
    """These tests need root (namespaces, the system daemon) and libvirtd installed: a
    machine without them cannot run them at all, which is a setup problem, said as such."""
    if os.geteuid() != 0 or shutil.which("libvirtd") is None or shutil.which("unshare") is None:
        pytest.skip("needs root, libvirtd and unshare (scripts/install-deps.sh)")
    subprocess.run(["bash", str(REPO / "scripts" / "start-libvirtd.sh")], check=True)


class SecondHost:
    """Another libvirt host on 127.0.0.1:``port`` (see the module docstring)."""

    def __init__(self, state: Path, name: str) -> None:
        self.state = state
        self.port = free_port()
        self.uuid = str(uuid.uuid4())
        self.hostname = name
        subprocess.run(
            ["bash", str(SCRIPT), "start", str(state), str(self.port), self.uuid, name],
            check=True,
            capture_output=True,
            timeout=300,
        )

    @property
    def tcp_uri(self) -> str:
        return f"qemu+tcp://127.0.0.1:{self.port}/system"

    @property
    def socket_path(self) -> str:
        return str(self.state / "run" / "libvirt-sock")

    @property
    def unix_uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket_path}"

    def define(self, xml: str) -> None:
        conn = libvirt.open(self.tcp_uri)
        try:
            conn.defineXML(xml)
        finally:
            conn.close()

    def stop(self) -> None:
        subprocess.run(["bash", str(SCRIPT), "stop", str(self.state)], check=False, timeout=30)


class Tunnel:
    """``ssh -L``'s shape: a TCP port on 127.0.0.1 relaying each connection to a unix
    socket (a libvirtd's), so ``qemu+tcp://localhost:PORT/system`` reaches that daemon."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._closing = False
        threading.Thread(target=self._accept, daemon=True, name="tunnel").start()

    @property
    def uri(self) -> str:
        return f"qemu+tcp://localhost:{self.port}/system"

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                t.start()
                self._threads.append(t)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            return
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closing = True
        self.server.close()


def second_host(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[SecondHost]:
    """A fixture body: a started ``SecondHost``, stopped afterwards."""
    need_root_libvirtd()
    # short path: a unix socket path must fit in 108 bytes
    host = SecondHost(Path(tmp_path_factory.mktemp("h", numbered=True)), name)
    try:
        yield host
    finally:
        host.stop()


def tunnel(target: str) -> Iterator[Tunnel]:
    t = Tunnel(target)
    try:
        yield t
    finally:
        t.close()
