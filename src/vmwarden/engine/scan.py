"""One sweep: inventory → lineage → store → evaluate → (enforce). Pull mode, as in c7n.

The policy is validated before any hypervisor is contacted, and whether actions run is decided
in exactly one place (``Sweep.run``'s ``enforce`` flag): a report-only sweep plans the actions
and shows them as ``dry-run``.

A run never fails in a way that looks like success (see ``engine.result``):
- a host that cannot be reached is named in ``ScanResult.unreachable`` while the others are
  still judged and enforced; its findings stay open (the store resolves nothing there) and
  its VMs are not marked gone. Only when no host answers does the sweep stop (nothing done).
  Retry policy: opening a connection is retried by the connector (3 attempts, 0.5 s then 1 s
  apart); a one-shot sweep does not reconnect a connection lost mid-run: that host's
  remaining actions fail (the run exits 1), and a quarantine left pending is finished by the
  next sweep's ``repair``. ``watch`` reconnects with its own backoff.
- a missing (or inactive) quarantine network is said per host before any action, and a
  dry-run's quarantine there carries the reason it would fail;
- a stop request (Ctrl-C) during enforcement finishes the VM in flight; the rest is
  reported ``interrupted``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmwarden.connectors import inventory_all, open_connector
from vmwarden.connectors.base import registered_schemes, uri_scheme
from vmwarden.enforce import (
    EnforceContext,
    PlannedAction,
    execute,
    mark_held,
    plan,
    repair,
)
from vmwarden.enforce.actions import EVENT_BASED
from vmwarden.enforce.runner import StopRequest
from vmwarden.engine.benchmarks import run_benchmarks
from vmwarden.engine.content_lineage import content_lineage, signed_templates
from vmwarden.engine.executor import DiskExecutor, InProcess, Served, disk_reads
from vmwarden.engine.hosts import dedupe_hosts
from vmwarden.engine.images import classify, collect_images, merge_discovered
from vmwarden.engine.inspection import InspectionOptions, inspect_all, merge_agent_facts, targets
from vmwarden.engine.known import StoredInputs, input_chains
from vmwarden.engine.lineage import Lineage, is_local
from vmwarden.engine.quarantine_targets import TargetProblem, dry_run_records, from_inventories
from vmwarden.engine.result import ScanResult, Unreachable
from vmwarden.engine.storage import discover
from vmwarden.engine.stream import StreamingSweep
from vmwarden.errors import ConnectorError, UnreachableError, VmwardenError
from vmwarden.model import VM, ActionRecord, Estate, Finding, HostInventory, Image
from vmwarden.notify import Dispatcher
from vmwarden.policy import Policy, evaluate
from vmwarden.policy.evaluate import gc_paused
from vmwarden.store.exceptions import ExceptionsRepo
from vmwarden.vulns import VulnDB

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]


def _quiet(stage: str, done: int, total: int) -> None:
    return None


@dataclass
class SweepOptions:
    """What a sweep looks at beyond libvirt: storage directories, disk contents, advisories."""

    images_dirs: list[Path] = field(default_factory=list)
    inspect: InspectionOptions = field(default_factory=InspectionOptions)
    vulns: Path | None = None
    #: where disks are read: this process (default) or the disks' hosts (``--scheduler``)
    executor: DiskExecutor = field(default_factory=InProcess)
    #: from this many URIs on, a sweep that asks only for what ``engine/stream.py`` does
    #: (report-only, no ``--images`` or advisories; with ``--scheduler`` no disk inspection
    #: or signed templates either) streams
    #: host by host in bounded memory; its result then holds counts, not the lists
    stream_hosts: int = 500
    #: running VMs' disks held still while read where the platform can (vSphere: a scan
    #: snapshot per VM, removed after); ``watch`` turns it off for its periodic reconciles
    #: (a snapshot of every running VM every ``--interval`` is churn no vCenter admin wants)
    stable_reads: bool = True


class Sweep:
    def __init__(
        self,
        store: Any,
        policy: Policy,
        *,
        actor: str,
        progress: Progress = _quiet,
        options: SweepOptions | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.actor = actor
        self.progress = progress
        self.options = options or SweepOptions()
        self._feed: tuple[tuple[str, tuple[int, int, int]], VulnDB] | None = None
        self._known: StoredInputs | None = None  # during a sweep's inventory
        self._stop: StopRequest | None = None  # during a sweep: the caller's stop request
        self._unreachable: list[Unreachable] = []  # during a sweep: hosts that failed

    def run(
        self, uris: list[str], *, enforce: bool = False, stop: StopRequest | None = None
    ) -> ScanResult:
        """One sweep of ``uris``; ``enforce``: carry out the rules' actions (else dry-run).
        ``stop``: the caller's stop request (its signal handler calls ``stop.request``),
        armed here once actions start.

        The cyclic garbage collector is paused for the sweep (see ``gc_paused``): its full
        collections over the estate's objects found nothing and cost a fifth of a re-scan.
        """
        self._stop, self._unreachable = stop, []
        if self._streams(uris, enforce):
            return self._stream(uris)
        try:
            with gc_paused():
                return self._run(uris, enforce=enforce)
        finally:
            self._stop = None

    def _run(self, uris: list[str], *, enforce: bool) -> ScanResult:
        started = datetime.now(UTC)
        scan_id = self.store.begin_scan(uris)
        self._known = self._stored_inputs()  # loads while the connections open
        try:
            inventories = self._inventory(uris)
        finally:
            if self._known is not None:
                self._known.wait()
        known, self._known = self._known, None
        inventories, twins = dedupe_hosts(inventories)  # two URIs, one daemon: VMs once
        inputs = _inputs(inventories, known)
        warnings = twins + [w for inv in inventories for w in inv.warnings]
        targets_missing = self._target_problems(inventories)
        warnings += [str(p) for p in targets_missing]
        # remote hosts' disks are read through their own connections (_inspect closes them)
        opts = self.options
        lineage = Lineage.for_store(
            self.store, opts.images_dirs, remote=True, stable_reads=opts.stable_reads
        )
        served, unserved = self._serve_elsewhere(inventories)
        lineage.enrich_all(unserved, lambda i: self.progress("lineage", i, len(unserved)))
        vms = [vm for inv in inventories for vm in inv.vms]
        now = datetime.now(UTC)
        complete = {inv.host for inv in inventories}
        mark_held(self.store, vms)  # held NICs are judged (and shown) where they were
        same = {vm.id for vm in vms if known.unchanged(vm)} if known is not None else set()
        self.store.record_inventory(
            vms, now=now, complete_hosts=complete, inputs=inputs, unchanged=same
        )
        catalog = {**self.store.catalog(), **self.policy.catalog()}
        content = {**content_lineage(vms, self.store, catalog, lineage), **served.content}
        images = self._images(inventories, catalog, lineage)
        warnings += lineage.warnings + served.warnings
        builtin = self._inspect(vms, images, lineage) + served.findings + served.inspected(images)
        merge_agent_facts(vms)
        self.store.record_images(images, now=now, complete_hosts=complete)
        hosts = [inv.host for inv in inventories]
        estate = Estate(
            vms=vms,
            images=images,
            catalog=catalog,
            now=now,
            hosts=hosts,
            catalog_paths={
                t["path"]: (t["name"], t["digest"]) for t in self.store.templates() if t.get("path")
            },
            vulns=self._vulns(),
            content_lineage=content,
        )
        findings = evaluate(self.policy, estate) + builtin
        self.progress("evaluate", 1, 1)
        acting = self._not_excepted(findings, now)
        self.store.record_findings(findings, now=now, **self._findings_scope())
        rule_actions = self._rule_actions()
        due = self._due_events(acting, rule_actions)
        planned = plan(acting, {vm.id: vm for vm in vms}, rule_actions, due)
        reached = [inv.uri for inv in inventories]
        actions = (
            self._act(reached, vms, planned)
            if enforce
            else dry_run_records(planned, self.actor, targets_missing)
        )
        finished = datetime.now(UTC)
        self.store.finish_scan(
            scan_id, {"vms": len(vms), "findings": len(findings), "actions": len(actions)}
        )
        result = ScanResult(vms, images, findings, actions, hosts, warnings, started, finished)
        result.unreachable = list(self._unreachable)
        result.disk_reads = disk_reads(inventories, served.hosts)
        if self._stop is not None and self._stop.requested and self._stop.armed:
            result.interrupted_by = self._stop.signum
        return result

    def _streams(self, uris: list[str], enforce: bool) -> bool:
        o = self.options
        if len(uris) < o.stream_hosts:
            return False
        spread = not isinstance(o.executor, InProcess)  # hosts judged on Dask workers
        missing = [
            what
            for what, asked in (
                ("--enforce", enforce),
                ("disk inspection with --scheduler", o.inspect.enabled and spread),
                ("signed templates with --scheduler", spread and self._signed_templates()),
                ("--images", bool(o.images_dirs)),
                ("advisories", bool(o.vulns or self.policy.vulns)),
            )
            if asked
        ]
        if missing:
            log.warning(
                "%d hosts swept as one estate in memory: the streaming sweep does not do %s",
                len(uris),
                ", ".join(missing),
            )
        return not missing

    def _signed_templates(self) -> bool:
        """Whether content lineage has templates to compare with (workers do not yet)."""
        return bool(signed_templates(self.store.templates()))

    def _stream(self, uris: list[str]) -> ScanResult:
        """A sweep of many hosts, one host at a time (``engine/stream.py``)."""
        local = isinstance(self.options.executor, InProcess)
        streamed = StreamingSweep(
            self.store,
            self.policy,
            progress=lambda s, d, t: self.progress(s, d, len(uris)),
            hosts=None if local else self.options.executor.hosts(self.store),  # on workers
            inspect=self.options.inspect,
        ).run(uris, total=len(uris))
        result = ScanResult(
            [], [], [], [], [], streamed.warnings, streamed.started, streamed.finished
        )
        result.unreachable = streamed.unreachable
        result.streamed = streamed.counts()
        return result

    def _serve_elsewhere(
        self, inventories: list[HostInventory]
    ) -> tuple[Served, list[HostInventory]]:
        """The hosts whose own workers read their disks (``--scheduler``), and the rest,
        which this process reads."""
        served = self.options.executor.serve(
            inventories,
            store=self.store,
            catalog={**self.store.catalog(), **self.policy.catalog()},
            options=self.options.inspect,
        )
        return served, [inv for inv in inventories if inv.host not in served.hosts]

    def _target_problems(self, inventories: list[HostInventory]) -> list[TargetProblem]:
        spec = self.policy.quarantine
        return from_inventories(spec.spec(), inventories) if spec else []

    def _findings_scope(self) -> dict[str, Any]:
        """With a host unreachable, resolve nothing on it: its findings were not looked at,
        not fixed. Its hosts are the ones the store last saw at its URI."""
        dead = {u.uri for u in self._unreachable}
        if not dead:
            return {}
        gone = {v["host"] for v in self.store.list_vms() if v.get("uri") in dead}
        seen = {d["host"] for d in self.store.findings("open")}
        return {"scope_hosts": seen - gone}

    def _images(
        self, inventories: list[HostInventory], catalog: dict[str, str], lineage: Lineage
    ) -> list[Image]:
        """Chain layers and pool volumes, plus what ``--images`` directories hold, classified."""
        images = collect_images(inventories, catalog)
        local = {inv.host for inv in inventories if is_local(inv)} | {socket.gethostname()}
        if self.options.images_dirs:
            found = discover(self.options.images_dirs)
            for img in found:
                if img.format != "iso9660":
                    img.digest = lineage.digest(img.path)
            images = merge_discovered(images, found, local)
        classify(images, catalog, local)
        return images

    def _inspect(self, vms: list[VM], images: list[Image], lineage: Lineage) -> list[Finding]:
        """Guest facts of every disk; the last use of the remote hosts' connections."""
        try:
            tlist = targets(vms, images, lineage) if self.options.inspect.enabled else []
            if not tlist:
                return []
            found = inspect_all(
                self.store,
                tlist,
                allowed_dirs=lineage.all_allowed_dirs(),
                options=self.options.inspect,
                progress=self.progress,
            )
            local = [r.guest for t in tlist if t.remote is None for r in (t.vm, t.image) if r]
            run_benchmarks(
                self.store,
                [g for g in local if g is not None],
                self.policy,
                allowed_dirs=lineage.all_allowed_dirs(),
                workers=self.options.inspect.workers,
            )
            return found
        finally:
            lineage.close()

    def _vulns(self) -> VulnDB | None:
        """The OSV feed, loaded once per Sweep (watch keeps one for its life) until the feed's
        files change: re-parsing a distribution's feed at every reconcile is the slow part."""
        path = self.options.vulns or self.policy.vulns
        if not path:
            return None
        if not Path(path).exists():
            return VulnDB.load(path)  # raises the feed's own clear error
        key = (str(path), _tree_stamp(Path(path)))
        if self._feed is None or self._feed[0] != key:
            self._feed = (key, VulnDB.load(path))
        return self._feed[1]

    def _stored_inputs(self) -> StoredInputs | None:
        """The store's record of each domain's last input: a one-shot scan's connections
        start with empty parse caches, so unchanged domains are rebuilt from it."""
        return StoredInputs(self.store)

    def _inventory(self, uris: list[str]) -> list[HostInventory]:
        """Every host's inventory; a host that fails is kept in ``_unreachable`` and the
        sweep goes on without it. A URI no connector serves is a mistake, refused first."""
        for uri in uris:
            scheme = uri_scheme(uri)
            if scheme not in registered_schemes():
                raise ConnectorError(
                    f"no connector for URI scheme {scheme!r} in {uri!r}",
                    hint=f"valid schemes: {', '.join(registered_schemes())}; nothing was changed",
                )
        done = 0

        def tick(_uri: str, _result: object) -> None:
            nonlocal done
            done += 1
            self.progress("inventory", done, len(uris))

        results = inventory_all(uris, on_done=tick, known=self._known)
        errors = [r for r in results if isinstance(r, VmwardenError)]
        reached = [r for r in results if isinstance(r, HostInventory)]
        if errors and not reached:
            message = "; ".join(str(e) for e in errors)
            hints = dict.fromkeys(e.hint for e in errors if e.hint)  # the connector's own advice
            hint = "; ".join(hints) or "check the URI and that libvirtd runs"
            raise UnreachableError(message, hint=f"{hint}; nothing was changed")
        self._unreachable = [
            Unreachable(uri, str(r), r.hint)
            for uri, r in zip(uris, results, strict=True)
            if isinstance(r, VmwardenError)
        ]
        for u in self._unreachable:
            log.info("host unreachable, skipped: %s", u.error)
        return reached

    def _not_excepted(self, findings: list[Finding], now: datetime) -> list[Finding]:
        """Findings no approved, unexpired exception covers: the ones actions run for.

        Excepted findings are still reported (and stored), with the exception in evidence:
        an exception suspends enforcement, it does not hide the problem.
        """
        covered = ExceptionsRepo(self.store).active_exceptions(now=now)
        if not covered:
            return findings
        acting = []
        for f in findings:
            if (f.rule, f.id) in covered:
                f.evidence["excepted"] = True
            else:
                acting.append(f)
        return acting

    def _due_events(
        self, findings: list[Finding], rule_actions: dict[str, list[tuple[str, dict[str, Any]]]]
    ) -> set[tuple[tuple[str, str, str], str]]:
        """(finding, event action) pairs not carried out since the finding opened.

        Read from the journal rather than from "opened this sweep", so a finding first seen by
        a report-only sweep still gets its notify/snapshot on the first ``--enforce`` sweep.
        """
        wanted = [
            (f, name)
            for f in findings
            for name, _ in rule_actions.get(f.rule, [])
            if name in EVENT_BASED
        ]
        if not wanted:
            return set()
        since = {
            (d["rule"], d["resource"], d["id"]): d["first_seen"]
            for d in self.store.findings("open")
        }
        # Only entries newer than the oldest wanted finding can count: the journal grows with
        # every notify, and older entries cannot clear a finding opened after them.
        opened = [since.get(f.key) for f, _ in wanted]
        oldest = min(opened) if None not in opened else None  # type: ignore[type-var]
        last_done: dict[tuple[str, str | None, str], datetime] = {}
        for action in {name for _, name in wanted}:
            for e in self.store.journal_entries(action=action, status="done", since=oldest):
                key = (e.id, e.rule, action)
                if e.created_at and (key not in last_done or e.created_at > last_done[key]):
                    last_done[key] = e.created_at
        due = set()
        for f, name in wanted:
            done_at, opened_at = last_done.get((f.id, f.rule, name)), since.get(f.key)
            if done_at is None or (opened_at is not None and done_at < opened_at):
                due.add((f.key, name))
        return due

    def _rule_actions(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        return {rule.name: rule.action_specs() for rule in self.policy.rules}

    def _act(
        self, uris: list[str], vms: list[VM], planned: list[PlannedAction]
    ) -> list[ActionRecord]:
        connectors: dict[str, Any] = {}
        lost: dict[str, VmwardenError] = {}
        for uri in uris:  # a host lost since its inventory fails its own actions only
            try:
                connectors[uri] = open_connector(uri)
            except VmwardenError as exc:
                lost[uri] = exc
        stop = self._stop
        if stop is not None:
            stop.arm()  # from here on, a stop request finishes the VM in flight
        try:
            spec = self.policy.quarantine
            ctx = EnforceContext(
                store=self.store,
                connectors=connectors,
                actor=self.actor,
                quarantine=spec.spec() if spec else None,
                notifier=self._notifier(),
                vms={vm.id: vm for vm in vms},
            )
            records = repair(ctx, stop)
            records += [
                p.unjournaled("failed", self.actor, error=f"host lost: {lost[p.vm.uri]}")
                for p in planned
                if p.vm.uri in lost
            ]
            records += execute(ctx, [p for p in planned if p.vm.uri not in lost], stop)
            for i, _ in enumerate(records, 1):
                self.progress("enforce", i, len(records))
            return records
        finally:
            for conn in connectors.values():
                conn.close()

    def _notifier(self) -> Dispatcher | None:
        specs = [n.model_dump(exclude_none=True) for n in self.policy.notify]
        return Dispatcher(specs) if specs else None


def _inputs(
    inventories: list[HostInventory], known: StoredInputs | None
) -> dict[str, tuple[str, list[Any]]]:
    """VM id → (input digest, chains before lineage), taken before lineage fills the chains;
    a VM rebuilt from the store keeps the stored chains (same input, same chains)."""
    out: dict[str, tuple[str, list[Any]]] = {}
    for inv in inventories:
        for vm in inv.vms:
            digest = inv.inputs.get(vm.id)
            if digest is not None:
                stored = known.chains(vm.id, digest) if known is not None else None
                out[vm.id] = (digest, stored if stored is not None else input_chains(vm))
    return out


def _tree_stamp(path: Path) -> tuple[int, int, int]:
    """(files, total size, newest mtime_ns) of a file or directory tree: changes when it does."""
    if not path.is_dir():
        st = path.stat()
        return (1, st.st_size, st.st_mtime_ns)
    count = size = newest = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(root, name))
            count, size, newest = count + 1, size + st.st_size, max(newest, st.st_mtime_ns)
    return (count, size, newest)
