"""The client side: a sweep's disk reads sent to the workers on the disks' hosts.

Each disk of a host that has a worker up becomes one ``read_disk`` task restricted to that
host's resource (``distributed.placement``), so it runs only where the disk is. Faults: a
task whose worker dies is rerun by the scheduler on another worker of the same host; when no
worker of the host is left (or the task failed), the whole host is handed back to the
sweep, which reads it as it does without a cluster (locally or through the connection) and
says so in a warning: a killed worker loses nothing and never lets a VM pass unread.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, Future
from vmwarden.distributed.placement import host_resource, hosts_up
from vmwarden.distributed.reader import DiskRequest, DiskResult, read_disk
from vmwarden.engine.content_lineage import signed_templates
from vmwarden.engine.executor import ImageRead, Served
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.lineage import LINEAGE_DEVICES
from vmwarden.engine.stream_host import HostExecutor
from vmwarden.errors import ClusterError
from vmwarden.inspect.lineage_sig import Similarity
from vmwarden.model import VM, Finding, HostInventory, Severity
from vmwarden.model.lineage import ContentMatch, content_key
from vmwarden.store.facts import FactsCache

log = logging.getLogger(__name__)
UNINSPECTABLE = "uninspectable"
#: Seconds between looks at the tasks.
POLL = 0.2
#: Seconds between looks at which hosts still have a worker (the scheduler's worker list).
LOOK = 1.0


@dataclass
class _Host:
    inv: HostInventory
    futures: dict[tuple[str, str], Future] = field(default_factory=dict)  # (host, path)
    lost: str | None = None  # why the host was handed back to the sweep


class DaskDisks:
    """A :class:`~vmwarden.engine.executor.DiskExecutor` on a Dask cluster."""

    def __init__(self, address: str, security: object, *, timeout: float = 30.0) -> None:
        self.address = address
        self.security = security
        self.timeout = timeout
        self.client = self._connect()
        self.last_workers: dict[str, list[str]] = {}

    def _connect(self) -> Client:
        try:
            return Client(
                self.address, security=self.security, timeout=self.timeout, set_as_default=False
            )
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {self.address}: {exc}",
                hint="check the address and that the scheduler runs with the cluster's TLS",
            ) from None

    def close(self) -> None:
        self.client.close()

    def hosts(self, store: Any) -> HostExecutor:
        """A streaming sweep's hosts read and judged on the workers (``host_tasks``)."""
        from vmwarden.distributed.host_tasks import DaskHosts

        return DaskHosts(self, store)

    def workers(self) -> dict[str, list[str]]:
        """Host → addresses of its workers now; a client that gave up on a restarted
        scheduler (Dask closes it after its reconnect timeout) is replaced first."""
        if self.client.status in ("closing", "closed", "failed"):
            self.client.close()
            self.client = self._connect()
        return hosts_up(self.client.scheduler_info(n_workers=-1))

    def serve(
        self,
        inventories: list[HostInventory],
        *,
        store: Any,
        catalog: dict[str, str],
        options: InspectionOptions,
    ) -> Served:
        """Read the disks of every host with a worker up; the cluster failing (the
        scheduler gone, restarting) hands every host back to the sweep, said in a warning."""
        try:
            return self._serve(inventories, store=store, catalog=catalog, options=options)
        except Exception as exc:  # the cluster's boundary: any failure there is data
            log.warning("cluster at %s failed: %s", self.address, exc)
            return Served(
                warnings=[
                    f"cluster at {self.address} unavailable ({type(exc).__name__}: {exc}); "
                    "every disk was read by this process instead"
                ]
            )

    def _serve(
        self,
        inventories: list[HostInventory],
        *,
        store: Any,
        catalog: dict[str, str],
        options: InspectionOptions,
    ) -> Served:
        up = self.workers()
        self.last_workers = up
        wanted = [inv for inv in inventories if inv.host in up]
        if not wanted:
            return Served()
        key = FactsCache(store).fingerprint_key()
        signatures = tuple(
            (t.name, t.signature.to_json()) for t in signed_templates(store.templates())
        )
        approved = frozenset(d.lower() for d in catalog)
        hosts = {inv.host: _Host(inv) for inv in wanted}
        sweep = uuid.uuid4().hex[:12]
        for host in hosts.values():
            disks = _disk_paths(host.inv.vms)
            volumes = _volume_paths(host.inv, {p for p, _ in disks})
            for path, fmt in disks + volumes:
                volume = (path, fmt) in volumes  # facts only: no digest, no lineage
                request = DiskRequest(
                    host.inv.host,
                    path,
                    fmt,
                    approved,
                    () if volume else signatures,
                    key,
                    inspect=options.enabled,
                    timeout=options.timeout,
                    digest=not volume,
                )
                host.futures[(host.inv.host, path)] = self.client.submit(
                    read_disk,
                    request,
                    resources={host_resource(host.inv.host): 1},
                    key=f"vmwarden-disk-{sweep}-{len(host.futures)}-{host.inv.host}",
                    pure=False,
                    retries=1,
                )
        try:
            results = self._gather(hosts)
        except BaseException:
            self.client.cancel([f for h in hosts.values() for f in h.futures.values()])
            raise
        served = Served()
        for host in hosts.values():
            if host.lost is not None:
                served.warnings.append(
                    f"{host.inv.host}: its worker was lost mid-sweep ({host.lost}); its disks "
                    "were read by this process instead"
                )
                continue
            served.hosts.add(host.inv.host)
            _apply(host.inv, results, served)
            for vol in {v.path for p in host.inv.pools for v in p.volumes}:
                if (read := results.get((host.inv.host, vol))) is not None:
                    served.images[(host.inv.host, vol)] = _image_read(read)
        return served

    def _gather(self, hosts: dict[str, _Host]) -> dict[tuple[str, str], DiskResult]:
        """Every task's result; a host with no worker left or a failed task is ``lost``.
        Results come in batches (one ``gather`` per poll); which hosts still have a worker
        is asked every :data:`LOOK` seconds."""
        results: dict[tuple[str, str], DiskResult] = {}
        looked = time.monotonic()
        delay = POLL / 16  # short first waits: a warm sweep's tasks take milliseconds
        while True:
            waiting = False
            for host in hosts.values():
                if host.lost is None:
                    waiting |= self._collect(host, results)
            if not waiting:
                return results
            time.sleep(delay)  # distributed.wait wants a default client; the sweep has none
            delay = min(POLL, delay * 2)
            if time.monotonic() - looked < LOOK:
                continue
            looked = time.monotonic()
            up = self.workers()
            for host in hosts.values():
                if host.lost is None and host.inv.host not in up:
                    if all(f.done() for f in host.futures.values()):
                        continue
                    host.lost = "no worker of this host is left"
                    self.client.cancel(list(host.futures.values()))

    def _collect(self, host: _Host, results: dict[tuple[str, str], DiskResult]) -> bool:
        """Take ``host``'s finished results; mark it lost on a failed task. Whether any of
        its tasks is still running."""
        done = [(k, f) for k, f in host.futures.items() if k not in results and f.done()]
        failed = next((f for _, f in done if f.status != "finished"), None)
        if failed is not None:
            try:
                failed.result(timeout=0)
                host.lost = f"task {failed.status}"
            except Exception as exc:  # KilledWorker, a bug on the worker: the host falls back
                host.lost = f"{type(exc).__name__}: {exc}"
            log.warning("disk task of %s failed: %s", host.inv.host, host.lost)
            return False
        if done:
            values = self.client.gather([f for _, f in done])
            results.update(zip([k for k, _ in done], values, strict=True))
        return any(k not in results for k in host.futures)


