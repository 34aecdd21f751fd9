"""The power-on gate on vSphere, zero exposure: ``vmwarden watch --enforce`` (the real CLI, a
subprocess) against vcsim.

vSphere asks nobody before a VM starts (no hook like libvirt's), so the gate acts ahead: a
powered-off VM it would hold or deny has its NICs moved to the quarantine portgroup,
disconnected and not connected at power-on, before anyone powers it on. When such a VM is
powered on (a ``VmPoweredOnEvent``), it comes up isolated; the gate judges it and, after a
full reconcile, releases a held VM that passes (the dormant VM) and keeps a denied one.
vCenter's ``AuthorizationManager.DisableMethods`` on ``PowerOnVM_Task`` would refuse the
power-on itself; vcsim 0.24 does not implement it (``test_vcsim_cannot_disable_power_on``).

History for dormancy (shut off for 45 days) is written into the store through its own API,
as an earlier ``watch`` would have recorded it; everything else is vcsim's own state.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.connectors.vsphere.conftest import Vcsim
from tests.connectors.vsphere.quarantine_ops import add_standard_portgroup, nics
from tests.connectors.vsphere.vcsim_ops import admin, power_off, set_attribute, vm_named
from vmwarden.api.tokens import mint
from vmwarden.connectors.vsphere.connection import VsphereConnector
from vmwarden.connectors.vsphere.gate import power_on_lock
from vmwarden.model import State
from vmwarden.store import Store
from vmwarden.store.users import UsersRepo

QUARANTINE = "vmw-v3-quarantine"
DORMANT = "DC0_H0_VM0"  # registered, shut off for 45 days: held at power-on, then released
DENIED = "DC0_H0_VM1"  # unregistered: denied, never exposed
CLONE = "DC0_H0_VM-vmw-v3-clone"  # made while watch runs: isolated ahead, provenance kept
RACER = "DC0_H0_VM-vmw-v3-racer"  # made and powered on at once: quarantined at its start
POLICY = f"""\
version: 1
quarantine:
  vsphere: {{portgroup: {QUARANTINE}}}
gate:
  deny: [unregistered]
  hold: [{{type: dormant, days: 30}}]
"""


def poll(what: Callable[[], Any], timeout: float = 60.0, every: float = 0.1) -> Any:
    """Until ``what()`` is truthy (a bound for a hung daemon, not a latency check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nic_state(sim: Vcsim, name: str) -> list[tuple[str, bool, bool]]:
    """(portgroup, connected, startConnected) of each NIC, as vCenter reports it now; a
    distributed portgroup as ``dvpg:KEY`` (vcsim's VMs start on DC0_DVPG0)."""
    with admin(sim) as content:
        return [
            (_backing(n.backing), n.connectable.connected, n.connectable.startConnected)
            for n in nics(vm_named(content, name))
        ]


def _backing(backing: Any) -> str:
    port = getattr(backing, "port", None)
    if port is not None:
        return f"dvpg:{port.portgroupKey}"
    return str(backing.deviceName)


def isolated(state: list[tuple[str, bool, bool]]) -> bool:
    return bool(state) and all(s == (QUARANTINE, False, False) for s in state)


def entries(db: str, name: str, action: str) -> list[Any]:
    with Store.open(db) as store:
        return [e for e in store.journal_entries(action=action) if e.name == name]


class Daemon:
    """``vmwarden watch -c vsphere://… --enforce`` as an operator runs it."""

    def __init__(self, sim: Vcsim, policy: Path, db: str, log: Path) -> None:
        token, tid, token_hash = mint()
        with Store.open(db) as store:
            UsersRepo(store).add_user(f"reader-{uuid.uuid4().hex[:8]}", "auditor", tid,
                                      token_hash, actor="tests")  # fmt: skip
        self.token, self.port, self.log, self.uri = token, free_port(), log, sim.uri()
        self.db = db
        self.before: dict[str, list[tuple[str, bool]]] = {}  # NICs before the daemon started
        env = dict(os.environ, VMWARDEN_VSPHERE_PASSWORD=sim.password)
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "vmwarden.cli.main", "watch", "-c", self.uri,
                "-p", str(policy), "--db", db, "--enforce", "--only", "DC0_H0_VM*",
                "--listen", f"127.0.0.1:{self.port}", "--no-inspect", "-v",
            ],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip

    def state(self) -> dict[str, Any] | None:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/state",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return dict(json.loads(r.read()))
        except OSError:
            return None

    def ready(self) -> dict[str, Any]:
        def up() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"watch exited {self.proc.returncode}:\n{self.log.read_text()}"
                )
            s = self.state()
            return s if s and s["sweeps"] >= 1 and s["hosts"][self.uri]["state"] == "up" else None

        return dict(poll(up, timeout=90))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _prepare(sim: Vcsim) -> None:
    """As an administrator: the quarantine portgroup, the two VMs' attributes, both off."""
    with admin(sim) as content:
        dormant, denied = vm_named(content, DORMANT), vm_named(content, DENIED)
        add_standard_portgroup(dormant.runtime.host, QUARANTINE)
        set_attribute(content, dormant, "vmwarden.owner", "alice")
        set_attribute(content, dormant, "vmwarden.registered", "yes")
        set_attribute(content, denied, "vmwarden.registered", "no")
        power_off(dormant)
        power_off(denied)


