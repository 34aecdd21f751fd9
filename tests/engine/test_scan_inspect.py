"""A sweep that looks inside: clones sharing SSH host keys and a password hash, and a
forgotten (orphaned) image with an openssl older than the baseline and an OSV advisory.
Each is found, and nothing else. Real ext4 guests, real qcow2 clones, a real test driver."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.inspect.conftest import build_tree_image, qemu_img, write_guest_tree
from vmwarden.engine.fleetgen import FleetDisk, FleetNic, FleetVM, write_fleet
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.policy import parse_policy
from vmwarden.store import Store

VULNS = Path(__file__).resolve().parents[1] / "vulns" / "data"
POLICY = f"""\
version: 1
vulns: {VULNS}
rules:
  - {{name: shared-hash, resource: vm, severity: high, filters: [shared-password-hash]}}
  - {{name: shared-host-key, resource: vm, severity: high, filters: [duplicate-ssh-host-key]}}
  - name: stale-forgotten-image
    resource: image
    severity: medium
    filters: [orphaned, {{type: stale-patches, baseline: {{openssl: "3.0.11-1~deb12u2"}}}}]
  - name: vulnerable-forgotten-image
    resource: image
    severity: high
    filters: [orphaned, {{type: vulnerable, severity: high}}]
"""


def _unique_tree(src: Path, dst: Path) -> Path:
    """The same guest, but reinstalled: its own host keys, password hashes, newer openssl."""
    shutil.copytree(src, dst, symlinks=True)
    for key in (dst / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    subprocess.run(["ssh-keygen", "-A", "-f", str(dst)], check=True, capture_output=True)
    shadow = dst / "etc/shadow"
    lines = []
    for line in shadow.read_text().splitlines():
        name, pw, *rest = line.split(":")
        if pw.startswith("$"):
            pw = f"$6${name}unique$" + "A" * 86
        lines.append(":".join([name, pw, *rest]))
    shadow.write_text("\n".join(lines) + "\n")
    status = dst / "var/lib/dpkg/status"
    status.write_text(
        status.read_text().replace("Version: 3.0.2-0+deb12u1", "Version: 3.0.15-1~deb12u1")
    )
    return dst


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("inspect-estate")
    tree = root / "tree"
    write_guest_tree(tree)
    images = root / "images"
    images.mkdir()
    golden = build_tree_image(images, tree, "golden.qcow2")
    for name in ("clone-a", "clone-b"):
        qemu_img(
            "create", "-q", "-f", "qcow2", "-b", golden, "-F", "qcow2", images / f"{name}.qcow2"
        )
    build_tree_image(images, _unique_tree(tree, root / "tree2"), "unique.qcow2")
    forgotten = images / "forgotten"
    forgotten.mkdir()
    build_tree_image(forgotten, tree, "old-web.qcow2")  # nobody's disk, never patched
    vms = [
        FleetVM(
            uuid=f"5e1f0000-0000-4000-8000-00000000000{i}",
            name=name,
            state="shutoff" if i == 2 else "running",
            disks=[FleetDisk(str(images / f"{disk}.qcow2"))],
            nics=[FleetNic(f"52:54:00:5e:00:0{i}", "prod")],
        )
        for i, (name, disk) in enumerate(
            (("web-a", "clone-a"), ("web-b", "clone-b"), ("db", "unique"))
        )
    ]
    host = write_fleet(root / "hv1.xml", vms, networks=["prod", "quarantine"])
    with Store.open(f"sqlite:///{root / 'db.sqlite'}") as store:
        sweep = Sweep(
            store, parse_policy(POLICY), actor="t", options=SweepOptions(images_dirs=[images])
        )
        first = sweep.run([f"test://{host}"])
        second = sweep.run([f"test://{host}"])
    return {"first": first, "second": second, "forgotten": forgotten / "old-web.qcow2"}


def test_each_planted_problem_is_found_and_nothing_else(estate: dict) -> None:
    found = {(f.rule, f.name) for f in estate["first"].findings}
    assert found == {
        ("shared-hash", "web-a"),
        ("shared-hash", "web-b"),
        ("shared-host-key", "web-a"),
        ("shared-host-key", "web-b"),
        ("stale-forgotten-image", "old-web.qcow2"),
        ("vulnerable-forgotten-image", "old-web.qcow2"),
    }


def test_evidence_names_the_shared_values_and_the_stale_package(estate: dict) -> None:
    by = {(f.rule, f.name): f for f in estate["first"].findings}
    assert by[("shared-host-key", "web-a")].evidence == by[("shared-host-key", "web-b")].evidence
    stale = by[("stale-forgotten-image", "old-web.qcow2")].evidence
    assert "openssl" in str(stale) and "3.0.2-0+deb12u1" in str(stale)
    vuln = by[("vulnerable-forgotten-image", "old-web.qcow2")].evidence
    assert "DSA-5532-1" in str(vuln)
    assert by[("stale-forgotten-image", "old-web.qcow2")].id == str(estate["forgotten"])


def test_every_disk_was_read_offline_including_the_shut_off_vm(estate: dict) -> None:
    vms = {vm.name: vm for vm in estate["first"].vms}
    assert {n: (vm.guest.os_name, vm.guest.os_version) for n, vm in vms.items()} == {
        "web-a": ("debian", "12"),
        "web-b": ("debian", "12"),
        "db": ("debian", "12"),
    }
    assert vms["db"].state.value == "shutoff"
    versions = {n: vm.guest.package_versions()["openssl"] for n, vm in vms.items()}
    assert versions == {
        "web-a": "3.0.2-0+deb12u1",
        "web-b": "3.0.2-0+deb12u1",
        "db": "3.0.15-1~deb12u1",
    }
    kinds = {Path(i.path).name: i.kind for i in estate["first"].images}
    assert kinds["old-web.qcow2"] == "orphaned"
    assert kinds["golden.qcow2"] == kinds["clone-a.qcow2"] == "attached"


def test_an_unchanged_estate_is_judged_again_from_the_facts_cache(estate: dict) -> None:
    first, second = estate["first"], estate["second"]
    assert {(f.rule, f.name) for f in second.findings} == {(f.rule, f.name) for f in first.findings}
    a = {vm.name: vm.guest.inspected_at for vm in first.vms}
    b = {vm.name: vm.guest.inspected_at for vm in second.vms}
    assert a == b  # the same facts, not a new read
