"""vSphere actions (#13.6) against vcsim, checked through vCenter itself (pyvmomi, not
vmwarden): suspend/resume, shutdown (power off when no VMware Tools run: vcsim's VMs never
run Tools), destroy = power off (the VM stays), snapshot, custom-attribute metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim

from tests.connectors.vsphere.conftest import Vcsim, start_vcsim
from tests.connectors.vsphere.vcsim_ops import admin, vm_named
from vmwarden.connectors.base import open_connector
from vmwarden.connectors.vsphere.connection import VsphereConnector
from vmwarden.errors import ConnectorError, DomainGoneError
from vmwarden.model.vm import VmMeta


@pytest.fixture
def conn(vcsim: Vcsim, vsphere_password: str) -> Iterator[VsphereConnector]:
    with open_connector(vcsim.uri()) as c:
        assert isinstance(c, VsphereConnector)
        yield c


def power(sim: Vcsim, name: str) -> str:
    with admin(sim) as content:
        return str(vm_named(content, name).runtime.powerState)


def events_of(sim: Vcsim, name: str) -> list[str]:
    """The kinds of vCenter events about VM ``name``, oldest first."""
    with admin(sim) as content:
        vm = vm_named(content, name)
        spec = vim.event.EventFilterSpec(
            entity=vim.event.EventFilterSpec.ByEntity(entity=vm, recursion="self")
        )
        found = content.eventManager.QueryEvents(filter=spec) or []
        return [type(e).__name__.rsplit(".", 1)[-1] for e in sorted(found, key=lambda e: e.key)]


def test_pause_suspends_and_resume_powers_on_again(vcsim: Vcsim, conn: VsphereConnector) -> None:
    vm_id = conn.lookup("DC0_H0_VM0").id
    conn.pause(vm_id)
    assert power(vcsim, "DC0_H0_VM0") == "suspended"
    conn.pause(vm_id)  # already suspended: no call (vCenter would refuse InvalidPowerState)
    assert power(vcsim, "DC0_H0_VM0") == "suspended"
    conn.resume(vm_id)
    assert power(vcsim, "DC0_H0_VM0") == "poweredOn"


def test_shutdown_without_tools_powers_off_and_destroy_keeps_the_vm(
    vcsim: Vcsim, conn: VsphereConnector
) -> None:
    vm_id = conn.lookup("DC0_H0_VM1").id
    conn.shutdown(vm_id)
    assert power(vcsim, "DC0_H0_VM1") == "poweredOff"
    kinds = events_of(vcsim, "DC0_H0_VM1")
    assert "VmPoweredOffEvent" in kinds and "VmGuestShutdownEvent" not in kinds
    conn.shutdown(vm_id)  # off already: left alone, no error
    other = conn.lookup("DC0_C0_RP0_VM0").id
    conn.destroy(other)
    assert power(vcsim, "DC0_C0_RP0_VM0") == "poweredOff"
    assert conn.lookup(other).id == other  # powered off, never deleted
    conn.destroy(other)


def test_snapshot_returns_the_snapshot_vcenter_made(vcsim: Vcsim, conn: VsphereConnector) -> None:
    vm_id = conn.lookup("DC0_C0_RP0_VM1").id
    snap_id = conn.snapshot(vm_id, "vmwarden-evidence", "rule forbidden-software")
    with admin(vcsim) as content:
        vm = vm_named(content, "DC0_C0_RP0_VM1")
        (root,) = vm.snapshot.rootSnapshotList
        assert (root.name, root.description) == ("vmwarden-evidence", "rule forbidden-software")
        assert root.snapshot._moId == snap_id


def test_metadata_is_custom_attributes_on_the_vm(vcsim: Vcsim, conn: VsphereConnector) -> None:
    vm_id = conn.lookup("DC0_C0_RP0_VM1").id
    meta = VmMeta(owner="alice", classification="pci", template="debian12-base",
                  registered=False, tags={"ticket": "IR-7", "odd": "<b>&'\""})  # fmt: skip
    conn.set_metadata(vm_id, meta)
    with admin(vcsim) as content:
        names = {f.key: f.name for f in content.customFieldsManager.field}
        vm = vm_named(content, "DC0_C0_RP0_VM1")
        attrs: dict[str, Any] = {names[v.key]: v.value for v in vm.customValue if v.value}
    assert attrs == {
        "vmwarden.owner": "alice",
        "vmwarden.classification": "pci",
        "vmwarden.template": "debian12-base",
        "vmwarden.registered": "no",
        "vmwarden.tag.ticket": "IR-7",
        "vmwarden.tag.odd": "<b>&'\"",
    }
    assert conn.get_metadata(vm_id) == meta and conn.lookup(vm_id).meta == meta
    conn.set_metadata(vm_id, VmMeta(owner="bob"))  # the rest, tags included, cleared
    assert conn.get_metadata(vm_id) == VmMeta(owner="bob")


def test_an_unknown_or_closed_target_is_a_clear_error(conn: VsphereConnector) -> None:
    with pytest.raises(DomainGoneError, match="no VM 'vmw-v2-nope'"):
        conn.pause("vmw-v2-nope")
    conn.close()
    with pytest.raises(ConnectorError, match="closed"):
        conn.snapshot("DC0_H0_VM0", "s", "d")


def test_policy_actions_run_on_vsphere_through_scan_enforce(vcsim: Vcsim, tmp_path: Path) -> None:
    """A rule's snapshot, tag and pause through ``vmwarden scan --enforce`` (the CLI in a
    subprocess): each lands in vCenter; a second sweep changes nothing (the tag is there,
    the VM is suspended already)."""
    name = "DC0_H0_VM0"
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\nrules:\n"
        "  - name: miner\n    resource: vm\n    severity: critical\n"
        f"    filters: [{{type: value, key: name, op: eq, value: {name}}}]\n"
        "    actions: [snapshot, {type: tag, key: incident, value: IR-9}, pause]\n"
    )
    cmd = [
        str(Path(sys.executable).with_name("vmwarden")),
        "scan",
        "-c",
        vcsim.uri(),
        "-p",
        str(policy),
        "--db",
        f"sqlite:///{tmp_path / 'a.db'}",
        "--enforce",
        "--format",
        "json",
    ]
    env = {**os.environ, "VMWARDEN_VSPHERE_PASSWORD": vcsim.password}
    ran = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert ran.returncode == 0, ran.stderr
    acted = {a["action"]: a["status"] for a in json.loads(ran.stdout)["actions"]}
    assert acted == {"snapshot": "done", "tag": "done", "pause": "done"}, ran.stdout
    assert power(vcsim, name) == "suspended"
    with admin(vcsim) as content:
        vm = vm_named(content, name)
        names = {f.key: f.name for f in content.customFieldsManager.field}
        attrs = {names[v.key]: v.value for v in vm.customValue if v.value}
        assert attrs.get("vmwarden.tag.incident") == "IR-9"
        assert [s.name.startswith("vmwarden-miner-") for s in vm.snapshot.rootSnapshotList] == [
            True
        ]
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                           check=False)  # fmt: skip
    statuses = {a["action"]: a["status"] for a in json.loads(again.stdout)["actions"]}
    assert statuses["tag"] == "noop" and statuses["pause"] == "noop"


def test_a_datacenter_uri_never_acts_on_a_vm_outside_it(vsphere_password: str) -> None:
    """``vsphere://…/DC1``: a VM of DC0 is not found by its instanceUuid nor by its name
    (vCenter's FindByUuid is scoped to the datacenter), a VM of DC1 is."""
    proc, sim = start_vcsim("-dc", "2")
    try:
        with admin(sim) as content:
            outside = vm_named(content, "DC0_H0_VM0").config.instanceUuid
            inside = vm_named(content, "DC1_H0_VM0").config.instanceUuid
        with open_connector(sim.uri(path="/DC1")) as conn:
            for target in (outside, "DC0_H0_VM0"):
                with pytest.raises(DomainGoneError):
                    conn.snapshot(target, "s", "d")
            assert conn.snapshot(inside, "s", "d").startswith("snapshot-")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