def _remember_dormancy(sim: Vcsim, db: str) -> None:
    """The store's history of DORMANT: seen running 60 days ago, shut off 45 days ago."""
    with VsphereConnector(sim.uri()) as conn:
        off = conn.lookup(DORMANT)
    on = replace(off, state=State.RUNNING)
    now = datetime.now(UTC)
    with Store.open(db) as store:
        store.record_inventory([on], now=now - timedelta(days=60), complete_hosts=set())
        store.record_inventory([off], now=now - timedelta(days=45), complete_hosts=set())


@pytest.fixture
def daemon(vcsim: Vcsim, tmp_path: Path, vsphere_password: str) -> Iterator[Daemon]:
    _prepare(vcsim)
    db = f"sqlite:///{tmp_path / 'watch.db'}"
    _remember_dormancy(vcsim, db)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    before = {n: [(pg, sc) for pg, _, sc in nic_state(vcsim, n)] for n in (DORMANT, DENIED)}
    d = Daemon(vcsim, policy, db, tmp_path / "watch.log")
    d.before = before
    try:
        d.ready()
        yield d
    finally:
        d.stop()
        print(d.log.read_text()[-4000:])


def _power_on(sim: Vcsim, name: str) -> list[tuple[str, bool, bool]]:
    """Power the VM on as an administrator; its NICs read right after the task finished."""
    with admin(sim) as content:
        WaitForTask(vm_named(content, name).PowerOnVM_Task())
    return nic_state(sim, name)


