"""The streaming sweep: one host at a time, so a million VMs fit in bounded memory.

``Sweep`` holds the whole estate (every VM, image and finding) at once: fine for thousands
of VMs, gigabytes at a million. This sweep never holds more than one host's VMs:

1. per host: inventory → lineage → write its VMs and images → judge it with every rule
   except the estate-wide ones → compare its findings with the stored ones *of that host*
   (``record_findings(only_hosts=True)``) → drop it, keeping only compact keys;
2. only when the policy has estate-wide rules (``duplicate-mac``, ``shared-password-hash``,
   ``duplicate-ssh-host-key``, ``duplicate-machine-id``): per host again, read its VMs back
   from the store and judge those rules against the estate-wide indexes, compared per host.

The estate-wide indexes are kept in memory, compactly (:class:`Duplicates`): a keyed 64-bit
hash of each value → the first VM's ``host\\0id\\0name``, and a group only for values seen
on two or more VMs; the first-VM map is dropped after pass 1. About 250 bytes per MAC
address against several kilobytes per VM record. (Computing them in SQL would need the
values in columns: MACs sit inside the record JSON and guest facts in their own tables.)
``mixed-classification-on-host`` needs no estate-wide index: a host's VMs are all in its own
batch, and its index is built from that batch as ``Sweep`` builds it from the estate.

Pass 1's reading and judging of a host (``engine/stream_host.py``) runs in this process by
default, or on Dask workers (``hosts``: ``distributed.host_tasks``), several hosts at once;
the master only writes and compares, in the order the hosts come back.

Judging uses the same ``evaluate`` and the same filters as ``Sweep``; only where the
duplicate indexes come from differs, and they have the same shape. A test checks that both
sweeps give the same findings (``tests/engine/test_stream_sweep.py``; with disk inspection,
``tests/engine/test_stream_inspect.py``). In this process a host's disks get their content
lineage and, with ``inspect`` enabled, their guest facts, host by host
(``stream_host.read_disks``); on Dask workers neither yet. What this sweep does not do
(yet): read ``--images`` directories or advisories, enforce; ``Sweep.run`` streams only
sweeps that ask for none of these (see ``Sweep._streams``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from vmwarden.enforce import mark_held
from vmwarden.engine.admission_records import vm_from_record
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.result import Unreachable
from vmwarden.engine.stream_host import HostExecutor, HostSweep, InProcessHosts, job_for
from vmwarden.errors import UnreachableError
from vmwarden.model import VM, Estate, Finding, Severity
from vmwarden.policy import Policy, evaluate
from vmwarden.policy.context import Context
from vmwarden.policy.filters.clones import Duplicates as CloneIndex
from vmwarden.policy.filters.clones import host_keys, machine_ids, password_hashes

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
MAX_WARNINGS = 1000  # a million VMs' disks can each warn: the first ones, then a count


def _mac_values(vm: VM) -> set[str] | None:
    return {nic.mac.lower() for nic in vm.nics if nic.mac}


def _guest(values: Callable[[Any], set[str] | None]) -> Callable[[VM], set[str] | None]:
    return lambda vm: values(vm.guest) if vm.guest is not None else None


#: The estate-wide indexes (``Context.index`` keys) and each VM's values for them.
ESTATE_WIDE: dict[str, Callable[[VM], set[str] | None]] = {
    "duplicate-macs": _mac_values,
    "duplicate-password-hashes": _guest(password_hashes),
    "duplicate-ssh-host-keys": _guest(host_keys),
    "duplicate-machine-ids": _guest(machine_ids),
}


class Duplicates:
    """One estate-wide value index, filled host by host: values on two or more VMs →
    those VMs' labels (``host/name``), as the filters' own builders give them."""

    __slots__ = ("_first", "_groups", "_key", "values")

    def __init__(self, values: Callable[[VM], set[str] | None]) -> None:
        self.values = values
        self._key = os.urandom(16)  # keyed: a tenant cannot forge a collision
        self._first: dict[int, str] = {}
        self._groups: dict[int, dict[tuple[str, str], str]] = {}

    def _hash(self, value: str) -> int:
        digest = hashlib.blake2b(value.encode(), digest_size=8, key=self._key).digest()
        return int.from_bytes(digest, "little")

    def add(self, vm: VM) -> None:
        for value in self.values(vm) or ():
            h = self._hash(value)
            first = self._first.setdefault(h, f"{vm.host}\0{vm.id}\0{vm.name}")
            host, vm_id, name = first.split("\0", 2)
            if (host, vm_id) != (vm.host, vm.id):
                group = self._groups.setdefault(h, {(host, vm_id): f"{host}/{name}"})
                group[(vm.host, vm.id)] = f"{vm.host}/{vm.name}"

    def finish(self) -> None:
        """End of pass 1: only the groups are needed from here on."""
        self._first = {}

    def shared(self, value: str) -> list[str] | None:
        group = self._groups.get(self._hash(value))
        return sorted(group.values()) if group is not None and len(group) > 1 else None

    def __len__(self) -> int:
        return len(self._first) + len(self._groups)


def estate_wide_rules(policy: Policy) -> set[str]:
    """Names of the rules whose filters ask for an estate-wide index (found by preparing
    each rule against an empty estate and looking at the indexes it asked for)."""
    names = set()
    for rule in policy.rules:
        ctx = Context(Estate(vms=[], images=[], catalog={}, now=datetime.now(UTC)), policy)
        rule.filter.prepare(ctx)
        if ESTATE_WIDE.keys() & ctx._indexes.keys():
            names.add(rule.name)
    return names


def host_indexes(vms: Iterable[VM], wide: dict[str, Duplicates]) -> dict[str, Any]:
    """The estate-wide indexes restricted to the values of ``vms``, in the shape the
    filters' own builders give (``mac.duplicated_macs``, ``clones.duplicates``)."""
    vms = list(vms)
    out: dict[str, Any] = {}
    for key, index in wide.items():
        shared: dict[str, list[str]] = {}
        involved: dict[int, tuple[VM, list[str], list[str]]] = {}
        for vm in vms:
            hits = []
            for value in index.values(vm) or ():
                labels = index.shared(value)
                if labels is not None:
                    shared[value] = labels
                    hits.append(value)
            if hits:
                others = sorted({o for v in hits for o in shared[v]})
                involved[id(vm)] = (vm, sorted(hits), others)
        if key == "duplicate-macs":
            out[key] = shared
        else:
            out[key] = CloneIndex(shared, involved, frozenset(id(vm) for vm in vms))
    return out


