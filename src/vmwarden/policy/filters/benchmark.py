"""``benchmark``: a disk below its SCAP hardening baseline (XCCDF + OVAL, e.g. CIS, ANSSI).

The evaluation itself happens during inspection (``engine.benchmarks``: the disk read in the
sandboxed worker, results kept with the guest facts and their cache); this filter only
reads those results, so judging a fleet again costs nothing until a disk or the datastream
changes. Results are keyed by :func:`benchmark_key` -- datastream path, profile and
``ignore_platform`` -- and carry the datastream's digest, so edited content is evaluated
again rather than judged by stale results.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pydantic import model_validator

from vmwarden.policy.filters.base import filters
from vmwarden.policy.filters.guest import GuestFilter
from vmwarden.policy.schema import StrictModel
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.model import GuestFacts
    from vmwarden.policy.context import Context

MAX_LISTED = 50  # failed rules listed in evidence (the count is always given)


def benchmark_key(datastream: str, profile: str | None, ignore_platform: bool) -> str:
    """Where a benchmark's results live in ``GuestFacts.benchmarks``."""
    path = os.path.abspath(os.path.expanduser(datastream))
    return f"{path}|{profile or ''}|{'ignore-platform' if ignore_platform else 'platform'}"


def short(rule_id: str) -> str:
    """A rule id without its prefix (``..._rule_sshd_disable_root_login``): how people name it."""
    return rule_id.rsplit("_rule_", 1)[-1]


class BenchmarkParams(StrictModel):
    datastream: str  # SCAP source datastream file on this host
    profile: str | None = None  # XCCDF profile id (full or short); none: default selection
    ignore_platform: bool = False
    min_score: float | None = None  # match when the score is below
    rules: list[str] = []  # match when any of these rules fails (full or short ids)

    @model_validator(mode="after")
    def _one_condition(self) -> BenchmarkParams:
        if (self.min_score is None) == (not self.rules):
            raise ValueError("give either 'min_score' or 'rules'")
        if self.min_score is not None and not 0.0 <= self.min_score <= 100.0:
            raise ValueError("'min_score' is a score from 0 to 100")
        return self


@filters.register("benchmark")
class Benchmark(GuestFilter):
    """The disk scores below its SCAP baseline (``min_score:``, the XCCDF default score
    OpenSCAP computes, 0-100) or fails one of the listed ``rules:``. Evidence: the score and
    the failed rules. Unknown when the disk has no results for this datastream and profile
    (not inspected, encrypted, or the evaluation failed: the reason says which) and when
    the content is for another OS release (``ignore_platform: true`` judges it). Rules that
    need a running system (kernel parameters in effect) are not checked offline, never
    passed.

    Example:
        - name: below-anssi-baseline
          resource: vm
          severity: high
          filters:
            - type: benchmark
              datastream: /usr/share/xml/scap/ssg/content/ssg-debian11-ds.xml
              profile: anssi_np_nt28_high
              ignore_platform: true
              min_score: 80
        - name: root-ssh-allowed-by-baseline
          resource: image
          severity: medium
          filters:
            - type: benchmark
              datastream: /usr/share/xml/scap/ssg/content/ssg-debian11-ds.xml
              profile: standard
              rules: [sshd_disable_root_login]
    """

    Params = BenchmarkParams

    def judge(self, guest: GuestFacts, ctx: Context) -> Verdict:
        p = self.params
        key = benchmark_key(p.datastream, p.profile, p.ignore_platform)
        got: dict[str, Any] | None = (guest.benchmarks or {}).get(key)
        if got is None:
            return Verdict.unknown("no benchmark results for this datastream and profile")
        if got.get("error"):
            return Verdict.unknown(f"benchmark not evaluated: {got['error']}")
        if got.get("platform_applicable") is False:
            return Verdict.unknown(
                "the datastream's platform does not apply to this disk "
                "(ignore_platform: true judges it anyway)"
            )
        failed = [str(r) for r in got.get("failed") or []]
        evidence: dict[str, Any] = {
            "benchmark": got.get("benchmark"),
            "profile": got.get("profile"),
            "score": got.get("score"),
            "failed_count": len(failed),
            "failed": [short(r) for r in failed[:MAX_LISTED]],
        }
        if p.min_score is not None:
            score = got.get("score")
            if not isinstance(score, int | float):
                return Verdict.unknown("benchmark results carry no score")
            if score < p.min_score:
                return Verdict.match(min_score=p.min_score, **evidence)
            return NO_MATCH
        wanted = {short(r) for r in p.rules}
        hits = sorted(short(r) for r in failed if short(r) in wanted)
        if hits:
            return Verdict.match(**{**evidence, "failed": hits})
        return NO_MATCH
