"""The watch daemon's fast read of one domain: its VM record and the run it is in.

An event says only "something happened to VM X"; the daemon then reads the domain as it is
now. This is that read for libvirt: the domain XML parsed without address lookups (the fast
path: the gate acts on it within milliseconds of a start), and libvirt's run id (the
domain's ``id='N'``, new at every start), so that a start event read late is matched to the
start it belongs to.
"""

from __future__ import annotations

import re

import libvirt

from vmwarden.connectors.libvirt.domxml import parse_domain
from vmwarden.connectors.libvirt.inventory import state_of
from vmwarden.errors import ConnectorError, DomainGoneError
from vmwarden.model.events import Observed
from vmwarden.model.vm import State

_RUN_ID = re.compile(r"<domain\b[^>]*\sid=['\"](\d+)['\"]")
# as the watch daemon's LIVE: a domain with a run (its CPUs may be paused)
_LIVE = frozenset({State.RUNNING, State.PAUSED, State.BLOCKED, State.PMSUSPENDED})


def run_id(domain_xml: str) -> int | None:
    """The domain's run id (libvirt's ``id='N'``, new at every start; None when shut off):
    one start is one run however many of its events are read."""
    m = _RUN_ID.search(domain_xml[:512])
    return int(m.group(1)) if m else None


def observe(conn: libvirt.virConnect, uri: str, host: str, vm_id: str) -> Observed:
    """The domain ``vm_id`` (a UUID) as it is now; ``DomainGoneError`` when it no longer
    exists, ``ConnectorError`` for any other libvirt failure."""
    try:
        dom = conn.lookupByUUIDString(vm_id)
        state = state_of(dom.state()[0])
        xml = dom.XMLDesc(0)
        vm = parse_domain(xml, host=host, uri=uri, state=state, persistent=bool(dom.isPersistent()))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise DomainGoneError(f"VM {vm_id} no longer exists on {host}") from None
        raise ConnectorError(f"cannot read VM {vm_id} on {host}: {exc}") from None
    return Observed(vm, run_id(xml) if state in _LIVE else None)
