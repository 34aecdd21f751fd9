"""The base of every filter: typed ``Params``, the resources it judges, prepare and match.

Adding a filter (see ``registration.py`` for the shortest one):

1. a module under ``policy/filters/`` with a class decorated ``@filters.register("name")``;
2. ``Params`` (a ``StrictModel``: unknown keys rejected) and ``resources``;
3. a docstring with an ``Example:`` block holding one YAML rule (a test loads it);
4. ``match(resource, ctx) -> Verdict``; cross-VM indexes go in ``prepare(ctx)``;
5. import the module in ``policy/filters/__init__.py`` and add a test naming the filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from vmwarden.policy.registry import Registry
from vmwarden.policy.schema import NoParams, StrictModel

if TYPE_CHECKING:
    from vmwarden.policy.context import Context
    from vmwarden.policy.source import PathT
    from vmwarden.policy.verdict import Verdict

Entry = TypeVar("Entry", bound=tuple[Any, Any])  # (identity, resource), as evaluation holds them


@dataclass(frozen=True, slots=True)
class CheckEnv:
    """What load-time checks may consult beyond a filter's own params."""

    resource: str
    zones: frozenset[str] = field(default_factory=frozenset)
    notifiers: frozenset[str] = field(default_factory=frozenset)


class Filter:
    """One condition of a rule. Instances are built by the loader and reused across sweeps,
    so per-evaluation state belongs in the ``Context``, never on ``self``."""

    type_name: ClassVar[str] = ""
    resources: ClassVar[tuple[str, ...]] = ("vm",)
    Params: ClassVar[type[StrictModel]] = NoParams

    def __init__(self, params: Any) -> None:
        self.params = params

    def check(self, env: CheckEnv) -> Iterable[tuple[PathT, str]]:
        """Load-time checks that need the rest of the policy; yields (sub-path, message)."""
        return ()

    def prepare(self, ctx: Context) -> None:
        """Build cross-resource indexes (via ``ctx.index``) once per evaluation."""

    def match(self, resource: Any, ctx: Context) -> Verdict:
        raise NotImplementedError

    def candidates(self, resources: Sequence[Entry], ctx: Context) -> Sequence[Entry] | None:
        """The entries of ``resources`` (identity, resource), in order, for which ``match``
        may answer other than no-match; None: all of them (the default).

        Why: a cross-VM filter's index already names the few VMs it can match (duplicates,
        co-location), so evaluation need not call ``match`` on the rest — at 100k VMs most
        of those calls answered no-match. Called after ``prepare``. It must keep every
        resource ``match`` would not clear; ``match`` still judges each candidate
        (``tests/policy/test_policy_candidates.py`` holds evaluation to the plain loop).
        """
        return None

    def __repr__(self) -> str:
        return f"<filter {self.type_name} {self.params!r}>"


filters: Registry[type[Filter]] = Registry("filter")