def test_watch_holds_a_dormant_vm_that_powers_on_and_never_exposes_a_denied_one(
    vcsim: Vcsim, daemon: Daemon
) -> None:
    db = daemon.db
    # Isolated ahead of any power-on: both VMs the gate would hold or deny.
    poll(lambda: isolated(nic_state(vcsim, DORMANT)) and isolated(nic_state(vcsim, DENIED)))
    (ahead,) = entries(db, DORMANT, "quarantine")
    assert ahead.actor == "vmwarden-gate" and "ahead of power-on" in (ahead.reason or "")
    assert "dormant" in (ahead.reason or "")
    (denied_ahead,) = entries(db, DENIED, "quarantine")
    assert "gate.deny" in (denied_ahead.reason or "") or "unregistered" in (
        denied_ahead.reason or ""
    )

    # The dormant VM powers on: it comes up isolated, is judged, and once a reconcile shows
    # it healthy (registered, nothing else against it) the gate releases it.
    sweeps = daemon.state()["sweeps"]  # type: ignore[index]
    powered_on = datetime.now(UTC)
    assert isolated(_power_on(vcsim, DORMANT))  # never on its network before the judgement
    (release,) = poll(lambda: [e for e in entries(db, DORMANT, "release") if e.status == "done"])
    assert release.actor == "vmwarden-gate"
    assert (release.reason or "").startswith("automatic release: ")
    assert json.loads((release.reason or "").removeprefix("automatic release: "))["gate"] == "allow"
    released_at = (
        release.created_at if release.created_at.tzinfo else release.created_at.replace(tzinfo=UTC)
    )
    assert released_at >= powered_on  # held through its power-on, released after it
    # back where it was (vcsim reports connected=False for powered-on VMs, so only
    # the backing and the power-on flag are compared)
    assert [(pg, sc) for pg, _, sc in nic_state(vcsim, DORMANT)] == daemon.before[DORMANT]
    # and /state says it booted on quarantine (or has no entry: a reconcile saw the start
    # first), never "held N ms after its start"; and it was quarantined once, ahead
    timed = [x for x in daemon.state()["latencies"] if x["vm"] == DORMANT]  # type: ignore[index]
    assert all((x["how"], x["seconds"]) == ("at-boot", 0.0) for x in timed), timed
    assert [e.reason for e in entries(db, DORMANT, "quarantine")] == [ahead.reason]

    # The denied VM powers on: isolated at that moment and after a full reconcile judged it.
    assert isolated(_power_on(vcsim, DENIED))
    seen = daemon.state()
    assert seen is not None and seen["hosts"][daemon.uri]["state"] == "up"
    poll(lambda: (daemon.state() or {"sweeps": 0})["sweeps"] > sweeps + 1)
    assert isolated(nic_state(vcsim, DENIED))
    assert entries(db, DENIED, "release") == []
    assert DENIED not in [e.name for e in entries(db, DENIED, "quarantine") if e.status == "failed"]

    # A clone appears (VmCreatedEvent, VmClonedEvent): unregistered and off, it is isolated
    # ahead from its events alone, and where vCenter says it came from is in its history.
    with admin(vcsim) as content:
        source = vm_named(content, DORMANT)
        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=source.resourcePool))
        WaitForTask(source.CloneVM_Task(folder=source.parent, name=CLONE, spec=spec))
    poll(lambda: isolated(nic_state(vcsim, CLONE)))

    def made_from() -> list[Any]:
        with Store.open(db) as store:
            return [h for h in store.vm_history(CLONE) if h.field == "made_from"]

    (entry,) = poll(made_from)
    assert (entry.new, entry.source) == (DORMANT, "event")

    # A rogue clone powered on the moment it exists (racing isolate-ahead): the power-on
    # event gets it quarantined, and /state times how long it ran exposed.
    with admin(vcsim) as content:
        source = vm_named(content, DORMANT)
        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=source.resourcePool))
        WaitForTask(source.CloneVM_Task(folder=source.parent, name=RACER, spec=spec))
        WaitForTask(vm_named(content, RACER).PowerOnVM_Task())
    poll(lambda: isolated(nic_state(vcsim, RACER)))

    def timed() -> list[dict[str, Any]]:
        return [x for x in (daemon.state() or {}).get("latencies", []) if x["vm"] == RACER]

    (latency,) = poll(timed)
    assert latency["how"] in ("gate", "already", "at-boot"), latency
    print(f"{RACER}: {latency['how']} {latency['seconds']}")  # reported, never asserted


@pytest.mark.usefixtures("vsphere_password")
def test_vcsim_cannot_disable_power_on(vcsim: Vcsim) -> None:
    """vCenter refuses a VM's power-on through ``AuthorizationManager.DisableMethods``; vcsim
    0.24 has no such method (simulator/authorization_manager.go), so on it the gate isolates
    ahead instead. Should a vcsim gain it, this fails and the lock gets its own test."""
    with VsphereConnector(vcsim.uri()) as conn:
        lock = power_on_lock(conn)
        assert lock.supported() is False
        assert "DisableMethods ('no vmomi type defined')" in lock.why
    with admin(vcsim) as content:
        vm = vm_named(content, "DC0_H0_VM0")
        if vm.runtime.powerState != "poweredOn":
            WaitForTask(vm.PowerOnVM_Task())
        assert vm.runtime.powerState == "poweredOn"  # nothing was disabled
        assert isinstance(vm, vim.VirtualMachine)
