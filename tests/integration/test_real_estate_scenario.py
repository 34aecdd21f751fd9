"""Issue 10 "Done means", on a real libvirtd + QEMU: the estate of items 1-4 end to end.

A golden template outside any libvirt pool (approved with ``template approve``, which makes its
directory one backing files may be read from), an approved linked clone running, a rogue VM,
a pci VM on the prod network, a VM the power-on gate holds, and an admin who fixes a NIC while
its VM is quarantined. Everything goes through the real CLI (``scan``, ``quarantine``,
``release``, ``watch``) as an operator runs it; the test checks libvirt through its own
connection and the store. Every VM is ``vmw-e-*``; the daemon watches only those.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from lxml import etree

from tests.integration.conftest import (
    ISOLATED,
    URI,
    RealVMs,
    both,
    make_base,
    make_clone,
    vmwarden,
)
from tests.integration.test_watch_real import META_NS, Daemon, isolated, poll
from vmwarden.inspect.digest import digest_file
from vmwarden.store import Store

pytestmark = pytest.mark.libvirtd

POLICY = """\
version: 1
templates:
  - name: golden
    digest: {digest}
zones:
  internal: {{networks: [prod], classifications: [internal]}}
  pci: {{networks: [pci], classifications: [pci]}}
quarantine: {{network: quarantine, link_down: true}}
gate:
  hold: [unregistered]
rules:
  - name: unapproved-template
    resource: vm
    severity: high
    filters: [not-approved-template]
    actions: [quarantine]
  - name: outside-zone
    resource: vm
    severity: critical
    filters: [outside-zone]
    actions: [quarantine]
