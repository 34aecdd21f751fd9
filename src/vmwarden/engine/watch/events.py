"""What one VM's events tell the daemon: the VM as it is now, and whether it just started
(the moment the power-on gate acts)."""

from __future__ import annotations

import time

from vmwarden.connectors.base import Connector
from vmwarden.engine.watch.judge import LIVE
from vmwarden.model import VM, State
from vmwarden.model.events import STARTED, STOPPED, VmEvent


def came_up(batch: list[VmEvent], last: State | None) -> bool:
    """Whether these events started the VM: a ``started`` event, or (QEMU resumes its CPUs
    just before libvirt reports the start) any event finding it live when it was known off."""
    if any(e.kind == STARTED for e in batch):
        return True
    return last is not None and last not in LIVE


class SweptStarts:
    """Starts a reconcile saw, and gated on full data, before their events were read.

    A platform that names no run of a VM (``Observed.run`` None: vSphere, EC2) cannot tell a
    late ``started`` event of a start the reconcile already judged from a new start; the
    gate's run tokens do that for libvirt. Judging it again "as just before its start" would
    read the store's running record as the state before (vSphere under load: a dormant VM
    the reconcile had just released was found "dormant since an unknown time" and held
    again). The reconcile marks each VM it saw come up; the first batch with a ``started``
    and no ``stopped`` is that start, and uses the mark up. Any ``stopped`` (or the VM read
    not running) forgets it: a start after that is a new one. Event times cannot decide
    this: a feed stamps what it receives, and a feed blocked for a few seconds delivers the
    start after the reconcile finished (the CI failure of session 5). A mark not used within
    ``ttl`` seconds lapses, so a lost ``stopped`` errs towards judging a start again (a
    hold), never towards letting one through.
    """

    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._seen: dict[str, float] = {}  # VM id → monotonic time of the mark

    def mark(self, vm_id: str) -> None:
        self._seen[vm_id] = time.monotonic()

    def forget(self, vm_id: str) -> None:
        """The VM was read not running, or stopped: a later start is a new one."""
        self._seen.pop(vm_id, None)

    def covers(self, vm_id: str, batch: list[VmEvent], run: int | None) -> bool:
        """Whether this batch is the late news of a start a reconcile gated (uses the mark)."""
        if run is not None or vm_id not in self._seen:
            return False
        if any(e.kind == STOPPED for e in batch):
            self.forget(vm_id)
            return False
        if not any(e.kind == STARTED for e in batch):
            return False
        marked = self._seen.pop(vm_id)
        return time.monotonic() - marked < self.ttl


def read_vm(conn: Connector, vm_id: str) -> tuple[VM, int | None]:
    """The VM as it is now (the connector's fast path: no address lookups) and its run
    token (which start of the VM this is; None when it is not running)."""
    seen = conn.observe(vm_id)
    return seen.vm, seen.run if seen.vm.state in LIVE else None
