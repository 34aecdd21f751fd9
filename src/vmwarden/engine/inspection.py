"""Look inside every disk of the sweep: VMs' disks (running or not) and stored images.

Facts come from the store's cache when the image is unchanged (one stat per layer), else
from sandboxed workers (``inspect.sandbox.InspectorPool``), in parallel, bounded by cores.
A disk that cannot be read becomes an ``uninspectable`` finding with the reason; it is
never skipped silently. Running VMs' disks are read read-only while the guest writes them:
the view is crash-consistent at best (like pulling the plug), which is what offline
package/user/config facts need; a half-written file is reported as an unreadable fact.
Another host's disks are read through its connection (``engine.remote_disks``: a libvirt
host's storage volumes, a vCenter's datastore files over HTTPS, EBS snapshots): the
worker is served their bytes by this process (``inspect.served``), never a local file of the
same path; their facts are reused while every layer's (host, path, size, mtime) is unchanged.
Where a running VM's QEMU guest agent answers, its live facts (hostname, OS, running kernel,
logged-in users, filesystems, addresses) win over the disk's (``merge_agent_facts``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vmwarden.engine.lineage import LINEAGE_DEVICES, Lineage
from vmwarden.engine.remote_facts import RemoteFacts
from vmwarden.errors import InspectError
from vmwarden.inspect.ranged_chain import RangedChain
from vmwarden.inspect.sandbox import InspectorPool
from vmwarden.model import VM, Finding, GuestFacts, Image, Severity
from vmwarden.model.guest import merge_live
from vmwarden.store.facts import FactsCache

UNINSPECTABLE = "uninspectable"
Progress = Callable[[str, int, int], None]


@dataclass
class InspectionOptions:
    enabled: bool = True
    workers: int | None = None
    timeout: float = 60.0
    extra_dirs: list[Path] = field(default_factory=list)


@dataclass
class Target:
    path: str
    vm: VM | None = None
    disk: str | None = None
    image: Image | None = None
    error: str | None = None  # known before opening (lineage refused it)
    remote: RangedChain | None = None  # another host's disk, read through its connection

    @property
    def key(self) -> str:
        """Results are kept by this: a remote disk's path may also name a file here."""
        if self.remote is not None and self.vm is not None:
            return f"{self.vm.host}:{self.path}"
        return self.path


def targets(vms: list[VM], images: list[Image], lineage: Lineage) -> list[Target]:
    """One target per image to read: each VM disk's top layer, plus stored images that no
    VM disk covers (templates, orphans — the dormant files nobody patches).

    Only files of this machine: a VM or image of another host (``lineage`` knows which
    connections reach this machine) is never read, even when a file of that name exists
    here — that file is not its disk. Its guest facts stay unknown."""
    out: list[Target] = []
    covered: set[str] = set()
    for vm in vms:
        if not lineage.readable_vm(vm.uri):
            out += _remote_targets(vm, lineage)
            continue
        for disk in vm.disks:
            top = disk.chain[0] if disk.chain else None
            if disk.device not in LINEAGE_DEVICES or top is None or top.type != "file":
                continue
            if not top.path or not os.path.exists(top.path):
                continue  # lineage already warned; nothing on this machine to read
            refused = next(
                (lay.error for lay in disk.chain if lay.error and "outside" in lay.error), None
            )
            path = os.path.abspath(top.path)
            out.append(Target(path, vm=vm, disk=disk.target, error=refused))
            covered.add(path)
    for img in images:
        if (
            img.kind in ("template", "orphaned")
            and lineage.readable_host(img.host)
            and img.path not in covered
            and os.path.exists(img.path)
        ):
            out.append(Target(img.path, image=img))
            covered.add(img.path)
    return out


def _remote_targets(vm: VM, lineage: Lineage) -> list[Target]:
    """A remote VM's disks whose chains lineage read through the host's connection."""
    out: list[Target] = []
    for disk in vm.disks:
        top = disk.chain[0] if disk.chain else None
        if lineage.remote is None or disk.device not in LINEAGE_DEVICES or top is None:
            continue
        chain = lineage.remote.chain_of(vm.uri, top.path or "")
        if chain is None:
            continue  # not a path a pool could hold (network disk): lineage said why
        out.append(Target(top.path or "", vm=vm, disk=disk.target, error=chain.error, remote=chain))
    return out


def inspect_all(
    store: object,
    tlist: list[Target],
    *,
    allowed_dirs: list[Path],
    options: InspectionOptions,
    progress: Progress,
) -> list[Finding]:
    """Fill ``vm.guest`` / ``image.guest``; return the ``uninspectable`` findings.

    Local images come from the facts cache when unchanged; the rest (and every remote disk,
    served to the worker through its host's connection) are inspected in parallel, at most
    :func:`per_host` at once per host, so one host's slow storage does not stall the others.
    """
    cache = FactsCache(store)  # type: ignore[arg-type]
    readable = [t for t in tlist if t.error is None]
    paths = sorted({t.path for t in readable if t.remote is None})
    remote_all = {t.key: t for t in readable if t.remote is not None}
    facts: dict[str, GuestFacts | InspectError] = dict(cache.lookup_many(paths))
    remote_facts = RemoteFacts(cache)
    described = {k: _described(t) for k, t in remote_all.items()}
    facts.update(remote_facts.lookup(described))
    misses = [p for p in paths if p not in facts]
    remote = {k: t for k, t in remote_all.items() if k not in facts}
    total = len(paths) + len(remote_all)
    done = total - len(misses) - len(remote)
    progress("inspect", done, total)
    if misses or remote:
        with InspectorPool(
            workers=options.workers,
            timeout=options.timeout,
            allowed_dirs=allowed_dirs,
            fingerprint_key=cache.fingerprint_key(),
        ) as pool:

            def tick() -> None:
                nonlocal done
                done += 1
                progress("inspect", done, total)

            jobs = [("", p, _local_job(pool, p)) for p in misses]
            jobs += [
                (t.vm.host if t.vm else "", k, _remote_job(pool, t)) for k, t in remote.items()
            ]
            fresh = _run_jobs(jobs, pool.workers, tick)
        cache.remember_many([fresh[p] for p in misses if isinstance(fresh.get(p), GuestFacts)])
        remote_facts.remember(
            [(*described[k], f) for k in remote if isinstance(f := fresh.get(k), GuestFacts)]
        )
        facts.update(fresh)
    return _apply(tlist, facts)


