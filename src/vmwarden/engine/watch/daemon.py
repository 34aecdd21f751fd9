"""``Watcher``: the continuous monitor behind ``vmwarden watch``.

One asyncio loop (libvirt's events dispatched on it by ``libvirtaio``), one ``HostWatch`` per
URI, a worker pool for everything that blocks (libvirt calls, the store, hashing), and:

- on every (re)connection, and every ``interval`` seconds, a full reconcile (``WatchSweep``:
  inventory → lineage → inspection → store → evaluate → enforce), after which VMs found
  running that were not running before (started while the daemon was away) meet the gate,
  and shut-off VMs the gate would hold get their persistent NICs moved to quarantine ahead
  of time, so that they boot isolated;
- every domain event goes to its VM's queue (``VmQueue``: coalesced, one update at a time per
  VM). An update reads the domain, and if it started, judges it at once (``Judge.at_start``)
  and quarantines it *before anything else* when the gate holds it; only then is it recorded
  in the store (history). A held VM is then judged again after a full reconcile
  (``Judge.after_sweep``) and released or kept held. A running VM whose metadata changed is
  judged at once too (``Gate.on_change``), not at the next reconcile. What the gate does is
  ``Gate``'s (``gate.py``); this module decides when.

The admission service (libvirt's hook asking "may this VM start?") runs on a thread and event
loop of its own, with its own worker pool: nothing on this loop (events, HTTP served beside
it, a stuck store call) can make its answer late.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from vmwarden.engine.lineage import Lineage
from vmwarden.engine.metrics import WatchMetrics, serve_metrics
from vmwarden.engine.scan import ScanResult, SweepOptions
from vmwarden.engine.watch.alert_journal import FailedAlerts
from vmwarden.engine.watch.events import came_up, read_vm
from vmwarden.engine.watch.gate import WATCH_ACTOR, Gate, Outcome
from vmwarden.engine.watch.hosts import HostWatch
from vmwarden.engine.watch.judge import LIVE, Judge
from vmwarden.engine.watch.latency import start_event
from vmwarden.engine.watch.reload import reload_policy
from vmwarden.engine.watch.state import WatchConfig, WatchState
from vmwarden.engine.watch.sweeper import SweepScheduler, WatchSweep, in_scope
from vmwarden.engine.watch.vmqueue import Key, VmQueue
from vmwarden.errors import DomainGoneError, VmwardenError
from vmwarden.model import VM, Finding, HostInventory, Severity, State
from vmwarden.model.events import VmEvent
from vmwarden.notify.alerts import AlertManager
from vmwarden.policy import Policy
from vmwarden.store.facts import FactsCache

log = logging.getLogger(__name__)


class Watcher:
    """The daemon. ``await run()`` until ``stop()``; everything else is internal."""

    def __init__(
        self,
        config: WatchConfig,
        policy: Policy,
        store: Any,
        *,
        sweep_options: SweepOptions | None = None,
    ) -> None:
        self.config = config
        # reconciles read running VMs live: no scan snapshot of each every --interval
        sweep_options = replace(sweep_options or SweepOptions(), stable_reads=False)
        self.policy = policy
        self.store = store
        self.metrics = WatchMetrics()
        self.metrics.refresh = self._refresh_metrics
        specs = [n.model_dump(exclude_none=True) for n in policy.notify]
        # failed deliveries go to the journal; a lambda: self.state is made just below
        self.failed_alerts = FailedAlerts(store, lambda vm_id: self.state.vm(vm_id))  # noqa: PLW0108
        self.alerts = AlertManager.from_specs(
            specs,
            rate=config.alert_rate,
            burst=config.alert_burst,
            queue_size=config.alert_queue,
            on_failure=self.failed_alerts,
        )
        self.notify_rules = {r.name for r in policy.rules if "notify" in r.action_names}
        self.state = WatchState(store, policy, config)
        self.executor = ThreadPoolExecutor(config.workers, thread_name_prefix="vmwarden-watch")
        self.sweep = WatchSweep(
            store,
            policy,
            actor=WATCH_ACTOR,
            connectors=self._live_connectors,
            vm_lock=self._vm_lock,
            notifier=self._queued_notifier,
            on_findings=self._on_findings,
            only=config.only,
            options=sweep_options,
        )
        self.judge = Judge(
            policy,
            store,
            hold_unknown=config.hold_unknown,
            hold_unregistered=config.hold_unregistered,
            inspection=self.sweep.inspects,
            facts=FactsCache(store),
            image_dirs=self.sweep.options.images_dirs,
        )
        self.state.image_dirs = [str(d) for d in self.sweep.options.images_dirs]
        spec = policy.quarantine
        self.gate = Gate(
            store,
            config,
            self.judge,
            self.state,
            spec=spec.spec() if spec else None,
            metrics=self.metrics,
            alerts=self.alerts,
            vm_lock=self._vm_lock,
        )
        self.hosts = {
            uri: HostWatch(
                uri,
                on_event=self._on_event,
                on_up=self._on_up,
                on_state=self._on_host_state,
                backoff=config.backoff,
                keepalive=config.keepalive,
            )
            for uri in config.uris
        }
        self.queue = VmQueue(self._handle, self._handled)
        self.scheduler = SweepScheduler(self._reconcile, self.executor)
        self.sweeps = 0
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # settles waiting for a reconcile
        self.started = threading.Event()  # set once every host had its first reconcile
        self.listening: tuple[str, int] | None = None
        self.admission: Any | None = None
        self._stopping = False  # stop() before run() got going: run returns at once

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until ``stop()``. A listener that cannot be set up (a busy port, a socket
        path in use) raises its error after everything started so far is shut down."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._loop = loop
        if self._stopping:
            self._stop.set()
        for host in self.hosts.values():
            host.source.attach(loop)  # the platform's events dispatched on this loop
        tasks: list[asyncio.Task[Any]] = []
        server: asyncio.AbstractServer | None = None
        try:
            self.alerts.start()
            await loop.run_in_executor(self.executor, self.state.load_stored)
            server = await self._serve_metrics()
            await self._start_admission()
            tasks = [loop.create_task(h.run(), name=f"host {h.uri}") for h in self.hosts.values()]
            tasks.append(loop.create_task(self._periodic(), name="periodic reconcile"))
            tasks.append(loop.create_task(self._announce_started(), name="started"))
            await self._stop.wait()
        finally:
            tasks += list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.queue.close()
            await self.scheduler.close()
            if server is not None:
                server.close()
            if self.admission is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.admission.stop)
            self.state.close()
            self.alerts.close(timeout=2.0)
            self.executor.shutdown(wait=True, cancel_futures=True)

    async def reload(self, load: Callable[[], Policy]) -> None:
        """SIGHUP: ``load()`` the policy again and apply it (``reload.py``), then reconcile
        under it. Raises ``VmwardenError`` (and keeps the old policy) when it does not load
        or cannot be applied."""
        policy = await asyncio.to_thread(load)
        old = reload_policy(self, policy)
        log.info("policy reloaded: %d rule(s)", len(policy.rules))
        self._loop_task(asyncio.to_thread(old.close, 2.0))
        self._loop_task(self.scheduler.request())

    def stop(self) -> None:
        """Ask ``run`` to return (from any thread, also before ``run`` started)."""
        self._stopping = True
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            # (the HTTP thread's exit may come after ``run`` returned and closed its loop)
            self._loop.call_soon_threadsafe(self._stop.set)

    async def _announce_started(self) -> None:
        await asyncio.gather(*(h.wait_up() for h in self.hosts.values()))
        while not all(h.reconciled for h in self.hosts.values()):
            await asyncio.sleep(0.05)
        self.started.set()
        log.info("watching %d host(s)", len(self.hosts))

    async def _serve_metrics(self) -> asyncio.AbstractServer | None:
        if self.config.listen is None:
            return None
        host, port = self.config.listen
        server = await serve_metrics(
            host,
            port,
            self.metrics.render,
            extra={"/state": self.describe},
            authorize=self.config.authorize,
        )
        sock = server.sockets[0].getsockname()
        self.listening = (sock[0], sock[1])
        log.info("metrics on http://%s:%d/metrics", *self.listening)
        return server

    async def _start_admission(self) -> None:
        """Serve libvirt's qemu hook when asked and when the admission service exists."""
        if not self.config.admission_socket:
            return
        try:
            from vmwarden.engine.admission import AdmissionServer
        except ImportError:
            log.warning("admission service not available in this build; hook not served")
            return
        server = AdmissionServer(self.config.admission_socket, self.state.decide)
        await asyncio.to_thread(server.start_in_thread)  # its own thread, loop and pool
        self.admission = server

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval)
            await self.scheduler.request()

    # -- hosts -------------------------------------------------------------------------

    def _live_connectors(self) -> dict[str, Any]:
        return {u: h.connector for u, h in self.hosts.items() if h.connector is not None}

    def _connector(self, uri: str) -> Any:
        host = self.hosts.get(uri)
        return host.connector if host is not None else None

    def _on_host_state(self, host: HostWatch) -> None:
        self.metrics.connected.set(1 if host.state == "up" else 0, uri=host.uri)
        if host.state == "up" and host.connects > 1:
            self.metrics.reconnects.inc(uri=host.uri)

    async def _on_up(self, host: HostWatch) -> None:
        """Connected (again): reconcile fully before trusting events alone."""
        await self.scheduler.request()
        host.reconciled = True

    # -- events ------------------------------------------------------------------------

    def _on_event(self, event: VmEvent) -> None:
        if not in_scope(event.name, self.config.only):
            self.metrics.ignored.inc(uri=event.uri)
            return  # a VM outside --only: not ours to watch (and reading it may block)
        self.metrics.events.inc(uri=event.uri, kind=event.kind)
        self.queue.put(event)

    def _handled(self, batch: list[VmEvent]) -> None:
        self.metrics.handled.inc(len(batch), uri=batch[0].uri)

    async def _handle(self, key: Key, batch: list[VmEvent]) -> None:
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(self.executor, self._update_vm, key, batch)
        if outcome.reconcile:
            self._loop_task(self.scheduler.request())
        if outcome.check:  # off the VM's queue: its next events (a restart) must not wait
            self._loop_task(self._check(key, outcome))

    async def _check(self, key: Key, outcome: Outcome) -> None:
        """After the next full reconcile, judge the VM again (release it or keep it)."""
        result = await self.scheduler.request()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._settle, key, result, outcome)

    def _loop_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("watch task failed", exc_info=task.exception())

    def _update_vm(self, key: Key, batch: list[VmEvent]) -> Outcome:
        """One VM's coalesced events (worker thread): gate first, then the record."""
        uri, vm_id = key
        conn = self.hosts[uri].connector
        if conn is None:
            return Outcome()  # disconnected: the reconcile on reconnect catches up
        try:
            vm, run = read_vm(conn, vm_id)
        except DomainGoneError:
            self.gate.late_start(vm_id, batch)
            self.state.forget(vm_id)
            return Outcome(reconcile=True)
        if not in_scope(vm.name, self.config.only):
            return Outcome()
        outcome = Outcome()
        with self._vm_lock(vm_id):
            prior = self.state.vm(vm_id)
            if vm.state not in LIVE:
                self.gate.late_start(vm_id, batch)  # a short run's own 'started', read late
            if vm.state not in LIVE:
                self.gate.swept.forget(vm_id)
            if vm.state in LIVE and self.gate.swept.covers(vm_id, batch, run):
                pass  # a reconcile saw this start first and gated it there
            elif vm.state in LIVE and came_up(batch, self.state.last_state.get(vm_id)):
                outcome = self.gate.at_start(conn, vm, prior, start_event(batch), run)
            elif vm.state == State.SHUTOFF and self.store.active_quarantine(vm_id) is None:
                self.gate.isolate_ahead(conn, vm, prior)
            elif vm.state in LIVE and any(e.kind == "metadata" for e in batch):
                outcome = self.gate.on_change(conn, vm, prior, batch)
            else:
                outcome.check = self.gate.keep_hold(conn, vm, batch)
            self._record(vm, prior, migrated=any(e.migrated for e in batch))
            self._record_made_from(vm, batch)
        return outcome

    def _record_made_from(self, vm: VM, batch: list[VmEvent]) -> None:
        """Provenance from the platform's events (a clone's or deployment's source)."""
        for event in batch:
            if event.made_from:
                try:
                    self.store.record_made_from(vm.id, event.made_from, at=event.at, source="event")
                except VmwardenError as exc:
                    log.error("could not record where %s was made from: %s", vm.name, exc)

    def _record(self, vm: VM, prior: VM | None, *, migrated: bool) -> None:
        """History from events: state, host (migration), MACs and networks, one clock."""
        if not any(d.chain and d.chain[-1].digest for d in vm.disks):
            inv = HostInventory(
                uri=vm.uri, host=vm.host, vms=[vm], pools=self.state.pools_of(vm.uri)
            )
            lineage = Lineage.for_store(
                self.store, self.judge.image_dirs, remote=True, remote_hashing=False
            )
            try:
                lineage.enrich(inv)
            finally:
                lineage.close()
        if prior is not None and prior.guest is not None and vm.guest is None:
            vm.guest = prior.guest  # facts stay until the next inspection replaces them
        source = "event:migration" if migrated else "event"
        try:
            self.store.record_inventory(
                [vm], now=datetime.now(UTC), complete_hosts=set(), source=source
            )
        except VmwardenError as exc:
            log.error("could not record %s: %s", vm.name, exc)
        self.state.update_vm(vm)

    # -- after a reconcile -------------------------------------------------------------

    def _settle(self, key: Key, result: ScanResult | None, outcome: Outcome) -> None:
        """Judge a held VM on the full data of a reconcile: release it, or keep it and alert."""
        uri, vm_id = key
        conn = self.hosts[uri].connector
        vm = self.state.vm(vm_id)
        if result is None or conn is None or vm is None:
            return  # no fresh data: the VM stays as it is; the next reconcile settles it
        judgement = self.judge.after_sweep(vm, self.state.findings, self.state.estate())
        with self._vm_lock(vm_id):
            self.gate.settle(conn, vm, judgement, outcome.judgement)

    def _reconcile(self) -> ScanResult | None:
        """A full reconcile (worker thread), then the gate for what it found."""
        result = self.sweep.run_connected(enforce=self.config.enforce)
        if result is None:
            return None
        self.sweeps += 1
        self.metrics.sweeps.inc(outcome="done")
        self.metrics.disk_reads.replace(
            {(("host", h), ("via", v)): 1 for h, v in result.disk_reads.items()}
        )
        before = self.state.update_sweep(
            result.vms, result.findings, result.images, self.sweep.inventories
        )
        swept_before = set(self.state.swept_hosts)
        self.state.swept_hosts |= set(result.hosts)
        self._refresh_held(result.vms)  # first: the gate settles what is held
        self.gate.after_reconcile(result, before, swept_before, self._connector)
        return result

    def _refresh_held(self, vms: list[VM]) -> None:
        held = {vm.id for vm in vms if self.store.active_quarantine(vm.id) is not None}
        self.state.held = held

    # -- alerts ------------------------------------------------------------------------

    def _on_findings(self, before: dict[tuple[str, str, str], Severity], delta: Any) -> None:
        for alert in AlertManager.transitions(
            before, delta.opened, delta.still_open, delta.resolved, rules=self.notify_rules
        ):
            self.alerts.send(alert)

    def _queued_notifier(
        self, vm: VM, finding: Finding | None, rule: str | None
    ) -> list[tuple[str, bool, str | None]]:
        """The rules' ``notify`` action in the daemon: the alert state machine sends it (one
        alert per finding state change, off the enforcement path)."""
        return [("alert state machine", True, None)]

    # -- locks, metrics, state ---------------------------------------------------------

    @contextlib.contextmanager
    def _vm_lock(self, vm_id: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(vm_id, threading.Lock())
        with lock:
            yield

    def _refresh_metrics(self) -> None:
        counts = self.state.counts()
        self.metrics.vms.replace(
            {(("host", h), ("state", s)): n for (h, s), n in counts["vms"].items()}
        )
        self.metrics.findings.replace(
            {(("severity", s),): n for s, n in counts["findings"].items()}
        )
        self.metrics.quarantined.set(counts["held"])
        alerts, dropped = {}, {}
        for receiver, stats in self.alerts.stats().items():
            for what in ("sent", "failed", "dropped", "queued"):
                alerts[(("outcome", what), ("receiver", receiver))] = stats[what]
            for severity, n in stats["dropped_by_severity"].items():
                dropped[(("receiver", receiver), ("severity", severity))] = n
        self.metrics.alerts.replace(alerts)
        self.metrics.alerts_dropped.replace(dropped)

    def describe(self) -> str:
        """The daemon's state as JSON (``GET /state``)."""
        return json.dumps(
            {
                "hosts": {
                    u: {
                        "state": h.state,
                        "host": h.host,
                        "error": h.last_error,
                        "connects": h.connects,
                    }
                    for u, h in self.hosts.items()
                },
                "sweeps": self.sweeps,
                # the first reconcile's gate and records are done: events are the only work
                "watching": self.started.is_set(),
                "events": {"received": self.queue.received, "handled": self.queue.handled},
                "held": sorted(self.state.held),
                "latencies": [x.to_dict() for x in self.gate.latencies],
                "alerts": self.alerts.stats(),
            },
            default=str,
        )
