"""One host of a streaming sweep, read and judged where it runs: this process or a worker.

Why a seam: the streaming sweep's per-host work splits in two. Reading and judging a host
(inventory, lineage, images, every rule but the estate-wide ones) needs the host's
connection and its disks, not the store; writing it (VMs, images, the comparison of its
findings) needs the store, and stays with the master. :func:`sweep_host` is the first half,
the same code in the master (:class:`InProcessHosts`, the default) and on a Dask worker
(``distributed.host_tasks``), so a sweep spread over workers judges exactly as one that is
not. A host's result (:class:`HostSweep`) is small: its VMs, images and findings.

What a worker cannot read from the store comes in the :class:`HostJob`, sent once per sweep:
the policy, the catalog, the approved templates' directories and the VMs held in quarantine
at the sweep's start (the whole-estate sweep also reads them once).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from vmwarden.connectors import inventory_all
from vmwarden.enforce.held import mark_with
from vmwarden.engine.benchmarks import run_benchmarks
from vmwarden.engine.content_lineage import content_lineage
from vmwarden.engine.images import classify, collect_images
from vmwarden.engine.inspection import InspectionOptions, inspect_all, merge_agent_facts, targets
from vmwarden.engine.lineage import Lineage, approved_dirs, is_local
from vmwarden.engine.remote_disks import RemoteDisks
from vmwarden.errors import VmwardenError
from vmwarden.model import VM, ActionRecord, Estate, Finding, HostInventory, Image
from vmwarden.model.lineage import ContentMatch
from vmwarden.policy import Policy, evaluate

Lookup = Callable[[str, os.stat_result], str | None]
Remember = Callable[[str, os.stat_result, str], None]
#: Content lineage and guest facts of one host's disks: its built-in findings
#: (``uninspectable``) and the content matches, as ``Sweep`` reads them for the estate.
DiskReads = Callable[
    [HostInventory, list[Image], Lineage, "HostJob"],
    tuple[list[Finding], dict[str, ContentMatch]],
]


@dataclass(frozen=True)
class HostJob:
    """What judging any host of one sweep needs besides the host itself."""

    policy: Policy  # every rule but the estate-wide ones (those need the whole estate)
    catalog: dict[str, str]
    catalog_paths: dict[str, tuple[str, str]]
    extra_dirs: tuple[Path, ...]  # the approved templates' directories
    held: Mapping[str, ActionRecord]  # VM id → its active quarantine, at the sweep's start
    now: datetime


@dataclass
class HostSweep:
    """One host, read and judged; or why it could not be reached (``error``)."""

    uri: str
    host: str = ""
    vms: list[VM] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    hint: str | None = None
    where: str = ""  # the worker that read it ("" in this process)
    passed: bool = False  # not this process's to judge (``keep``): only ``host`` is set


@dataclass(frozen=True)
class DiskAccess:
    """How the process that runs :func:`sweep_host` reads disks: its digest cache and, on a
    worker, the directories it may read at all (``refusal``: why a path is not read)."""

    lookup: Lookup
    remember: Remember
    remote: bool = True  # read another host's disks through its connection
    refusal: Callable[[str], str | None] | None = None
    confine: tuple[Path, ...] | None = None  # a worker's --storage: backing files too
    reads: DiskReads | None = None  # None: no content lineage, no inspection


def sweep_host(
    uri: str, job: HostJob, access: DiskAccess, keep: Callable[[str], bool] | None = None
) -> HostSweep:
    """Inventory, lineage, images and judgement of one host (no store). ``keep``: whether
    this process may judge the host its URI turned out to be (a worker: not another
    host's that has its own worker); if not, it is ``passed`` unread."""
    (got,) = inventory_all([uri])
    if isinstance(got, VmwardenError):
        return HostSweep(uri, error=str(got), hint=got.hint)
    if keep is not None and not keep(got.host):
        return HostSweep(uri, got.host, passed=True)
    if access.refusal is not None:
        _refuse_outside(got.vms, access.refusal)
    reader = RemoteDisks(access.lookup, access.remember) if access.remote else None
    # a Lineage per host: its memo of chains and digests would grow with the estate
    lineage = Lineage(access.lookup, access.remember, extra_dirs=list(job.extra_dirs))
    lineage.remote = reader
    lineage.confine = list(access.confine) if access.confine is not None else None
    vms = got.vms
    try:
        lineage.enrich_all([got])
        mark_with(job.held, vms)  # held NICs are judged where they were
        images = collect_images([got], job.catalog)
        local = {got.host} if is_local(got) else set()
        classify(images, job.catalog, local | {socket.gethostname()})
        builtin, content = access.reads(got, images, lineage, job) if access.reads else ([], {})
    finally:
        lineage.close()  # the remote hosts' connections: the disk reads were the last use
    estate = Estate(
        vms=vms,
        images=images,
        catalog=job.catalog,
        now=job.now,
        hosts=[got.host],
        catalog_paths=job.catalog_paths,
        content_lineage=content,
    )
    found = evaluate(job.policy, estate) + builtin
    return HostSweep(uri, got.host, vms, images, found, got.warnings + lineage.warnings)


def _refuse_outside(vms: Iterable[VM], refusal: Callable[[str], str | None]) -> None:
    """On a worker: a disk outside its ``--storage`` directories is never opened; the
    reason stands on the layer (the VM's lineage is then unknown, never passed)."""
    for vm in vms:
        for disk in vm.disks:
            for layer in disk.chain:
                if layer.path and layer.type in ("file", "block") and not layer.error:
                    layer.error = refusal(layer.path)


def job_for(store: Any, policy: Policy, catalog: dict[str, str], now: datetime) -> HostJob:
    """The sweep's :class:`HostJob`, read from ``store`` once."""
    paths = {t["path"]: (t["name"], t["digest"]) for t in store.templates() if t.get("path")}
    return HostJob(
        policy,
        catalog,
        paths,
        tuple(approved_dirs(store)),
        store.held_quarantines(),
        now,
    )


class HostExecutor(Protocol):
    """Reads and judges hosts for the streaming sweep; results in any order, each once.
    ``warnings``: what the last sweep should say about where hosts were read."""

    warnings: list[str]

    def sweep(self, uris: Iterable[str], job: HostJob) -> Iterator[HostSweep]: ...


class InProcessHosts:
    """The default: every host in this process, one after the other, through the store's
    digest and facts caches; its disks' content lineage and, with ``inspect`` enabled,
    guest facts read as ``Sweep`` reads them (host by host here)."""

    def __init__(self, store: Any, inspect: InspectionOptions | None = None) -> None:
        def reads(
            inv: HostInventory, images: list[Image], lineage: Lineage, job: HostJob
        ) -> tuple[list[Finding], dict[str, ContentMatch]]:
            return read_disks(store, inspect, inv, images, lineage, job)

        self.access = DiskAccess(store.cached_digest, store.remember_digest, reads=reads)
        self.warnings: list[str] = []

    def sweep(self, uris: Iterable[str], job: HostJob) -> Iterator[HostSweep]:
        for uri in uris:
            yield sweep_host(uri, job, self.access)


def read_disks(
    store: Any,
    options: InspectionOptions | None,
    inv: HostInventory,
    images: list[Image],
    lineage: Lineage,
    job: HostJob,
) -> tuple[list[Finding], dict[str, ContentMatch]]:
    """One host's content lineage and guest facts (``Sweep._inspect`` for one host)."""
    content = content_lineage(inv.vms, store, job.catalog, lineage)
    found: list[Finding] = []
    tlist = targets(inv.vms, images, lineage) if options is not None and options.enabled else []
    if options is not None and tlist:
        allowed = lineage.all_allowed_dirs()
        found = inspect_all(
            store, tlist, allowed_dirs=allowed, options=options, progress=lambda _s, _d, _t: None
        )
        local = [r.guest for t in tlist if t.remote is None for r in (t.vm, t.image) if r]
        guests = [g for g in local if g is not None]
        run_benchmarks(store, guests, job.policy, allowed_dirs=allowed, workers=options.workers)
    merge_agent_facts(inv.vms)
    return found, content
