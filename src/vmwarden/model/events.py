"""Platform-neutral VM events: what a connector's event feed hands the watch daemon.

Each platform has its own event vocabulary (libvirt lifecycle codes and device callbacks,
vSphere's ``VmPoweredOnEvent``, EC2 state-change notifications). The engine must not know
any of them: a connector translates its platform's events into ``VmEvent`` with one of
``EVENT_KINDS`` and keeps its own word in ``detail`` (for logs only; nothing decides on it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from vmwarden.model.vm import VM

#: A VM began running (power-on, a restore, the arrival end of a migration).
STARTED: Final = "started"
#: A VM stopped running (power-off, destroy, the departure end of a migration).
STOPPED: Final = "stopped"
SUSPENDED: Final = "suspended"
RESUMED: Final = "resumed"
#: A VM's definition was created or replaced / removed.
DEFINED: Final = "defined"
UNDEFINED: Final = "undefined"
#: Its configuration changed (a device added or removed, a NIC moved).
CONFIG: Final = "config"
#: Its vmwarden metadata (owner, classification, template, registered) changed.
METADATA: Final = "metadata"
#: Migration progress (the VM is moving between hosts).
MIGRATED: Final = "migrated"
#: Anything else the platform reports (a guest-initiated shutdown begun, a crash).
OTHER: Final = "other"

EVENT_KINDS: Final = (
    STARTED,
    STOPPED,
    SUSPENDED,
    RESUMED,
    DEFINED,
    UNDEFINED,
    CONFIG,
    METADATA,
    MIGRATED,
    OTHER,
)


@dataclass(frozen=True, slots=True)
class VmEvent:
    """One event about one VM on one connection, as the watch daemon consumes it.

    ``kind`` is one of ``EVENT_KINDS``; ``detail`` the platform's own word (a libvirt
    lifecycle name, a device alias, a metadata namespace), for logs. ``migrated``: the event
    is (also) a host change. ``received`` is a ``time.monotonic()`` reading taken when the
    event arrived (event-to-action latency is measured from it) and ``at`` the wall-clock
    reading taken beside it (for ordering against the outside world). ``host``: the host the
    VM is on, as its connection names it. ``made_from``: see the field.
    """

    uri: str
    vm_id: str
    name: str
    kind: str
    detail: str = ""
    migrated: bool = False
    received: float = field(default_factory=time.monotonic)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    host: str | None = None  # the host the VM is on as the connection names it (None: unknown)
    # Provenance of a ``defined`` event: the template (or VM) this VM was cloned or deployed
    # from, as the platform names it; None when the event does not say (a plain create).
    made_from: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown VM event kind {self.kind!r}; valid: {EVENT_KINDS}")


@dataclass(frozen=True, slots=True)
class Observed:
    """A VM as its connector reads it now (the fast path of an event: no address lookups),
    and ``run``: a token that names *this* start of it (libvirt's domain id, new at every
    start), so that events read late are matched to the start they belong to; None when the
    VM is not running or the platform has no such token."""

    vm: VM
    run: int | None
