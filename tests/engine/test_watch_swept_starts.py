"""A start event read after a reconcile already gated that start is not judged again, on a
platform that names no run of a VM (``engine.watch.events.SweptStarts``; found with vSphere
under load: the reconcile released a dormant VM that had booted isolated, then its late
``VmPoweredOnEvent`` judged it "as just before its start" from a store holding it running,
found its dormancy unknown and held it again)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vmwarden.engine.watch.events import SweptStarts
from vmwarden.model.events import VmEvent

URI = "vsphere://vmw-v3@vcenter.example"
VM_ID = "vmw-v3-0000-4000-8000-000000000001"


def _event(kind: str, at: datetime) -> VmEvent:
    return VmEvent(URI, VM_ID, "vmw-v3-vm", kind, kind, at=at)


def test_a_start_the_reconcile_gated_is_covered_a_later_one_is_not() -> None:
    swept = SweptStarts()
    t0 = datetime.now(UTC)
    start = [_event("started", t0)]
    assert not swept.covers(VM_ID, start, None)  # no reconcile saw it: judge it
    swept.mark(VM_ID, t0 + timedelta(seconds=1))  # the reconcile saw it come up after
    assert swept.covers(VM_ID, start, None)
    assert not swept.covers(VM_ID, [_event("started", t0 + timedelta(seconds=2))], None)
    stop_start = [_event("stopped", t0), _event("started", t0)]
    assert not swept.covers(VM_ID, stop_start, None)  # a restart in the batch: a new start
    assert not swept.covers(VM_ID, [_event("config", t0)], None)  # no start in the batch
    assert not swept.covers(VM_ID, start, 7)  # a platform with run tokens tells starts apart
    swept.forget(VM_ID)  # read shut off since: the next start is a new one
    assert not swept.covers(VM_ID, start, None)
