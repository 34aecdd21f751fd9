"""Real guest disks on vcsim's datastore, attached to its VMs (shared: import the fixture).

vcsim keeps each datastore in a real directory (the datastore's ``info.url``) and serves it
at ``/folder/…``; its VMs' own ``disk1.vmdk`` files are empty placeholders. This module puts
the real Debian 12 image (``/var/cache/vmwarden-test/debian-minbase.qcow2``, built by
scripts/build-debian-image.sh) there as VMDKs made by ``qemu-img convert`` and points VMs'
disks at them with ``ReconfigVM_Task``, as an administrator attaching an existing disk would:

- ``DC0_H0_VM0``: the Debian image as a monolithicSparse VMDK (a full clone of the template)
- ``DC0_H0_VM1``: the same image as monolithicFlat (descriptor + ``-flat.vmdk`` extent)
- ``DC0_C0_RP0_VM0``: the rogue: another build of Debian (not the approved template's
  content) with telnetd installed (a dpkg status entry), monolithicSparse
- ``DC0_C0_RP0_VM1``: left alone (vcsim's empty placeholder)

Use: ``from tests.connectors.vsphere.disks_fixture import vmdk_estate`` in a test module (the
module's own ``vcsim`` is used; each module gets a fresh simulator).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.connectors.vsphere.conftest import Vcsim
from tests.connectors.vsphere.vcsim_ops import admin, vm_named
from tests.inspect.lineage_cases import mounted

DEBIAN_QCOW2 = Path("/var/cache/vmwarden-test/debian-minbase.qcow2")
OTHER_BUILD = DEBIAN_QCOW2.with_name("debian-minbase-other-build.qcow2")
DATASTORE = "LocalDS_0"
FOLDER = "vmw-v1-disks"
SPARSE_VM, FLAT_VM, TELNETD_VM, EMPTY_VM = (
    "DC0_H0_VM0",
    "DC0_H0_VM1",
    "DC0_C0_RP0_VM0",
    "DC0_C0_RP0_VM1",
)
TELNETD_STATUS = """
Package: telnetd
Status: install ok installed
Priority: optional
Section: net
Maintainer: Guillem Jover <guillem@debian.org>
Architecture: all
Source: inetutils
Version: 0.17-41.2build1
Depends: inetutils-telnetd
Description: telnet server (transitional package)
"""


@dataclass(frozen=True)
class VmdkEstate:
    """Where the disks are: datastore paths as vSphere names them, and the local files."""

    sim: Vcsim
    ds_dir: Path  # the datastore's directory on this machine (vcsim's)
    sparse: str  # "[LocalDS_0] vmw-v1-disks/debian.vmdk"
    flat: str  # the descriptor; its extent is debian-thick-flat.vmdk beside it
    telnetd: str
    template: Path  # the approved template's image (qcow2, on this machine)

    def local(self, ds_path: str) -> Path:
        """The file behind a datastore path of this estate."""
        return self.ds_dir / ds_path.split("] ", 1)[1]


def qemu_img(*args: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def datastore_dir(content: Any, name: str = DATASTORE) -> Path:
    """A datastore's directory as vcsim keeps it (``info.url`` is a local path there)."""
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
    try:
        ds = next(d for d in view.view if d.name == name)
        return Path(ds.info.url)
    finally:
        view.DestroyView()


def put_vmdk(
    source: Path,
    ds_dir: Path,
    rel: str,
    *,
    subformat: str = "monolithicSparse",
    datastore: str = DATASTORE,
) -> str:
    """Convert ``source`` (qcow2 or raw) to a VMDK at ``rel`` in the datastore; its path."""
    out = ds_dir / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    qemu_img("convert", "-O", "vmdk", "-o", f"subformat={subformat}", source, out)
    return f"[{datastore}] {rel}"


def attach_disk(content: Any, vm: Any, ds_path: str, ds_dir: Path | None = None) -> None:
    """Point the VM's first virtual disk at ``ds_path`` (an existing file: no create).

    vcsim 0.24 checks that ``<name>-flat.vmdk`` exists before the descriptor (its disks are
    always flat): for a sparse VMDK an empty file of that name is put beside it (``ds_dir``);
    the reader never opens it (the sparse file names no extent)."""
    if ds_dir is not None:
        companion = ds_dir / ds_path.split("] ", 1)[1].replace(".vmdk", "-flat.vmdk")
        if not companion.exists():
            companion.touch()
    disk = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk))
    disk.backing.fileName = ds_path
    change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk)
    WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))


def telnetd_raw(work: Path, source: Path = OTHER_BUILD) -> Path:
    """A raw copy of a Debian image whose dpkg status lists telnetd (installed). By default
    the *other build* (same packages, another debootstrap run): its content is not from the
    approved template, so content lineage calls it rogue."""
    raw = work / "debian-telnetd.raw"
    qemu_img("convert", "-q", "-f", "qcow2", "-O", "raw", source, raw)
    with mounted(raw) as root, (root / "var/lib/dpkg/status").open("a") as status:
        status.write(TELNETD_STATUS)
    return raw


def build_estate(sim: Vcsim, work: Path) -> VmdkEstate:
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed (apt-get install qemu-utils)")
    for image in (DEBIAN_QCOW2, OTHER_BUILD):
        if not image.exists():
            pytest.skip(
                f"{image} missing: scripts/build-debian-image.sh and build-lineage-other.sh"
            )
    with admin(sim) as content:
        ds_dir = datastore_dir(content)
        sparse = put_vmdk(DEBIAN_QCOW2, ds_dir, f"{FOLDER}/debian.vmdk")
        flat = put_vmdk(
            DEBIAN_QCOW2, ds_dir, f"{FOLDER}/debian-thick.vmdk", subformat="monolithicFlat"
        )
        raw = telnetd_raw(work)
        telnetd = put_vmdk(raw, ds_dir, f"{FOLDER}/debian-telnetd.vmdk")
        raw.unlink()
        for name, path in ((SPARSE_VM, sparse), (FLAT_VM, flat), (TELNETD_VM, telnetd)):
            attach_disk(content, vm_named(content, name), path, ds_dir)
    return VmdkEstate(sim, ds_dir, sparse, flat, telnetd, DEBIAN_QCOW2)


@pytest.fixture(scope="module")
def vmdk_estate(vcsim: Vcsim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmdkEstate]:
    """The module's vcsim with the Debian VMDKs attached (see the module docstring)."""
    estate = build_estate(vcsim, tmp_path_factory.mktemp("v1-vmdk"))
    try:
        yield estate
    finally:
        shutil.rmtree(estate.ds_dir / FOLDER, ignore_errors=True)
