"""Lineage edge cases a sweep must survive: block devices, chains libvirt reports itself.

libvirt reports ``<backingStore>`` for running VMs, and the test driver echoes whatever the
host file says, so these are real libvirt answers, not mocks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.engine.test_scan_fleet import NO_INSPECT
from vmwarden.engine.scan import Sweep
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
