"""What one VM's events tell the daemon: the VM as it is now, and whether it just started
(the moment the power-on gate acts)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from vmwarden.connectors.base import Connector
from vmwarden.engine.watch.gate import DAEMON_ACTORS
from vmwarden.engine.watch.judge import LIVE
from vmwarden.model import VM, State
from vmwarden.model.events import STARTED, VmEvent


def came_up(batch: list[VmEvent], last: State | None) -> bool:
    """Whether these events started the VM: a ``started`` event, or (QEMU resumes its CPUs
    just before libvirt reports the start) any event finding it live when it was known off."""
    if any(e.kind == STARTED for e in batch):
        return True
    return last is not None and last not in LIVE


def gated_by_sweep(store: Any, prior: VM | None, batch: list[VmEvent]) -> bool:
    """Whether a reconcile saw this batch's start first and the gate acted on it there (a
    daemon quarantine or release journaled since the start event arrived): that start was
    gated on full data (``Gate.after_reconcile``), and the late event must not judge it
    again "as just before its start" from a store that already holds it running (that read
    a just-released VM's dormancy as unknown and held it again)."""
    started = [e for e in batch if e.kind == STARTED]
    if not started or prior is None or prior.state not in LIVE or prior.state_since is None:
        return False
    at = started[-1].at
    since = prior.state_since if prior.state_since.tzinfo else prior.state_since.replace(tzinfo=UTC)
    if since < at:
        return False  # the VM's running record is older than this start: not the sweep's
    acted = store.journal_entries(vm_id=prior.id, since=at, limit=10)
    return any(e.actor in DAEMON_ACTORS for e in acted)


def read_vm(conn: Connector, vm_id: str) -> tuple[VM, int | None]:
    """The VM as it is now (the connector's fast path: no address lookups) and its run
    token (which start of the VM this is; None when it is not running)."""
    seen = conn.observe(vm_id)
    return seen.vm, seen.run if seen.vm.state in LIVE else None
