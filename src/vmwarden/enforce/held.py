"""Which NICs vmwarden holds in quarantine, and where each was before (``Nic.quarantined_from``).

Policy must judge a held VM by the NICs it had, not by the quarantine network vmwarden put
them on: judged as found, every quarantined VM would get a fresh ``outside-zone`` finding (and
an alert) on the quarantine network, a VM held by the power-on gate could never pass and be
released, and listing ``quarantine`` in every zone would let real violators pass once held
(released, then quarantined again, each reconcile). The engine marks the VMs before
evaluating them; ``VM.judged`` gives policy the pre-quarantine view.

A NIC counts as held only while it is where the quarantine put it (on the quarantine entry's
network: libvirt's ``network``, vSphere's portgroup) and the entry recorded its original: a
NIC someone moved elsewhere since is judged where it now is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from vmwarden.connectors.capabilities import RecordReader, records_of
from vmwarden.errors import VmwardenError
from vmwarden.model import VM, ActionRecord, Nic, NicOrigin, State
from vmwarden.model.isolation import QuarantineSpec

log = logging.getLogger(__name__)

_OFF = (State.SHUTOFF, State.CRASHED, State.NOSTATE)  # the inventory read the definition


def mark_held(store: Any, vms: Iterable[VM]) -> None:
    """Set (or clear) ``quarantined_from`` on every NIC of ``vms`` from the journal."""
    mark_with(store.held_quarantines(), vms)


def mark_vm_held(store: Any, vm: VM) -> None:
    """``mark_held`` for one VM (the power-on gate's and the admission hook's judgement)."""
    entry = store.active_quarantine(vm.id)
    mark_with({vm.id: entry} if entry is not None else {}, [vm])


def mark_with(held: Mapping[str, ActionRecord], vms: Iterable[VM]) -> None:
    """``mark_held`` with the active quarantines already read (VM id → journal entry)."""
    for vm in vms:
        entry = held.get(vm.id)
        if entry is None:
            for nic in vm.nics:
                nic.quarantined_from = None  # a record rebuilt from the store may carry one
            continue
        spec = QuarantineSpec.from_journal(entry.changes)
        targets = {t for t in (spec.network, spec.vsphere_portgroup) if t}
        try:
            reader = records_of(entry.uri or vm.uri)
        except VmwardenError as exc:  # a platform this build does not know: judged as found
            log.warning("quarantine records of %s cannot be read: %s", vm.name, exc)
            continue
        recorded = {reader.key(n): n for n in entry.changes.get("nics") or ()}
        live = vm.state not in _OFF
        for nic in vm.nics:
            nic.quarantined_from = _origin(
                reader, nic, recorded.get(nic.mac or ""), targets, live=live
            )


def _origin(
    reader: RecordReader,
    nic: Nic,
    recorded: dict[str, Any] | None,
    targets: set[str],
    *,
    live: bool,
) -> NicOrigin | None:
    network = nic.network
    if recorded is None or network is None or network not in targets:
        return None
    try:
        return reader.origin(recorded, network, live=live)
    except VmwardenError as exc:
        # unreadable record: judge the NIC as unplaceable (unknown), never as the quarantine
        log.warning("quarantine record of NIC %s is unreadable: %s", nic.mac, exc)
        return NicOrigin(type="unknown")
