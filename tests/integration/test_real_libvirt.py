"""End to end on a real libvirtd + QEMU: scan --enforce quarantines, release restores exactly,
and a crash between journal steps is repaired by the next run."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import libvirt
import pytest

from tests.integration.conftest import (
    ISOLATED,
    URI,
    RealVMs,
    both,
    make_base,
    make_clone,
    vmwarden,
)
from vmwarden.inspect.digest import digest_file

pytestmark = pytest.mark.libvirtd

POLICY = """\
version: 1
templates:
  - name: approved-base
    digest: {digest}
zones:
  internal: {{networks: [prod], classifications: [internal]}}
  pci: {{networks: [pci], classifications: [pci]}}
quarantine: {{network: quarantine, link_down: true}}
rules:
  - name: unapproved-template
    resource: vm
    severity: high
    filters: [not-approved-template]
    actions: [quarantine]
  - name: outside-zone
    resource: vm
    severity: high
    filters: [outside-zone]
    actions: [quarantine]
"""


def assert_quarantined(dom: libvirt.virDomain) -> None:
    """Every NIC on the quarantine network, link down, live and persistent."""
    for view in both(dom):
        assert all(n == ISOLATED for n in view.values()), view


def enforce_scan(
    estate: dict, *extra: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``vmwarden scan --enforce`` of the real host into the estate's store, JSON out."""
    return vmwarden(
        "scan", "-c", URI, "-p", str(estate["policy"]), "--enforce", "--format", "json",
        "--db", estate["db"], *extra, env=env, check=check,
    )  # fmt: skip


@pytest.fixture
def estate(real_vms: RealVMs, image_dir: Path, tmp_path: Path) -> dict:
    approved = make_base(image_dir / "approved-base.qcow2")
    # A different size: empty qcow2 files of one size are byte-identical, hence the same digest.
    unapproved = make_base(image_dir / "random-download.qcow2", size="24M")
    good = real_vms.start(
        "vmw-t-approved",
        make_clone(approved, image_dir / "approved-clone.qcow2"),
        [{"mac": "52:54:00:7e:00:01", "network": "prod"}],
        {"owner": "alice", "classification": "internal", "registered": "yes"},
    )
    rogue = real_vms.start(
        "vmw-t-rogue",
        make_clone(unapproved, image_dir / "rogue-clone.qcow2"),
        [
            {"mac": "52:54:00:7e:00:02", "network": "prod"},
            {"mac": "52:54:00:7e:00:03", "network": "prod", "link": "down"},
        ],
        {"owner": "mallory", "classification": "internal"},
    )
    zoned = real_vms.start(
        "vmw-t-pci-on-prod",
        make_clone(approved, image_dir / "pci-clone.qcow2"),
        [{"mac": "52:54:00:7e:00:04", "network": "prod"}],
        {"owner": "bob", "classification": "pci", "registered": "yes"},
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(digest=digest_file(approved)))
    return {
        "good": good,
        "rogue": rogue,
        "zoned": zoned,
        "policy": policy,
        "db": f"sqlite:///{tmp_path / 'vmwarden.db'}",
    }


def test_scan_enforce_quarantines_rogues_and_release_restores(estate: dict) -> None:
    good, rogue, zoned = estate["good"], estate["rogue"], estate["zoned"]
    before = {d.name(): both(d) for d in (good, rogue, zoned)}

    result = json.loads(enforce_scan(estate, "--actor", "ci").stdout)
    ours = {(f["name"], f["rule"]) for f in result["findings"] if f["name"].startswith("vmw-t-")}
    # The disks are blank qcow2 files: read (running VMs too, read-only), nothing to see inside.
    blank = {(n, "uninspectable") for n in ("vmw-t-approved", "vmw-t-rogue", "vmw-t-pci-on-prod")}
    assert (
        ours
        == {
            ("vmw-t-rogue", "unapproved-template"),
            ("vmw-t-pci-on-prod", "outside-zone"),
        }
        | blank
    )
    done = {
        a["name"]
        for a in result["actions"]
        if a["action"] == "quarantine" and a["status"] == "done"
    }
    assert {"vmw-t-rogue", "vmw-t-pci-on-prod"} <= done

    for dom in (rogue, zoned):
        assert_quarantined(dom)
    assert both(good) == before["vmw-t-approved"]  # untouched

    # A second enforce sweep changes nothing and journals nothing new.
    again = json.loads(enforce_scan(estate).stdout)
    statuses = {a["name"]: a["status"] for a in again["actions"] if a["name"].startswith("vmw-t-")}
    assert statuses == {"vmw-t-rogue": "noop", "vmw-t-pci-on-prod": "noop"}

    # Release needs a reason, then restores network AND link state exactly (NIC 2 stays down).
    refused = vmwarden("release", "vmw-t-rogue", "-c", URI, "--db", estate["db"], check=False)
    assert refused.returncode != 0 and "--reason" in refused.stderr
    vmwarden(
        "release",
        "vmw-t-rogue",
        "-c",
        URI,
        "--db",
        estate["db"],
        "--reason",
        "rebuilt",
        "--actor",
        "ops",
    )
    assert both(rogue) == before["vmw-t-rogue"]
    assert both(rogue)[0]["52:54:00:7e:00:03"]["link"] == "down"

    audit = json.loads(vmwarden("report", "audit", "--format", "json", "--db", estate["db"]).stdout)
    release = next(a for a in audit if a["action"] == "release" and a["name"] == "vmw-t-rogue")
    assert (release["actor"], release["reason"], release["status"]) == ("ops", "rebuilt", "done")


def test_crash_between_journal_steps_is_repaired(estate: dict) -> None:
    rogue = estate["rogue"]
    original = both(rogue)
    # Die right after the rogue NIC 1 live change was journaled. Plan order is severity, rule,
    # id: the pci VM (outside-zone) passes this point first, the rogue second.
    crashed = enforce_scan(estate, env={"VMWARDEN_FAULT": "quarantine.live:2"}, check=False)
    assert crashed.returncode == 137
    live, config = both(rogue)
    assert sorted(n["network"] for n in live.values()) == ["prod", "quarantine"]
    assert config == original[1]
    db_path = estate["db"].removeprefix("sqlite:///")
    with sqlite3.connect(db_path) as db:
        pending = db.execute(
            "select count(*) from journal where action='quarantine' and status='pending'"
        ).fetchone()
    assert pending[0] == 1

    enforce_scan(estate)  # the next run repairs from the journal's recorded originals
    assert_quarantined(rogue)
    with sqlite3.connect(db_path) as db:
        statuses = [
            r[0] for r in db.execute("select status from journal where action='quarantine'")
        ]
    assert "pending" not in statuses

    vmwarden("release", "vmw-t-rogue", "-c", URI, "--db", estate["db"], "--reason", "repaired")
    assert both(rogue) == original  # originals were not overwritten by the half-done state
