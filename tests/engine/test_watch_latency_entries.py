"""``Latencies``: one entry per start, re-timed from the start's own event when it comes late.

The real-libvirtd test (tests/integration/test_watch_latency.py) sees the case this covers
only when the scheduler happens to split a restart's events; here it is built on purpose.
"""

from __future__ import annotations

import time

from vmwarden.engine.watch.latency import (
    Latencies,
    Latency,
    arrival,
    first_started,
    start_event,
)
from vmwarden.model.events import VmEvent


def event(kind: str, received: float) -> VmEvent:
    return VmEvent("qemu:///system", "id-1", "vm", kind, kind, received=received)


def test_a_start_judged_from_the_previous_runs_stopped_is_retimed_from_its_started() -> None:
    t0 = time.monotonic()
    stopped, started = event("stopped", t0), event("started", t0 + 0.030)
    assert start_event([stopped]) is stopped  # nothing better in that batch
    lat = Latencies()
    isolated_at = t0 + 0.050
    lat.add(Latency("vm", "id-1", "stopped", arrival(stopped), 0.050, "gate", 7, isolated_at))

    assert lat.retime("id-1", 7, started)
    (entry,) = list(lat)
    assert entry.event == "started"
    assert abs(entry.seconds - 0.020) < 1e-9  # from the start's own event, not the stop
    assert not lat.retime("id-1", 7, event("resumed", t0 + 0.040))  # timed from a start already


def test_isolated_before_the_started_event_arrived_is_zero_not_negative() -> None:
    t0 = time.monotonic()
    lat = Latencies()
    lat.add(Latency("vm", "id-1", "stopped", arrival(event("stopped", t0)), 0.01, "gate", 3, t0))
    assert lat.retime("id-1", 3, event("started", t0 + 0.5))
    assert next(iter(lat)).seconds == 0.0


def test_retime_touches_only_the_same_run_and_only_start_events() -> None:
    t0 = time.monotonic()
    lat = Latencies()
    lat.add(Latency("vm", "id-1", "stopped", arrival(event("stopped", t0)), 0.2, "gate", 3, t0))
    assert not lat.retime("id-1", 4, event("started", t0 + 0.1))  # another run
    assert not lat.retime("id-1", 3, event("defined", t0 + 0.1))  # not a start
    assert not lat.retime("id-2", 3, event("started", t0 + 0.1))  # another VM
    assert next(iter(lat)).event == "stopped"


def test_a_late_started_read_after_the_vm_stopped_again_retimes_the_judged_run() -> None:
    """A short run: judged from the previous stop, destroyed before its own ``started`` was
    read; the daemon can no longer read the run id, the last judged run stands for it."""
    t0 = time.monotonic()
    lat = Latencies()
    lat.add(Latency("vm", "id-1", "stopped", arrival(event("stopped", t0)), 0.05, "gate", 9, t0))
    late = [event("started", t0 + 0.01), event("stopped", t0 + 0.5), event("started", t0 + 0.9)]
    first = first_started(late)
    assert first is late[0]  # the judged run's start, not a later run's
    assert lat.retime("id-1", 9, first)
    assert next(iter(lat)).event == "started"
    assert first_started([event("stopped", t0), event("defined", t0)]) is None


def test_arrival_is_the_events_own_wall_clock_reading() -> None:
    """Not ``now()`` minus the monotonic age: two clock reads, and a pause between them on a
    loaded host dated a start before the moment it was caused."""
    e = event("started", time.monotonic())
    time.sleep(0.02)
    assert arrival(e) == e.at