Job = Callable[[], GuestFacts]


def _described(t: Target) -> tuple[str, str, RangedChain]:
    assert t.vm is not None and t.remote is not None
    return t.vm.host, t.path, t.remote


def _local_job(pool: InspectorPool, path: str) -> Job:
    return lambda: pool.inspect(path)


def _remote_job(pool: InspectorPool, t: Target) -> Job:
    chain = t.remote
    assert chain is not None

    def job() -> GuestFacts:
        try:
            chain.check_supported()
            formats = [info.format for info in chain.infos]
            return pool.inspect_ranged(t.key, chain.readers, formats, encrypted=chain.encrypted)
        finally:
            for reader in chain.readers[:-1]:  # roots stay cached: clones share them
                drop = getattr(reader, "drop_cache", None)
                if drop is not None:
                    drop()

    return job


def per_host(workers: int, hosts: int) -> int:
    """Inspections at once per host: all workers for one host, else at most half of them."""
    return workers if hosts <= 1 else max(1, (workers + 1) // 2)


def _run_jobs(
    jobs: list[tuple[str, str, Job]], workers: int, tick: Callable[[], None]
) -> dict[str, GuestFacts | InspectError]:
    """Run ``(host, key, job)`` s on ``workers`` threads, at most :func:`per_host` at once
    per host: a free thread takes the next job of the next host (round robin) that is under
    its bound, so threads never wait on a slow host while another host has work."""
    pending: dict[str, list[tuple[str, Job]]] = {}
    for host, key, job in jobs:
        pending.setdefault(host, []).append((key, job))
    limit = per_host(workers, len(pending))
    running = dict.fromkeys(pending, 0)
    hosts = list(pending)
    turn = 0
    ready = threading.Condition()
    results: dict[str, GuestFacts | InspectError] = {}
    failed: list[BaseException] = []

    def take() -> tuple[str, str, Job] | None:
        nonlocal turn
        with ready:
            while True:
                if not any(pending.values()):
                    return None
                for i in range(len(hosts)):
                    host = hosts[(turn + i) % len(hosts)]
                    if pending[host] and running[host] < limit:
                        turn = (turn + i + 1) % len(hosts)
                        running[host] += 1
                        key, job = pending[host].pop(0)
                        return host, key, job
                ready.wait()

    def worker() -> None:
        while (item := take()) is not None:
            host, key, job = item
            try:
                results[key] = job()
            except InspectError as exc:
                results[key] = exc
            except BaseException as exc:  # a bug, not a disk: raised in the caller's thread
                failed.append(exc)
            finally:
                with ready:
                    running[host] -= 1
                    ready.notify_all()
            tick()

    threads = [
        threading.Thread(target=worker, name="inspect", daemon=True)
        for _ in range(max(1, min(workers, len(jobs))))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise failed[0]
    return results


def _apply(tlist: list[Target], facts: dict[str, GuestFacts | InspectError]) -> list[Finding]:
    findings: list[Finding] = []
    for t in tlist:
        result: GuestFacts | InspectError | None = facts.get(t.key)
        reason = t.error or (str(result) if isinstance(result, InspectError) else None)
        if reason is not None:
            findings.append(_uninspectable(t, reason))
            continue
        if not isinstance(result, GuestFacts):
            continue
        if t.vm is not None and (
            t.vm.guest is None or (t.vm.guest.os_name is None and result.os_name)
        ):
            t.vm.guest = result  # the first disk that holds an OS speaks for the VM
        if t.image is not None:
            t.image.guest = result
    return findings


def merge_agent_facts(vms: list[VM]) -> None:
    """Lay each running VM's live guest-agent facts over its disk facts (``merge_live``).

    Only over disk facts: a VM whose disks were not read stays "not inspected" (unknown to
    every guest filter); the agent's answer is still in ``vm.agent``.
    """
    for vm in vms:
        if vm.agent is not None and vm.guest is not None:
            vm.guest = merge_live(vm.guest, vm.agent)


def _uninspectable(t: Target, reason: str) -> Finding:
    if t.vm is not None:
        return Finding(
            UNINSPECTABLE,
            "vm",
            t.vm.id,
            t.vm.name,
            t.vm.host,
            Severity.MEDIUM,
            {"disk": t.disk, "image": t.path, "reason": reason},
        )
    assert t.image is not None
    return Finding(
        UNINSPECTABLE,
        "image",
        t.image.path,
        Path(t.image.path).name,
        t.image.host,
        Severity.MEDIUM,
        {"reason": reason},
    )
