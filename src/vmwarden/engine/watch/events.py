"""What one VM's events tell the daemon: the VM as it is now, and whether it just started
(the moment the power-on gate acts)."""

from __future__ import annotations

from vmwarden.connectors.base import Connector
from vmwarden.engine.watch.judge import LIVE
from vmwarden.model import VM, State
from vmwarden.model.events import STARTED, VmEvent


def came_up(batch: list[VmEvent], last: State | None) -> bool:
    """Whether these events started the VM: a ``started`` event, or (QEMU resumes its CPUs
    just before libvirt reports the start) any event finding it live when it was known off."""
    if any(e.kind == STARTED for e in batch):
        return True
    return last is not None and last not in LIVE


def read_vm(conn: Connector, vm_id: str) -> tuple[VM, int | None]:
    """The VM as it is now (the connector's fast path: no address lookups) and its run
    token (which start of the VM this is; None when it is not running)."""
    seen = conn.observe(vm_id)
    return seen.vm, seen.run if seen.vm.state in LIVE else None
