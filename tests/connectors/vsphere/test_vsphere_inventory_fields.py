"""vSphere inventory completeness (#13.2), against vcsim: cluster and datacenter, portgroup
VLANs (distributed and standard), connected/startConnected, thin/thick and encrypted disks,
templates as templates, datastores' orphaned VMDKs (as images the ``orphaned`` rule finds),
tags through the REST API, creation and power-off times (dormancy).

vcsim 0.24 limits stated where a test meets them: it leaves ``config.createDate`` unset, and
it stamps every event with the moment it happens (``EventManager.PostEvent`` and each task
set ``CreatedTime = time.Now()``), so "powered off long ago" is tested through the event
path with the judging clock 40 days ahead instead of an event dated in the past.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.connectors.vsphere.conftest import Vcsim
from tests.connectors.vsphere.vcsim_ops import admin, power_off, vm_named
from vmwarden.connectors.base import open_connector
from vmwarden.connectors.vsphere.connection import VsphereConnector
from vmwarden.connectors.vsphere.tags import read_tags
from vmwarden.connectors.vsphere.uri import VsphereTarget
from vmwarden.engine.images import classify, collect_images
from vmwarden.model import Estate, State
from vmwarden.policy.context import Context
from vmwarden.policy.loader import load_policy

ORPHAN = "[LocalDS_0] vmw-v4-lost/lost.vmdk"


@pytest.fixture
def conn(vcsim: Vcsim, vsphere_password: str) -> Iterator[VsphereConnector]:
    with open_connector(vcsim.uri()) as c:
        assert isinstance(c, VsphereConnector)
        yield c


def _edit_device(vm: Any, device: Any) -> None:
    change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=device)
    WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))


def _device(vm: Any, kind: type) -> Any:
    return next(d for d in vm.config.hardware.device if isinstance(d, kind))


def test_each_vm_has_its_hosts_cluster_and_datacenter(vcsim: Vcsim, conn: VsphereConnector) -> None:
    with admin(vcsim) as content:
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.VirtualMachine], True
        )
        truth = {}
        for vm in view.view:
            parent = vm.runtime.host.parent
            cluster = parent.name if isinstance(parent, vim.ClusterComputeResource) else None
            truth[vm.name] = (cluster, "DC0")
    got = {vm.name: (vm.cluster, vm.datacenter) for vm in conn.inventory().vms}
    assert got == truth
    assert {c for c, _ in got.values()} == {None, "DC0_C0"}  # standalone and clustered


def test_a_datacenter_uri_names_its_datacenter(vcsim: Vcsim, vsphere_password: str) -> None:
    """A view rooted at a datacenter does not hold the datacenter itself: its name comes
    from the URI's path, never left unknown."""
    with open_connector(vcsim.uri(path="/DC0")) as c:
        vms = c.inventory().vms
    assert vms and {vm.datacenter for vm in vms} == {"DC0"}
    assert {vm.cluster for vm in vms} == {None, "DC0_C0"}


def test_vlans_come_from_the_portgroups_config(vcsim: Vcsim, conn: VsphereConnector) -> None:
    """A DVPG's VLAN is its defaultPortConfig's; a standard portgroup's is the ``vlanId`` of
    its spec on the VM's host (added through the host's network system, as an admin does)."""
    with admin(vcsim) as content:
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.dvs.DistributedVirtualPortgroup], True
        )
        pg = next(p for p in view.view if p.name == "DC0_DVPG0")
        spec = vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
            name=pg.config.name,  # vcsim's reconfigure replaces every field of the config
            numPorts=pg.config.numPorts,
            type=pg.config.type,
            defaultPortConfig=vim.dvs.VmwareDistributedVirtualSwitch.VmwarePortConfigPolicy(
                vlan=vim.dvs.VmwareDistributedVirtualSwitch.VlanIdSpec(vlanId=120, inherited=False)
            ),
        )
        WaitForTask(pg.ReconfigureDVPortgroup_Task(spec=spec))
        vm = vm_named(content, "DC0_H0_VM1")
        host = vm.runtime.host
        host.configManager.networkSystem.AddPortGroup(
            portgrp=vim.host.PortGroup.Specification(
                name="vmw-v4-vlan42", vlanId=42, vswitchName="vSwitch0",
                policy=vim.host.NetworkPolicy(),
            )
        )  # fmt: skip
        nic = _device(vm, vim.vm.device.VirtualEthernetCard)
        net = next(
            n for n in content.rootFolder.childEntity[0].network if n.name == "vmw-v4-vlan42"
        )
        nic.backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
            deviceName="vmw-v4-vlan42", network=net
        )
        _edit_device(vm, nic)
    vms = {vm.name: vm for vm in conn.inventory().vms}
    dv = vms["DC0_H0_VM0"].nics[0]
    assert (dv.type, dv.network, dv.vlan) == ("vsphere-dvpg", "DC0_DVPG0", [120])
    std = vms["DC0_H0_VM1"].nics[0]
    assert (std.type, std.network, std.vlan) == ("vsphere-portgroup", "vmw-v4-vlan42", [42])


