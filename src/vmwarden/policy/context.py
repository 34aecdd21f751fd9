"""What a filter sees besides the resource: the estate, the catalog, zones, the clock, indexes.

A ``Context`` lives for one evaluation. Cross-resource filters (duplicate MACs, co-mingled
classifications) build their index once through ``ctx.index(key, build)`` in ``prepare`` and
look it up per resource, so a sweep is linear in the number of VMs, never quadratic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from vmwarden.policy.facts import GuestView

if TYPE_CHECKING:
    from vmwarden.model import Estate, GuestFacts
    from vmwarden.policy.rules import Policy
    from vmwarden.policy.schema import Zone

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HostRecord:
    """The resource of ``resource: host`` rules (the model has no host record yet)."""

    name: str
    vms: int = 0


class Context:
    """One evaluation's shared state; never outlives it (policies are reused across sweeps)."""

    __slots__ = ("_guest", "_indexes", "catalog", "estate", "now", "zones")

    def __init__(self, estate: Estate, policy: Policy) -> None:
        self.estate = estate
        self.catalog: dict[str, str] = {**policy.catalog(), **estate.catalog}
        self.zones: dict[str, Zone] = policy.zones
        self.now: datetime = estate.now
        self._indexes: dict[str, Any] = {}
        self._guest: GuestView | None = None

    def index(self, key: str, build: Callable[[Context], T]) -> T:
        """The index named ``key``, built on first use and shared by every rule."""
        try:
            return self._indexes[key]
        except KeyError:
            value = self._indexes[key] = build(self)
            return value

    def guest(self, facts: GuestFacts) -> GuestView:
        """The view of ``facts`` shared by the rules judging it (see ``facts.py``).

        Only the latest view is kept: evaluation judges one resource with every rule before
        the next, so that is the one asked for again, and 100k views of ~1,000 packages each
        would cost gigabytes. The view holds ``facts``, so ``is`` cannot mistake another
        object for it.
        """
        view = self._guest
        if view is None or view.facts is not facts:
            view = self._guest = GuestView(facts)
        return view
