"""A start event read after a reconcile already gated that start is not judged again, on a
platform that names no run of a VM (``engine.watch.events.SweptStarts``; found with vSphere
under load: the reconcile released a dormant VM that had booted isolated, then its late
``VmPoweredOnEvent`` judged it "as just before its start" from a store holding it running,
found its dormancy unknown and held it again). Event times do not decide it: CI's run of
session 5 delivered the start event after the reconcile had finished."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vmwarden.engine.watch.events import SweptStarts
from vmwarden.model.events import VmEvent

URI = "vsphere://vmw-v3@vcenter.example"
VM_ID = "vmw-v3-0000-4000-8000-000000000001"


def _event(kind: str, at: datetime | None = None) -> VmEvent:
    return VmEvent(URI, VM_ID, "vmw-v3-vm", kind, kind, at=at or datetime.now(UTC))


def test_a_start_the_reconcile_gated_is_covered_once_a_later_one_is_not() -> None:
    swept = SweptStarts()
    start = [_event("started")]
    assert not swept.covers(VM_ID, start, None)  # no reconcile saw it: judge it
    swept.mark(VM_ID)  # the reconcile saw it come up
    assert not swept.covers(VM_ID, [_event("config")], None)  # no start in the batch
    late = [_event("started", datetime.now(UTC) + timedelta(seconds=5))]
    assert swept.covers(VM_ID, late, None)  # received after the reconcile: still that start
    assert not swept.covers(VM_ID, start, None)  # the mark is used up: a second start is new


def test_a_stop_or_a_run_token_means_a_new_start() -> None:
    swept = SweptStarts()
    swept.mark(VM_ID)
    assert not swept.covers(VM_ID, [_event("started")], 7)  # run tokens tell starts apart
    assert not swept.covers(VM_ID, [_event("stopped"), _event("started")], None)
    assert not swept.covers(VM_ID, [_event("started")], None)  # the stop forgot the mark
    swept.mark(VM_ID)
    assert not swept.covers(VM_ID, [_event("stopped")], None)
    assert not swept.covers(VM_ID, [_event("started")], None)
    swept.mark(VM_ID)
    swept.forget(VM_ID)  # read shut off since: the next start is a new one
    assert not swept.covers(VM_ID, [_event("started")], None)


def test_a_mark_not_used_lapses_towards_judging_again() -> None:
    swept = SweptStarts(ttl=0.0)
    swept.mark(VM_ID)
    assert not swept.covers(VM_ID, [_event("started", datetime.now(UTC))], None)
