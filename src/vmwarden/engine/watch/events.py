"""What one VM's domain events tell the daemon: the domain as it is now, and whether it
just started (the moment the power-on gate acts)."""

from __future__ import annotations

from typing import Any

import libvirt

from vmwarden.connectors.libvirt.domxml import parse_domain
from vmwarden.connectors.libvirt.events import DomainEvent
from vmwarden.connectors.libvirt.inventory import state_of
from vmwarden.engine.watch.judge import LIVE
from vmwarden.engine.watch.latency import run_id
from vmwarden.errors import ConnectorError, DomainGoneError
from vmwarden.model import VM, State


def came_up(batch: list[DomainEvent], last: State | None) -> bool:
    """Whether these events started the VM: a ``started`` event, or (QEMU resumes its CPUs
    just before libvirt reports the start) any event finding it live when it was known off."""
    if any(e.kind == "lifecycle" and e.detail == "started" for e in batch):
        return True
    return last is not None and last not in LIVE


def read_vm(conn: Any, vm_id: str) -> tuple[VM, int | None]:
    """The domain as it is now, from its XML (no address lookups: this is the fast path),
    and its run id (``latency.run_id``: which start of the VM this is)."""
    try:
        dom = conn.conn.lookupByUUIDString(vm_id)
        state = state_of(dom.state()[0])
        xml = dom.XMLDesc(0)
        vm = parse_domain(
            xml, host=conn.host, uri=conn.uri, state=state, persistent=bool(dom.isPersistent())
        )
        return vm, run_id(xml) if state in LIVE else None
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise DomainGoneError(f"VM {vm_id} no longer exists on {conn.host}") from None
        raise ConnectorError(f"cannot read VM {vm_id} on {conn.host}: {exc}") from None
