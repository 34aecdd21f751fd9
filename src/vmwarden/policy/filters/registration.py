"""``unregistered``: nobody registered the VM in its vmwarden metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmwarden.model import VM
from vmwarden.policy.filters.base import Filter, filters
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.policy.context import Context


@filters.register("unregistered")
class Unregistered(Filter):
    """``<vmwarden:registered>`` is not ``yes``: absent metadata counts as unregistered.

    Example:
        - name: unregistered
          resource: vm
          severity: medium
          filters: [unregistered]
          actions: [notify]
    """

    def match(self, resource: VM, ctx: Context) -> Verdict:
        registered = resource.meta.registered
        return NO_MATCH if registered is True else Verdict.match(registered=registered)
