"""``not-inspected``: why a VM's guest facts are missing, as a finding policy can act on.

Two kinds of VM have no guest facts, and they must not be judged alike:

- **nothing to inspect**: no disk at all (a PXE / network-booted or diskless VM), or only
  removable media (cdrom, floppy). There is no guest disk whose packages or services could be
  wrong, so guest-content filters (``package``, ``service``, ``duplicate-*``…) are *no-match*
  for it — quarantining a PXE VM as "forbidden software: unknown" helps nobody;
- **disks that could not be read**: on another host (never read from here), missing, refused
  (a backing file outside the allowed directories), not a file (block, network), a read that
  failed, or inspection turned off. Those guests are *unknown* to guest filters, as ever:
  unknown never clears.

Either way the operator needs to know, so this filter matches every VM without guest facts
and says which case it is: ``reason`` one of ``nothing-to-inspect``, ``remote``,
``unreadable``, and ``detail`` per disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from vmwarden.model import VM, Disk
from vmwarden.model.vm import NOT_HERE
from vmwarden.policy.filters.base import Filter, filters
from vmwarden.policy.schema import StrictModel
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.policy.context import Context

INSPECTED_DEVICES = ("disk", "lun")  # what inspection reads; cdrom/floppy are media
Reason = Literal["nothing-to-inspect", "remote", "unreadable"]


def guest_disks(vm: VM) -> list[Disk]:
    """The disks inspection would read (a guest's own disks, not its removable media)."""
    return [d for d in vm.disks if d.device in INSPECTED_DEVICES]


def nothing_to_inspect(resource: object) -> bool:
    """Whether ``resource`` is a VM with no guest disk at all (diskless, PXE, media only)."""
    return isinstance(resource, VM) and not guest_disks(resource)


def why_not_inspected(vm: VM) -> tuple[Reason, str]:
    """(reason, detail) for a VM without guest facts; see the module docstring."""
    disks = guest_disks(vm)
    if not disks:
        media = sorted({d.device for d in vm.disks})
        if media:
            return "nothing-to-inspect", f"no disk to inspect, only {', '.join(media)}"
        return "nothing-to-inspect", "no disk to inspect (diskless or network boot)"
    notes: list[str] = []
    remote = False
    for disk in disks:
        error = next((layer.error for layer in disk.chain if layer.error), None)
        top = disk.chain[0] if disk.chain else None
        if error:
            remote = remote or NOT_HERE in error
            notes.append(f"{disk.target}: {error}")
        elif top is None or not top.path:
            notes.append(f"{disk.target}: no source")
        elif top.type != "file":
            notes.append(f"{disk.target}: {top.type} disk, only image files are read")
        else:
            notes.append(
                f"{disk.target}: not read (inspection off, or it failed: see 'uninspectable')"
            )
    return ("remote" if remote else "unreadable"), "; ".join(notes)


class NotInspectedParams(StrictModel):
    reasons: list[Reason] = []  # only these reasons match (empty: any)


@filters.register("not-inspected")
class NotInspected(Filter):
    """The VM has no guest facts, and why: ``nothing-to-inspect`` (no disk, or only a
    cdrom/floppy: diskless and PXE VMs, which guest-content filters do not judge),
    ``remote`` (its disks are on another host: never read from here), or ``unreadable``
    (missing, refused, not a file, inspection failed or off). ``reasons:`` narrows it.

    Example:
        - name: blind-spot
          resource: vm
          severity: low
          filters: [{type: not-inspected, reasons: [remote, unreadable]}]
          actions: [notify]
        - name: diskless
          resource: vm
          severity: info
          filters: [not-inspected]
    """

    Params = NotInspectedParams

    def match(self, resource: VM, ctx: Context) -> Verdict:
        if resource.guest is not None:
            return NO_MATCH
        reason, detail = why_not_inspected(resource)
        wanted: list[str] = self.params.reasons
        if wanted and reason not in wanted:
            return NO_MATCH
        return Verdict.match(reason=reason, detail=detail)
