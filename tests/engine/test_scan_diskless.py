"""#10.9 through a sweep: a diskless (PXE) VM and a VM with only a cdrom are not judged by
guest-content rules (they were quarantined as "forbidden-software: unknown=not inspected"),
and a ``not-inspected`` rule reports each with its reason. Real test-driver domains, real
sweep with inspection on, real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.test_scan_lineage import host_file
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.policy import parse_policy
from vmwarden.store import Store

POLICY = """version: 1
rules:
  - name: forbidden-software
    resource: vm
    severity: high
    filters: [{type: package, installed: [telnetd]}]
  - {name: blind-spot, resource: vm, severity: low, filters: [not-inspected]}
"""
CDROM = (
    "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
    "<target dev='hdc' bus='ide'/><readonly/></disk>"
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as opened_store:
        yield opened_store


@pytest.mark.parametrize(
    ("devices", "detail"),
    [
        ("", "no disk to inspect (diskless or network boot)"),
        (CDROM, "no disk to inspect, only cdrom"),
    ],
    ids=["pxe", "cdrom-only"],
)
def test_vm_with_nothing_to_inspect_is_reported_not_judged(tmp_path, store, devices, detail):
    uri = f"test://{host_file(tmp_path / 'hv.xml', devices, name='netboot')}"
    options = SweepOptions(inspect=InspectionOptions(enabled=True))
    result = Sweep(store, parse_policy(POLICY, source="p.yaml"), actor="t", options=options).run(
        [uri]
    )
    (vm,) = result.vms
    assert vm.guest is None
    found = {f.rule: f.evidence for f in result.findings}
    assert "forbidden-software" not in found
    assert found["blind-spot"] == {"reason": "nothing-to-inspect", "detail": detail}


def test_vm_whose_disk_is_missing_stays_unknown(tmp_path, store):
    disk = (
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{tmp_path / 'gone.qcow2'}'/><target dev='vda' bus='virtio'/></disk>"
    )
    uri = f"test://{host_file(tmp_path / 'hv.xml', disk, name='lost')}"
    options = SweepOptions(inspect=InspectionOptions(enabled=True))
    result = Sweep(store, parse_policy(POLICY, source="p.yaml"), actor="t", options=options).run(
        [uri]
    )
    found = {f.rule: f.evidence for f in result.findings}
    assert found["forbidden-software"] == {"unknown": "not inspected"}
    assert found["blind-spot"]["reason"] == "unreadable"
    assert "disk image not found" in found["blind-spot"]["detail"]
