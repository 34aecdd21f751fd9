"""#13.3: vSphere VMDKs read agentlessly over the datastore's HTTPS file access (vcsim).

vcsim serves its datastores' real directories at ``/folder/…``; the fixture
(``disks_fixture.vmdk_estate``) puts the real Debian 12 image there as VMDKs (sparse and
flat) and a rogue one (another build, telnetd installed), attached to vcsim's VMs. vmwarden
reads them only over HTTPS, never as files of this machine (the datastore directory happens
to be local to the simulator; the tests prove no file under it is opened by the sweep).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.vsphere.conftest import Vcsim
from tests.connectors.vsphere.disks_fixture import (
    EMPTY_VM,
    FLAT_VM,
    SPARSE_VM,
    TELNETD_VM,
    VmdkEstate,
    vmdk_estate,
)
from vmwarden.connectors.base import DiskUnavailableError, open_connector
from vmwarden.connectors.vsphere.datastore_http import DatastoreHttp
from vmwarden.connectors.vsphere.disks import DatastoreFiles
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.policy import parse_policy
from vmwarden.store import Store

__all__ = ["vmdk_estate"]  # the shared fixture, used by this module's tests

TWIN_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "vmw-v1-twin"))
POLICY = """version: 1
rules:
  - {name: unapproved, resource: vm, severity: high, filters: [not-approved-template]}
  - name: forbidden-software
    resource: vm
    severity: high
    filters: [{type: package, installed: [telnetd]}]
"""


@pytest.fixture
def connector(vmdk_estate: VmdkEstate, vsphere_password: str) -> Iterator[Any]:
    with open_connector(vmdk_estate.sim.uri()) as opened_connector:
        yield opened_connector


def _local_bytes(path: Path, offset: int, n: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read(n)


def test_ranged_reads_return_the_datastore_files_bytes(vmdk_estate, connector) -> None:
    sparse = connector.open_disk(vmdk_estate.sparse)
    local = vmdk_estate.local(vmdk_estate.sparse)
    st = local.stat()
    ident = sparse.identity()
    assert (ident["path"], ident["size"]) == (vmdk_estate.sparse, st.st_size)
    assert ident["mtime_ns"] == int(st.st_mtime) * 10**9  # HTTP dates are whole seconds
    assert ident["host"] == vmdk_estate.sim.host
    size = sparse.size
    # the header, a read spanning cache blocks, a sequential run, the tail, past the end
    for offset, n in [(0, 512), (65_000, 200_000), (1 << 20, 3 << 20), (size - 100, 4096)]:
        assert sparse.read(offset, n) == _local_bytes(local, offset, n), (offset, n)
    assert sparse.read(size, 10) == b""
    # a flat descriptor is its extent's bytes: the guest disk, presented as raw
    flat = connector.open_disk(vmdk_estate.flat)
    extent = vmdk_estate.local(vmdk_estate.flat.replace(".vmdk", "-flat.vmdk"))
    assert flat.size == extent.stat().st_size
    assert getattr(flat, "presented_format", None) == "raw"
    for offset, n in [(0, 4096), (1 << 20, 1 << 20), (flat.size - 512, 512)]:
        assert flat.read(offset, n) == _local_bytes(extent, offset, n), (offset, n)
    # the whole-file digest streams one GET and matches the local file
    digest, unchanged = sparse.digest()

    assert digest == "sha256:" + hashlib.sha256(local.read_bytes()).hexdigest()
    assert unchanged is True


def test_tls_of_the_datastore_is_verified_unless_the_uri_says_insecure(vmdk_estate) -> None:
    sim: Vcsim = vmdk_estate.sim

    def files(insecure: bool) -> DatastoreFiles:
        http_ = DatastoreHttp(sim.host, sim.port, insecure=insecure, cookie=lambda: None)
        return DatastoreFiles(http_, lambda name: ["DC0"])

    with pytest.raises(DiskUnavailableError, match=r"TLS certificate .* not trusted"):
        files(False).open(vmdk_estate.sparse)
    assert files(True).open(vmdk_estate.sparse).size > 0  # vcsim's self-signed cert


def test_what_is_no_readable_datastore_file_is_unavailable_with_the_reason(
    vmdk_estate, connector
) -> None:
    folder = vmdk_estate.local(vmdk_estate.sparse).parent
    rel = vmdk_estate.sparse.split("] ", 1)[1].rsplit("/", 1)[0]
    # tenant-written descriptors: an extent outside its directory, an extent too short
    (folder / "hostile.vmdk").write_text(
        '# Disk DescriptorFile\nversion=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
        'RW 2048 FLAT "../../../etc/passwd" 0\n'
    )
    (folder / "short-flat.vmdk").write_bytes(b"\0" * 4096)
    (folder / "short.vmdk").write_text(
        '# Disk DescriptorFile\nversion=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
        'RW 2048 FLAT "short-flat.vmdk" 0\n'
    )
    (folder / "delta.vmdk").write_text(
        '# Disk DescriptorFile\nversion=1\nparentCID=1234abcd\ncreateType="vmfsSparse"\n'
        'parentFileNameHint="debian.vmdk"\nRW 2048 VMFSSPARSE "delta-delta.vmdk"\n'
        'RW 2048 VMFSSPARSE "delta2-delta.vmdk"\n'
    )
    cases = {
        "[LocalDS_0] vmw-v1-nowhere/none.vmdk": "no such file on the datastore",
        "[NoSuchDS] a/b.vmdk": "no datastore 'NoSuchDS'",
        "/var/cache/vmwarden-test/debian-minbase.qcow2": "is not a vSphere datastore path",
        "[LocalDS_0] ../../etc/passwd": "does not name a file",
        f"[LocalDS_0] {rel}": "HTTP 301",  # a directory
        f"[LocalDS_0] {EMPTY_VM}/disk1.vmdk": "the file is empty",
        f"[LocalDS_0] {rel}/hostile.vmdk": "is not a file in the descriptor's directory",
        f"[LocalDS_0] {rel}/short.vmdk": "holds 4096 bytes, the descriptor says 1048576",
        f"[LocalDS_0] {rel}/delta.vmdk": "only a delta of one sparse extent is read",
    }
    for path, reason in cases.items():
        with pytest.raises(DiskUnavailableError) as info:
            connector.open_disk(path)
        assert reason in str(info.value), (path, str(info.value))


def _twin_uri(tmp_path: Path, estate: VmdkEstate) -> str:
    """This machine's copy of the estate: a test-driver VM on the template's own image."""
    xml = tmp_path / "twin.xml"
    xml.write_text(
        f"""<node><domain type='qemu'><name>vmw-v1-twin</name><uuid>{TWIN_ID}</uuid>
