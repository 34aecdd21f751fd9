"""The base of filters over offline guest facts (``VM.guest`` / ``Image.guest``).

A VM or image whose disks were not read (``guest is None``) is unknown to every such filter:
nothing read means nothing cleared. A VM with nothing to read — no disk, or only a cdrom or
floppy (diskless, PXE-booted) — is no-match instead: it has no guest disk whose software could
be wrong (``not-inspected`` says so, and why, for policy to act on). Within the facts, a field
that could not be read is ``None`` and each filter says what that makes it (usually unknown).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vmwarden.policy.filters.base import Filter
from vmwarden.policy.filters.inspected import nothing_to_inspect
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.model import GuestFacts
    from vmwarden.policy.context import Context

NOT_INSPECTED = "not inspected"


class GuestFilter(Filter):
    """Judges a VM or an image by what its disk holds; subclasses implement ``judge``."""

    resources = ("vm", "image")

    def match(self, resource: Any, ctx: Context) -> Verdict:
        guest: GuestFacts | None = resource.guest
        if guest is None:
            return NO_MATCH if nothing_to_inspect(resource) else Verdict.unknown(NOT_INSPECTED)
        return self.judge(guest, ctx)

    def judge(self, guest: GuestFacts, ctx: Context) -> Verdict:
        raise NotImplementedError


def label(vm: Any) -> str:
    """How evidence names a VM: ``host/name``."""
    return f"{vm.host}/{vm.name}"
