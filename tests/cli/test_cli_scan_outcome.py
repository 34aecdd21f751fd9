"""``vmwarden scan`` runs that fail say so (issue #10.5 to #10.7).

Every test runs the real ``vmwarden`` process over libvirt test-driver hosts written with
``fleetgen`` and a real SQLite store: a quarantine that fails exits 1 naming the VM and why;
a report-only scan says where the quarantine network is missing; a dead hypervisor does not
stop the others; Ctrl-C during enforcement finishes the VM in flight and lists what is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from vmwarden.engine.fleetgen import FleetNic, FleetVM, write_fleet
from vmwarden.engine.quarantine_targets import from_inventories
from vmwarden.model import HostInventory, Network
from vmwarden.model.isolation import QuarantineSpec
from vmwarden.store import Store

DEAD = "qemu+tcp://127.0.0.1:1/system"
POLICY = """\
version: 1
quarantine: {network: quarantine, link_down: true}
rules:
  - name: unregistered-vm
    resource: vm
    severity: high
    filters: [unregistered]
    actions: [quarantine]
"""


def host(
    tmp_path: Path, name: str, count: int, *, networks: tuple[str, ...] = ("prod", "quarantine")
) -> str:
    """A test-driver host of ``count`` shut-off, unregistered VMs with two NICs on prod: the
    policy quarantines each one (the definition only, which the test driver supports)."""
    index = sum(1 for _ in tmp_path.glob("*.xml"))
    vms = [
        FleetVM(
            uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}-{i}")),
            name=f"{name}-vm{i:04d}",
            state="shutoff",
            nics=[
                FleetNic(f"52:54:{index:02x}:{i >> 8:02x}:{i & 255:02x}:{n:02x}", "prod")
                for n in range(2)
            ],
        )
        for i in range(count)
    ]
    return f"test://{write_fleet(tmp_path / f'{name}.xml', vms, networks=networks)}"


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def scan_args(policy: Path, *uris: str) -> list[str]:
    return ["scan", *(a for u in uris for a in ("-c", u)), "-p", str(policy), "--no-inspect"]


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def statuses(doc: dict) -> dict[str, str]:
    return {a["name"]: a["status"] for a in doc["actions"]}


# --- #10.5: a failed action is a failed run ---------------------------------------------------


@pytest.mark.parametrize("fail_on", [None, "high"], ids=["plain", "fail-on-met"])
def test_failed_quarantine_exits_1_naming_the_vm_and_why(cli, tmp_path, policy, fail_on):
    uri = host(tmp_path, "bare", 2, networks=("prod",))
    extra = ["--fail-on", fail_on] if fail_on else []
    ran = cli(*scan_args(policy, uri), "--enforce", "--format", "json", *extra)
    # 1, not 3: an action that failed outranks "findings at or above --fail-on"
    assert ran.code == 1, (ran.code, ran.err)
    assert "Traceback" not in ran.err
    assert statuses(ran.json()) == {"bare-vm0000": "failed", "bare-vm0001": "failed"}
    lines = error_lines(ran.err)
    for name in ("bare-vm0000", "bare-vm0001"):
        (line,) = [line for line in lines if name in line]
        assert "quarantine of VM" in line and "on bare" in line
        assert "'quarantine' does not exist on bare" in line


def test_dry_run_says_where_the_quarantine_network_is_missing(cli, tmp_path, policy):
    bare = host(tmp_path, "bare", 1, networks=("prod",))
    ready = host(tmp_path, "ready", 1)
    ran = cli(*scan_args(policy, bare, ready), "--format", "json")
    assert ran.code == 0, ran.err  # a report changes nothing; it reports
    doc = ran.json()
    missing = [w for w in doc["warnings"] if "quarantine network" in w]
    assert len(missing) == 1 and "does not exist on host bare" in missing[0]
    by_name = {a["name"]: a for a in doc["actions"]}
    assert by_name["bare-vm0000"]["status"] == "dry-run"
    assert by_name["bare-vm0000"]["error"].startswith("would fail: quarantine network")
    assert "error" not in by_name["ready-vm0000"]
    table = cli(*scan_args(policy, bare, ready))
    assert table.code == 0, table.err
    assert "warning: quarantine network 'quarantine' does not exist on host bare" in table.out


def test_watch_start_up_says_where_the_quarantine_network_is_missing(cli, tmp_path, policy):
    bare = host(tmp_path, "bare", 1, networks=("prod",))
    ready = host(tmp_path, "ready", 1)
    env = {**os.environ, "VMWARDEN_DB": cli.db}
    cmd = [sys.executable, "-m", "vmwarden.cli.main", "watch", "-c", bare, "-c", ready]
    proc = subprocess.Popen(
        [*cmd, "-c", DEAD, "-p", str(policy), "--no-inspect", "--interval", "3600"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("vmwarden watch:"):
                break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    warnings = [line for line in lines if line.startswith("warning: ")]
    # the connector's own words (Connector.quarantine_target_problem), with host and URI
    assert any("'quarantine' does not exist on bare (host bare, test://" in w for w in warnings), (
        lines
    )
    assert any(f"cannot check the quarantine target on {DEAD}" in w for w in warnings)
    assert not any("host ready" in w for w in warnings), warnings


def test_each_platform_is_checked_for_its_own_quarantine_target():
    """#12 d: a scan judges each host by what its platform isolates onto (the connector
    class's ``quarantine_target``), from the inventory alone: vSphere by the portgroup among
    its networks, EC2 only by the policy naming a group (it creates one per VPC), libvirt by
    the network, defined and active."""

    def inv(uri: str, host: str, *names: str) -> HostInventory:
        return HostInventory(uri=uri, host=host, networks=[Network(n, None, True) for n in names])

    hosts = [
        inv("vsphere://admin@vc1/DC0", "vc1", "VM Network", "vmw-quarantine"),
        inv("vsphere://admin@vc2/DC0", "vc2", "VM Network", "quarantine"),  # no portgroup
        inv("aws://eu-west-1", "", "subnet-0abc"),
        inv("test:///kvm1.xml", "kvm1", "prod", "quarantine"),
    ]
    spec = QuarantineSpec(network="quarantine", vsphere_portgroup="vmw-quarantine")
    problems = {p.uri: p.message for p in from_inventories(spec, hosts)}
    assert sorted(problems) == ["aws://eu-west-1", "vsphere://admin@vc2/DC0"], problems
    assert problems["vsphere://admin@vc2/DC0"].startswith(
        "quarantine portgroup 'vmw-quarantine' does not exist on host vc2"
    )
    assert "names no quarantine.aws.security_group" in problems["aws://eu-west-1"]
    # EC2 creates its group when absent: named, it needs no network of that name
    named = replace(spec, aws_security_group="vmwarden-quarantine")
    assert [p.uri for p in from_inventories(named, hosts)] == ["vsphere://admin@vc2/DC0"]
    # a libvirt host is judged by quarantine.network; without it, that is the problem
    only_vsphere = QuarantineSpec(vsphere_portgroup="vmw-quarantine")
    (libvirt,) = [p for p in from_inventories(only_vsphere, hosts) if p.host == "kvm1"]
    assert "names no quarantine.network for host kvm1" in libvirt.message


# --- #10.6: a dead hypervisor does not stop the others -----------------------------------------


def test_dead_host_is_named_and_the_others_are_enforced(cli, tmp_path, policy):
    east, west = host(tmp_path, "east", 2), host(tmp_path, "west", 2)
    ran = cli(*scan_args(policy, east, DEAD, west), "--enforce", "--format", "json")
    assert ran.code == 2, (ran.code, ran.err)  # unreachable host: 2 (no action failed)
    doc = ran.json()
    assert set(statuses(doc).values()) == {"done"} and len(doc["actions"]) == 4
    assert {vm["host"] for vm in doc["vms"]} == {"east", "west"}
    (dead,) = doc["unreachable"]
    assert dead["uri"] == DEAD and "Connection refused" in dead["error"]
    assert doc["summary"]["hosts_unreachable"] == 1
    (line,) = error_lines(ran.err)
    assert DEAD in line and "host not scanned" in line
    journal = Store.open(cli.db)
    try:
        done = journal.journal_entries(action="quarantine", status="done")
    finally:
        journal.close()
    assert sorted(e.name for e in done) == [
        "east-vm0000",
        "east-vm0001",
        "west-vm0000",
        "west-vm0001",
    ]


def test_dead_host_findings_stay_open(cli, tmp_path, policy):
    east, west = host(tmp_path, "east", 1), host(tmp_path, "west", 1)
    first = cli(*scan_args(policy, east, west), "--format", "json")
    assert first.code == 0, first.err
    (tmp_path / "west.xml").rename(tmp_path / "west.away")  # the same URI no longer answers
    again = cli(*scan_args(policy, east, west), "--format", "json")
    assert again.code == 2, again.err
    assert [u["uri"] for u in again.json()["unreachable"]] == [west]
    store = Store.open(cli.db)
    try:
        still = {(d["host"], d["name"]) for d in store.findings("open")}
        west_vm = store.get_vm("west-vm0000")
    finally:
        store.close()
    # west was not looked at: its finding is not "resolved", its VM is not "gone"
    assert still == {("east", "east-vm0000"), ("west", "west-vm0000")}
    assert west_vm is not None and west_vm.get("gone_at") is None


def test_no_host_reachable_is_still_a_clean_refusal(cli, tmp_path, policy):
    ran = cli(*scan_args(policy, DEAD, "test:///nonexistent.xml"), "--enforce")
    assert ran.code == 2 and "Traceback" not in ran.err
    (line,) = error_lines(ran.err)
    assert DEAD in line and "nonexistent.xml" in line
    assert "nothing was changed" in ran.err


# --- #10.7: Ctrl-C finishes the VM in flight and says what is left ---------------------------


def _start(cli, args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "VMWARDEN_DB": cli.db}
    env.pop("COLUMNS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "vmwarden.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cli.cwd,
    )


def _poll(what, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.005)
    raise AssertionError("timed out waiting for the scan")


def test_ctrl_c_during_enforcement_finishes_the_vm_in_flight(cli, tmp_path, policy):
    uri = host(tmp_path, "big", 400)
    store = Store.open(cli.db)  # migrated before the scan starts, so both can read it
    try:
        proc = _start(cli, [*scan_args(policy, uri), "--enforce", "--format", "json"])
        first = _poll(lambda: store.journal_entries(action="quarantine", limit=1))
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)  # an impatient second Ctrl-C does not abandon the VM
        out, err = proc.communicate(timeout=120)
        entries = store.journal_entries(action="quarantine")
    finally:
        store.close()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["interrupted"] == "SIGINT"
    by_status: dict[str, list[str]] = {}
    for a in doc["actions"]:
        by_status.setdefault(a["status"], []).append(a["name"])
    assert set(by_status) == {"done", "interrupted"}, set(by_status)
    assert 1 <= len(by_status["done"]) < 400 and len(by_status["interrupted"]) >= 1
    # what was done is exactly what the journal holds, each entry finished, never pending
    assert sorted(e.name for e in entries) == sorted(by_status["done"])
    assert first[0].name in by_status["done"]
    for e in entries:
        assert e.status == "done", (e.name, e.status)
        for nic in e.changes["nics"]:  # live and persistent agree: both scopes carried out
            assert (nic["live"], nic["config"]) == ("skipped", "done"), (e.name, nic)
    assert "interrupted by SIGINT" in err
    done_line = next(line for line in err.splitlines() if line.startswith("done ("))
    not_done = next(line for line in err.splitlines() if line.startswith("not done ("))
    assert done_line.startswith(f"done ({len(by_status['done'])}) ")
    assert not_done.startswith(f"not done ({len(by_status['interrupted'])}) ")
    assert all(f"quarantine {n} (done)" in done_line for n in by_status["done"])
    assert all(f"quarantine {n}" in not_done for n in by_status["interrupted"])


def test_ctrl_c_before_any_action_changes_nothing(cli, tmp_path, policy):
    uri = host(tmp_path, "big", 3000)
    store = Store.open(cli.db)
    try:
        proc = _start(cli, [*scan_args(policy, uri), "--enforce", "--format", "json"])
        _poll(lambda: store.recent_scans(limit=1))  # the sweep began: inventory under way
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        journal = store.journal_entries()
    finally:
        store.close()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err
    (line,) = error_lines(err)
    assert "interrupted by SIGINT: nothing was changed" in line
    assert journal == [] and out == ""
