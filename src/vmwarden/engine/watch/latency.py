"""How long a rejected VM ran exposed: one ``Latency`` per start, from the start's event.

``/state`` once reported 1.4-2 s for a few starts while the exposure measured from outside was
6-16 ms, because it timed the wrong pair: from the *first event of a coalesced batch* (a
``defined`` or ``resumed`` read seconds earlier) to the return of the whole quarantine call
(the live NIC, then the persistent definition, then three journal commits contending with the
reconcile the same start triggers). And a start whose quarantine was a no-op (the VM booted
from a definition isolated ahead of time, or the reconcile isolated it first) recorded
nothing. Here the pair is the start's own event (``started``; ``resumed`` when QEMU's resume
is read first) and the moment libvirt returned from moving the *live* NIC, which is when the
VM stops being exposed; every start the gate holds records one entry, saying how it ended:

- ``gate``: the gate moved the live NIC; ``seconds`` is event → live NIC moved;
- ``at-boot``: the VM booted from an isolated definition (the hold predates the start): 0 s;
- ``already``: someone else (the reconcile) isolated it after the start and before the gate
  looked; ``seconds`` is event → the gate saw it isolated (an upper bound);
- ``failed``: the quarantine did not complete; ``seconds`` is None.

A start can be judged from a batch without its own event: the previous run's ``stopped`` is
read after the VM is live again, and the ``started`` follows in the next batch. The entry is
then timed from that earlier event (an upper bound) until the start's own event arrives, which
re-times it (``Latencies.retime``): from the start's event, 0 s when the NIC moved first.
That event may be read only after the VM has stopped or vanished again (a short run): its
first ``started`` still belongs to the last run judged (``first_started``), events come in
order, so it re-times that run's entry even though the VM can no longer be read.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from vmwarden.model.events import RESUMED, STARTED, VmEvent

_START_KINDS = (STARTED, RESUMED)
MAX_KEPT = 10_000  # latencies kept for /state (a long-lived daemon must not grow forever)


@dataclass(slots=True)
class Latency:
    """One start of a VM the gate holds: when its event arrived and when it was isolated."""

    vm: str
    vm_id: str
    event: str  # the lifecycle event the latency is measured from
    started: datetime  # that event's arrival (wall clock, for ordering against the outside)
    seconds: float | None  # event → live NICs isolated (None: the quarantine failed)
    how: str  # gate | at-boot | already | failed
    run: int | None = None  # libvirt's run id of this start (None: not known)
    isolated_at: float | None = None  # monotonic time the VM was seen isolated

    @property
    def isolated(self) -> datetime | None:
        return None if self.seconds is None else self.started + timedelta(seconds=self.seconds)

    def to_dict(self) -> dict[str, Any]:
        isolated = self.isolated
        return {
            "vm": self.vm,
            "id": self.vm_id,
            "event": self.event,
            "started": self.started.isoformat(),
            "isolated": isolated.isoformat() if isolated is not None else None,
            "seconds": self.seconds,
            "how": self.how,
        }


def start_event(batch: list[VmEvent]) -> VmEvent:
    """The event a start is timed from: the batch's last ``started`` (an earlier one belongs
    to a run that has ended since), else the first ``resumed`` (QEMU's resume is reported a
    few ms before libvirt's ``started``), else the first event that found the VM live."""
    for e in reversed(batch):
        if e.kind == STARTED:
            return e
    for e in batch:
        if e.kind in _START_KINDS:
            return e
    return batch[0]


def first_started(batch: list[VmEvent]) -> VmEvent | None:
    """The batch's first ``started``: for a VM read shut off or gone, the late start event of
    the last run the gate judged (a later ``started`` would be a run nobody saw live)."""
    for e in batch:
        if e.kind == STARTED:
            return e
    return None


def arrival(event: VmEvent) -> datetime:
    """The wall-clock time an event arrived: its own reading (``at``), taken beside
    ``received`` in the callback. Mapping ``received`` onto a later ``now()`` read two clocks
    one after the other; a thread paused between the two dated the event that much too early,
    before the start that caused it (seen on a loaded host by test_watch_latency)."""
    return event.at


@dataclass
class LiveTimer:
    """The quarantine's ``on_live`` callback: ``live_at`` is the monotonic time the connector
    *returned* from moving the running VM's NIC (the VM is off the network from then on);
    None when nothing live was moved (it was isolated already, or it is not running)."""

    live_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> None:
        with self._lock:
            self.live_at = time.monotonic()


class Latencies:
    """The latencies of this daemon's life, bounded, thread-safe, in start order."""

    def __init__(self) -> None:
        self._items: list[Latency] = []
        self._lock = threading.Lock()

    def add(self, item: Latency) -> None:
        with self._lock:
            self._items.append(item)
            self._items.sort(key=lambda x: x.started)
            del self._items[:-MAX_KEPT]

    def retime(self, vm_id: str, run: int | None, event: VmEvent) -> bool:
        """Time an entry from its start's own event when that arrives after the judgement
        (see the module's docstring); says whether an entry was re-timed."""
        if run is None or event.kind not in _START_KINDS:
            return False
        with self._lock:
            for item in reversed(self._items):
                if item.vm_id == vm_id and item.run == run:
                    if item.event in _START_KINDS:
                        return False
                    item.event, item.started = event.kind, arrival(event)
                    if item.seconds is not None and item.isolated_at is not None:
                        item.seconds = max(0.0, item.isolated_at - event.received)
                    self._items.sort(key=lambda x: x.started)
                    return True
        return False

    def __iter__(self) -> Any:
        with self._lock:
            return iter(list(self._items))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
