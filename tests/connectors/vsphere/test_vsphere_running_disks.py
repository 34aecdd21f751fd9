"""#13.3: a running vSphere VM's disks are read from a scan snapshot's base (vcsim).

Before a sweep reads a powered-on VM's disks, the connector takes one snapshot of it
(``vmwarden-scan-<token>``, no memory, no quiescing), journaled first, and removes it when
the connection closes; a powered-off VM gets none.

What vcsim 0.24 can prove: the snapshot calls (taken once per VM, by name, without memory
or quiescing; removed; counted in ``TaskManager.recentTask``), the journal and its cleanup
after a killed process, and that the guest read is the same. What it cannot: its
CreateSnapshot_Task makes no delta disk and leaves the disk backing as it was
(``simulator/snapshot.go`` writes only a ``.vmsn``), so no test here shows the VM writing
elsewhere while the base is read — that is vSphere's documented snapshot behaviour.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

from tests.connectors.vsphere.disks_fixture import (
    FLAT_VM,
    SPARSE_VM,
    TELNETD_VM,
    VmdkEstate,
    vmdk_estate,
)
from tests.connectors.vsphere.vcsim_ops import admin, power_off, vm_named
from vmwarden.connectors.base import open_connector
from vmwarden.connectors.vsphere.scan_snapshots import PREFIX, ScanJournal
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.engine.watch.daemon import Watcher
from vmwarden.engine.watch.state import WatchConfig
from vmwarden.policy import parse_policy
from vmwarden.store import Store

__all__ = ["vmdk_estate"]  # the shared fixture, used by this module's tests

POLICY = """version: 1
rules:
  - name: forbidden-software
    resource: vm
    severity: high
    filters: [{type: package, installed: [telnetd]}]
"""


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scan-snapshot journal under the test's directory (XDG_STATE_HOME)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def _power_on(vm: Any) -> None:
    if vm.runtime.powerState != "poweredOn":
        WaitForTask(vm.PowerOnVM_Task())


def _props(content: Any, obj: Any, paths: list[str]) -> dict[str, Any]:
    """By the PropertyCollector: vcsim 0.24 panics on ``vm.snapshot`` once it is unset,
    and pyvmomi cannot read a RemoveSnapshot task's ``info`` (its entity is a snapshot)."""
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=obj)],
        propSet=[pc.PropertySpec(type=type(obj), pathSet=paths)],
    )
    got = content.propertyCollector.RetrieveContents([spec])
    return {p.name: p.val for p in (got[0].propSet if got else [])}


def _snapshots(content: Any, vm: Any) -> list[Any]:
    def walk(nodes: Any) -> Iterator[Any]:
        for node in nodes or []:
            yield node
            yield from walk(node.childSnapshotList)

    info = _props(content, vm, ["snapshot"]).get("snapshot")
    return list(walk(getattr(info, "rootSnapshotList", None)))


def _tasks(content: Any) -> dict[str, tuple[str, str, str | None]]:
    """Recent tasks (vcsim keeps 200): moId → (descriptionId, entity moId, result moId)."""
    out = {}
    for task in content.taskManager.recentTask:
        info = _props(content, task, ["info.descriptionId", "info.entityName", "info.result"])
        result = info.get("info.result")
        out[task._moId] = (
            str(info.get("info.descriptionId")),
            str(info.get("info.entityName")),
            getattr(result, "_moId", None),
        )
    return out


def _new(before: dict[str, Any], after: dict[str, Any], kind: str, entity: str) -> list[Any]:
    """The results of tasks of ``kind`` on ``entity`` started between the two reads."""
    return [
        res for moid, (desc, ent, res) in after.items()
        if moid not in before and desc.endswith(kind) and ent == entity
    ]  # fmt: skip


def _removed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """The snapshots removed between the two reads (a removal's entity is the snapshot)."""
    return {
        ent for moid, (desc, ent, _res) in after.items()
        if moid not in before and desc.endswith("removeSnapshot")
    }  # fmt: skip


def _sweep(estate: VmdkEstate, db: str, *, stable: bool = True) -> dict[str, Any]:
    options = SweepOptions(
        inspect=InspectionOptions(enabled=True, timeout=120), stable_reads=stable
    )
    with Store.open(db) as store:
        result = Sweep(store, parse_policy(POLICY), actor="t", options=options).run(
            [estate.sim.uri()]
        )
    return {vm.name: vm.guest for vm in result.vms}


def _facts(guest: Any) -> tuple[Any, ...]:
    assert guest is not None
    return (
        guest.os_name,
        guest.os_version,
        guest.hostname,
        frozenset((p.name, p.version) for p in guest.packages),
    )


def test_a_sweep_reads_a_running_vm_from_one_scan_snapshot_and_leaves_none(
    vmdk_estate, vsphere_password, state_dir, tmp_path
) -> None:
    with admin(vmdk_estate.sim) as content:
        vm = vm_named(content, SPARSE_VM)
        flat = vm_named(content, FLAT_VM)
        _power_on(flat)
        # powered off: read as it is, no snapshot
        power_off(vm)
        before = _tasks(content)
        off = _sweep(vmdk_estate, f"sqlite:///{tmp_path / 'off.db'}")
        after = _tasks(content)
        assert _new(before, after, "createSnapshot", vm._moId) == []
        assert len(_new(before, after, "createSnapshot", flat._moId)) == 1  # it runs
        # running: exactly one scan snapshot, removed once read; the guest reads the same
        _power_on(vm)
        before = _tasks(content)
        on = _sweep(vmdk_estate, f"sqlite:///{tmp_path / 'on.db'}")
        after = _tasks(content)
        (snap,) = _new(before, after, "createSnapshot", vm._moId)
        assert snap in _removed(before, after)
        assert _snapshots(content, vm) == [] and _snapshots(content, flat) == []
    assert on[SPARSE_VM].packages
    assert _facts(on[SPARSE_VM]) == _facts(off[SPARSE_VM])
    assert ScanJournal().entries() == {}


