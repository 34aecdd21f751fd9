"""vcsim, govmomi's vSphere API simulator, started per test module on a free loopback port.

The binary is built from Debian's packages by ``scripts/build-vcsim.sh`` (cached by source
hash). A module gets its own simulator because tests change the inventory (reconfigured
MACs, custom attributes): nothing leaks between modules.
"""

from __future__ import annotations

import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
USER = "vmw-o-admin"
PASSWORD = "vmw-o-secret"  # the simulator's one accepted login


@dataclass(frozen=True)
class Vcsim:
    """A running simulator: its SDK URL, host:port, and the one accepted login."""

    url: str
    host: str
    port: int
    user: str = USER
    password: str = PASSWORD

    def uri(self, query: str = "insecure=1", path: str = "") -> str:
        """The vmwarden connection URI of this simulator."""
        q = f"?{query}" if query else ""
        return f"vsphere://{self.user}@{self.host}:{self.port}{path}{q}"


def vcsim_binary() -> str:
    """Build (or reuse) vcsim; a missing toolchain fails loudly, it is a ``make deps`` item."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts/build-vcsim.sh")], check=False, capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.fail(f"cannot build vcsim: {proc.stderr.strip()}")
    return proc.stdout.strip().splitlines()[-1]


def start_vcsim(*flags: str) -> tuple[subprocess.Popen[str], Vcsim]:
    """Start vcsim with ``flags`` and wait for the URL it prints."""
    proc = subprocess.Popen(
        [vcsim_binary(), "-port", "0", "-user", USER, "-pass", PASSWORD, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("https://"):
        proc.kill()
        pytest.fail(f"vcsim did not start: {line} {proc.stderr.read() if proc.stderr else ''}")
    parsed = urllib.parse.urlsplit(line)
    assert parsed.hostname and parsed.port
    return proc, Vcsim(line, parsed.hostname, parsed.port)


@pytest.fixture(scope="module")
def vcsim() -> Iterator[Vcsim]:
    proc, sim = start_vcsim()
    try:
        yield sim
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def vsphere_password(monkeypatch: pytest.MonkeyPatch, vcsim: Vcsim, tmp_path: Path) -> str:
    """The password in ``VMWARDEN_VSPHERE_PASSWORD``, as an operator sets it (and the scan
    snapshots' journal, ``connectors.vsphere.scan_snapshots``, under the test's directory)."""
    monkeypatch.setenv("VMWARDEN_VSPHERE_PASSWORD", vcsim.password)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return vcsim.password
