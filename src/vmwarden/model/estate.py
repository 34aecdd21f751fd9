"""What one connection (host) holds, and the whole estate a policy is evaluated over."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from vmwarden.model.image import Image
from vmwarden.model.vm import VM


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


@dataclass(slots=True)
class Estate:
    """The input of policy evaluation: every VM and image of the sweep, and the catalog.

    ``catalog`` maps an approved digest (``sha256:<hex>``) to its template name.
    """

    vms: list[VM]
    images: list[Image]
    catalog: dict[str, str]
    now: datetime
    hosts: list[str] = field(default_factory=list)
