"""``outside-zone``: a classified VM has a NIC on a network its zone does not list."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from vmwarden.model import VM
from vmwarden.policy.filters.base import CheckEnv, Filter, filters
from vmwarden.policy.schema import Name, StrictModel
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.policy.context import Context
    from vmwarden.policy.source import PathT

Zones = dict[str, tuple[str, frozenset[str]]]  # classification → (zone, networks)


def zones_by_classification(ctx: Context) -> Zones:
    """The loader guarantees a classification belongs to at most one zone."""
    return {
        cls: (name, frozenset(zone.networks))
        for name, zone in ctx.zones.items()
        for cls in zone.classifications
    }


class OutsideZoneParams(StrictModel):
    zones: list[Name] | None = None  # judge only VMs whose classification is in these zones


@filters.register("outside-zone")
class OutsideZone(Filter):
    """A NIC's network (or bridge, when it has no network) is not in the classification's zone.

    VMs without a classification are not judged. A classification that no zone lists matches
    (``no zone for classification``). A NIC with neither network nor bridge (``direct``,
    ``user``) cannot be placed in a zone and makes the VM unknown. ``zones:`` limits the filter
    to VMs of those zones.

    Example:
        - name: pci-outside-zone
          resource: vm
          severity: critical
          filters: [{type: outside-zone, zones: [pci]}]
          actions: [quarantine, notify]
    """

    Params = OutsideZoneParams

    def check(self, env: CheckEnv) -> Iterable[tuple[PathT, str]]:
        for i, zone in enumerate(self.params.zones or ()):
            if zone not in env.zones:
                valid = ", ".join(sorted(env.zones)) or "none defined"
                yield ("zones", i), f"unknown zone {zone!r} (valid: {valid})"

    def prepare(self, ctx: Context) -> None:
        ctx.index("zones-by-classification", zones_by_classification)

    def match(self, resource: VM, ctx: Context) -> Verdict:
        classification = resource.meta.classification
        if not classification:
            return NO_MATCH
        zones = ctx.index("zones-by-classification", zones_by_classification)
        if classification not in zones:
            if self.params.zones is not None:
                return NO_MATCH
            return Verdict.match(
                classification=classification,
                zone=None,
                networks=[],
                reason="no zone for classification",
            )
        zone, allowed = zones[classification]
        if self.params.zones is not None and zone not in self.params.zones:
            return NO_MATCH
        outside: list[str] = []
        unknown: str | None = None
        for nic in resource.nics:
            network = nic.network or nic.bridge
            if network is None:
                unknown = unknown or f"NIC {nic.mac} ({nic.type}) has no network or bridge"
            elif network not in allowed and allowed.isdisjoint(nic.network_aliases):
                outside.append(network)
        if outside:
            return Verdict.match(
                classification=classification, zone=zone, networks=sorted(set(outside))
            )
        return Verdict.unknown(unknown) if unknown else NO_MATCH
