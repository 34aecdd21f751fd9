"""Action executors, one small function each, registered under the policy's action name.

State-based actions (quarantine, pause, shutdown, tag) check the VM's state first and are
no-ops when already in effect, so they run on every sweep. Event-based ones (snapshot,
notify) run once, when their finding opens.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from vmwarden.enforce.context import EnforceContext
from vmwarden.enforce.quarantine import Quarantiner
from vmwarden.errors import ConnectorError, EnforceError
from vmwarden.model import VM, ActionRecord, Finding, State
from vmwarden.registry import Registry

Executor = Callable[..., ActionRecord]
executors: Registry[Executor] = Registry("action")
EVENT_BASED = {"snapshot", "notify"}
_LIVE = (State.RUNNING, State.PAUSED, State.BLOCKED, State.PMSUSPENDED)


def _noop(vm: VM, action: str, ctx: EnforceContext, rule: str | None, why: str) -> ActionRecord:
    return ActionRecord(
        None, action, vm.id, vm.name, vm.host, vm.uri, "noop", ctx.actor, reason=why, rule=rule
    )


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
    ctx: EnforceContext,
    vm: VM,
    action: str,
    from_states: tuple[State, ...],
    *,
    reason: str,
    rule: str | None,
) -> ActionRecord:
    """Pause or shut down (the connector's method of that name), only from ``from_states``:
    in any other state the action already holds or cannot apply, and is a no-op."""
    conn = ctx.conn(vm.uri)
    state = conn.domain_state(vm.id)
    if state not in from_states:
        return _noop(vm, action, ctx, rule, f"VM is {state}")
    entry = ctx.journal_simple(
        action, vm, reason=reason, rule=rule, changes={"state_before": state}
    )
    return _run_step(ctx, entry, lambda: getattr(conn, action)(vm.id))


@executors.register("quarantine")
def quarantine(
    ctx: EnforceContext,
    vm: VM,
    params: dict[str, Any],
    *,
    reason: str,
    rule: str | None,
    finding: Finding | None = None,
) -> ActionRecord:
    if ctx.quarantine is None:
        raise EnforceError(
            "the policy has no `quarantine:` block", hint="add quarantine: {network: NAME}"
        )
    return Quarantiner(ctx.store, ctx.actor).quarantine(
        ctx.conn(vm.uri), vm, ctx.quarantine, reason=reason, rule=rule
    )


@executors.register("pause")
def pause(
    ctx: EnforceContext,
    vm: VM,
    params: dict[str, Any],
    *,
    reason: str,
    rule: str | None,
    finding: Finding | None = None,
) -> ActionRecord:
    return _power(ctx, vm, "pause", (State.RUNNING,), reason=reason, rule=rule)


@executors.register("shutdown")
def shutdown(
    ctx: EnforceContext,
    vm: VM,
    params: dict[str, Any],
    *,
    reason: str,
    rule: str | None,
    finding: Finding | None = None,
) -> ActionRecord:
    return _power(ctx, vm, "shutdown", _LIVE, reason=reason, rule=rule)


@executors.register("snapshot")
def snapshot(
    ctx: EnforceContext,
    vm: VM,
    params: dict[str, Any],
    *,
    reason: str,
    rule: str | None,
    finding: Finding | None = None,
) -> ActionRecord:
    conn = ctx.conn(vm.uri)
    name = f"vmwarden-{rule or 'manual'}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    entry = ctx.journal_simple("snapshot", vm, reason=reason, rule=rule, changes={"snapshot": name})
    desc = f"vmwarden evidence snapshot: {reason}"
    return _run_step(ctx, entry, lambda: {"snapshot": conn.snapshot(vm.id, name, desc)})


@executors.register("tag")
def tag(
    ctx: EnforceContext,
    vm: VM,
    params: dict[str, Any],
    *,
    reason: str,
    rule: str | None,
    finding: Finding | None = None,
) -> ActionRecord:
    conn = ctx.conn(vm.uri)
    key, value = str(params["key"]), str(params.get("value", rule or ""))
    meta = conn.get_metadata(vm.id)
    if meta.tags.get(key) == value:
        return _noop(vm, "tag", ctx, rule, f"tag {key}={value} already set")
    changes = {"key": key, "value": value, "before": meta.tags.get(key)}
    entry = ctx.journal_simple("tag", vm, reason=reason, rule=rule, changes=changes)

    def apply() -> dict[str, Any]:
        meta.tags[key] = value
        conn.set_metadata(vm.id, meta)
        return changes

    return _run_step(ctx, entry, apply)


@executors.register("notify")
def notify(
    ctx: EnforceContext,
    vm: VM,
    params: dict[str, Any],
    *,
    reason: str,
    rule: str | None,
    finding: Finding | None = None,
) -> ActionRecord:
    if ctx.notifier is None:
        return _noop(vm, "notify", ctx, rule, "no notify receivers in the policy")
    entry = ctx.journal_simple("notify", vm, reason=reason, rule=rule, changes={})
    deliveries = ctx.notifier(vm, finding, rule)
    sent = [{"receiver": r, "ok": ok, "error": e} for r, ok, e in deliveries]
    failed = [d for d in sent if not d["ok"]]
    status = "failed" if failed and len(failed) == len(sent) else "done"
    error = "; ".join(f"{d['receiver']}: {d['error']}" for d in failed) or None
    ctx.store.journal_update(entry, status=status, changes={"deliveries": sent}, error=error)
    return ctx.store.journal_get(entry)