def test_connected_and_start_connected_are_kept_apart(vcsim: Vcsim, conn: VsphereConnector) -> None:
    with admin(vcsim) as content:
        vm = vm_named(content, "DC0_C0_RP0_VM0")
        power_off(vm)
        nic = _device(vm, vim.vm.device.VirtualEthernetCard)
        nic.connectable = vim.vm.device.VirtualDevice.ConnectInfo(
            connected=False, startConnected=False, allowGuestControl=False
        )
        _edit_device(vm, nic)
    vms = {vm.name: vm for vm in conn.inventory().vms}
    off = vms["DC0_C0_RP0_VM0"].nics[0]
    assert (off.connected, off.start_connected, off.link) == (False, False, "down")
    on = vms["DC0_H0_VM0"].nics[0]
    assert on.start_connected is True and on.link == "up"


def test_thin_thick_and_encrypted_disks(vcsim: Vcsim, conn: VsphereConnector) -> None:
    with admin(vcsim) as content:
        vm = vm_named(content, "DC0_C0_RP0_VM1")
        disk = _device(vm, vim.vm.device.VirtualDisk)
        disk.backing.thinProvisioned = False
        disk.backing.keyId = vim.encryption.CryptoKeyId(
            keyId="vmw-v4-key", providerId=vim.encryption.KeyProviderId(id="vmw-v4-kms")
        )
        _edit_device(vm, disk)
    vms = {vm.name: vm for vm in conn.inventory().vms}
    (thick,) = vms["DC0_C0_RP0_VM1"].disks
    assert (thick.thin, thick.encrypted) == (False, True)
    assert thick.source == "[LocalDS_0] DC0_C0_RP0_VM1/disk1.vmdk"
    (thin,) = vms["DC0_H0_VM0"].disks
    assert (thin.thin, thin.encrypted) == (True, False)
    # the datastore browse gave the descriptor's modification time
    assert thin.chain[0].mtime is not None and thin.chain[0].mtime.tzinfo is not None


def test_a_template_is_inventoried_as_a_template(vcsim: Vcsim, conn: VsphereConnector) -> None:
    with admin(vcsim) as content:
        vm = vm_named(content, "DC0_H0_VM1")
        power_off(vm)
        vm.MarkAsTemplate()
    inv = conn.inventory()
    assert "DC0_H0_VM1" not in {vm.name for vm in inv.vms}
    (template,) = inv.templates
    assert (template.name, template.state, template.host) == (
        "DC0_H0_VM1", State.SHUTOFF, "DC0_H0",
    )  # fmt: skip
    assert template.disks[0].source == "[LocalDS_0] DC0_H0_VM1/disk1.vmdk"
    # a template's disk is in use: never an orphaned VMDK
    orphans = {v.path for p in inv.pools for v in p.volumes}
    assert template.disks[0].source not in orphans


def _make_orphan(content: Any) -> None:
    """A VMDK copied onto the datastore behind vCenter's back (how orphans come about):
    vcsim's datastores are real directories (``info.url``). vcsim's CreateVirtualDisk_Task
    reports its task entity with a type pyvmomi refuses, so the file is written directly."""
    ds = content.rootFolder.childEntity[0].datastore
    (local,) = [d for d in ds if d.name == "LocalDS_0"]
    folder = Path(local.info.url) / "vmw-v4-lost"
    folder.mkdir(exist_ok=True)
    (folder / "lost.vmdk").write_text(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        'createType="monolithicFlat"\nRW 2048 FLAT "lost-flat.vmdk" 0\n'
    )
    (folder / "lost-flat.vmdk").write_bytes(bytes(2048 * 512))


