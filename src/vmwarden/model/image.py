"""A disk image file known to vmwarden: a pool volume, a VM disk, or a backing file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from vmwarden.model.guest import GuestFacts
from vmwarden.model.vm import _jsonable


@dataclass(slots=True)
class Image:
    path: str
    host: str
    format: str | None = None
    size: int | None = None
    digest: str | None = None
    mtime: datetime | None = None
    backing: str | None = None
    pool: str | None = None
    attached_to: list[str] = field(default_factory=list)  # VM ids using it (directly or as backing)
    template: str | None = None  # catalog name when the digest is an approved template
    error: str | None = None
    kind: str | None = None  # attached | template | orphaned (set by storage discovery)
    mode: int | None = None  # st_mode permission bits, for world-readable
    guest: GuestFacts | None = None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))
