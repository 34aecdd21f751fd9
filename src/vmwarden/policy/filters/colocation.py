"""``mixed-classification-on-host``: classifications co-mingled on one host."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vmwarden.model import VM
from vmwarden.policy.filters.base import Entry, Filter, filters
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.policy.context import Context


def classifications_by_host(ctx: Context) -> dict[str, list[str]]:
    """Hosts carrying two or more classifications → those classifications, sorted."""
    seen: dict[str, set[str]] = defaultdict(set)
    members: dict[str, list[int]] = defaultdict(list)
    for vm in ctx.estate.vms:
        # no host (an EC2 instance on shared hardware): nothing to be co-located with
        if vm.meta.classification and vm.host:
            seen[vm.host].add(vm.meta.classification)
            members[vm.host].append(id(vm))
    mixed = {host: sorted(found) for host, found in seen.items() if len(found) > 1}
    judged = frozenset(key for host in mixed for key in members[host])
    ctx.index(SUSPECTS, lambda _ctx: judged)  # known now: no second walk over the VMs
    return mixed


SUSPECTS = "mixed-classification-suspects"


def suspects(ctx: Context) -> frozenset[int]:
    """``id()`` of the classified estate VMs on a mixed host (what ``match`` can match);
    ``classifications_by_host`` records them as it walks, this walk is for an index built
    elsewhere."""
    mixed = ctx.index("classifications-by-host", classifications_by_host)
    return frozenset(id(vm) for vm in ctx.estate.vms if vm.meta.classification and vm.host in mixed)


@filters.register("mixed-classification-on-host")
class MixedClassificationOnHost(Filter):
    """Another VM on the same host, in any state, carries a different classification.

    Every classified VM on such a host gets the finding; VMs without a classification are
    not judged (they have nothing to mix), nor VMs without a host (an EC2 instance not on a
    dedicated host shares hardware nobody can name: co-location rules do not apply).

    Example:
        - name: co-mingled
          resource: vm
          severity: high
          filters: [mixed-classification-on-host]
          actions: [notify]
    """

    def prepare(self, ctx: Context) -> None:
        ctx.index("classifications-by-host", classifications_by_host)

    def candidates(self, resources: Sequence[Entry], ctx: Context) -> Sequence[Entry] | None:
        """Classified VMs on hosts with mixed classifications; every other VM is no-match."""
        ctx.index("classifications-by-host", classifications_by_host)
        found = ctx.index(SUSPECTS, suspects)
        return [entry for entry in resources if id(entry[1]) in found]

    def match(self, resource: VM, ctx: Context) -> Verdict:
        if not resource.meta.classification or not resource.host:
            return NO_MATCH
        mixed = ctx.index("classifications-by-host", classifications_by_host).get(resource.host)
        if mixed is None:
            return NO_MATCH
        return Verdict.match(host=resource.host, classifications=mixed)