@dataclass
class StreamResult:
    """What a streaming sweep counted; no per-VM lists (that is the point)."""

    hosts: int = 0
    vms: int = 0
    findings: int = 0
    opened: int = 0
    resolved: int = 0
    warnings: list[str] = field(default_factory=list)
    unreachable: list[Unreachable] = field(default_factory=list)
    started: datetime | None = None
    finished: datetime | None = None
    warnings_dropped: int = 0  # past MAX_WARNINGS: counted, not kept
    worst: Severity | None = None
    on_workers: int = 0  # hosts read and judged by Dask workers (the rest: this process)

    def counts(self) -> dict[str, Any]:
        return {
            "hosts": self.hosts,
            "vms": self.vms,
            "findings": self.findings,
            "opened": self.opened,
            "resolved": self.resolved,
            "worst": str(self.worst) if self.worst is not None else None,
            "warnings_dropped": self.warnings_dropped,
            "on_workers": self.on_workers,
        }

    def warn(self, lines: list[str]) -> None:
        room = max(MAX_WARNINGS - len(self.warnings), 0)
        self.warnings += lines[:room]
        self.warnings_dropped += max(len(lines) - room, 0)


class StreamingSweep:
    """A report-only sweep host by host (see the module docstring)."""

    def __init__(
        self,
        store: Any,
        policy: Policy,
        *,
        progress: Progress | None = None,
        now: datetime | None = None,
        hosts: HostExecutor | None = None,
        inspect: InspectionOptions | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.progress = progress or (lambda _s, _d, _t: None)
        self.now = now
        self.wide_rules: set[str] = set()
        #: where hosts are read and judged: this process (default) or Dask workers
        self.hosts = hosts or InProcessHosts(store, inspect)

    def run(self, uris: Iterable[str], *, total: int = 0) -> StreamResult:
        """Sweep ``uris``; ``total``: their number, for progress only.

        Unlike ``Sweep``, the cyclic collector keeps running between hosts: the live set
        stays one host small, so its collections are cheap, and with it paused for the
        whole stream every host's reference cycles (SQLAlchemy results, connections)
        would pile up to ~1.8 KB per VM. ``evaluate`` still pauses it per host.
        """
        return self._run(uris, total)

    def _run(self, uris: Iterable[str], total: int) -> StreamResult:
        result = StreamResult(started=datetime.now(UTC))
        now = self.now or result.started
        scan_id = self.store.begin_scan([])  # the URI list may be 10,000 long: counts only
        wide_rules = self.wide_rules = estate_wide_rules(self.policy)
        local_policy = replace(
            self.policy, rules=tuple(r for r in self.policy.rules if r.name not in wide_rules)
        )
        wide = {k: Duplicates(v) for k, v in ESTATE_WIDE.items()} if wide_rules else {}
        catalog = {**self.store.catalog(), **self.policy.catalog()}
        job = job_for(self.store, local_policy, catalog, now)
        hosts: list[str] = []
        for i, swept in enumerate(self.hosts.sweep(uris, job), 1):
            if swept.error is not None:
                result.unreachable.append(Unreachable(swept.uri, swept.error, swept.hint))
                log.info("host unreachable, skipped: %s", swept.error)
                continue
            hosts.append(swept.host)
            result.on_workers += bool(swept.where)
            self._pass_one(swept, wide, now, result)
            result.warn(swept.warnings)
            self.progress("host", i, total)
        result.warn(self.hosts.warnings)
        if not hosts and result.unreachable:
            raise UnreachableError(
                "; ".join(u.error for u in result.unreachable[:5]),
                hint="no host answered; nothing was changed",
            )
        for index in wide.values():
            index.finish()
        if wide_rules:
            wide_policy = replace(
                self.policy, rules=tuple(r for r in self.policy.rules if r.name in wide_rules)
            )
            for i, host in enumerate(hosts, 1):
                self._pass_two(host, wide_policy, wide, catalog, now, result)
                self.progress("estate-wide", i, len(hosts))
        result.hosts = len(hosts)
        result.finished = datetime.now(UTC)
        self.store.finish_scan(
            scan_id, {"vms": result.vms, "findings": result.findings, "actions": 0}
        )
        return result

    def _pass_one(
        self, swept: HostSweep, wide: dict[str, Duplicates], now: datetime, result: StreamResult
    ) -> None:
        """Write one host read and judged (here or on a worker) and compare its findings."""
        vms = swept.vms
        self.store.record_inventory(vms, now=now, complete_hosts={swept.host})
        self.store.record_images(swept.images, now=now, complete_hosts={swept.host})
        for index in wide.values():
            for vm in vms:
                index.add(vm)
        scope = {"exclude_rules": self.wide_rules}
        self._record(swept.findings, swept.host, scope, now, result)
        result.vms += len(vms)

    def _pass_two(
        self,
        host: str,
        policy: Policy,
        wide: dict[str, Duplicates],
        catalog: dict[str, str],
        now: datetime,
        result: StreamResult,
    ) -> None:
        vms = [vm_from_record(r) for r in self.store.host_records(host)]
        mark_held(self.store, vms)
        estate = Estate(vms=vms, images=[], catalog=catalog, now=now, hosts=[host])
        found = evaluate(policy, estate, indexes=host_indexes(vms, wide))
        self._record(found, host, {"scope_rules": self.wide_rules}, now, result)

    def _record(
        self,
        found: list[Finding],
        host: str,
        scope: dict[str, set[str]],
        now: datetime,
        r: StreamResult,
    ) -> None:
        """Compare ``host``'s findings with its stored ones. ``scope``: the rules this pass
        judged (pass 2), or the rules it did not (pass 1: every other rule, including rules
        since removed from the policy, which ``Sweep`` resolves too)."""
        delta = self.store.record_findings(
            found, now=now, scope_hosts={host}, only_hosts=True, **scope
        )
        r.findings += len(found)
        for f in found:
            if r.worst is None or f.severity > r.worst:
                r.worst = f.severity
        r.opened += len(delta.opened)
        r.resolved += len(delta.resolved)
