"""Action executors, one small function each, registered under the policy's action name.

State-based actions (quarantine, pause, shutdown, tag) check the VM's state first and are
no-ops when already in effect, so they run on every sweep. Event-based ones (snapshot,
notify) run once, when their finding opens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vmwarden.enforce.context import EnforceContext
from vmwarden.enforce.quarantine import Quarantiner
from vmwarden.errors import ConnectorError, EnforceError
from vmwarden.model import VM, ActionRecord, Finding, State
from vmwarden.registry import Registry


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """One action to run on one VM: what the plan (or an operator) asked for and why.

    Executors take this rather than a long keyword list so adding a field (say, an
    operator's ticket) touches the request, not every executor."""

    vm: VM
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    rule: str | None = None
    finding: Finding | None = None


Executor = Callable[[EnforceContext, ActionRequest], ActionRecord]
executors: Registry[Executor] = Registry("action")
EVENT_BASED = {"snapshot", "notify"}
_LIVE = (State.RUNNING, State.PAUSED, State.BLOCKED, State.PMSUSPENDED)


def _noop(ctx: EnforceContext, req: ActionRequest, action: str, why: str) -> ActionRecord:
    vm = req.vm
    return ActionRecord(
        None, action, vm.id, vm.name, vm.host, vm.uri, "noop", ctx.actor, reason=why, rule=req.rule
    )


def _begin(ctx: EnforceContext, req: ActionRequest, action: str, changes: dict[str, Any]) -> int:
    """The journal's 'before' write for this request: durable before libvirt is touched."""
    return ctx.journal_simple(action, req.vm, reason=req.reason, rule=req.rule, changes=changes)


def _run_step(
    ctx: EnforceContext, entry_id: int, step: Callable[[], dict[str, Any]]
) -> ActionRecord:
    """Run one libvirt call between the journal's 'before' and 'after' writes."""
    try:
        extra = step()
    except ConnectorError as exc:
        ctx.store.journal_update(entry_id, status="failed", error=str(exc))
    else:
        ctx.store.journal_update(entry_id, status="done", changes=extra or None)
    return ctx.store.journal_get(entry_id)


def _power(
    ctx: EnforceContext, req: ActionRequest, action: str, from_states: tuple[State, ...]
) -> ActionRecord:
    """Pause or shut down (the connector's method of that name), only from ``from_states``:
    in any other state the action already holds or cannot apply, and is a no-op."""
    conn = ctx.conn(req.vm.uri)
    state = conn.domain_state(req.vm.id)
    if state not in from_states:
        return _noop(ctx, req, action, f"VM is {state}")
    entry = _begin(ctx, req, action, {"state_before": state})
    return _run_step(ctx, entry, lambda: getattr(conn, action)(req.vm.id))


@executors.register("quarantine")
def quarantine(ctx: EnforceContext, req: ActionRequest) -> ActionRecord:
    if ctx.quarantine is None:
        raise EnforceError(
            "the policy has no `quarantine:` block", hint="add quarantine: {network: NAME}"
        )
    return Quarantiner(ctx.store, ctx.actor).quarantine(
        ctx.conn(req.vm.uri), req.vm, ctx.quarantine, reason=req.reason, rule=req.rule
    )


@executors.register("pause")
def pause(ctx: EnforceContext, req: ActionRequest) -> ActionRecord:
    return _power(ctx, req, "pause", (State.RUNNING,))


@executors.register("shutdown")
def shutdown(ctx: EnforceContext, req: ActionRequest) -> ActionRecord:
    return _power(ctx, req, "shutdown", _LIVE)


@executors.register("snapshot")
def snapshot(ctx: EnforceContext, req: ActionRequest) -> ActionRecord:
    conn, vm_id = ctx.conn(req.vm.uri), req.vm.id
    name = f"vmwarden-{req.rule or 'manual'}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    entry = _begin(ctx, req, "snapshot", {"snapshot": name})
    desc = f"vmwarden evidence snapshot: {req.reason}"
    return _run_step(ctx, entry, lambda: {"snapshot": conn.snapshot(vm_id, name, desc)})


@executors.register("tag")
def tag(ctx: EnforceContext, req: ActionRequest) -> ActionRecord:
    conn, vm_id = ctx.conn(req.vm.uri), req.vm.id
    key, value = str(req.params["key"]), str(req.params.get("value", req.rule or ""))
    meta = conn.get_metadata(vm_id)
    if meta.tags.get(key) == value:
        return _noop(ctx, req, "tag", f"tag {key}={value} already set")
    changes = {"key": key, "value": value, "before": meta.tags.get(key)}
    entry = _begin(ctx, req, "tag", changes)

    def apply() -> dict[str, Any]:
        meta.tags[key] = value
        conn.set_metadata(vm_id, meta)
        return changes

    return _run_step(ctx, entry, apply)


@executors.register("notify")
def notify(ctx: EnforceContext, req: ActionRequest) -> ActionRecord:
    if ctx.notifier is None:
        return _noop(ctx, req, "notify", "no notify receivers in the policy")
    entry = _begin(ctx, req, "notify", {})
    deliveries = ctx.notifier(req.vm, req.finding, req.rule)
    sent = [{"receiver": r, "ok": ok, "error": e} for r, ok, e in deliveries]
    failed = [d for d in sent if not d["ok"]]
    # one receiver that raised (an SMTP server refusing) is not "done" but partial: a notify
    # not done is due again at the next --enforce sweep (at least once, never silently lost)
    status = ("failed" if len(failed) == len(sent) else "partial") if failed else "done"
    error = "; ".join(f"{d['receiver']}: {d['error']}" for d in failed) or None
    ctx.store.journal_update(entry, status=status, changes={"deliveries": sent}, error=error)
    return ctx.store.journal_get(entry)
