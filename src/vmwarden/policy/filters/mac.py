"""``duplicate-mac``: one MAC address on two or more VMs anywhere in the scan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vmwarden.model import VM
from vmwarden.policy.filters.base import Entry, Filter, filters
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.policy.context import Context


def label(vm: VM) -> str:
    return f"{vm.host}/{vm.name}"


def duplicated_macs(ctx: Context) -> dict[str, list[str]]:
    """Lower-cased MACs seen on more than one VM → the VMs (``host/name``), sorted.

    A MAC's first VM is kept bare and a group made only when a second VM has it: nearly
    every MAC is unique, and a set and a label per VM were most of this index's cost.
    """
    first: dict[str, VM] = {}
    groups: dict[str, list[VM]] = {}
    suspects: set[int] = set()  # id() of the VMs ``match`` cannot clear (see ``suspects``)
    for vm in ctx.estate.vms:
        for nic in vm.nics:
            if nic.mac:
                mac = nic.mac.lower()
                other = first.setdefault(mac, vm)
                if other is not vm:
                    groups.setdefault(mac, [other]).append(vm)
            elif nic.mac is None:
                suspects.add(id(vm))
    found: dict[str, list[str]] = {}
    for mac, group in groups.items():
        labels = {(vm.host, vm.id): label(vm) for vm in group}
        if len(labels) > 1:  # one VM listing a MAC twice is no duplicate
            found[mac] = sorted(labels.values())
            suspects.update(id(vm) for vm in group)
    ctx.index(SUSPECTS, lambda _ctx: frozenset(suspects))  # known now: no second walk
    return found


SUSPECTS = "duplicate-mac-suspects"


def suspects(ctx: Context) -> frozenset[int]:
    """``id()`` of the estate VMs with a duplicated MAC or a NIC without one: every other
    VM is no-match. ``duplicated_macs`` records them as it walks; this walk is for an
    index built elsewhere (a streaming sweep's)."""
    duplicates = ctx.index("duplicate-macs", duplicated_macs)
    return frozenset(
        id(vm)
        for vm in ctx.estate.vms
        if any(nic.mac is None or nic.mac.lower() in duplicates for nic in vm.nics)
    )


@filters.register("duplicate-mac")
class DuplicateMac(Filter):
    """A MAC (compared case-insensitively) is on two or more VMs; every VM involved matches.

    A NIC whose MAC was not read makes the VM unknown unless another MAC already matched.

    Example:
        - name: cloned-mac
          resource: vm
          severity: medium
          filters: [duplicate-mac]
    """

    def prepare(self, ctx: Context) -> None:
        ctx.index("duplicate-macs", duplicated_macs)

    def candidates(self, resources: Sequence[Entry], ctx: Context) -> Sequence[Entry] | None:
        """VMs with a duplicated MAC or a NIC without one; every other VM is no-match."""
        ctx.index("duplicate-macs", duplicated_macs)
        found = ctx.index(SUSPECTS, suspects)
        return [entry for entry in resources if id(entry[1]) in found]

    def match(self, resource: VM, ctx: Context) -> Verdict:
        duplicates = ctx.index("duplicate-macs", duplicated_macs)
        missing = False
        for nic in resource.nics:
            if nic.mac is None:
                missing = True
                continue
            vms = duplicates.get(nic.mac.lower())
            if vms is not None:
                return Verdict.match(mac=nic.mac.lower(), vms=vms)
        return Verdict.unknown("a NIC has no MAC address recorded") if missing else NO_MATCH
