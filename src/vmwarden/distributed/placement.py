"""Which worker may read which disk: Dask worker resources named after the host.

Why resources and not worker addresses: a restarted worker comes back under a new address but
with the same resources, and the scheduler keeps a restricted task waiting for a worker that
has them instead of running it where the disk is not (``Client.submit(resources=...)``).
"""

from __future__ import annotations

from typing import Any

HOST_RESOURCE = "vmwarden-host:"
STORAGE_RESOURCE = "vmwarden-storage:"
#: Every ``vmwarden worker`` has it: a streaming sweep's host with no worker of its own is
#: read and judged on any of them (``distributed.host_tasks``), never on a plain Dask worker.
SWEEP_RESOURCE = "vmwarden-sweep"


def host_resource(host: str) -> str:
    """The resource a worker of ``host`` advertises, and a disk task of ``host`` asks for."""
    return f"{HOST_RESOURCE}{host}"


def worker_resources(host: str, storage: list[str], slots: int) -> dict[str, float]:
    """A worker's resources: ``slots`` disk tasks of its host at once; its storage dirs as
    annotations (one unit each, never asked for: what an operator reads in the dashboard)."""
    out: dict[str, float] = {host_resource(host): float(max(1, slots))}
    out[SWEEP_RESOURCE] = float(max(1, slots))
    out.update({f"{STORAGE_RESOURCE}{d}": 1.0 for d in storage})
    return out


def hosts_up(info: dict[str, Any]) -> dict[str, list[str]]:
    """Host name → addresses of the workers that serve it, from ``Client.scheduler_info()``."""
    out: dict[str, list[str]] = {}
    for address, worker in (info.get("workers") or {}).items():
        for name in worker.get("resources") or {}:
            if name.startswith(HOST_RESOURCE):
                out.setdefault(name[len(HOST_RESOURCE) :], []).append(address)
    return out
