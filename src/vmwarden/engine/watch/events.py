"""What one VM's events tell the daemon: the VM as it is now, and whether it just started
(the moment the power-on gate acts)."""

from __future__ import annotations

from datetime import datetime

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
    again). The reconcile marks each VM it saw come up with the time it finished; a batch
    whose last ``started`` arrived by then, with no ``stopped`` in it, is that start.
    """

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}

    def mark(self, vm_id: str, at: datetime) -> None:
        self._seen[vm_id] = at

    def forget(self, vm_id: str) -> None:
        """The VM was read not running: a later start is a new one."""
        self._seen.pop(vm_id, None)

    def covers(self, vm_id: str, batch: list[VmEvent], run: int | None) -> bool:
        seen = self._seen.get(vm_id)
        if run is not None or seen is None or any(e.kind == STOPPED for e in batch):
            return False
        started = [e for e in batch if e.kind == STARTED]
        return bool(started) and started[-1].at <= seen


def read_vm(conn: Connector, vm_id: str) -> tuple[VM, int | None]:
    """The VM as it is now (the connector's fast path: no address lookups) and its run
    token (which start of the VM this is; None when it is not running)."""
    seen = conn.observe(vm_id)
    return seen.vm, seen.run if seen.vm.state in LIVE else None
