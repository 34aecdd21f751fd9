"""The daemon's full reconcile: ``engine.scan.Sweep`` over the daemon's own connections.

``WatchSweep`` is a ``Sweep`` whose inventory and actions go through the connections the
daemon already holds (one per host, the ones carrying events), limited to the hosts that are
connected right now and to the VMs the daemon watches (``--only`` name patterns). Findings are
recorded with the sweep's hosts as scope, so a disconnected host's findings stay open instead
of being reported resolved; the before/after of the findings feeds the alert state machine.

``SweepScheduler`` runs one sweep at a time and coalesces requests: whoever asks gets the
result of a sweep that *started after* the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from vmwarden.enforce import EnforceContext, PlannedAction, execute, repair
from vmwarden.engine.scan import ScanResult, Sweep
from vmwarden.errors import UnreachableError, VmwardenError
from vmwarden.model import VM, ActionRecord, Finding, HostInventory, Severity
from vmwarden.store import FindingsDelta

log = logging.getLogger(__name__)

FindingsHook = Callable[[dict[tuple[str, str, str], Severity], FindingsDelta], None]
Notifier = Callable[[VM, Finding | None, str | None], list[tuple[str, bool, str | None]]]


def in_scope(name: str, patterns: list[str]) -> bool:
    """Whether the daemon watches a VM of this name (no patterns: every VM)."""
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


class _ScopedStore:
    """The store, with ``record_findings`` scoped to the swept hosts and observed."""

    def __init__(self, store: Any, hosts: set[str], on_findings: FindingsHook) -> None:
        self._store = store
        self._hosts = hosts
        self._on_findings = on_findings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def record_findings(self, concluded: list[Finding], *, now: Any, **kw: Any) -> FindingsDelta:
        before = {
            (d["rule"], d["resource"], d["id"]): Severity.parse(d["severity"])
            for d in self._store.findings("open")
            if d.get("host") in self._hosts
        }
        kw["scope_hosts"] = self._hosts
        delta = self._store.record_findings(concluded, now=now, **kw)
        try:
            self._on_findings(before, delta)
        except Exception:  # alerts are best effort; the sweep's record stands
            log.exception("alerting on findings failed")
        return delta


class WatchSweep(Sweep):
    """A sweep through the daemon's live connections (see the module docstring)."""

    def __init__(
        self,
        store: Any,
        policy: Any,
        *,
        actor: str,
        connectors: Callable[[], Mapping[str, Any]],
        vm_lock: Callable[[str], contextlib.AbstractContextManager[Any]],
        notifier: Notifier | None,
        on_findings: FindingsHook,
        only: list[str] | None = None,
        options: Any | None = None,
    ) -> None:
        kw: dict[str, Any] = {}
        if options is not None and "options" in inspect.signature(Sweep.__init__).parameters:
            kw["options"] = options
        super().__init__(store, policy, actor=actor, **kw)
        self._connectors = connectors
        self._vm_lock = vm_lock
        self._notify = notifier
        self._on_findings = on_findings
        self._only = list(only or [])
        self._live: dict[str, Any] = {}
        self.inventories: list[HostInventory] = []

    @property
    def inspects(self) -> bool:
        options = getattr(self, "options", None)
        return bool(options is not None and options.inspect.enabled)

    def run_connected(self, *, enforce: bool) -> ScanResult | None:
        """One sweep of every connected host; None when none is connected."""
        live = dict(self._connectors())
        if not live:
            return None
        self._live = live
        real = self.store
        self.store = _ScopedStore(real, {c.host for c in live.values()}, self._on_findings)
        try:
            return self.run(list(live), enforce=enforce)
        finally:
            self.store = real

    def _stored_inputs(self) -> None:
        """None: watch's long-lived connections keep their own parse caches, and loading
        every stored record at each reconcile would cost more than it saves."""
        return None

    def _inventory(self, uris: list[str]) -> list[HostInventory]:
        out = []
        with ThreadPoolExecutor(max_workers=max(1, len(uris))) as pool:
            results = list(pool.map(self._inventory_one, uris))
        errors = [r for r in results if isinstance(r, VmwardenError)]
        if errors:
            raise UnreachableError("; ".join(str(e) for e in errors), hint="retried on reconnect")
        for inv in (r for r in results if isinstance(r, HostInventory)):
            inv.vms = [vm for vm in inv.vms if in_scope(vm.name, self._only)]
            out.append(inv)
        self.inventories = out
        return out

    def _inventory_one(self, uri: str) -> HostInventory | VmwardenError:
        try:
            return self._live[uri].inventory()
        except VmwardenError as exc:
            return exc

    def _act(
        self, uris: list[str], vms: list[VM], planned: list[PlannedAction]
    ) -> list[ActionRecord]:
        spec = self.policy.quarantine
        ctx = EnforceContext(
            store=self.store,
            connectors=self._live,
            actor=self.actor,
            quarantine=spec.spec() if spec else None,
            notifier=self._notify,
            vms={vm.id: vm for vm in vms},
        )
        records = self._repair(ctx)
        for p in planned:  # one VM at a time, never while the gate acts on the same VM
            with self._vm_lock(p.vm.id):
                records += execute(ctx, [p])
        for rec in records:  # what a reconcile changed is in the log too (`watch -v`)
            if rec.status not in ("noop", "skipped", "dry-run"):
                log.info(
                    "reconcile: %s %s (%s) %s%s%s",
                    rec.action,
                    rec.name,
                    rec.host,
                    rec.status,
                    f" by rule {rec.rule}" if rec.rule else "",
                    f": {rec.error}" if rec.error else "",
                )
        return records

    def _repair(self, ctx: EnforceContext) -> list[ActionRecord]:
        """Finish what a crash left pending, holding those VMs' locks: in the daemon a
        pending entry may be the gate's quarantine still in flight on another thread (it was
        resumed under the gate's feet, twice applied, and failed when the VM left)."""
        vm_ids = sorted({e.id for e in self.store.incomplete_actions()})
        with contextlib.ExitStack() as stack:
            for vm_id in vm_ids:  # one order for all: the gate holds one VM lock at a time
                stack.enter_context(self._vm_lock(vm_id))
            return repair(ctx)

    def _notifier(self) -> Notifier | None:
        return self._notify


class SweepScheduler:
    """One sweep at a time; concurrent requests share the next sweep's result."""

    def __init__(self, run: Callable[[], ScanResult | None], executor: Executor) -> None:
        self._run = run
        self._executor = executor
        self._pending: list[asyncio.Future[ScanResult | None]] = []
        self._task: asyncio.Task[None] | None = None
        self.running = False

    async def request(self) -> ScanResult | None:
        """The result of a sweep that starts after this call (None: it failed or no host)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ScanResult | None] = loop.create_future()
        self._pending.append(fut)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            self.running = True
            try:
                result = await loop.run_in_executor(self._executor, self._run)
            except VmwardenError as exc:
                log.warning("reconcile failed: %s", exc)
                result = None
            except Exception:  # the daemon's boundary: a failed sweep is retried, not fatal
                log.exception("reconcile failed unexpectedly")
                result = None
            finally:
                self.running = False
            for fut in batch:
                if not fut.done():
                    fut.set_result(result)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
