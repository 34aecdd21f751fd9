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
from vmwarden.engine.stream_host import HostExecutor, InProcessHosts
from vmwarden.model import Finding, GuestFacts, HostInventory, Image, Severity
from vmwarden.model.lineage import ContentMatch

#: How a host's disks were read (``ScanResult.disk_reads``).
READ_WORKER, READ_LOCAL, READ_CONNECTION = "worker", "local", "connection"


@dataclass(frozen=True, slots=True)
class ImageRead:
    """A pool volume no VM uses, read on its host: its guest facts, as the sweep's own
    inspection of this machine's templates and orphans gives them."""

    guest: GuestFacts | None
    error: str | None  # why it could not be read (then it is uninspectable)


@dataclass
class Served:
    """What an executor read on the hosts it served (their disks' chains and guest facts
    are filled in place on the inventories' VMs; their pool volumes are in ``images``)."""

    hosts: set[str] = field(default_factory=set)
    findings: list[Finding] = field(default_factory=list)  # uninspectable, with the reason
    content: dict[str, ContentMatch] = field(default_factory=dict)  # content lineage
    warnings: list[str] = field(default_factory=list)
    images: dict[tuple[str, str], ImageRead] = field(default_factory=dict)  # (host, path)

    def inspected(self, images: list[Image]) -> list[Finding]:
        """Guest facts of served hosts' templates and orphans (as ``engine.inspection``
        reads them for this machine's); an unreadable one is ``uninspectable``."""
        out: list[Finding] = []
        for img in images:
            read = self.images.get((img.host, img.path))
            if read is None or img.kind not in ("template", "orphaned"):
                continue
            if read.error is not None or read.guest is None:
                reason = read.error or "not inspected"
                name = img.path.rsplit("/", 1)[-1]
                evidence = {"reason": reason}
                out.append(
                    Finding(
                        "uninspectable",
                        "image",
                        img.path,
                        name,
                        img.host,
                        Severity.MEDIUM,
                        evidence,
                    )
                )
            else:
                img.guest = read.guest
        return out


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

    def hosts(self, store: Any) -> HostExecutor:
        """Where a streaming sweep reads and judges its hosts (``engine.stream_host``)."""
        ...


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

    def hosts(self, store: Any) -> HostExecutor:
        return InProcessHosts(store)


def disk_reads(inventories: list[HostInventory], served: set[str]) -> dict[str, str]:
    """Host → how its disks were read this sweep (``ScanResult.disk_reads``)."""
    out: dict[str, str] = {}
    for inv in inventories:
        if inv.host in served:
            out[inv.host] = READ_WORKER
        else:
            out[inv.host] = READ_LOCAL if is_local(inv) else READ_CONNECTION
    return out