"""
SAME_DAEMON = "qemu+unix:///system"  # another spelling of URI: the same libvirtd
UP = {"network": "prod", "link": "up"}
INTERNAL = {"owner": "alice", "classification": "internal", "registered": "yes"}
PCI = {"owner": "bob", "classification": "pci", "registered": "yes"}


@pytest.fixture
def golden() -> Iterator[Path]:
    """The golden template, in a directory that is no libvirt pool (QEMU can traverse it)."""
    where = Path(f"/var/lib/vmw-e-golden-{uuid.uuid4().hex[:8]}")
    where.mkdir(mode=0o755)
    yield make_base(where / "golden.qcow2")
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def estate(golden: Path, image_dir: Path, tmp_path: Path, real_vms: RealVMs) -> dict[str, Any]:
    db = f"sqlite:///{tmp_path / 'vmwarden.db'}"
    vmwarden("template", "approve", str(golden), "--name", "golden", "--db", db)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(digest=digest_file(golden)))
    return {"db": db, "policy": policy, "golden": golden, "dir": image_dir, "vms": real_vms}


def scan(estate: dict[str, Any], *uris: str) -> dict[str, Any]:
    out = vmwarden(
        "scan", *(a for u in (uris or (URI,)) for a in ("-c", u)), "-p", str(estate["policy"]),
        "--enforce", "--no-inspect", "--format", "json", "--db", estate["db"], "--actor", "ci",
    )  # fmt: skip
    return json.loads(out.stdout)


def ours(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (f["name"], f["rule"]): f["evidence"]
        for f in result["findings"]
        if f["name"].startswith("vmw-e-")
    }


def clone(estate: dict[str, Any], name: str) -> Path:
    return make_clone(estate["golden"], estate["dir"] / f"{name}.qcow2")


def test_quarantined_vms_are_judged_by_the_nics_they_had(estate: dict[str, Any]) -> None:
    vms: RealVMs = estate["vms"]
    mac_ok, mac_rogue, mac_pci = "52:54:00:e1:00:01", "52:54:00:e1:00:02", "52:54:00:e1:00:03"
    approved = vms.start(
        "vmw-e-approved", clone(estate, "approved"), [{"mac": mac_ok, "network": "prod"}], INTERNAL
    )
    rogue = vms.start(
        "vmw-e-rogue",
        make_base(estate["dir"] / "download.qcow2", size="24M"),  # a stray image: no template
        [{"mac": mac_rogue, "network": "prod"}],
        INTERNAL,
    )
    pci = vms.start("vmw-e-pci", clone(estate, "pci"), [{"mac": mac_pci, "network": "prod"}], PCI)

    # two URIs reaching this one daemon (#10.2): each VM is judged (and acted on) once
    first = scan(estate, URI, SAME_DAEMON)
    names = [vm["name"] for vm in first["vms"] if vm["name"].startswith("vmw-e-")]
    assert sorted(names) == ["vmw-e-approved", "vmw-e-pci", "vmw-e-rogue"]
    assert any(SAME_DAEMON in w and "counted once" in w for w in first["warnings"])
    # the linked clone of the golden template outside any pool is approved (#10.3)
    found = ours(first)
    assert set(found) == {("vmw-e-rogue", "unapproved-template"), ("vmw-e-pci", "outside-zone")}
    assert found[("vmw-e-pci", "outside-zone")]["networks"] == ["prod"]
    for dom in (rogue, pci):
        assert isolated(dom)
    assert both(approved) == ({mac_ok: UP},) * 2

    # #10.1: the next sweep judges the NICs as they were before quarantine
    second = scan(estate)
    assert ours(second) == ours(first)  # no outside-zone on 'quarantine'; pci keeps 'prod'
    statuses = {a["name"]: a["status"] for a in second["actions"] if a["name"].startswith("vmw-e-")}
    assert statuses == {"vmw-e-rogue": "noop", "vmw-e-pci": "noop"}
    with Store.open(estate["db"]) as store:
        (nic,) = store.get_vm("vmw-e-pci")["nics"]
    assert (nic["network"], nic["link"]) == ("quarantine", "down")  # where it is
    assert (nic["quarantined_from"]["network"], nic["quarantined_from"]["link"]) == ("prod", "up")


def admin_moves_persistent_nic(dom: libvirt.virDomain, mac: str, network: str) -> None:
    """What ``virsh update-device --config`` does: the persistent NIC on another network."""
    root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    (iface,) = [
        i for i in root.iterfind("devices/interface") if i.find("mac").get("address") == mac
    ]
    iface.find("source").set("network", network)
    dom.updateDeviceFlags(
        etree.tostring(iface, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_CONFIG
    )


def release(estate: dict[str, Any], *extra: str) -> Any:
    return vmwarden(
        "release", "vmw-e-fixed", "-c", URI, "--db", estate["db"], "--reason", "moved to pci",
        *extra, check=False,
    )  # fmt: skip


def test_release_does_not_overwrite_an_admin_fix_made_during_quarantine(
    estate: dict[str, Any],
) -> None:
    vms: RealVMs = estate["vms"]
    mac = "52:54:00:e1:00:10"
    dom = vms.start("vmw-e-fixed", clone(estate, "fixed"), [{"mac": mac, "network": "prod"}], PCI)
    before = both(dom)
    db = ("--db", estate["db"])
    vmwarden("quarantine", "vmw-e-fixed", "-c", URI, "--network", "quarantine", *db)
    assert isolated(dom)
    admin_moves_persistent_nic(dom, mac, "pci")
    fixed = both(dom)
    assert fixed[1][mac] == {"network": "pci", "link": "down"}

    refused = release(estate)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert "changed during quarantine" in refused.stderr and mac in refused.stderr
    assert "is now network 'pci'" in refused.stderr and "--force" in refused.stderr
    assert both(dom) == fixed  # nothing touched: the fix stays, the VM stays isolated live

    forced = release(estate, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "overwritten (--force)" in forced.stdout
    assert both(dom) == before  # the pre-quarantine NICs, live and persistent

    # again, and this time the admin's fix is kept: live too, link up
    vmwarden("quarantine", "vmw-e-fixed", "-c", URI, "--network", "quarantine", *db)
    admin_moves_persistent_nic(dom, mac, "pci")
    kept = release(estate, "--keep-changes")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert both(dom) == ({mac: {"network": "pci", "link": "up"}},) * 2


def test_gate_releases_a_held_vm_once_it_passes(estate: dict[str, Any], tmp_path: Path) -> None:
    vms: RealVMs = estate["vms"]
    mac = "52:54:00:e1:00:20"
    meta = {"owner": "carol", "classification": "internal", "registered": "no"}
    dom = vms.define("vmw-e-late", clone(estate, "late"), [{"mac": mac, "network": "prod"}], meta)
    d = Daemon(estate["policy"], estate["db"], tmp_path / "watch.log", only="vmw-e-*")
    try:
        d.ready()
        poll(lambda: both(dom)[1][mac] == ISOLATED, timeout=30)  # isolated ahead of power-on
        dom.create()
        poll(lambda: isolated(dom), timeout=30)  # held: boots on quarantine
        flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG
        dom.setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT,
            "<vm><owner>carol</owner><classification>internal</classification>"
            "<registered>yes</registered></vm>",
            "vmwarden",
            META_NS,
            flags,
        )
        dom.destroy()
        dom.create()

        def released() -> list[Any]:
            with Store.open(estate["db"]) as store:
                return [
                    e
                    for e in store.journal_entries(vm_id=dom.UUIDString(), action="release")
                    if e.status == "done"
                ]

        # Judged on its quarantine NIC it was 'outside-zone' (a quarantining rule): never freed.
        (rel,) = poll(released, timeout=60, every=0.2)
        assert rel.actor == "vmwarden-gate" and rel.reason.startswith("automatic release: ")
        poll(lambda: both(dom) == ({mac: UP},) * 2, timeout=30)
        assert d.proc.poll() is None
    finally:
        d.stop()