<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{estate.template}'/><target dev='vda' bus='virtio'/></disk></devices>
</domain></node>"""
    )
    return f"test://{xml}"


def _approve(db: str, image: Path) -> None:
    args = ["template", "approve", str(image), "--name", "golden", "--db", db]
    done = subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_a_sweep_inspects_vsphere_guests_and_judges_them_by_content(
    vmdk_estate, vsphere_password, tmp_path, opened
) -> None:
    db = f"sqlite:///{tmp_path / 'v1.db'}"
    _approve(db, vmdk_estate.template)
    options = SweepOptions(
        inspect=InspectionOptions(enabled=True, timeout=120),
        images_dirs=[vmdk_estate.template.parent],
    )
    with Store.open(db) as store:
        sweep = Sweep(store, parse_policy(POLICY), actor="t", options=options)
        result = sweep.run([_twin_uri(tmp_path, vmdk_estate), vmdk_estate.sim.uri()])
        again = sweep.run([vmdk_estate.sim.uri()])
    vms = {vm.name: vm for vm in result.vms}
    # unchanged VMDKs (same size and Last-Modified) are not read again: facts from the cache
    for vm in again.vms:
        if vm.name in (SPARSE_VM, FLAT_VM, TELNETD_VM):
            assert vm.guest is not None and vms[vm.name].guest is not None, vm.name
            assert vm.guest.inspected_at == vms[vm.name].guest.inspected_at, vm.name
    twin = vms["vmw-v1-twin"].guest
    assert twin is not None and twin.os_name
    # the same image read over HTTPS (sparse and flat VMDK) says what it says locally
    for name in (SPARSE_VM, FLAT_VM):
        guest = vms[name].guest
        assert guest is not None, name
        assert (guest.os_name, guest.os_version, guest.hostname) == (
            twin.os_name,
            twin.os_version,
            twin.hostname,
        )
        assert {(p.name, p.version) for p in guest.packages} == {
            (p.name, p.version) for p in twin.packages
        }
        assert guest.packages
    rogue = vms[TELNETD_VM].guest
    assert rogue is not None and "telnetd" in {p.name for p in rogue.packages}
    found: dict[str, set[str]] = {}
    for f in result.findings:
        found.setdefault(f.rule, set()).add(f.name)
    fixture_vms = {SPARSE_VM, FLAT_VM, TELNETD_VM}
    # full clones (by content: their VMDK's digest is not the template's) are approved
    assert found.get("unapproved", set()) & fixture_vms == {TELNETD_VM}
    assert found.get("forbidden-software", set()) & fixture_vms == {TELNETD_VM}
    assert "uninspectable" not in found or not found["uninspectable"] & fixture_vms
    unapproved = next(f for f in result.findings if f.rule == "unapproved" and f.name == TELNETD_VM)
    assert unapproved.evidence.get("closest_template") == "golden"
    # the datastore is local to vcsim, never to vmwarden: nothing under it was opened here
    assert not [p for p in opened if str(p).startswith(str(vmdk_estate.ds_dir))]
    assert os.path.exists(vmdk_estate.local(vmdk_estate.sparse))
