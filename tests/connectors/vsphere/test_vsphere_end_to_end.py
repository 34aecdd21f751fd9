"""#13 "Done means", against vcsim with the real CLI in subprocesses: ``vmwarden scan -c
vsphere://… -p policy.yaml --enforce`` finds the rogue VM (its VMDK's content is not from the
approved template, and telnetd is installed in it: V1's disk fixture), moves its NICs to the
quarantine portgroup disconnected and not connected at power-on, and leaves the approved VMs
(full clones of the template) alone; ``vmwarden release VM --reason`` puts every device back
exactly, field by field as vCenter reports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.connectors.vsphere.conftest import Vcsim
from tests.connectors.vsphere.disks_fixture import (  # noqa: F401 (the fixture)
    DEBIAN_QCOW2,
    EMPTY_VM,
    FLAT_VM,
    SPARSE_VM,
    TELNETD_VM,
    VmdkEstate,
    vmdk_estate,
)
from tests.connectors.vsphere.quarantine_ops import (
    DV_PG,
    add_distributed_portgroup,
    add_nic,
    devices,
    nic_where,
)
from tests.connectors.vsphere.vcsim_ops import admin, vm_named
from vmwarden.enforce.faults import FAULT_EXIT_CODE
from vmwarden.store import Store

POLICY = textwrap.dedent(
    f"""\
    version: 1
    quarantine:
      vsphere: {{portgroup: {DV_PG}}}
    rules:
      - name: rogue
        resource: vm
        severity: high
        filters:
          - and: [not-approved-template, {{type: package, installed: [telnetd]}}]
        actions: [quarantine]
    """
)
VMS = (SPARSE_VM, FLAT_VM, TELNETD_VM, EMPTY_VM)


def vmwarden(
    sim: Vcsim, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it: the password in the environment only."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("vmwarden")), *args],
        env={**os.environ, "VMWARDEN_VSPHERE_PASSWORD": sim.password, **(env or {})},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def estate_devices(sim: Vcsim) -> dict[str, dict[int, dict[str, Any]]]:
    with admin(sim) as content:
        return {name: devices(vm_named(content, name)) for name in VMS}


def test_scan_enforce_quarantines_the_rogue_and_release_restores_it_exactly(
    vmdk_estate: VmdkEstate,  # noqa: F811
    tmp_path: Path,
) -> None:
    sim = vmdk_estate.sim
    with admin(sim) as content:
        add_distributed_portgroup(content)  # the quarantine portgroup, on every ESXi host
        where_before = nic_where(vm_named(content, TELNETD_VM))
    before = estate_devices(sim)
    db = f"sqlite:///{tmp_path / 'vmw.db'}"
    approved = vmwarden(sim, "template", "approve", str(DEBIAN_QCOW2), "--name",
                        "debian12-base", "--db", db)  # fmt: skip
    assert approved.returncode == 0, approved.stderr
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    scan = ("scan", "-c", sim.uri(), "-p", str(policy), "--db", db, "--format", "json")

    ran = vmwarden(sim, *scan, "--enforce")
    assert ran.returncode == 0, ran.stderr
    assert sim.password not in ran.stdout + ran.stderr
    doc = json.loads(ran.stdout)
    rogue = [f for f in doc["findings"] if f["rule"] == "rogue"]
    (found,) = [f for f in rogue if "unknown" not in f["evidence"]]
    assert found["name"] == TELNETD_VM
    assert found["evidence"]["packages"] == ["telnetd"]
    assert found["evidence"]["closest_template"] == "debian12-base"
    assert found["evidence"]["similarity"] < 0.5
    # the placeholder's disk is an empty file: unknown, and unknown never passes a rule
    # (fail closed), so it is held too; the approved full clones are not
    (blind,) = [f for f in rogue if "unknown" in f["evidence"]]
    assert blind["name"] == EMPTY_VM and "the file is empty" in blind["evidence"]["unknown"]
    acted = {(a["action"], a["name"], a["status"]) for a in doc["actions"]}
    assert acted == {("quarantine", TELNETD_VM, "done"), ("quarantine", EMPTY_VM, "done")}

    held = estate_devices(sim)
    with admin(sim) as content:
        where = nic_where(vm_named(content, TELNETD_VM))
    assert where and [(mac, pg, c, s) for mac, pg, c, s in where] == [
        (mac, DV_PG, False, False) for mac, *_ in where_before
    ]
    for name in (SPARSE_VM, FLAT_VM):  # the approved VMs (full clones): not touched
        assert held[name] == before[name], name
    assert held[TELNETD_VM] != before[TELNETD_VM] and held[EMPTY_VM] != before[EMPTY_VM]

    again = json.loads(vmwarden(sim, *scan, "--enforce").stdout)  # idempotent
    assert {(a["name"], a["status"]) for a in again["actions"]} == {
        (TELNETD_VM, "noop"), (EMPTY_VM, "noop")
    }  # fmt: skip
    assert estate_devices(sim) == held

    released = vmwarden(sim, "release", TELNETD_VM, "--reason", "rebuilt from debian12-base",
                        "--db", db)  # fmt: skip
    assert released.returncode == 0, released.stdout + released.stderr
    after = estate_devices(sim)
    assert after[TELNETD_VM] == before[TELNETD_VM]  # every device, field by field
    assert after[EMPTY_VM] == held[EMPTY_VM]  # still held: released by name only
    assert vmwarden(sim, "release", EMPTY_VM, "--reason", "disk restored", "--db",
                    db).returncode == 0  # fmt: skip
    assert estate_devices(sim) == before
    with admin(sim) as content:
        assert nic_where(vm_named(content, TELNETD_VM)) == where_before


def test_a_sweep_killed_between_two_nics_is_repaired_by_the_next_sweep(
    vmdk_estate: VmdkEstate,  # noqa: F811
    tmp_path: Path,
) -> None:
    """``scan --enforce`` killed (as by SIGKILL) right after the rogue's first NIC moved: the
    journal holds a pending quarantine; the next sweep finishes it from the journaled
    records (not re-read ones, which would record the quarantine as the original), and
    release puts both NICs back exactly."""
    sim = vmdk_estate.sim
    with admin(sim) as content:
        if not any(pg.name == DV_PG for pg in vm_named(content, TELNETD_VM).runtime.host.network):
            add_distributed_portgroup(content)
        add_nic(vm_named(content, TELNETD_VM), "VM Network", "00:50:56:03:00:01")
        where_before = nic_where(vm_named(content, TELNETD_VM))
    assert len(where_before) == 2
    before = estate_devices(sim)
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\nquarantine: {{vsphere: {{portgroup: {DV_PG}}}}}\nrules:\n"
        f"  - {{name: by-name, resource: vm, severity: high, actions: [quarantine],"
        f" filters: [{{type: value, key: name, op: eq, value: {TELNETD_VM}}}]}}\n"
    )
    scan = ("scan", "-c", sim.uri(), "-p", str(policy), "--db", db, "--enforce")
    killed = vmwarden(sim, *scan, env={"VMWARDEN_FAULT": "quarantine.nic:1"})
    assert killed.returncode == FAULT_EXIT_CODE, killed.stdout + killed.stderr
    with admin(sim) as content:
        half = nic_where(vm_named(content, TELNETD_VM))
    assert sorted(pg == DV_PG for _m, pg, _c, _s in half) == [False, True]
    with Store.open(db) as store:
        (pending,) = store.incomplete_actions()
        assert (pending.action, pending.name) == ("quarantine", TELNETD_VM)

    repaired = vmwarden(sim, *scan)
    assert repaired.returncode == 0, repaired.stderr
    with admin(sim) as content:
        held = nic_where(vm_named(content, TELNETD_VM))
    assert [(m, pg, s) for m, pg, _c, s in held] == [(m, DV_PG, False) for m, *_ in where_before]
    with Store.open(db) as store:
        assert store.incomplete_actions() == []

    released = vmwarden(sim, "release", TELNETD_VM, "--reason", "rebuilt", "--db", db)
    assert released.returncode == 0, released.stdout + released.stderr
    assert estate_devices(sim) == before