def test_an_unused_vmdk_is_an_orphaned_image(vcsim: Vcsim, conn: VsphereConnector) -> None:
    """A VMDK on a datastore that no VM or template uses is a volume of the datastore's pool;
    the engine classifies it ``orphaned`` as it does a forgotten libvirt image, and the
    ``orphaned`` filter matches it and nothing a VM uses."""
    with admin(vcsim) as content:
        _make_orphan(content)
    inv = conn.inventory()
    (pool,) = [p for p in inv.pools if p.name == "LocalDS_0"]
    assert pool.type == "vsphere-datastore"
    assert [v.path for v in pool.volumes] == [ORPHAN]
    assert pool.volumes[0].format == "vmdk" and pool.volumes[0].mtime is not None
    images = collect_images([inv], {})
    classify(images, {}, set())
    kinds = {img.path: img.kind for img in images}
    assert kinds[ORPHAN] == "orphaned"
    used = {d.source for vm in inv.vms for d in vm.disks}
    assert used and all(kinds[p] == "attached" for p in used)
    policy = _policy(
        "rules:\n  - {name: lost, resource: image, severity: low, filters: [orphaned]}\n"
    )
    ctx = Context(Estate(vms=inv.vms, images=images, catalog={}, now=datetime.now(UTC)), policy)
    matched = [i.path for i in images if policy.rules[0].filter.match(i, ctx).matched]
    assert matched == [ORPHAN]


