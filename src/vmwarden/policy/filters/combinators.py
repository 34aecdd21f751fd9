"""``and``, ``or`` and ``not``: combine filters with the tri-state rules of ``verdict.py``.

Written ``{and: [...]}``, ``{or: [...]}``, ``{not: filter}`` or as ``{type: and, filters:
[...]}`` / ``{type: not, filter: ...}``. A rule's ``filters:`` list is an implicit ``and``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from vmwarden.policy.filters.base import Entry, Filter, filters
from vmwarden.policy.schema import StrictModel
from vmwarden.policy.verdict import all_of, any_of, negate

if TYPE_CHECKING:
    from vmwarden.policy.context import Context
    from vmwarden.policy.verdict import Verdict

ALL_RESOURCES = ("vm", "image", "host")


class ListParams(StrictModel):
    filters: list[Any] = Field(min_length=1)


class OneParams(StrictModel):
    filter: Any


class Combinator(Filter):
    """A filter over child filters; the loader builds the children."""

    resources = ALL_RESOURCES
    children_key: ClassVar[str] = "filters"

    def __init__(self, params: Any, children: list[Filter] | None = None) -> None:
        super().__init__(params)
        self.children: list[Filter] = children or []

    def prepare(self, ctx: Context) -> None:
        for child in self.children:
            child.prepare(ctx)

    def __repr__(self) -> str:
        return f"<{self.type_name} {self.children!r}>"


@filters.register("and")
class And(Combinator):
    """Matches when every child matches; no-match as soon as one child is no-match.

    Example:
        - name: unregistered-pci
          resource: vm
          severity: high
          filters:
            - and:
                - unregistered
                - {type: value, key: meta.classification, op: eq, value: pci}
    """

    Params = ListParams

    def match(self, resource: Any, ctx: Context) -> Verdict:
        return all_of(child.match(resource, ctx) for child in self.children)

    def candidates(self, resources: Sequence[Entry], ctx: Context) -> Sequence[Entry] | None:
        """A resource some child clears is cleared: each child's candidates narrow them."""
        narrowed: Sequence[Entry] | None = None
        for child in self.children:
            found = child.candidates(resources if narrowed is None else narrowed, ctx)
            if found is not None:
                narrowed = found
        return narrowed


@filters.register("or")
class Or(Combinator):
    """Matches when any child matches; unknown if none matches but one is unknown.

    Example:
        - name: rogue
          resource: vm
          severity: high
          filters:
            - or: [unregistered, not-approved-template]
    """

    Params = ListParams

    def match(self, resource: Any, ctx: Context) -> Verdict:
        return any_of(child.match(resource, ctx) for child in self.children)

    def candidates(self, resources: Sequence[Entry], ctx: Context) -> Sequence[Entry] | None:
        """Only a resource every child clears is cleared: the union, when each child narrows."""
        keep: set[int] = set()
        for child in self.children:
            found = child.candidates(resources, ctx)
            if found is None:
                return None
            keep.update(id(entry) for entry in found)
        return [entry for entry in resources if id(entry) in keep]


@filters.register("not")
class Not(Combinator):
    """Inverts its child (a list is an implicit ``and``); ``not`` of unknown stays unknown.

    Example:
        - name: not-owned-by-ops
          resource: vm
          severity: low
          filters:
            - not: {type: value, key: meta.owner, op: eq, value: ops}
    """

    Params = OneParams
    children_key = "filter"

    def match(self, resource: Any, ctx: Context) -> Verdict:
        child = self.children[0]
        return negate(child.match(resource, ctx), child.type_name)
