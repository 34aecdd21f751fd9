"""``vulnerable``: an installed package is affected by an OSV advisory of a given severity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from vmwarden.policy.filters.base import filters
from vmwarden.policy.filters.guest import GuestFilter
from vmwarden.policy.filters.package import NO_PACKAGES
from vmwarden.policy.schema import StrictModel
from vmwarden.policy.verdict import NO_MATCH, Verdict
from vmwarden.vulns import RANK

if TYPE_CHECKING:
    from vmwarden.model import GuestFacts
    from vmwarden.policy.context import Context

MAX_LISTED = 50  # evidence lists the worst advisories; ``count`` says how many there were


class VulnerableParams(StrictModel):
    severity: Literal["low", "medium", "high", "critical"] = "low"  # the minimum that matches
    unscored: bool = True  # whether advisories of unknown severity match (unknown never clears)


@filters.register("vulnerable")
class Vulnerable(GuestFilter):
    """An installed package is affected by an advisory of at least ``severity`` in the
    OSV feed (the policy's ``vulns:`` path or ``--vulns``, loaded by the engine).

    Severity comes from the record's CVSS v3 vector, else its distribution label, else the
    records it aliases in the same feed. An advisory whose severity is still unknown matches
    unless ``unscored: false`` (it could be critical). No feed loaded, no package database,
    or an OS the feed has no advisories for → unknown: nothing there can clear a guest.

    Example:
        - name: known-vulnerable
          resource: vm
          severity: high
          filters: [{type: vulnerable, severity: high}]
          actions: [notify]
    """

    Params = VulnerableParams

    def judge(self, guest: GuestFacts, ctx: Context) -> Verdict:
        db = ctx.estate.vulns
        if db is None:
            return Verdict.unknown("no vulnerability feed loaded (policy 'vulns:' or --vulns)")
        if guest.packages is None:
            return Verdict.unknown(NO_PACKAGES)
        if not db.covers(guest):
            os_label = " ".join(filter(None, (guest.os_name, guest.os_version))) or "unknown OS"
            return Verdict.unknown(f"the vulnerability feed has no advisories for {os_label}")
        minimum = RANK[self.params.severity]
        hits: list[Any] = []
        for found in db.match(guest):
            if found.severity is None:
                if self.params.unscored:
                    hits.append(found)
            elif RANK[found.severity] >= minimum:
                hits.append(found)
        if not hits:
            return NO_MATCH
        hits.sort(key=lambda m: (-RANK.get(m.severity or "", len(RANK)), m.id, m.package))
        listed = [
            {
                "id": m.id,
                "aliases": list(m.aliases),
                "package": m.package,
                "installed": m.installed,
                "fixed": m.fixed,
                "severity": m.severity,
                "score": m.score,
            }
            for m in hits[:MAX_LISTED]
        ]
        return Verdict.match(vulnerabilities=listed, count=len(hits))
