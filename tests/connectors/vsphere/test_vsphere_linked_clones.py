"""#13.3: a vSphere linked clone (a sparse VMDK delta over its template's base disk) is read
over datastore HTTPS through its chain, and approved by the base's digest exactly.

The template's base is the Debian image as a monolithicSparse VMDK in its own folder; the
clone is a delta (``qemu-img convert -B``: only the blocks that differ) in another folder,
naming its parent ``../vmw-v1-tpl/base.vmdk`` as a hosted VMware delta does; a second clone
has ESXi's form (a text descriptor naming the parent, over one sparse extent file). The clone's
guest has telnetd installed: a package only the delta's blocks hold, so finding it proves
both layers were read. A fresh vcsim for this module (its own VMs are changed here).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.connectors.vsphere.disks_fixture import (
    DEBIAN_QCOW2,
    datastore_dir,
    put_vmdk,
    qemu_img,
    telnetd_raw,
)
from tests.connectors.vsphere.vcsim_ops import admin, vm_named
from vmwarden.connectors.vsphere.disks import DatastorePath, resolve_hint
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.policy import parse_policy
from vmwarden.store import Store

CLONE_VM = "DC0_H0_VM1"
BASE = "[LocalDS_0] vmw-v1-tpl/base.vmdk"
CLONE = "[LocalDS_0] vmw-v1-clone/clone.vmdk"  # one KDMV file naming its parent (hosted)
# ESXi's form: a text descriptor naming the parent over one sparse extent (snap-s001.vmdk)
DESC_VM = "DC0_C0_RP0_VM0"
DESC_CLONE = "[LocalDS_0] vmw-v1-clone/snap.vmdk"


def _attach_linked(content, vm, ds_dir: Path, clone: str) -> None:
    """The VM's disk: the clone, its backing's ``parent`` the base (as vCenter reports a
    linked clone). vcsim 0.24 checks a ``-flat.vmdk`` beside each name: empty ones."""
    for path in (clone, BASE):
        (ds_dir / path.split("] ", 1)[1].replace(".vmdk", "-flat.vmdk")).touch()
    disk = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk))
    disk.backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
        fileName=clone,
        diskMode="persistent",
        parent=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(fileName=BASE, diskMode="persistent"),
    )
    change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk)
    WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))


@pytest.fixture(scope="module")
def linked(vcsim, tmp_path_factory) -> tuple[Path, str]:
    """The datastore directory, and the base's sha256 (read here, before the test runs)."""
    if not DEBIAN_QCOW2.exists():
        pytest.skip(f"{DEBIAN_QCOW2} missing: run scripts/build-debian-image.sh (make test)")
    work = tmp_path_factory.mktemp("v1-linked")
    with admin(vcsim) as content:
        ds_dir = datastore_dir(content)
        put_vmdk(DEBIAN_QCOW2, ds_dir, "vmw-v1-tpl/base.vmdk")
        raw = telnetd_raw(work, DEBIAN_QCOW2)  # the template's guest, telnetd installed since
        (ds_dir / "vmw-v1-clone").mkdir()
        qemu_img(
            "convert", "-f", "raw", "-O", "vmdk", "-B", "../vmw-v1-tpl/base.vmdk", "-F", "vmdk",
            raw, ds_dir / "vmw-v1-clone/clone.vmdk",
        )  # fmt: skip
        qemu_img(
            "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse",
            "-B", "../vmw-v1-tpl/base.vmdk", "-F", "vmdk", raw, ds_dir / "vmw-v1-clone/snap.vmdk",
        )  # fmt: skip
        _attach_linked(content, vm_named(content, CLONE_VM), ds_dir, CLONE)
        _attach_linked(content, vm_named(content, DESC_VM), ds_dir, DESC_CLONE)
    base = (ds_dir / "vmw-v1-tpl/base.vmdk").read_bytes()
    return ds_dir, "sha256:" + hashlib.sha256(base).hexdigest()


def test_parent_hints_resolve_within_the_datastore() -> None:
    child = DatastorePath("ds1", "vm/clone.vmdk")
    assert resolve_hint(child, "base.vmdk") == "[ds1] vm/base.vmdk"
    assert resolve_hint(child, "../tpl/base.vmdk") == "[ds1] tpl/base.vmdk"
    assert resolve_hint(child, "[ds2] tpl/base.vmdk") == "[ds2] tpl/base.vmdk"
    assert resolve_hint(child, "/vmfs/volumes/ds2/tpl/base.vmdk") == "[ds2] tpl/base.vmdk"
    # out of the datastore: stays visibly outside, refused when opened
    assert ".." in resolve_hint(child, "../../../etc/shadow")
    assert ".." in resolve_hint(child, "/etc/shadow")


def test_a_linked_clone_is_read_through_its_chain_and_approved_exactly(
    linked, vcsim, vsphere_password, tmp_path, opened
) -> None:
    ds_dir, base_digest = linked
    policy = parse_policy(
        f"""version: 1
templates: [{{name: golden, digest: "{base_digest}"}}]
rules:
  - {{name: unapproved, resource: vm, severity: high, filters: [not-approved-template]}}
  - name: forbidden-software
    resource: vm
    severity: high
    filters: [{{type: package, installed: [telnetd]}}]
"""
    )
    options = SweepOptions(inspect=InspectionOptions(enabled=True, timeout=120))
    with Store.open(f"sqlite:///{tmp_path / 'v1l.db'}") as store:
        result = Sweep(store, policy, actor="t", options=options).run([vcsim.uri()])
    found = {(f.rule, f.name) for f in result.findings}
    for name, clone in ((CLONE_VM, CLONE), (DESC_VM, DESC_CLONE)):
        vm = next(v for v in result.vms if v.name == name)
        chain = vm.disks[0].chain
        assert [layer.path for layer in chain] == [clone, BASE]
        assert all(layer.error is None for layer in chain), [layer.error for layer in chain]
        assert chain[-1].digest == base_digest  # the root: the template's base, over HTTPS
        assert vm.guest is not None and vm.guest.os_name, name
        names = {p.name for p in vm.guest.packages}
        assert "telnetd" in names  # from the delta's blocks
        assert len(names) > 50  # the rest from the base's
        assert ("unapproved", name) not in found  # approved by the exact root digest
        assert ("forbidden-software", name) in found
    assert not [p for p in opened if str(p).startswith(str(ds_dir))]
