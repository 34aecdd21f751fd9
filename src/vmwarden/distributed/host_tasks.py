"""A streaming sweep's hosts read and judged on Dask workers; the master writes them.

Each host becomes one ``sweep_host`` task (``engine.stream_host``: inventory, lineage,
images, every rule but the estate-wide ones) and comes back as its compact result, which
the master writes and compares as it arrives. Placement: a host that has its own ``vmwarden
worker`` up is swept there (its disks are files of that machine); any other host goes to
any ``vmwarden worker`` (:data:`~vmwarden.distributed.placement.SWEEP_RESOURCE`), which opens
the host's URI as the master would (a remote host's disks through its connection). A worker
never opens a disk outside its ``--storage`` directories: the reason stands on the layer.

Bounded memory: at most ``window`` hosts are in flight (submitted, not yet written), so the
master holds a few hosts' results whatever the estate. Faults: a task whose worker dies is
rerun once by the scheduler; a host whose task fails anyway, or the cluster failing, is swept
by the master itself, said in a warning: nothing is lost and nothing passes unread.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import Future, as_completed, get_worker
from vmwarden.distributed.placement import SWEEP_RESOURCE, host_resource, hosts_up
from vmwarden.distributed.reader import PLUGIN, DiskReader
from vmwarden.engine.stream_host import (
    DiskAccess,
    HostJob,
    HostSweep,
    InProcessHosts,
    sweep_host,
)

log = logging.getLogger(__name__)
#: Hosts in flight per worker thread: enough that a worker never waits for the master.
PER_SLOT = 4


@dataclass(frozen=True)
class Misplaced:
    """A host that has its own worker, reached by another: it is sent there instead."""

    uri: str
    host: str


def sweep_host_task(uri: str, job: HostJob, owned: frozenset[str]) -> HostSweep | Misplaced:
    """The task: one host on this worker, its disk reads confined to the worker's storage.
    A host with its own worker (``owned``) is swept only there, where its disks are."""
    worker = get_worker()
    reader = worker.plugins.get(PLUGIN)
    if not isinstance(reader, DiskReader):  # a plain ``dask worker``: no confinement known
        raise RuntimeError("host sweeps run only on `vmwarden worker` (its --storage dirs)")
    access = DiskAccess(
        reader.lookup,
        reader.remember,
        refusal=reader.refusal,
        confine=tuple(Path(d) for d in reader.storage),
    )
    swept = sweep_host(uri, job, access, keep=lambda host: host == reader.host or host not in owned)
    if swept.passed:
        return Misplaced(uri, swept.host)
    swept.where = str(worker.address)
    return swept


class DaskHosts:
    """A :class:`~vmwarden.engine.stream_host.HostExecutor` on a Dask cluster."""

    def __init__(self, disks: Any, store: Any, *, window: int = 0) -> None:
        self.disks = disks  # the DaskDisks: its client, reconnected when the scheduler was
        self.store = store  # for the hosts the master sweeps itself
        self.window = window
        self.warnings: list[str] = []
        self.by_worker: dict[str, int] = {}  # worker address → hosts it swept (this sweep)
        self._flying: dict[Future, str] = {}

    def sweep(self, uris: Iterable[str], job: HostJob) -> Iterator[HostSweep]:
        """Every host once, in the order they finish; the master sweeps what the cluster
        could not (a failed task, the cluster gone), said in ``warnings``."""
        pending = deque(dict.fromkeys(uris))
        here: list[str] = []
        self.by_worker, self.warnings, self._flying = {}, [], {}
        try:
            yield from self._spread(pending, job, here)
        except Exception as exc:  # the cluster's boundary: the rest is swept here
            log.warning("cluster at %s failed mid-sweep: %s", self.disks.address, exc)
            self.warnings.append(
                f"cluster at {self.disks.address} failed ({type(exc).__name__}: {exc}); "
                "the hosts not yet swept were swept by this process"
            )
            here += list(self._flying.values()) + list(pending)
        yield from InProcessHosts(self.store).sweep(here, job)

    def _spread(self, pending: deque[str], job: HostJob, here: list[str]) -> Iterator[HostSweep]:
        self.disks.workers()  # a client that gave up on a restarted scheduler is replaced
        client = self.disks.client
        info = client.scheduler_info(n_workers=-1)
        slots = sum(
            int((w.get("resources") or {}).get(SWEEP_RESOURCE, 0))
            for w in (info.get("workers") or {}).values()
        )
        if slots == 0:
            self.warnings.append("no vmwarden worker is up: every host was swept here")
            here += list(pending)
            pending.clear()
            return
        owned = frozenset(hosts_up(info))
        window = self.window or PER_SLOT * slots
        shared = client.scatter([job, owned], broadcast=True, hash=False)
        sweep = uuid.uuid4().hex[:12]
        n = 0

        def submit(uri: str, host: str = "") -> Future:
            nonlocal n
            n += 1
            host = host or _host_hint(uri)
            where = {host_resource(host): 1} if host in owned else {SWEEP_RESOURCE: 1}
            future = client.submit(
                sweep_host_task,
                uri,
                *shared,
                resources=where,
                key=f"vmwarden-host-{sweep}-{n}",
                pure=False,
                retries=1,
            )
            self._flying[future] = uri
            return future

        first = [submit(pending.popleft()) for _ in range(min(window, len(pending)))]
        flying = as_completed(first, loop=client.loop)
        for future in flying:
            uri = self._flying.pop(future)
            try:
                swept = future.result()
            except Exception as exc:  # KilledWorker, a bug on the worker: swept here instead
                self.warnings.append(
                    f"{uri}: its host task failed ({type(exc).__name__}: {exc}); "
                    "swept by this process instead"
                )
                here.append(uri)
                swept = None
            if isinstance(swept, Misplaced):
                flying.add(submit(uri, swept.host))
                continue
            if pending:
                flying.add(submit(pending.popleft()))
            if swept is not None:
                self.by_worker[swept.where] = self.by_worker.get(swept.where, 0) + 1
                yield swept


def _host_hint(uri: str) -> str:
    """The host a URI names (its authority), for placement only: ``qemu+ssh://hv1/system``
    → ``hv1``. A URI without one (``test://``, ``qemu:///``) goes to any worker; a host
    that turns out to have its own worker is sent there (:class:`Misplaced`)."""
    rest = uri.split("://", 1)[-1]
    return rest.split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