def _disk_paths(vms: list[VM]) -> list[tuple[str, str | None]]:
    """The file disks of a host's VMs, each once (clones share nothing at the top)."""
    seen: dict[str, str | None] = {}
    for vm in vms:
        for disk in vm.disks:
            top = disk.chain[0] if disk.chain else None
            usable = top is not None and top.path and top.type in ("file", "block", "volume")
            if disk.device in LINEAGE_DEVICES and usable:
                assert top is not None and top.path
                seen.setdefault(top.path, top.format)
    return list(seen.items())


def _volume_paths(inv: HostInventory, disks: set[str]) -> list[tuple[str, str | None]]:
    """The host's pool volumes that are no VM's disk (templates, orphans, backing files)."""
    seen: dict[str, str | None] = {}
    for pool in inv.pools:
        for vol in pool.volumes:
            if vol.path and vol.path not in disks:
                seen.setdefault(vol.path, vol.format)
    return list(seen.items())


def _image_read(result: DiskResult) -> ImageRead:
    error = next((layer.error for layer in result.chain if layer.error), None)
    return ImageRead(result.facts, error or result.facts_error)


def _apply(inv: HostInventory, results: dict[tuple[str, str], DiskResult], served: Served) -> None:
    """Lay each disk's result on the VM, as the sweep's own lineage and inspection do."""
    for vm in inv.vms:
        for disk in vm.disks:
            top = disk.chain[0] if disk.chain else None
            if top is None or (inv.host, top.path) not in results:
                continue
            result = results[(inv.host, top.path or "")]
            kind = top.type
            disk.chain = [_copy(layer, inv.host) for layer in result.chain]
            disk.chain[0].type = kind
            root = disk.chain[-1]
            reason = next((layer.error for layer in disk.chain if layer.error), None)
            if reason is not None:
                served.warnings.append(f"{vm.name} ({inv.host}) disk {disk.target}: {reason}")
            reason = reason or result.facts_error
            if reason is not None:
                served.findings.append(_uninspectable(vm, disk.target, top.path or "", reason))
            elif result.facts is not None and (
                vm.guest is None or (vm.guest.os_name is None and result.facts.os_name)
            ):
                vm.guest = result.facts  # the first disk that holds an OS speaks for the VM
            match = _content_match(result)
            ckey = content_key(disk)
            if match is not None and ckey is not None and root.digest is not None:
                served.content[ckey] = match


def _content_match(result: DiskResult) -> ContentMatch | None:
    if result.similarity_error is not None:
        return ContentMatch(None, None, error=result.similarity_error)
    if not result.similarity:
        return None
    scores = {n: Similarity(m, s, 0) for n, (m, s) in result.similarity.items()}
    best = max(scores, key=lambda n: (scores[n].score, n))
    return ContentMatch(best, scores[best].score, scores[best].sampled)


def _copy(layer: Any, host: str) -> Any:
    from vmwarden.model import Layer

    return Layer(layer.path, layer.format, layer.type, layer.digest, layer.mtime, layer.error, host)


def _uninspectable(vm: VM, target: str, path: str, reason: str) -> Finding:
    return Finding(
        UNINSPECTABLE,
        "vm",
        vm.id,
        vm.name,
        vm.host,
        Severity.MEDIUM,
        {"disk": target, "image": path, "reason": reason},
    )
