"""What the store recorded last scan, handed to the inventory so unchanged domains skip parsing.

A one-shot ``scan`` is a new process: the connection's ``ParseCache`` is empty, so every
domain would be parsed again although most are byte-for-byte what the last scan saw. The
store keeps each VM's input digest (XML + state + persistence + host + URI) and the chains
its XML gave; ``StoredInputs`` loads them (one SELECT) in a thread started before the
hypervisors are contacted, so the load overlaps the connection's set-up, and rebuilds a VM
from its stored record when libvirt's input digest matches.

A rebuilt VM is what ``parse_domain`` returned for that input: the record minus what the
sweep adds after parsing (lineage of the disks, NIC addresses, agent facts, the store's
times), which the sweep then adds again as for a parsed one.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from vmwarden.engine.admission_records import vm_from_record
from vmwarden.errors import VmwardenError
from vmwarden.model import VM, Layer
from vmwarden.store.records import record_of

log = logging.getLogger(__name__)

Known = dict[str, tuple[str, dict[str, Any], list[Any]]]
# Record fields the store or the sweep set, not ``parse_domain``: left out of a rebuilt VM.
_ADDED_AFTER_PARSING = frozenset({"first_seen", "last_seen", "state_since", "guest", "agent"})


class StoredInputs:
    """``KnownDomains`` over the store's ``known_inputs``, loaded in the background."""

    def __init__(self, store: Any) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="known-inputs")
        self._future: Future[Known] = self._pool.submit(store.known_inputs)
        self._known: Known | None = None
        self.rebuilt: set[str] = set()

    def _table(self) -> Known:
        if self._known is None:
            try:
                self._known = self._future.result()
            except (VmwardenError, Exception) as exc:
                log.warning("stored inputs not loaded, every domain is parsed: %s", exc)
                self._known = {}
        return self._known

    def wait(self) -> None:
        """Block until the load ended (before the caller uses the store again)."""
        self._table()
        self._pool.shutdown(wait=True)

    def digest(self, vm_id: str) -> str | None:
        entry = self._table().get(vm_id)
        return entry[0] if entry is not None else None

    def rebuild(self, vm_id: str) -> VM:
        _digest, record, chains = self._table()[vm_id]
        vm = vm_from_input(record, chains)
        self.rebuilt.add(vm_id)
        return vm

    def unchanged(self, vm: VM) -> bool:
        """Whether a rebuilt VM, now that the sweep added lineage, addresses, agent facts and
        held NICs' origins again, equals its stored record: then the store need not fingerprint it.

        Only those parts can differ: everything else was copied from the record.
        """
        if vm.id not in self.rebuilt:
            return False
        record = self._table()[vm.id][1]
        disks, nics = record.get("disks") or [], record.get("nics") or []
        if len(disks) != len(vm.disks) or len(nics) != len(vm.nics):
            return False
        if any(
            record_of(d.chain) != rd.get("chain") for d, rd in zip(vm.disks, disks, strict=True)
        ):
            return False
        if any(
            n.addresses != rn.get("addresses")
            or record_of(n.quarantined_from) != rn.get("quarantined_from")  # held or released
            for n, rn in zip(vm.nics, nics, strict=True)
        ):
            return False
        return record_of(vm.agent) == record.get("agent") and vm.guest is None

    def chains(self, vm_id: str, digest: str) -> list[Any] | None:
        """The stored chains of a VM whose input digest is ``digest`` (None: other input)."""
        entry = self._table().get(vm_id)
        return entry[2] if entry is not None and entry[0] == digest else None


def input_chains(vm: VM) -> list[list[list[Any]]]:
    """Each disk's chain as parsed from the XML (path, format, type), before lineage."""
    return [[[layer.path, layer.format, layer.type] for layer in d.chain] for d in vm.disks]


def vm_from_input(record: dict[str, Any], chains: list[Any]) -> VM:
    """The VM ``parse_domain`` gave for the input the record was written from: the stored
    record (``vm_from_record``) without what the sweep adds after parsing, each disk's chain
    as the XML gave it.

    Raises ``ValueError`` when the record and the chains do not fit together (the caller
    then parses).
    """
    disks = record.get("disks") or []
    if len(disks) != len(chains):
        raise ValueError(f"{record.get('id')}: {len(disks)} disks, {len(chains)} chains")
    parsed = {k: v for k, v in record.items() if k not in _ADDED_AFTER_PARSING}
    parsed["disks"] = [{**d, "chain": []} for d in disks]  # lineage is not rebuilt twice
    vm = vm_from_record(parsed)
    for disk, chain in zip(vm.disks, chains, strict=True):
        disk.chain = [Layer(p, f, t) for p, f, t in chain]
    for nic in vm.nics:
        nic.addresses = []
    vm.agent_channel = record.get("agent_channel")
    return vm
