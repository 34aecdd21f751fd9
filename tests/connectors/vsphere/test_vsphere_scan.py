"""``vmwarden scan -c vsphere://…`` end to end against vcsim (#13 slice): the real CLI in a
subprocess, a real SQLite store. Inventory-level rules fire on vSphere VMs; guest rules
are unknown with the reason (vcsim's placeholder VMDKs are empty) and no local path is opened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.connectors.vsphere.conftest import Vcsim
from tests.connectors.vsphere.vcsim_ops import admin, reconfigure_nic, set_attribute, vm_named

POLICY = textwrap.dedent(
    """\
    version: 1
    zones:
      pci: {networks: [pci-pg], classifications: [pci]}
      internal: {networks: [DC0_DVPG0], classifications: [internal]}
    quarantine: {network: quarantine}
    rules:
      - {name: unregistered, resource: vm, severity: medium, filters: [unregistered]}
      - {name: outside-zone, resource: vm, severity: high, filters: [outside-zone]}
      - {name: duplicate-mac, resource: vm, severity: high, filters: [duplicate-mac]}
      - name: forbidden-software
        resource: vm
        severity: high
        filters: [{type: package, installed: [telnetd]}]
      - {name: co-located, resource: vm, severity: high, filters: [mixed-classification-on-host]}
      - {name: blind-spot, resource: vm, severity: low, filters: [not-inspected]}
    """
)


def scan(tmp_path: Path, sim: Vcsim, *extra: str, env: dict[str, str] | None = None) -> Any:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    vmwarden = str(Path(sys.executable).with_name("vmwarden"))
    return subprocess.run(
        [vmwarden, "scan", "-c", sim.uri(), "-p", str(policy),
         "--db", f"sqlite:///{tmp_path / 'vmw.db'}", "--format", "json", *extra],
        env={**os.environ, "VMWARDEN_VSPHERE_PASSWORD": sim.password, **(env or {})},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_scan_of_vcsim_fires_inventory_rules_and_leaves_guest_rules_unknown(
    vcsim: Vcsim, tmp_path: Path
) -> None:
    with admin(vcsim) as content:
        # vcsim gives the VMs of one host the same MAC: give them distinct ones, then make
        # one real duplicate across hosts on purpose
        reconfigure_nic(content, vm_named(content, "DC0_H0_VM0"), mac="00:50:56:00:00:01")
        reconfigure_nic(content, vm_named(content, "DC0_H0_VM1"), mac="00:50:56:00:00:02")
        reconfigure_nic(content, vm_named(content, "DC0_C0_RP0_VM0"), mac="00:50:56:00:00:03")
        reconfigure_nic(content, vm_named(content, "DC0_C0_RP0_VM1"), mac="00:50:56:00:00:03")
        for name in ("DC0_H0_VM0", "DC0_H0_VM1", "DC0_C0_RP0_VM0"):
            set_attribute(content, vm_named(content, name), "vmwarden.registered", "yes")
        # a pci VM on a portgroup its zone does not list
        set_attribute(content, vm_named(content, "DC0_H0_VM0"), "vmwarden.classification", "pci")
        # … next to an internal VM on the same ESXi host (on its zone's portgroup)
        set_attribute(
            content, vm_named(content, "DC0_H0_VM1"), "vmwarden.classification", "internal"
        )
    ran = scan(tmp_path, vcsim)
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    doc = json.loads(ran.stdout)
    got: dict[str, set[str]] = {}
    for f in doc["findings"]:
        got.setdefault(f["rule"], set()).add(f["name"])
    assert got.get("unregistered") == {"DC0_C0_RP0_VM1"}
    assert got.get("outside-zone") == {"DC0_H0_VM0"}
    assert got.get("duplicate-mac") == {"DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1"}
    assert got.get("co-located") == {"DC0_H0_VM0", "DC0_H0_VM1"}  # by ESXi host
    # guest rules: unknown on every VM (never a guessed pass or fail), and why
    guest = [f for f in doc["findings"] if f["rule"] == "forbidden-software"]
    assert len(guest) == 4 and all("unknown" in f["evidence"] for f in guest)
    blind = {f["name"]: f["evidence"] for f in doc["findings"] if f["rule"] == "blind-spot"}
    assert len(blind) == 4
    for evidence in blind.values():
        assert evidence["reason"] == "remote"
        # vcsim's own VMs have empty placeholder VMDKs: read over HTTPS, found empty
        assert "not readable from here: [LocalDS_0] " in evidence["detail"]
        assert "the file is empty (no disk data)" in evidence["detail"]
    hosts = {vm["name"]: vm["host"] for vm in doc["vms"]}
    assert hosts["DC0_H0_VM0"] == "DC0_H0" and hosts["DC0_C0_RP0_VM0"].startswith("DC0_C0_H")
    # no local path was opened for a datastore file: no digest, no read, no mtime
    layers = [lay for vm in doc["vms"] for d in vm["disks"] for lay in d["chain"]]
    assert layers and all(lay["digest"] is None and lay["mtime"] is None for lay in layers)


def test_scan_without_a_password_is_a_clear_error(vcsim: Vcsim, tmp_path: Path) -> None:
    ran = scan(tmp_path, vcsim, env={"VMWARDEN_VSPHERE_PASSWORD": ""})
    assert ran.returncode == 2, (ran.stdout, ran.stderr)
    assert "Traceback" not in ran.stderr + ran.stdout
    assert "no password" in ran.stderr and "VMWARDEN_VSPHERE_PASSWORD" in ran.stderr


def test_enforced_quarantine_is_refused_and_changes_nothing(vcsim: Vcsim, tmp_path: Path) -> None:
    """A policy with no vSphere quarantine portgroup (only libvirt's network): ``--enforce``
    must fail the action cleanly and leave every NIC exactly as it was."""
    with admin(vcsim) as content:
        before = {
            vm.name: [repr(d) for d in vm.config.hardware.device]
            for vm in (vm_named(content, n) for n in ("DC0_H0_VM0", "DC0_H0_VM1"))
        }
    policy = tmp_path / "enforce.yaml"
    policy.write_text(
        "version: 1\nquarantine: {network: quarantine}\nrules:\n"
        "  - {name: unreg, resource: vm, severity: high, filters: [unregistered],"
        " actions: [quarantine]}\n"
    )
    ran = subprocess.run(
        [str(Path(sys.executable).with_name("vmwarden")), "scan", "-c", vcsim.uri(),
         "-p", str(policy), "--db", f"sqlite:///{tmp_path / 'e.db'}", "--enforce"],
        env={**os.environ, "VMWARDEN_VSPHERE_PASSWORD": vcsim.password},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "Traceback" not in ran.stdout + ran.stderr
    assert "names no vSphere quarantine portgroup" in ran.stderr, ran.stderr
    assert "nothing changed" in ran.stderr
    with admin(vcsim) as content:
        after = {
            vm.name: [repr(d) for d in vm.config.hardware.device]
            for vm in (vm_named(content, n) for n in ("DC0_H0_VM0", "DC0_H0_VM1"))
        }
    assert after == before
