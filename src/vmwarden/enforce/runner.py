"""From findings to actions: the one place where dry-run vs enforce is decided.

Each VM gets each state-based action at most once per sweep, however many findings ask for
it (the reason names all of them); a ``tag`` with another key is another state and runs
too (for one key, the most severe rule's value wins). Event-based actions (notify, snapshot)
run once per open finding: the caller says which are ``due`` (not yet carried out since the
finding opened — a report-only sweep opens findings without carrying anything out). Pending
journal entries left by a crash are finished first.

Actions run VM by VM, and a ``StopRequest`` (Ctrl-C, SIGTERM) is honoured only between two
VMs: stopping inside one could leave its live and persistent NICs out of step, or quarantine
it without the alert that says why. What did not run comes back as ``interrupted`` records,
so the operator is told exactly what is still to do.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from vmwarden.enforce.actions import EVENT_BASED, ActionRequest, executors
from vmwarden.enforce.context import EnforceContext
from vmwarden.enforce.quarantine import Quarantiner
from vmwarden.errors import VmwardenError
from vmwarden.model import VM, ActionRecord, Finding, State

log = logging.getLogger(__name__)
INTERRUPTED = "interrupted"


class StopRequest:
    """An operator's request to stop (a signal), as enforcement sees it.

    Before ``arm()`` nothing has been changed, so ``request`` raises ``KeyboardInterrupt`` at
    once and the run ends where it is. Once armed (actions are running), a request only
    marks the run as stopping: the VM in flight is finished, the rest is reported undone.
    ``request`` is what a signal handler calls; it is safe to call from one.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None
        self.armed = False

    def arm(self) -> None:
        self.armed = True

    def request(self, signum: int = signal.SIGINT) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()
        if not self.armed:
            raise KeyboardInterrupt

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name


@dataclass(frozen=True, slots=True)
class PlannedAction:
    action: str
    params: dict[str, Any]
    vm: VM
    rules: tuple[str, ...]
    finding: Finding

    @property
    def reason(self) -> str:
        return "policy: " + ", ".join(self.rules)

    def unjournaled(self, status: str, actor: str, *, error: str | None = None) -> ActionRecord:
        """This action as a record no journal entry backs (a dry run, a refused action)."""
        vm = self.vm
        return ActionRecord(
            None,
            self.action,
            vm.id,
            vm.name,
            vm.host,
            vm.uri,
            status,
            actor,
            reason=self.reason,
            rule=self.rules[0],
            error=error,
        )


def plan(
    findings: list[Finding],
    vms: dict[str, VM],
    rule_actions: dict[str, list[tuple[str, dict[str, Any]]]],
    due: set[tuple[tuple[str, str, str], str]] | None,
) -> list[PlannedAction]:
    """Which actions a sweep would run. ``due`` holds (finding key, event action) pairs still
    to carry out; ``None`` treats every event action as due."""
    ordered = sorted(findings, key=lambda f: (-int(f.severity), f.rule, f.id))
    state_based: dict[tuple[str, str, str], list[Finding]] = defaultdict(list)
    params_of: dict[tuple[str, str, str], dict[str, Any]] = {}
    out: list[PlannedAction] = []
    for f in ordered:
        vm = vms.get(f.id) if f.resource == "vm" else _image_as_vm(f)
        if vm is None:
            continue
        for name, params in rule_actions.get(f.rule, []):
            if name in EVENT_BASED:
                if due is None or (f.key, name) in due:
                    out.append(PlannedAction(name, params, vm, (f.rule,), f))
                continue
            key = (vm.id, name, _state_of(name, params))
            state_based[key].append(f)
            params_of.setdefault(key, params)
    for key, fs in state_based.items():
        vm_id, name, _ = key
        out.append(
            PlannedAction(name, params_of[key], vms[vm_id], tuple(f.rule for f in fs), fs[0])
        )
    return out


def _state_of(action: str, params: dict[str, Any]) -> str:
    """Which state of the VM an action sets: a tag's key (the most severe rule picks the
    value, so two rules never flip it back and forth); otherwise all of its params."""
    if action == "tag":
        return str(params.get("key"))
    return json.dumps(params, sort_keys=True, default=str)


def _image_as_vm(f: Finding) -> VM | None:
    """Image findings can only notify; give the notifier a VM-shaped carrier."""
    return VM(id=f.id, name=f.name, host=f.host, uri="", state=State.NOSTATE)


def repair(ctx: EnforceContext, stop: StopRequest | None = None) -> list[ActionRecord]:
    """Finish quarantines/releases a crash left pending, for hosts we are connected to.

    A stop request ends the loop between entries: what is left stays pending for the next
    sweep, which is what the journal is for."""
    done = []
    q = Quarantiner(ctx.store, ctx.actor)
    for entry in ctx.store.incomplete_actions():
        if entry.action not in ("quarantine", "release") or entry.uri not in ctx.connectors:
            continue
        if stop is not None and stop.requested:
            break
        log.warning(
            "repairing %s of %s left pending (journal #%s)",
            entry.action,
            entry.name,
            entry.journal_id,
        )
        try:
            done.append(q.resume(ctx.conn(entry.uri), entry))
        except VmwardenError as exc:
            log.error("could not repair journal #%s: %s", entry.journal_id, exc)
    return done


def execute(
    ctx: EnforceContext, planned: list[PlannedAction], stop: StopRequest | None = None
) -> list[ActionRecord]:
    """Run the planned actions VM by VM (each VM's in the plan's order); after a stop
    request, the VMs not yet started get ``interrupted`` records instead."""
    records = []
    for group in by_vm(planned):
        if stop is not None and stop.requested:
            # no error text: the status says it, and a table would repeat it per action
            records += [p.unjournaled(INTERRUPTED, ctx.actor) for p in group]
            continue
        for p in group:
            try:
                req = ActionRequest(p.vm, p.params, p.reason, p.rules[0], p.finding)
                rec = executors.get(p.action)(ctx, req)
            except VmwardenError as exc:
                rec = p.unjournaled("failed", ctx.actor, error=str(exc))
            records.append(rec)
    return records


def by_vm(planned: list[PlannedAction]) -> list[list[PlannedAction]]:
    """The plan cut into one group per VM (or image), in order of each one's first action."""
    groups: dict[str, list[PlannedAction]] = {}
    for p in planned:
        groups.setdefault(p.vm.id, []).append(p)
    return list(groups.values())
