"""``not-approved-template``: a disk's backing chain starts from an image nobody approved."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmwarden.model import VM
from vmwarden.policy.filters.base import Filter, filters
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.policy.context import Context


@filters.register("not-approved-template")
class NotApprovedTemplate(Filter):
    """The root of some disk's backing chain has a digest that is not in the catalog.

    Only ``device: disk`` disks with a source count (cdroms, floppies and empty drives carry
    no lineage); a VM without one is not judged (no-match). A root whose digest could not be
    computed makes the VM unknown, with the layer's error as the reason.

    Example:
        - name: unapproved-template
          resource: vm
          severity: high
          filters: [not-approved-template]
          actions: [quarantine]
    """

    def match(self, resource: VM, ctx: Context) -> Verdict:
        unknown: str | None = None
        for disk in resource.disks:
            if disk.device != "disk" or not disk.chain:
                continue
            root = disk.chain[-1]
            if root.digest is None:
                if unknown is None:
                    why = root.error or "digest not computed"
                    unknown = f"disk {disk.target}: root {root.path}: {why}"
                continue
            if root.digest.lower() not in ctx.catalog:
                return Verdict.match(disk=disk.target, root=root.path, digest=root.digest)
        return Verdict.unknown(unknown) if unknown else NO_MATCH
