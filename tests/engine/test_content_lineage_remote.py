"""#12.4 on another host: a full clone there is recognised by content read over libvirt.

Host B is a real second libvirtd (tests/hypervisors.py) with a dir pool of its own. Its VMs'
disks are a full copy of the template this machine approved (raw, written by its guest) and
an unrelated image. The sweep reads them through B's connection (ranged ``vol.download``),
never a file of the same path here (this machine holds a copy of the *rogue* image at the
full clone's path: reading it would call the clone rogue).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from tests.conftest import qemu_img
from tests.engine.test_scan_fleet import NO_INSPECT
from tests.hypervisors import SecondHost, second_host
from tests.inspect.lineage_cases import ext4_raw
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.policy import parse_policy
from vmwarden.store import Store

POOL_DIR = "/var/lib/libvirt/images"  # on B; here it is B's state dir lib/images
FULL = f"{POOL_DIR}/vmw-i-full.raw"
ROGUE = f"{POOL_DIR}/vmw-i-rogue.qcow2"
FULL_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "vmw-i-full"))
ROGUE_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "vmw-i-rogue"))
POLICY = """version: 1
rules:
  - {name: unapproved-template, resource: vm, severity: high, filters: [not-approved-template]}
"""


def domain(name: str, vm_id: str, disk: str, fmt: str) -> str:
    return f"""<domain type='qemu'><name>{name}</name><uuid>{vm_id}</uuid>
<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>"""


@dataclass
class Remote:
    golden: Path  # this machine's approved template
    host: SecondHost


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    work = tmp_path_factory.mktemp("i-remote")
    golden = work / "golden.qcow2"
    qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", ext4_raw(work, "g", seed=31), golden)
    rogue = work / "rogue.qcow2"
    qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", ext4_raw(work, "r", seed=32), rogue)
    impostor = Path(FULL)
    assert not impostor.exists(), f"{impostor} is not ours"
    for host in second_host(tmp_path_factory, "vmw-i-hostb"):
        images = host.state / "lib" / "images"
        images.mkdir(parents=True, exist_ok=True)
        full = images / "vmw-i-full.raw"
        qemu_img("convert", "-q", "-f", "qcow2", "-O", "raw", golden, full)
        subprocess.run(
            ["qemu-io", "-f", "raw", "-c", "write -P 0x42 3M 256k", str(full)],
            check=True,
            capture_output=True,
        )
        shutil.copy(rogue, images / "vmw-i-rogue.qcow2")
        conn = libvirt.open(host.tcp_uri)
        try:
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>vmw-i-images</name><target><path>{POOL_DIR}</path>"
                "</target></pool>"
            )
            pool.create(0)
        finally:
            conn.close()
        host.define(domain("vmw-i-full", FULL_ID, FULL, "raw"))
        host.define(domain("vmw-i-rogue", ROGUE_ID, ROGUE, "qcow2"))
        impostor.parent.mkdir(parents=True, exist_ok=True)
        qemu_img("convert", "-q", "-f", "qcow2", "-O", "raw", rogue, impostor)
        try:
            yield Remote(golden, host)
        finally:
            impostor.unlink(missing_ok=True)


def test_remote_full_clone_is_judged_by_content_over_libvirt(remote, tmp_path, opened) -> None:
    db = f"sqlite:///{tmp_path / 'vmwarden.db'}"
    args = ["template", "approve", str(remote.golden), "--name", "golden", "--db", db]
    done = subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with Store.open(db) as store:
        sweep = Sweep(
            store, parse_policy(POLICY), actor="t", options=SweepOptions(inspect=NO_INSPECT.inspect)
        )
        t0 = time.perf_counter()
        result = sweep.run([remote.host.tcp_uri])
        first = time.perf_counter() - t0
        found = {f.id: f.evidence for f in result.findings}
        assert set(found) == {ROGUE_ID}, found  # before: the full clone was rogue too
        assert found[ROGUE_ID]["closest_template"] == "golden"
        assert found[ROGUE_ID]["similarity"] < 0.5
        assert FULL not in opened  # the file of that path here (the rogue's bytes) never read
        again = sweep.run([remote.host.tcp_uri])  # cached per (host, path, size, mtime)
        assert {f.id for f in again.findings} == {ROGUE_ID}
    assert first < 60
