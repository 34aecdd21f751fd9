"""Each action executor on the test driver: journaled before and after, no-op when in effect."""

from __future__ import annotations

import json
from pathlib import Path

import libvirt
import pytest

from tests.enforce.enforce_fleet import OFF, PAUSED, RUN, SPARE
from vmwarden.enforce import ActionRequest, EnforceContext, executors
from vmwarden.model import Finding, State
from vmwarden.model.finding import Severity
from vmwarden.notify import Dispatcher


def _run(ctx: EnforceContext, action: str, vm_id: str, params=None, *, finding=None):
    conn = ctx.conn(next(iter(ctx.connectors)))
    vm = conn.lookup(vm_id)
    req = ActionRequest(vm, params or {}, reason="policy: r1", rule="r1", finding=finding)
    return executors.get(action)(ctx, req)


def _begun(store, action: str) -> list:
    return [b["row"] for b in store.begun if b["action"] == action]


def test_pause_journals_the_state_it_found_then_pauses(ctx, store, conn):
    rec = _run(ctx, "pause", RUN)
    (first,) = _begun(store, "pause")
    assert first.status == "pending" and first.changes == {"state_before": "running"}
    assert (rec.action, rec.status, rec.id, rec.rule) == ("pause", "done", RUN, "r1")
    assert rec.changes["state_before"] == "running"
    assert conn.domain_state(RUN) == State.PAUSED


@pytest.mark.parametrize("vm_id", [PAUSED, OFF])
def test_pause_is_a_noop_when_the_vm_is_not_running(ctx, store, conn, vm_id):
    state = conn.domain_state(vm_id)
    rec = _run(ctx, "pause", vm_id)
    assert rec.status == "noop" and rec.journal_id is None
    assert str(state) in rec.reason
    assert store.journal_entries() == []
    assert conn.domain_state(vm_id) == state


@pytest.mark.parametrize("vm_id", [RUN, PAUSED])
def test_shutdown_journals_the_state_it_found_then_shuts_down(ctx, store, conn, vm_id):
    state = conn.domain_state(vm_id)
    rec = _run(ctx, "shutdown", vm_id)
    (first,) = _begun(store, "shutdown")
    assert first.status == "pending" and first.changes == {"state_before": str(state)}
    assert rec.status == "done"
    assert conn.domain_state(vm_id) == State.SHUTOFF  # the test driver stops at once


def test_shutdown_is_a_noop_when_already_off(ctx, store, conn):
    rec = _run(ctx, "shutdown", OFF)
    assert rec.status == "noop" and "shutoff" in rec.reason
    assert store.journal_entries() == []


def test_shutdown_twice_second_is_noop(ctx, store):
    assert _run(ctx, "shutdown", RUN).status == "done"
    assert _run(ctx, "shutdown", RUN).status == "noop"
    assert len(store.journal_entries(action="shutdown")) == 1


def test_snapshot_journals_its_name_first_and_the_snapshot_exists(ctx, store, conn):
    rec = _run(ctx, "snapshot", RUN)
    (first,) = _begun(store, "snapshot")
    name = first.changes["snapshot"]
    assert first.status == "pending" and name.startswith("vmwarden-r1-")
    assert rec.status == "done" and rec.changes["snapshot"] == name
    dom = conn.conn.lookupByUUIDString(RUN)
    assert dom.snapshotListNames() == [name]
    assert "policy: r1" in dom.snapshotLookupByName(name).getXMLDesc()


def test_snapshot_failure_is_journaled_as_failed(ctx, store, conn):
    dom = conn.conn.lookupByUUIDString(RUN)
    vm = conn.lookup(RUN)
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    dom.destroy()  # the VM disappears between inventory and action
    rec = executors.get("snapshot")(ctx, ActionRequest(vm, reason="policy: r1", rule="r1"))
    assert rec.status == "failed" and "no longer exists" in rec.error
    assert store.journal_get(rec.journal_id).status == "failed"


def test_tag_journals_the_previous_value_and_writes_the_metadata(ctx, store, conn):
    rec = _run(ctx, "tag", PAUSED, {"key": "dormant", "value": "yes"})
    (first,) = _begun(store, "tag")
    assert first.status == "pending"
    assert first.changes == {"key": "dormant", "value": "yes", "before": None}
    assert rec.status == "done"
    assert conn.get_metadata(PAUSED).tags == {"dormant": "yes"}

    changed = _run(ctx, "tag", PAUSED, {"key": "dormant", "value": "no"})
    assert changed.status == "done" and changed.changes["before"] == "yes"
    assert conn.get_metadata(PAUSED).tags == {"dormant": "no"}


def test_tag_is_a_noop_when_already_set(ctx, store, conn):
    _run(ctx, "tag", OFF, {"key": "dormant", "value": "yes"})
    entries = store.journal_entries()
    rec = _run(ctx, "tag", OFF, {"key": "dormant", "value": "yes"})
    assert rec.status == "noop" and "dormant=yes" in rec.reason
    assert store.journal_entries() == entries


def test_tag_keeps_the_other_metadata(ctx, conn):
    _run(ctx, "tag", OFF, {"key": "a", "value": "1"})
    _run(ctx, "tag", OFF, {"key": "b", "value": "2"})
    assert conn.get_metadata(OFF).tags == {"a": "1", "b": "2"}


def test_notify_journals_each_delivery(ctx, store, conn, tmp_path: Path):
    out = tmp_path / "alerts.ocsf"
    ctx.notifier = Dispatcher([{"type": "ocsf", "path": str(out)}])
    vm = conn.lookup(SPARE)
    finding = Finding("r1", "vm", SPARE, vm.name, vm.host, Severity.HIGH, {"packages": ["nc"]})
    rec = _run(ctx, "notify", SPARE, finding=finding)
    (first,) = _begun(store, "notify")
    assert first.status == "pending"
    assert rec.status == "done" and rec.error is None
    assert rec.changes["deliveries"] == [{"receiver": f"ocsf {out}", "ok": True, "error": None}]
    (line,) = out.read_text().splitlines()
    event = json.loads(line)
    assert event["resources"][0]["uid"] == SPARE
    assert event["resources"][0]["data"] == {"packages": ["nc"]}
    assert event["severity_id"] == 4


def test_notify_with_every_receiver_down_is_failed_with_the_reason(ctx, store, tmp_path: Path):
    ctx.notifier = Dispatcher([{"type": "ocsf", "path": str(tmp_path / "missing" / "x.ocsf")}])
    rec = _run(ctx, "notify", SPARE)
    assert rec.status == "failed"
    assert "No such file" in rec.error
    assert rec.changes["deliveries"][0]["ok"] is False


def test_notify_with_one_receiver_down_is_partial_and_names_the_failure(ctx, tmp_path: Path):
    ctx.notifier = Dispatcher(
        [
            {"type": "ocsf", "path": str(tmp_path / "ok.ocsf")},
            {"type": "ocsf", "path": str(tmp_path / "missing" / "x.ocsf")},
        ]
    )
    rec = _run(ctx, "notify", SPARE)
    assert rec.status == "partial"  # #10.5: due again at the next sweep, never silently done
    assert "missing" in rec.error
    assert [d["ok"] for d in rec.changes["deliveries"]] == [True, False]


def test_notify_without_receivers_is_a_noop(ctx, store):
    rec = _run(ctx, "notify", SPARE)
    assert rec.status == "noop" and store.journal_entries() == []
