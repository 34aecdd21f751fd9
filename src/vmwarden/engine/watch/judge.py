"""The power-on gate's judgement: hold a VM in quarantine, or let it be?

Two moments, two questions:

- ``at_start``: the VM is starting (or is shut off and someone may start it). It is judged
  *as it was just before*, shut off: since when it was off comes from the store, so
  ``dormant`` measures the time off. Held when it is unknown (never seen by the store),
  unregistered, fails the policy's ``gate`` (``deny`` or ``hold``), has a finding whose rule
  quarantines, or was inspected before but its disks changed since. Cheap: the domain XML,
  the store and the image headers (a root digest is hashed once, then cached).
- ``after_sweep``: a full reconcile (inventory, lineage, inspection, evaluation) has just run;
  the VM is judged as it is now, running. Time-based holds (``dormant``) no longer apply: a
  dormant VM is held until it is shown healthy, which is what the sweep's rules judge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmwarden.enforce import mark_vm_held
from vmwarden.engine.admission_records import as_datetime
from vmwarden.engine.content_lineage import content_lineage
from vmwarden.engine.lineage import Lineage
from vmwarden.model import VM, Estate, Finding, HostInventory, Pool, State
from vmwarden.policy import Policy, admit, evaluate

log = logging.getLogger(__name__)

LIVE = (State.RUNNING, State.PAUSED, State.BLOCKED, State.PMSUSPENDED)


@dataclass(slots=True)
class Judgement:
    """Whether to hold a VM, and why (each reason: ``{"condition": name, **evidence}``)."""

    vm_id: str
    name: str
    hold: bool
    reasons: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)  # what a release is based on

    def summary(self) -> str:
        if not self.reasons:
            return "passes the gate"
        return "; ".join(_describe(r) for r in self.reasons)


def _describe(reason: dict[str, Any]) -> str:
    rest = {k: v for k, v in reason.items() if k != "condition" and v not in (None, "", [], {})}
    detail = ", ".join(f"{k}={v}" for k, v in rest.items())
    return f"{reason['condition']} ({detail})" if detail else str(reason["condition"])


class Judge:
    """Judges VMs for the gate from the policy, the store and the daemon's known estate."""

    def __init__(
        self,
        policy: Policy,
        store: Any,
        *,
        hold_unknown: bool = True,
        hold_unregistered: bool = True,
        inspection: bool = False,
        facts: Any | None = None,
        image_dirs: Iterable[Path] = (),
    ) -> None:
        self.policy = policy
        self.store = store
        self.image_dirs = list(image_dirs)  # --images: backing files may lie there too
        self.hold_unknown = hold_unknown
        self.hold_unregistered = hold_unregistered
        self.inspection = inspection
        self.facts = facts  # a vmwarden.store.facts.FactsCache, when inspection is on
        self.quarantining_rules = {
            r.name for r in policy.rules if "quarantine" in r.action_names and r.resource == "vm"
        }

    # -- the two moments ---------------------------------------------------------------

    def at_start(
        self, vm: VM, *, prior: VM | None, others: list[VM], pools: list[Pool] | None = None
    ) -> Judgement:
        """Judge ``vm`` (freshly read from libvirt) as it was just before it started."""
        stored = self.store.get_vm(vm.id)
        if stored is not None and (stored.get("id") != vm.id or stored.get("gone_at")):
            stored = None  # by UUID only: a rogue VM may borrow a known name
        mark_vm_held(self.store, vm)  # a held NIC is judged where it was, not on quarantine
        before = replace(vm, state=State.SHUTOFF)
        if stored is not None:
            before.first_seen = as_datetime(stored.get("first_seen"))
            if stored.get("state") == State.SHUTOFF.value:
                before.state_since = as_datetime(stored.get("state_since"))
        lineage = self._lineage(before, prior, pools)
        reasons: list[dict[str, Any]] = []
        if self.hold_unknown and stored is None and prior is None:
            reasons.append({"condition": "unknown", "detail": "never seen before"})
        reasons += self._common(before, others, lineage)
        if self.inspection and prior is not None and prior.guest is not None:
            stale = self._stale_disks(before)
            if stale:
                reasons.append({"condition": "not-inspected-since-disk-change", "disks": stale})
        return Judgement(vm.id, vm.name, bool(reasons), reasons)

    def on_change(
        self, vm: VM, *, prior: VM | None, others: list[VM], pools: list[Pool] | None = None
    ) -> Judgement:
        """Judge a running ``vm`` whose definition changed (its metadata), as it is now:
        the policy's gate and quarantining rules over the daemon's estate, with the guest
        facts last inspected (a metadata change does not touch the disks)."""
        current = replace(vm)
        if current.guest is None and prior is not None:
            current.guest = prior.guest
        lineage = self._lineage(current, prior, pools)
        reasons = self._common(current, others, lineage)
        return Judgement(vm.id, vm.name, bool(reasons), reasons)

    def after_sweep(self, vm: VM, findings: list[Finding], estate: Estate) -> Judgement:
        """Judge ``vm`` as the sweep that just ran saw it (``findings`` are the sweep's)."""
        reasons = self._policy_reasons(vm, estate, findings)
        if self.hold_unregistered and vm.meta.registered is not True:
            reasons.insert(0, {"condition": "unregistered"})
        evidence = {
            "registered": vm.meta.registered,
            "templates": sorted(
                {
                    estate.catalog.get(d.root.digest, d.root.digest or "unknown")
                    for d in vm.disks
                    if d.root is not None and d.device == "disk"
                }
            ),
            "gate": "allow" if not reasons else "hold",
            "quarantine_findings": [r["rule"] for r in reasons if r["condition"] == "rule"],
        }
        return Judgement(vm.id, vm.name, bool(reasons), reasons, evidence)

    # -- pieces ------------------------------------------------------------------------

    def _common(self, vm: VM, others: list[VM], lineage: Lineage) -> list[dict[str, Any]]:
        catalog = {**self.store.catalog(), **self.policy.catalog()}
        estate = Estate(
            vms=[vm, *(o for o in others if o.id != vm.id)],
            images=[],
            catalog=catalog,
            now=datetime.now(UTC),
            hosts=sorted({vm.host, *(o.host for o in others)}),
            content_lineage=content_lineage([vm], self.store, catalog, lineage),  # full clones
        )
        findings = [f for f in evaluate(self.policy, estate) if f.id == vm.id]
        reasons = self._policy_reasons(vm, estate, findings)
        if self.hold_unregistered and vm.meta.registered is not True:
            reasons.insert(0, {"condition": "unregistered"})
        return reasons

    def _policy_reasons(
        self, vm: VM, estate: Estate, findings: list[Finding]
    ) -> list[dict[str, Any]]:
        reasons: list[dict[str, Any]] = []
        admission = admit(self.policy, vm, estate)
        if admission.decision != "allow":
            reasons += [{"condition": f"gate.{admission.decision}", **r} for r in admission.reasons]
        reasons += [
            {"condition": "rule", "rule": f.rule, "severity": str(f.severity), **f.evidence}
            for f in findings
            if f.id == vm.id and f.resource == "vm" and f.rule in self.quarantining_rules
        ]
        return reasons

    def _lineage(self, vm: VM, prior: VM | None, pools: list[Pool] | None) -> Lineage:
        """Backing chains and root digests; disk mtimes as they were before the start."""
        inv = HostInventory(uri=vm.uri, host=vm.host, vms=[vm], pools=list(pools or []))
        # a remote host's chain is read through its connection; its root's digest only from
        # the cache (the reconcile sweep hashes it): never a disk download on an event
        lineage = Lineage.for_store(self.store, self.image_dirs, remote=True, remote_hashing=False)
        try:
            lineage.enrich(inv)
        finally:
            lineage.close()
        if prior is None:
            return lineage
        before = {d.source: d for d in prior.disks if d.source}
        for disk in vm.disks:
            old = before.get(disk.source)
            if old is not None and old.chain and disk.chain:
                disk.chain[0].mtime = old.chain[0].mtime  # the start itself may touch the file
        return lineage

    def _stale_disks(self, vm: VM) -> list[str]:
        if self.facts is None:
            return []
        paths = [d.source for d in vm.disks if d.device == "disk" and d.source and d.type == "file"]
        hits = self.facts.lookup_many(paths)
        return [p for p in paths if p not in hits]