def test_scan_reports_the_orphaned_vmdk_as_an_image_finding(vcsim: Vcsim, tmp_path: Path) -> None:
    """The same through ``vmwarden scan`` (real CLI, real store): a finding of resource
    ``image`` naming the VMDK, none for the VMs' own disks."""
    with admin(vcsim) as content:
        _make_orphan(content)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nquarantine: {network: quarantine}\n"
        "rules:\n  - {name: lost-vmdk, resource: image, severity: low, filters: [orphaned]}\n"
    )
    vmwarden = str(Path(sys.executable).with_name("vmwarden"))
    proc = subprocess.run(
        [vmwarden, "scan", "-c", vcsim.uri(), "-p", str(policy), "--no-inspect",
         "--db", f"sqlite:///{tmp_path / 'vmw.db'}", "--format", "json"],
        env={**os.environ, "VMWARDEN_VSPHERE_PASSWORD": vcsim.password},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    found = [(f["rule"], f["resource"], f["id"]) for f in out["findings"]]
    assert ("lost-vmdk", "image", ORPHAN) in found
    assert all(f["resource"] == "image" for f in out["findings"])
    assert len([f for f in out["findings"] if f["rule"] == "lost-vmdk"]) == 1


def _policy(rules: str) -> Any:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write("version: 1\nquarantine: {network: quarantine}\n" + rules)
    try:
        return load_policy(Path(f.name))
    finally:
        os.unlink(f.name)


def _rest(sim: Vcsim, method: str, path: str, body: Any = None, sid: str | None = None) -> Any:
    """The vAPI REST endpoint of the simulator, as an admin's script would call it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    req = urllib.request.Request(
        f"https://{sim.host}:{sim.port}/rest/com/vmware/cis{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    if sid is None:
        import base64

        basic = base64.b64encode(f"{sim.user}:{sim.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {basic}")
    else:
        req.add_header("vmware-api-session-id", sid)
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        raw = r.read()
    return json.loads(raw).get("value") if raw else None


def _tag(sim: Vcsim, sid: str, category: str, name: str, vm_moid: str) -> None:
    cats = _rest(sim, "GET", "/tagging/category", sid=sid) or []
    cat_id = next(
        (c for c in cats if _rest(sim, "GET", f"/tagging/category/id:{c}", sid=sid)["name"]
         == category), None,
    )  # fmt: skip
    if cat_id is None:
        cat_id = _rest(sim, "POST", "/tagging/category", {"create_spec": {
            "name": category, "cardinality": "SINGLE", "associable_types": []}}, sid)  # fmt: skip
    tag_id = _rest(sim, "POST", "/tagging/tag", {"create_spec": {
        "name": name, "category_id": cat_id, "description": ""}}, sid)  # fmt: skip
    _rest(sim, "POST", f"/tagging/tag-association/id:{tag_id}?~action=attach",
          {"object_id": {"id": vm_moid, "type": "VirtualMachine"}}, sid)  # fmt: skip


def test_tags_give_metadata_where_custom_attributes_do_not(
    vcsim: Vcsim, conn: VsphereConnector
) -> None:
    from tests.connectors.vsphere.vcsim_ops import set_attribute

    sid = str(_rest(vcsim, "POST", "/session"))
    with admin(vcsim) as content:
        a, b = vm_named(content, "DC0_H0_VM0"), vm_named(content, "DC0_C0_RP0_VM0")
        set_attribute(content, b, "vmwarden.owner", "alice")  # the attribute wins
        a_id, b_id = a._moId, b._moId
    _tag(vcsim, sid, "vmwarden.owner", "carol", a_id)
    _tag(vcsim, sid, "vmwarden.owner", "dave", b_id)
    _tag(vcsim, sid, "vmwarden.classification", "pci", a_id)
    _tag(vcsim, sid, "vmwarden.registered", "yes", a_id)
    _tag(vcsim, sid, "other.owner", "eve", a_id)  # not ours: ignored
    inv = conn.inventory()
    vms = {vm.name: vm for vm in inv.vms}
    meta = vms["DC0_H0_VM0"].meta
    assert (meta.owner, meta.classification, meta.registered) == ("carol", "pci", True)
    assert vms["DC0_C0_RP0_VM0"].meta.owner == "alice"
    assert vms["DC0_C0_RP0_VM1"].meta.owner is None
    assert not any("tags" in w for w in inv.warnings)
    # two values of one category on one VM: unknown, never one picked
    _tag(vcsim, sid, "vmwarden.classification", "internal", a_id)
    assert {vm.name: vm for vm in conn.inventory().vms}["DC0_H0_VM0"].meta.classification is None


def test_an_unreachable_tagging_api_is_a_warning_not_a_failure(vcsim: Vcsim) -> None:
    """Nothing listens on the port given: tags are unknown, said once, password not in it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    target = VsphereTarget(
        uri="vsphere://x", user="u", host="127.0.0.1", port=free, datacenter=None,
        insecure=True, password="vmw-v4-hunter2",
    )  # fmt: skip
    got = read_tags(target, timeout=5)
    assert got.by_vm == {} and got.warning and "tags not read" in got.warning
    assert "hunter2" not in got.warning


def test_dormant_fires_for_a_vm_powered_off_long_ago(vcsim: Vcsim, conn: VsphereConnector) -> None:
    """The VM's last VmPoweredOffEvent is its ``powered_off_at``; ``dormant`` reads it for a
    VM the store has no history of. vcsim dates events now, so the clock judging is 40 days
    ahead (see the module docstring); a running VM has no power-off time."""
    before = datetime.now(UTC) - timedelta(seconds=5)
    with admin(vcsim) as content:
        power_off(vm_named(content, "DC0_C0_RP0_VM1"))
    vms = {vm.name: vm for vm in conn.inventory().vms}
    off = vms["DC0_C0_RP0_VM1"]
    assert off.state is State.SHUTOFF
    assert off.powered_off_at is not None and off.powered_off_at >= before
    assert vms["DC0_H0_VM0"].powered_off_at is None
    # vcsim 0.24 does not set config.createDate: creation time is unknown, not invented
    assert off.created is None
    policy = _policy(
        "rules:\n  - {name: d, resource: vm, severity: low, filters: [{type: dormant, days: 30}]}\n"
    )
    rule = policy.rules[0]
    later = Estate(vms=list(vms.values()), images=[], catalog={},
                   now=datetime.now(UTC) + timedelta(days=40))  # fmt: skip
    verdict = rule.filter.match(off, Context(later, policy))
    assert verdict.matched and verdict.evidence["basis"] == "platform power-off time"
    today = Estate(vms=list(vms.values()), images=[], catalog={}, now=datetime.now(UTC))
    assert not rule.filter.match(off, Context(today, policy)).matched
    assert not rule.filter.match(vms["DC0_H0_VM0"], Context(later, policy)).matched


def test_a_datastore_that_cannot_be_browsed_is_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its storage gone (the directory vcsim serves it from, moved away): the sweep still
    lists every VM, says the datastore was not browsed, and claims no orphan there."""
    from tests.connectors.vsphere.conftest import start_vcsim

    proc, sim = start_vcsim()
    try:
        with admin(sim) as content:
            (ds,) = [
                d for d in content.rootFolder.childEntity[0].datastore if d.name == "LocalDS_0"
            ]
            where = Path(ds.info.url)
        where.rename(where.with_name(where.name + "-gone"))
        monkeypatch.setenv("VMWARDEN_VSPHERE_PASSWORD", sim.password)
        with open_connector(sim.uri()) as c:
            inv = c.inventory()
        assert len(inv.vms) == 4
        assert any(w.startswith("datastore LocalDS_0 not browsed") for w in inv.warnings)
        assert not [v for p in inv.pools for v in p.volumes]
        where.with_name(where.name + "-gone").rename(where)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
