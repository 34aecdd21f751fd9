"""``vmwarden worker``: a Dask worker on a hypervisor or storage host.

It joins the scheduler advertising its host (``distributed.placement``), so the sweep's disk
tasks of that host run here, and holds the warm inspector (``distributed.reader``). Checks
come before any connection: TLS (or ``--insecure``) and storage directories that exist.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from vmwarden.distributed.placement import worker_resources
from vmwarden.distributed.security import TlsFiles, cluster_security
from vmwarden.errors import ClusterError

log = logging.getLogger(__name__)
HTTP_ADDRESS = "127.0.0.1:0"


@dataclass
class WorkerConfig:
    scheduler: str
    host: str
    storage: list[Path] = field(default_factory=list)
    tls: TlsFiles | None = None
    insecure: bool = False
    slots: int = 0  # disks read at once (0: the CPUs)
    death_timeout: float = 60.0  # seconds without a scheduler before the worker exits
    listen: str | None = None  # the worker's own address (host or host:port) for the others


def storage_dirs(paths: list[Path]) -> list[str]:
    """The real paths of the storage directories, each checked to be a directory."""
    out: list[str] = []
    for path in paths:
        if not path.is_dir():
            raise ClusterError(
                f"storage directory not found: {path}",
                hint="give each --storage DIR that holds this host's disk images",
            )
        out.append(os.path.realpath(path))
    return out


def run_worker(config: WorkerConfig) -> int:
    """Run until the scheduler goes away for longer than ``death_timeout`` or a signal."""
    security = cluster_security(config.scheduler, config.tls, insecure=config.insecure)
    storage = storage_dirs(config.storage)
    if not storage:
        raise ClusterError(
            "a worker needs at least one --storage directory: it reads only those",
            hint="give --storage DIR for each directory of this host's disk images",
        )
    if not config.host.strip():
        raise ClusterError("--host must name the hypervisor host (as the sweep names it)")
    slots = config.slots or os.cpu_count() or 1
    return asyncio.run(_serve(config, security, storage, slots))


async def _serve(config: WorkerConfig, security: object, storage: list[str], slots: int) -> int:
    """Join, serve, and rejoin when the scheduler goes away (a Dask worker without a nanny
    closes then): a restarted scheduler finds its workers back within ``death_timeout``.
    SIGTERM/SIGINT close the worker and end the loop."""
    from distributed import Worker
    from vmwarden.distributed.reader import DiskReader

    stopping = asyncio.Event()
    current: list[Worker] = []
    closing: set[asyncio.Task[object]] = set()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        stopping.set()
        for worker in current:
            task = loop.create_task(worker.close(reason="vmwarden worker stopped"))
            closing.add(task)
            task.add_done_callback(closing.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    joins = 0
    while not stopping.is_set():
        worker = Worker(
            config.scheduler,
            security=security,
            nthreads=slots,
            resources=worker_resources(config.host, storage, slots),
            name=f"vmwarden-{config.host}-{os.getpid()}-{joins}",
            death_timeout=config.death_timeout,
            plugins=(DiskReader(config.host, storage, slots),),
            host=config.listen,
            # Dask's unauthenticated HTTP (/health, /metrics): this machine only
            dashboard_address=HTTP_ADDRESS,
        )
        current[:] = [worker]
        try:
            await worker
        except (OSError, TimeoutError) as exc:
            await worker.close(reason="could not join the scheduler")
            if stopping.is_set():
                break
            raise ClusterError(
                f"cannot join the scheduler at {config.scheduler}: {exc}",
                hint="check the address, and that this worker's certificate is signed by the "
                "cluster's CA",
            ) from None
        joins += 1
        await worker.finished()
        if not stopping.is_set():
            log.warning("lost the scheduler at %s; joining it again", config.scheduler)
    return 0
