"""What one connection (host) holds, and the whole estate a policy is evaluated over."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from vmwarden.model.guest import GuestFacts
from vmwarden.model.image import Image
from vmwarden.model.lineage import ContentMatch
from vmwarden.model.vm import VM


class VulnFeed(Protocol):
    """What policy needs of a vulnerability database (``vmwarden.vulns.VulnDB`` is one; the
    model cannot import it, being the layer below)."""

    def covers(self, facts: GuestFacts) -> bool: ...

    def match(self, facts: GuestFacts) -> Sequence[Any]: ...


@dataclass(slots=True)
class Volume:
    name: str
    path: str
    pool: str
    format: str | None = None
    capacity: int | None = None
    allocation: int | None = None
    mtime: datetime | None = None
    backing: str | None = None


@dataclass(slots=True)
class Pool:
    name: str
    type: str
    path: str | None
    active: bool
    volumes: list[Volume] = field(default_factory=list)


@dataclass(slots=True)
class Network:
    name: str
    bridge: str | None
    active: bool
    forward: str | None = None


@dataclass(slots=True)
class HostInventory:
    """Everything one libvirt connection reported in one sweep."""

    uri: str
    host: str
    vms: list[VM] = field(default_factory=list)
    pools: list[Pool] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # VM id → digest of what libvirt said about it (XML, state, persistence, host, URI): the
    # store keeps it so the next scan rebuilds an unchanged domain instead of parsing it.
    inputs: dict[str, str] = field(default_factory=dict)
    reused: int = 0  # VMs rebuilt from the store's record (their digest matched)
    # Whether the hypervisor runs on this machine, as the connection found (its host UUID and
    # hostname, not the URI's spelling): only then are its disk paths files to read here.
    # None: not said (a record built outside a connection); ``connectors.locality`` decides.
    local: bool | None = None
    daemon: str | None = None  # the same for two URIs reaching one daemon (counted once)
    # The platform's templates (vSphere: VMs marked as templates), VM-shaped but never run:
    # inventoried, their disks not orphaned, not judged as VMs.
    templates: list[VM] = field(default_factory=list)


@dataclass(slots=True)
class Estate:
    """The input of policy evaluation: every VM and image of the sweep, and the catalog.

    ``catalog`` maps an approved digest (``sha256:<hex>``) to its template name;
    ``catalog_paths`` maps the path each template was approved at to (name, digest), so that
    ``template-changed`` sees a template file modified in place. ``vulns`` is the loaded OSV
    feed (the policy's ``vulns:`` or ``--vulns``), None when there is none.
    """

    vms: list[VM]
    images: list[Image]
    catalog: dict[str, str]
    now: datetime
    hosts: list[str] = field(default_factory=list)
    catalog_paths: dict[str, tuple[str, str]] = field(default_factory=dict)
    vulns: VulnFeed | None = None
    # disk source path → closest approved template by content (full clones; engine fills it)
    content_lineage: dict[str, ContentMatch] = field(default_factory=dict)

    def judged(self) -> Estate:
        """The estate as policy judges it: VMs vmwarden holds in quarantine with their NICs
        at the attachment recorded before (``VM.judged``); itself when none is held."""
        if not any(n.quarantined_from is not None for vm in self.vms for n in vm.nics):
            return self  # the usual estate: one cheap pass, no copies (~25 ms at 100k VMs)
        return replace(self, vms=[vm.judged() for vm in self.vms])
