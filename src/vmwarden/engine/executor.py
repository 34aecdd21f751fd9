"""Where a sweep's disk reads run: in this process (the default) or on the disks' own hosts.

Why a seam: a sweep reads every disk for its chain, root digest, content lineage and guest
facts. In one process (no scheduler configured) that is ``engine.lineage``,
``engine.content_lineage`` and ``engine.inspection``, exactly as before. With a cluster
(``vmwarden.distributed``), a host that runs ``vmwarden worker`` reads its own disks and
hands back the same records; the sweep then leaves that host out of its own reads. A host
whose worker is absent, or lost mid-sweep, is not served: the sweep reads it as it always
does, so nothing is lost and nothing passes unread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.lineage import is_local
from vmwarden.model import Finding, HostInventory
from vmwarden.model.lineage import ContentMatch

#: How a host's disks were read (``ScanResult.disk_reads``).
READ_WORKER, READ_LOCAL, READ_CONNECTION = "worker", "local", "connection"


@dataclass
class Served:
    """What an executor read on the hosts it served (their disks' chains and guest facts
    are filled in place on the inventories' VMs)."""

    hosts: set[str] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)  # uninspectable, with the reason
    content: dict[str, ContentMatch] = field(default_factory=dict)  # content lineage
    warnings: list[str] = field(default_factory=list)


class DiskExecutor(Protocol):
    """Reads the disks of the hosts it can serve; the sweep reads the rest itself."""

    def serve(
        self,
        inventories: list[HostInventory],
        *,
        store: Any,
        catalog: dict[str, str],
        options: InspectionOptions,
    ) -> Served: ...


class InProcess:
    """The embedded default: serves no host, so the sweep reads every disk itself."""

    def serve(
        self,
        inventories: list[HostInventory],
        *,
        store: Any,
        catalog: dict[str, str],
        options: InspectionOptions,
    ) -> Served:
        return Served()


def disk_reads(inventories: list[HostInventory], served: set[str]) -> dict[str, str]:
    """Host → how its disks were read this sweep (``ScanResult.disk_reads``)."""
    out: dict[str, str] = {}
    for inv in inventories:
        if inv.host in served:
            out[inv.host] = READ_WORKER
        else:
            out[inv.host] = READ_LOCAL if is_local(inv) else READ_CONNECTION
    return out