def test_watch_reconciles_read_running_vms_live_without_snapshot_churn(
    vmdk_estate, vsphere_password, state_dir, tmp_path
) -> None:
    """``watch`` reconciles every ``--interval`` (5 min): a snapshot of every running VM
    each time is churn vCenter admins refuse; its sweeps read live (``stable_reads``)."""
    with admin(vmdk_estate.sim) as content:
        vm = vm_named(content, SPARSE_VM)
        _power_on(vm)
        before = _tasks(content)
        live = _sweep(vmdk_estate, f"sqlite:///{tmp_path / 'live.db'}", stable=False)
        after = _tasks(content)
        assert _new(before, after, "createSnapshot", vm._moId) == []
    assert live[SPARSE_VM] is not None and live[SPARSE_VM].packages  # still read inside
    policy = parse_policy(POLICY)
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as store:
        watcher = Watcher(WatchConfig(uris=[vmdk_estate.sim.uri()]), policy, store)
        assert watcher.sweep.options.stable_reads is False


def test_the_scan_snapshot_is_named_journaled_taken_once_and_removed_at_close(
    vmdk_estate, vsphere_password, state_dir
) -> None:
    with admin(vmdk_estate.sim) as content:
        vm = vm_named(content, TELNETD_VM)
        _power_on(vm)
        off = vm_named(content, FLAT_VM)
        power_off(off)
        with open_connector(vmdk_estate.sim.uri()) as conn:
            conn.prepare_disks([vmdk_estate.telnetd, vmdk_estate.flat])
            conn.prepare_disks([vmdk_estate.telnetd])  # once per VM per connection
            (snap,) = _snapshots(content, vm)
            assert snap.name.startswith(PREFIX)
            assert snap.quiesced is False
            assert "vmwarden" in snap.description
            assert _snapshots(content, off) == []
            (token,) = ScanJournal().entries()
            assert snap.name == PREFIX + token
            assert conn.open_disk(vmdk_estate.telnetd).size > 0
        assert _snapshots(content, vm) == []
        assert ScanJournal().entries() == {}
        _power_on(off)


def test_a_killed_sweep_leaves_a_journal_entry_the_next_connection_cleans_up(
    vmdk_estate, vsphere_password, state_dir
) -> None:
    with admin(vmdk_estate.sim) as content:
        vm = vm_named(content, SPARSE_VM)
        _power_on(vm)
        # another's scan snapshot (not journaled here for a dead process): never touched
        WaitForTask(vm.CreateSnapshot_Task(f"{PREFIX}another", "", False, False))
        code = (
            "import os\n"
            "from vmwarden.connectors.base import open_connector\n"
            f"c = open_connector({vmdk_estate.sim.uri()!r})\n"
            f"c.prepare_disks([{vmdk_estate.sparse!r}])\n"
            "os.kill(os.getpid(), 9)\n"
        )
        ran = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ},
            timeout=120,
            check=False,
        )
        assert ran.returncode == -signal.SIGKILL, ran.stderr
        (token,) = ScanJournal().entries()
        assert {s.name for s in _snapshots(content, vm)} == {f"{PREFIX}another", PREFIX + token}
        # the next connection that prepares disks removes the leaked one, then takes its own
        with open_connector(vmdk_estate.sim.uri()) as conn:
            conn.prepare_disks([vmdk_estate.sparse])
            names = {s.name for s in _snapshots(content, vm)}
            assert PREFIX + token not in names and f"{PREFIX}another" in names
            assert len(names) == 2
        assert {s.name for s in _snapshots(content, vm)} == {f"{PREFIX}another"}
        assert ScanJournal().entries() == {}
        for node in _snapshots(content, vm):  # vcsim runs the task before it answers
            node.snapshot.RemoveSnapshot_Task(removeChildren=False)
        assert _snapshots(content, vm) == []


def test_an_independent_disk_is_read_live_and_a_warning_says_so(
    vmdk_estate, vsphere_password, state_dir, caplog
) -> None:
    with admin(vmdk_estate.sim) as content:
        vm = vm_named(content, TELNETD_VM)
        _power_on(vm)
        _disk_mode(vm, "independent_persistent")  # vSphere leaves it out of snapshots
        try:
            with (
                caplog.at_level(logging.WARNING, "vmwarden.connectors.vsphere"),
                open_connector(vmdk_estate.sim.uri()) as conn,
            ):
                conn.prepare_disks([vmdk_estate.telnetd])
                assert _snapshots(content, vm) == []  # none taken: it would hold nothing
                assert conn.open_disk(vmdk_estate.telnetd).size > 0  # read live
        finally:
            _disk_mode(vm, "persistent")
    (warning,) = [r.getMessage() for r in caplog.records if "read live" in r.getMessage()]
    assert TELNETD_VM in warning and "independent_persistent" in warning
    assert vmdk_estate.telnetd in warning


def _disk_mode(vm: Any, mode: str) -> None:
    disk = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk))
    disk.backing.diskMode = mode
    change = vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk)
    WaitForTask(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(deviceChange=[change])))
