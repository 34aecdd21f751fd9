"""The power-on gate's hands: what the daemon does to a VM once ``Judge`` has judged it.

- a VM starting that the gate holds is quarantined *before anything else* (``at_start``);
- a shut-off VM the gate would hold gets its persistent NICs moved to quarantine ahead of
  time, so that it boots isolated (``isolate_ahead``);
- an existing quarantine is kept whole as events come in: a hot-plugged NIC is isolated too
  (``keep_hold``);
- a running VM whose metadata changed (unregistered, reclassified) is judged at once and held
  when the gate says so (``on_change``), instead of at the next reconcile;
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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vmwarden.enforce import Quarantiner, QuarantineSpec
from vmwarden.engine.admission_records import as_datetime
from vmwarden.engine.metrics import WatchMetrics
from vmwarden.engine.scan import ScanResult
from vmwarden.engine.watch.events import SweptStarts
from vmwarden.engine.watch.holds import HoldAlerts
from vmwarden.engine.watch.judge import LIVE, Judge, Judgement
from vmwarden.engine.watch.latency import Latencies, Latency, LiveTimer, arrival, first_started
from vmwarden.engine.watch.state import WatchConfig, WatchState
from vmwarden.errors import VmwardenError
from vmwarden.model import VM, ActionRecord, State
from vmwarden.model.events import CONFIG, DEFINED, METADATA, VmEvent
from vmwarden.notify import Alert
from vmwarden.notify.alerts import AlertManager

log = logging.getLogger(__name__)

GATE_ACTOR = "vmwarden-gate"
WATCH_ACTOR = "vmwarden-watch"
DAEMON_ACTORS = frozenset({GATE_ACTOR, WATCH_ACTOR})
GATE_RULE = "power-on-gate"
_RECHECK_KINDS = frozenset({METADATA, CONFIG, DEFINED})


@dataclass(slots=True)
class Outcome:
    """What an event update leaves for after the next reconcile."""

    check: bool = False  # judge again after a full reconcile (release or keep holding)
    judgement: Judgement | None = None
    reconcile: bool = False  # the VM vanished: let a reconcile mark it gone


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
        self.latencies = Latencies()
        self.holds = HoldAlerts(store)
        self._runs: dict[str, int] = {}  # VM id → the run id of its last start judged
        self.swept = SweptStarts()  # starts a reconcile gated before their events were read

    @property
    def can_hold(self) -> bool:
        """Whether the gate may quarantine: enforcing, with a ``quarantine:`` network."""
        return self.config.enforce and self.spec is not None

    def _judge_at_start(self, vm: VM, prior: VM | None) -> Judgement:
        return self.judge.at_start(
            vm, prior=prior, others=self.state.others(vm.id), pools=self.state.pools_of(vm.uri)
        )

    # -- on events ---------------------------------------------------------------------

    def at_start(
        self, conn: Any, vm: VM, prior: VM | None, event: VmEvent, run: int | None = None
    ) -> Outcome:
        """The VM just started (``event``: the start's own event, ``run``: its run id): hold
        it at once when the gate says so, and time how long it ran exposed."""
        if run is not None and self._runs.get(vm.id) == run:
            # judged already (its 'resumed', or the previous run's 'stopped', came first)
            self.latencies.retime(vm.id, run, event)
            return Outcome()
        if run is not None:
            self._runs[vm.id] = run
        judgement = self._judge_at_start(vm, prior)
        outcome = Outcome(check=True, judgement=judgement)
        if not judgement.hold:
            active = self.store.active_quarantine(vm.id)
            outcome.check = active is not None and active.actor in DAEMON_ACTORS
            return outcome
        if not self.can_hold:
            log.warning("gate would hold %s: %s (not enforcing)", vm.name, judgement.summary())
            return outcome
        before = self.store.active_quarantine(vm.id)
        timer = LiveTimer()
        rec = self.quarantine(conn, vm, f"power-on gate: {judgement.summary()}", timer)
        took = self._time_start(vm, event, rec, before, timer, run)
        if took is not None:
            log.info(
                "power-on gate: %s held, %.0f ms after its start: %s",
                vm.name,
                took * 1000,
                judgement.summary(),
            )
        return outcome

    def late_start(self, vm_id: str, batch: list[VmEvent]) -> None:
        """The VM is already off or gone when its events are read: a ``started`` among them
        still re-times the entry of the last run judged (see ``latency``)."""
        event = first_started(batch)
        if event is not None:
            self.latencies.retime(vm_id, self._runs.get(vm_id), event)

    def _time_start(
        self,
        vm: VM,
        event: VmEvent,
        rec: ActionRecord | None,
        before: ActionRecord | None,
        timer: LiveTimer,
        run: int | None,
    ) -> float | None:
        """Record one ``Latency`` for this start (see ``latency``); returns its seconds."""
        now = time.monotonic()
        started = arrival(event)
        if rec is None or rec.status not in ("done", "partial", "noop"):
            how, took = "failed", None
        elif timer.live_at is not None:
            how, took = "gate", max(0.0, timer.live_at - event.received)
        elif before is not None and _booted_isolated(before, started, rec.status == "noop"):
            how, took = "at-boot", 0.0
        else:
            how, took = "already", max(0.0, now - event.received)
        isolated_at = timer.live_at if how == "gate" else now
        self.latencies.add(
            Latency(vm.name, vm.id, event.kind, started, took, how, run, isolated_at)
        )
        if took is not None and how != "at-boot":
            self.metrics.latency.observe(took, uri=vm.uri, action="quarantine")
        return took

    def isolate_ahead(self, conn: Any, vm: VM, prior: VM | None) -> None:
        """Admission (a): a shut-off VM the gate would hold boots on quarantine."""
        if not self.can_hold:
            return
        judgement = self._judge_at_start(vm, prior)
        if judgement.hold:
            self.quarantine(conn, vm, f"isolated ahead of power-on: {judgement.summary()}")

    def keep_hold(self, conn: Any, vm: VM, batch: list[VmEvent]) -> bool:
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
        changed = any(e.kind in _RECHECK_KINDS for e in batch)
        return changed and active.actor in DAEMON_ACTORS

    def on_change(self, conn: Any, vm: VM, prior: VM | None, batch: list[VmEvent]) -> Outcome:
        """A running VM's metadata changed: judge it now, hold it when the gate says so, and
        settle it after the next reconcile (released there if full data clears it)."""
        if self.store.active_quarantine(vm.id) is not None:
            return Outcome(check=self.keep_hold(conn, vm, batch))
        judgement = self.judge.on_change(
            vm, prior=prior, others=self.state.others(vm.id), pools=self.state.pools_of(vm.uri)
        )
        if not judgement.hold:
            return Outcome()
        if not self.can_hold:
            log.warning("gate would hold %s: %s (not enforcing)", vm.name, judgement.summary())
            return Outcome()
        self.quarantine(conn, vm, f"metadata changed: {judgement.summary()}")
        return Outcome(check=True, judgement=judgement)

    def quarantine(
        self, conn: Any, vm: VM, reason: str, timer: LiveTimer | None = None
    ) -> ActionRecord | None:
        try:
            rec = Quarantiner(self.store, GATE_ACTOR).quarantine(
                conn, vm, self.spec, reason=reason, rule=GATE_RULE, on_live=timer
            )
        except VmwardenError as exc:
            log.error("could not quarantine %s: %s", vm.name, exc)
            return None
        if rec.status != "noop":
            self.metrics.actions.inc(action="quarantine", actor=GATE_ACTOR, status=rec.status)
            self.state.held.add(vm.id)
            log.info("quarantine %s (%s) %s: %s", vm.name, vm.host, rec.status, reason)
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
        hold = active.journal_id if active is not None else None
        if hold is not None and self.holds.claim(hold, vm):
            evidence = {"reasons": judgement.reasons, "journal_id": hold}
            self.alerts.send(_gate_alert("gate.held", vm, "high", evidence))

    def after_reconcile(
        self,
        result: ScanResult,
        before: dict[str, State],
        swept_before: set[str],
        connector_of: Callable[[str], Any],
    ) -> None:
        """The gate for what a reconcile found: VMs that started while the daemon was away
        (``before``: their state as last known), shut-off VMs it would hold (the starts it gated are
        marked ``swept``)."""
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
            if came_up:
                self.swept.mark(vm.id)
            if came_up or (vm.state in LIVE and vm.id in self.state.held):
                # started while the daemon was away, or held: the gate, on full data (a hold
                # whose cause cleared without an event on the VM is released here)
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


def _booted_isolated(entry: ActionRecord, moment: datetime, intact: bool = False) -> bool:
    """Whether a hold was in place, definition isolated, before ``moment`` (the start): the
    VM then booted on quarantine. ``intact``: the connector found the quarantine whole right
    after the start, before the gate acted (``noop``): on a platform whose records name no
    persistent definition (vSphere: NICs moved and not connected at power-on) that is what
    says it booted so. Stored times may be naive UTC."""
    nics = entry.changes.get("nics") or []
    # libvirt's records say whether the persistent definition was isolated ("config")
    named = any("config" in n for n in nics)
    if not nics or ((named or not intact) and any(n.get("config") != "done" for n in nics)):
        return False  # a transient VM, or a definition not (yet) isolated: it did not boot so
    began = as_datetime(entry.created_at)
    if began is None:
        return False
    if began.tzinfo is None:
        began = began.replace(tzinfo=UTC)
    return began <= moment


def _gate_alert(event: str, vm: VM, severity: str, evidence: dict[str, Any]) -> Alert:
    return Alert(event, GATE_RULE, severity, "vm", vm.id, vm.name, vm.host, evidence)
