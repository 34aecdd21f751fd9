"""The power-on gate's hands: what the daemon does to a VM once ``Judge`` has judged it.

- a VM starting that the gate holds is quarantined *before anything else* (``at_start``);
- a shut-off VM the gate would hold gets its persistent NICs moved to quarantine ahead of
  time, so that it boots isolated (``isolate_ahead``);
- an existing quarantine is kept whole as events come in: a hot-plugged NIC is isolated too
  (``keep_hold``);
- after a full reconcile a held VM is judged again on full data (``settle``): if it passes it
  is released (journaled as ``release`` by ``vmwarden-gate``, reason ``automatic release:
  <evidence>``), otherwise it stays held and one alert goes out per hold.

Only quarantines made by the daemon itself (``vmwarden-gate``, ``vmwarden-watch``) are ever
released automatically; an operator's quarantine waits for an operator.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vmwarden.connectors.libvirt.events import DomainEvent
from vmwarden.enforce import Quarantiner, QuarantineSpec
from vmwarden.engine.metrics import WatchMetrics
from vmwarden.engine.scan import ScanResult
from vmwarden.engine.watch.judge import LIVE, Judge, Judgement
from vmwarden.engine.watch.state import WatchConfig, WatchState
from vmwarden.errors import VmwardenError
from vmwarden.model import VM, ActionRecord, State
from vmwarden.notify import Alert
from vmwarden.notify.alerts import AlertManager

log = logging.getLogger(__name__)

GATE_ACTOR = "vmwarden-gate"
WATCH_ACTOR = "vmwarden-watch"
DAEMON_ACTORS = frozenset({GATE_ACTOR, WATCH_ACTOR})
GATE_RULE = "power-on-gate"
_RECHECK_KINDS = frozenset({"metadata", "device-added", "device-removed"})


@dataclass(slots=True)
class Outcome:
    """What an event update leaves for after the next reconcile."""

    check: bool = False  # judge again after a full reconcile (release or keep holding)
    judgement: Judgement | None = None
    reconcile: bool = False  # the VM vanished: let a reconcile mark it gone


@dataclass(slots=True)
class Latency:
    vm: str
    seconds: float
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Gate:
    """Holds, isolates, keeps and releases VMs for the daemon, journaling as its actors."""

    def __init__(
        self,
        store: Any,
        config: WatchConfig,
        judge: Judge,
        state: WatchState,
        *,
        spec: QuarantineSpec | None,
        metrics: WatchMetrics,
        alerts: AlertManager,
        vm_lock: Callable[[str], AbstractContextManager[None]],
    ) -> None:
        self.store = store
        self.config = config
        self.judge = judge
        self.state = state
        self.spec = spec
        self.metrics = metrics
        self.alerts = alerts
        self.vm_lock = vm_lock
        self.latencies: list[Latency] = []
        self._alerted_holds: set[int] = set()

    @property
    def can_hold(self) -> bool:
        """Whether the gate may quarantine: enforcing, with a ``quarantine:`` network."""
        return self.config.enforce and self.spec is not None

    def _judge_at_start(self, vm: VM, prior: VM | None) -> Judgement:
        return self.judge.at_start(
            vm, prior=prior, others=self.state.others(vm.id), pools=self.state.pools_of(vm.uri)
        )

    # -- on events ---------------------------------------------------------------------

    def at_start(self, conn: Any, vm: VM, prior: VM | None, event: DomainEvent) -> Outcome:
        """The VM just started: hold it at once when the gate says so."""
        judgement = self._judge_at_start(vm, prior)
        outcome = Outcome(check=True, judgement=judgement)
        if not judgement.hold:
            active = self.store.active_quarantine(vm.id)
            outcome.check = active is not None and active.actor in DAEMON_ACTORS
            return outcome
        if not self.can_hold:
            log.warning("gate would hold %s: %s (not enforcing)", vm.name, judgement.summary())
            return outcome
        rec = self.quarantine(conn, vm, f"power-on gate: {judgement.summary()}")
        if rec is not None and rec.status in ("done", "partial"):
            took = time.monotonic() - event.received
            self.metrics.latency.observe(took, uri=vm.uri, action="quarantine")
            self.latencies.append(Latency(vm.name, took))
            log.info(
                "power-on gate: %s held in %.0f ms: %s", vm.name, took * 1000, judgement.summary()
            )
        return outcome

    def isolate_ahead(self, conn: Any, vm: VM, prior: VM | None) -> None:
        """Admission (a): a shut-off VM the gate would hold boots on quarantine."""
        if not self.can_hold:
            return
        judgement = self._judge_at_start(vm, prior)
        if judgement.hold:
            self.quarantine(conn, vm, f"isolated ahead of power-on: {judgement.summary()}")

    def keep_hold(self, conn: Any, vm: VM, batch: list[DomainEvent]) -> bool:
        """Keep an existing quarantine whole (a hot-plugged NIC is isolated too); says whether
        the VM deserves a new judgement (its metadata or devices changed)."""
        active = self.store.active_quarantine(vm.id)
        if active is None or self.spec is None:
            return False
        if self.config.enforce:
            try:
                Quarantiner(self.store, active.actor).quarantine(
                    conn, vm, self.spec, reason=active.reason or "", rule=active.rule
                )
            except VmwardenError as exc:
                log.error("could not keep %s quarantined: %s", vm.name, exc)
        changed = any(e.kind in _RECHECK_KINDS or e.detail == "defined" for e in batch)
        return changed and active.actor in DAEMON_ACTORS

    def quarantine(self, conn: Any, vm: VM, reason: str) -> ActionRecord | None:
        try:
            rec = Quarantiner(self.store, GATE_ACTOR).quarantine(
                conn, vm, self.spec, reason=reason, rule=GATE_RULE
            )
        except VmwardenError as exc:
            log.error("could not quarantine %s: %s", vm.name, exc)
            return None
        if rec.status != "noop":
            self.metrics.actions.inc(action="quarantine", actor=GATE_ACTOR, status=rec.status)
            self.state.held.add(vm.id)
        return rec

    # -- after a reconcile -------------------------------------------------------------

    def settle(self, conn: Any, vm: VM, judgement: Judgement, at_start: Judgement | None) -> None:
        """Release a VM that passes on full data, or keep it held and alert (once a hold)."""
        active = self.store.active_quarantine(vm.id)
        if not judgement.hold:
            if active is None or active.actor not in DAEMON_ACTORS or not self.config.enforce:
                return
            held_for = at_start.summary() if at_start and at_start.reasons else active.reason
            evidence = dict(judgement.evidence, held_for=held_for)
            reason = "automatic release: " + json.dumps(evidence, default=str, sort_keys=True)
            try:
                rec = Quarantiner(self.store, GATE_ACTOR).release(conn, vm.id, reason=reason)
            except VmwardenError as exc:
                log.error("automatic release of %s failed: %s", vm.name, exc)
                return
            self.metrics.actions.inc(action="release", actor=GATE_ACTOR, status=rec.status)
            self.state.held.discard(vm.id)
            log.info("power-on gate: %s released (%s)", vm.name, reason)
            self.alerts.send(_gate_alert("gate.released", vm, "info", evidence))
            return
        if active is None and self.can_hold:
            active = self.quarantine(conn, vm, f"power-on gate: {judgement.summary()}")
        if active is not None and active.journal_id not in self._alerted_holds:
            self._alerted_holds.add(active.journal_id)
            evidence = {"reasons": judgement.reasons, "journal_id": active.journal_id}
            self.alerts.send(_gate_alert("gate.held", vm, "high", evidence))

    def after_reconcile(
        self,
        result: ScanResult,
        before: dict[str, State],
        swept_before: set[str],
        connector_of: Callable[[str], Any],
    ) -> None:
        """The gate for what a reconcile found: VMs that started while the daemon was away
        (``before``: their state as last known), shut-off VMs it would hold."""
        estate = self.state.estate()
        for vm in result.vms:
            prev = before.get(vm.id)
            conn = connector_of(vm.uri)
            if conn is None:
                continue
            came_up = vm.state in LIVE and (
                (prev is not None and prev not in LIVE)
                or (prev is None and vm.host in swept_before)
            )
            if came_up:  # started while the daemon was away: the gate, on full data
                judgement = self.judge.after_sweep(vm, result.findings, estate)
                with self.vm_lock(vm.id):
                    self.settle(conn, vm, judgement, None)
            elif vm.state == State.SHUTOFF and self.can_hold:
                judgement = self.judge.after_sweep(vm, result.findings, estate)
                if judgement.hold:
                    with self.vm_lock(vm.id):
                        if self.store.active_quarantine(vm.id) is None:
                            self.quarantine(
                                conn, vm, f"isolated ahead of power-on: {judgement.summary()}"
                            )


def _gate_alert(event: str, vm: VM, severity: str, evidence: dict[str, Any]) -> Alert:
    return Alert(event, GATE_RULE, severity, "vm", vm.id, vm.name, vm.host, evidence)
