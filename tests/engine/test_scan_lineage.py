"""Lineage edge cases a sweep must survive: block devices, chains libvirt reports itself,
and where a backing file may lie (#10.3: pools, --images, approved templates' directories;
never the directory of some disk).

libvirt reports ``<backingStore>`` for running VMs, and the test driver echoes whatever the
host file says, so these are real libvirt answers, not mocks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.engine.test_scan_fleet import NO_INSPECT
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.inspect.digest import digest_file
from vmwarden.policy import load_policy

UUID = "3b0c3c2e-7a4f-4c55-9e7d-000000000001"


def host_file(path: Path, disk_xml: str, name: str = "odd-disk") -> Path:
    """One running, registered internal VM on ``prod`` whose single disk is ``disk_xml``."""
    path.write_text(
        f"""<node>
<domain type='test'><name>{name}</name><uuid>{UUID}</uuid>
<memory>262144</memory><vcpu>1</vcpu><os><type>hvm</type></os>
<metadata><vmwarden:vm xmlns:vmwarden="http://vmwarden.dev/xmlns/vm/1">
<vmwarden:classification>internal</vmwarden:classification>
<vmwarden:registered>yes</vmwarden:registered></vmwarden:vm></metadata>
<devices>{disk_xml}
<interface type='network'><mac address='52:54:00:10:00:01'/><source network='prod'/></interface>
</devices></domain>
<network><name>prod</name><bridge name='vwbr0'/><ip address='10.0.0.1' netmask='255.255.255.0'/>
</network>
<network><name>quarantine</name><bridge name='vwbr9'/></network>
</node>
"""
    )
    return path


def only_finding(result):
    assert [(f.rule, f.name) for f in result.findings] == [("unapproved-template", "odd-disk")]
    return result.findings[0].evidence


@pytest.fixture
def policy(scan_fleet):
    return load_policy(scan_fleet.policy_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a block device needs root")
def test_block_device_disk_is_unknown_not_a_crash(tmp_path, store, policy):
    node = tmp_path / "vg0-web"
    os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(7, 7))  # an unattached loop device
    disk = (
        f"<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
        f"<source dev='{node}'/><target dev='vda' bus='virtio'/></disk>"
    )
    uri = f"test://{host_file(tmp_path / 'hv-lvm.xml', disk)}"
    result = Sweep(store, policy, actor="t", options=NO_INSPECT).run([uri])
    assert "unknown" in only_finding(result)
    assert any("odd-disk" in w and str(node) in w for w in result.warnings), result.warnings


def test_reported_backing_store_outside_is_never_opened(tmp_path, scan_fleet, store, policy,
                                                        opened):  # fmt: skip
    top = scan_fleet.disk_files["approved-0"]
    disk = (
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{top}'/>"
        f"<backingStore type='file'><format type='raw'/><source file='/etc/shadow'/>"
        f"<backingStore/></backingStore><target dev='vda' bus='virtio'/></disk>"
    )
    uri = f"test://{host_file(tmp_path / 'hv-running.xml', disk)}"
    result = Sweep(store, policy, actor="t", options=NO_INSPECT).run([uri])
    assert "/etc/shadow" not in opened
    assert store.remembered == []
    why = only_finding(result)["unknown"]
    assert "/etc/shadow" in why
    assert any("odd-disk" in w and "/etc/shadow" in w for w in result.warnings)


def test_reported_backing_store_on_a_device_is_unknown(tmp_path, scan_fleet, store, policy):
    top = scan_fleet.disk_files["approved-0"]
    disk = (
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{top}'/>"
        f"<backingStore type='file'><format type='raw'/><source file='/dev/zero'/>"
        f"<backingStore/></backingStore><target dev='vda' bus='virtio'/></disk>"
    )
    uri = f"test://{host_file(tmp_path / 'hv-dev.xml', disk)}"
    result = Sweep(store, policy, actor="t", options=NO_INSPECT).run([uri])
    assert "unknown" in only_finding(result)


def test_reported_backing_store_inside_is_trusted_and_hashed(tmp_path, scan_fleet, store, policy):
    top = scan_fleet.disk_files["approved-0"]
    disk = (
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{top}'/>"
        f"<backingStore type='file'><format type='qcow2'/><source file='{scan_fleet.approved}'/>"
        f"<backingStore/></backingStore><target dev='vda' bus='virtio'/></disk>"
    )
    pool = (
        f"<pool type='dir'><name>t</name><uuid>3b0c3c2e-7a4f-4c55-9e7d-0000000000ff</uuid>"
        f"<target><path>{scan_fleet.approved.parent}</path></target></pool>"
    )
    path = host_file(tmp_path / "hv-ok.xml", disk)
    path.write_text(path.read_text().replace("</node>", pool + "</node>"))
    result = Sweep(store, policy, actor="t", options=NO_INSPECT).run([f"test://{path}"])
    assert result.findings == []
    assert result.warnings == []
    (vm,) = result.vms
    assert vm.disks[0].chain[-1].digest == scan_fleet.approved_digest


def clone_disk(top: Path) -> str:
    """A linked clone whose chain the sweep reads from the image headers (a shut-off VM's)."""
    return (
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{top}'/><target dev='vda' bus='virtio'/></disk>"
    )


@pytest.fixture
def outside(tmp_path, images, scan_fleet) -> tuple[Path, Path]:
    """(clone, template): an approved template's copy in a directory that is no pool, and a
    linked clone of it in another such directory."""
    tpl_dir = tmp_path / "golden"
    tpl_dir.mkdir()
    template = tpl_dir / "approved-base.qcow2"
    template.write_bytes(scan_fleet.approved.read_bytes())
    return images.clone("elsewhere/web.qcow2", str(template)), template


def test_backing_file_beside_a_disk_is_not_allowed(tmp_path, images, store, policy, opened):
    """Defining a disk must not make its directory readable: the tenant's disk at
    dir/evil.qcow2 names dir/secret.img (a host file) as its backing file."""
    secret = images.base("secret", b"host secret " * 1000)  # in templates/, no pool here
    evil = images.clone("templates/evil.qcow2", str(secret))
    uri = f"test://{host_file(tmp_path / 'hv-evil.xml', clone_disk(evil))}"
    result = Sweep(store, policy, actor="t", options=NO_INSPECT).run([uri])
    assert str(secret) not in opened and store.remembered == []
    why = only_finding(result)["unknown"]
    assert "outside allowed directories" in why and str(secret) in why
    (warning,) = [w for w in result.warnings if "odd-disk" in w]
    assert "--images" in warning and "template approve" in warning  # which option fixes it


def test_an_approved_templates_directory_is_allowed(tmp_path, outside, store, policy):
    clone, template = outside
    uri = f"test://{host_file(tmp_path / 'hv-tpl.xml', clone_disk(clone))}"
    before = Sweep(store, policy, actor="t", options=NO_INSPECT).run([uri])
    assert "outside allowed directories" in only_finding(before)["unknown"]
    # `vmwarden template approve` records the path: its directory now counts
    store.approve_template("golden", digest_file(template), str(template), {}, "admin")
    after = Sweep(store, policy, actor="t", options=NO_INSPECT).run([uri])
    assert after.findings == []
    (vm,) = after.vms
    assert vm.disks[0].root.path == str(template)


def test_images_option_allows_a_directory(tmp_path, outside, store, policy):
    clone, template = outside
    uri = f"test://{host_file(tmp_path / 'hv-img.xml', clone_disk(clone))}"
    options = SweepOptions(images_dirs=[template.parent], inspect=NO_INSPECT.inspect)
    result = Sweep(store, policy, actor="t", options=options).run([uri])
    assert [f.rule for f in result.findings] == []
