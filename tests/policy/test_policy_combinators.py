"""and / or / not over the three verdicts: unknown never clears a resource."""

from __future__ import annotations

import itertools

import pytest

from tests.policy.conftest import make_estate, make_vm
from vmwarden.policy import NO_MATCH, Verdict, evaluate
from vmwarden.policy.verdict import Outcome, all_of, any_of, negate

M = Verdict.match(m=1)
N = NO_MATCH
U = Verdict.unknown("u")
ALL = {"match": M, "no-match": N, "unknown": U}


def outcome(v: Verdict) -> str:
    return v.outcome.value


AND = {  # row: left, column: right
    ("match", "match"): "match",
    ("match", "no-match"): "no-match",
    ("match", "unknown"): "unknown",
    ("no-match", "no-match"): "no-match",
    ("no-match", "unknown"): "no-match",
    ("unknown", "unknown"): "unknown",
}
OR = {
    ("match", "match"): "match",
    ("match", "no-match"): "match",
    ("match", "unknown"): "match",
    ("no-match", "no-match"): "no-match",
    ("no-match", "unknown"): "unknown",
    ("unknown", "unknown"): "unknown",
}


@pytest.mark.parametrize(("a", "b"), list(itertools.product(ALL, ALL)))
def test_and_or_truth_table(a, b):
    key = (a, b) if (a, b) in AND else (b, a)
    assert outcome(all_of([ALL[a], ALL[b]])) == AND[key]
    assert outcome(any_of([ALL[a], ALL[b]])) == OR[key]


def test_not_truth_table():
    assert negate(M, "x") is NO_MATCH
    assert negate(N, "x") == Verdict.match(**{"not": "x"})
    assert negate(U, "x").outcome is Outcome.UNKNOWN


def test_and_merges_evidence_and_joins_reasons():
    assert all_of([Verdict.match(a=1), Verdict.match(b=2)]) == Verdict.match(a=1, b=2)
    assert all_of([U, Verdict.unknown("v")]) == Verdict.unknown("u; v")


def test_fires_on_match_and_unknown():
    assert M.fires and U.fires and not N.fires
    assert U.finding_evidence() == {"unknown": "u"}


# Through real filters, in every YAML spelling: the VMs cover match / no-match / unknown for
# `unregistered` (A) and a value filter on meta.owner (B, unknown when the owner is missing).
VMS = {
    "mm": {"registered": False, "owner": "eve"},
    "mn": {"registered": False, "owner": "alice"},
    "mu": {"registered": False, "owner": None},
    "nm": {"registered": True, "owner": "eve"},
    "nn": {"registered": True, "owner": "alice"},
    "nu": {"registered": True, "owner": None},
}
B = "{type: value, key: meta.owner, op: eq, value: eve}"


def fired(policy_with, filters: str) -> dict[str, str]:
    vms = [make_vm(name, **kw) for name, kw in VMS.items()]
    findings = evaluate(policy_with(filters), make_estate(vms))
    return {f.name: "unknown" if "unknown" in f.evidence else "match" for f in findings}


@pytest.mark.parametrize(
    "spelling",
    [
        f"[unregistered, {B}]",
        f"[{{and: [unregistered, {B}]}}]",
        f"[{{type: and, filters: [unregistered, {B}]}}]",
    ],
)
def test_and_through_rules(policy_with, spelling):
    assert fired(policy_with, spelling) == {"mm": "match", "mu": "unknown"}


@pytest.mark.parametrize(
    "spelling", [f"[{{or: [unregistered, {B}]}}]", f"[{{type: or, filters: [unregistered, {B}]}}]"]
)
def test_or_through_rules(policy_with, spelling):
    assert fired(policy_with, spelling) == {
        "mm": "match",
        "mn": "match",
        "mu": "match",
        "nm": "match",
        "nu": "unknown",
    }


@pytest.mark.parametrize(
    "spelling", [f"[{{not: {B}}}]", f"[{{type: not, filter: {B}}}]", f"[{{not: [{B}]}}]"]
)
def test_not_through_rules(policy_with, spelling):
    assert fired(policy_with, spelling) == {
        "mn": "match",
        "mu": "unknown",
        "nn": "match",
        "nu": "unknown",
    }


def test_not_of_and_list(policy_with):
    got = fired(policy_with, f"[{{not: [unregistered, {B}]}}]")
    assert got == {"mn": "match", "mu": "unknown", "nm": "match", "nn": "match", "nu": "match"}
