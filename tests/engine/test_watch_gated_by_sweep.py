"""A start event read after a reconcile already gated that start is not judged again
(``engine.watch.events.gated_by_sweep``; found with vSphere under load: the reconcile
released a dormant VM that had booted isolated, then its late ``VmPoweredOnEvent`` judged it
"as just before its start" from a store holding it running, and held it again)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vmwarden.engine.watch.events import gated_by_sweep
from vmwarden.model import VM, State
from vmwarden.model.events import VmEvent
from vmwarden.store import Store

URI = "vsphere://vmw-v3@vcenter.example"
VM_ID = "vmw-v3-0000-4000-8000-000000000001"


def _vm(state: State, since: datetime | None) -> VM:
    vm = VM(id=VM_ID, name="vmw-v3-vm", host="esx1", uri=URI, state=state)
    vm.state_since = since
    return vm


def _started(at: datetime) -> list[VmEvent]:
    return [VmEvent(URI, VM_ID, "vmw-v3-vm", "started", "VmPoweredOnEvent", at=at)]


def _journal(store: Store, action: str, actor: str) -> None:
    store.journal_begin(
        action, vm_id=VM_ID, vm_name="vmw-v3-vm", host="esx1", uri=URI, actor=actor,
        status="done",
    )  # fmt: skip


def test_a_start_the_gate_acted_on_in_a_reconcile_is_not_judged_again(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as store:
        started_at = datetime.now(UTC) - timedelta(seconds=2)
        swept = _vm(State.RUNNING, datetime.now(UTC))  # the reconcile recorded it running
        batch = _started(started_at)
        assert not gated_by_sweep(store, swept, batch)  # no action since: judge it
        _journal(store, "release", "admin")
        assert not gated_by_sweep(store, swept, batch)  # an operator's action is not the gate's
        time.sleep(0.01)
        _journal(store, "release", "vmwarden-gate")
        assert gated_by_sweep(store, swept, batch)


def test_a_start_newer_than_the_running_record_is_judged(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as store:
        _journal(store, "quarantine", "vmwarden-gate")  # e.g. isolated ahead, long before
        time.sleep(0.01)
        ran = datetime.now(UTC) - timedelta(minutes=5)
        batch = _started(datetime.now(UTC))  # a new start, after the record of the last run
        assert not gated_by_sweep(store, _vm(State.RUNNING, ran), batch)
        assert not gated_by_sweep(store, _vm(State.SHUTOFF, ran), batch)
        assert not gated_by_sweep(store, None, batch)
        late = _vm(State.RUNNING, datetime.now(UTC) + timedelta(seconds=1))
        assert not gated_by_sweep(store, late, batch)  # the gate's entry predates this start
        stopped = [VmEvent(URI, VM_ID, "vmw-v3-vm", "stopped", "VmPoweredOffEvent")]
        assert not gated_by_sweep(store, late, stopped)  # no start in the batch
