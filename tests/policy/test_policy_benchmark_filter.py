"""``benchmark`` over results kept in the guest facts: match, no-match and unknown.

The results here are written by hand to cover every branch; tests/scap/test_xccdf_policy.py
computes them from the real Debian image during a real sweep."""

from __future__ import annotations

import pytest

from tests.policy.conftest import facts, judge, make_vm
from vmwarden.policy import NO_MATCH, Verdict
from vmwarden.policy.filters.benchmark import benchmark_key

DS = "/usr/share/xml/scap/ssg/content/ssg-debian11-ds.xml"
RULE = "xccdf_org.ssgproject.content_rule_"
KEY = benchmark_key(DS, "standard", True)
GOOD = {"benchmark": "b", "profile": "p", "score": 91.5, "failed": [], "platform_applicable": True}
WEAK = {**GOOD, "score": 40.0, "failed": [RULE + "package_cron_installed", RULE + "x"]}


def test_benchmark(policy_with) -> None:
    policy = policy_with(
        f"[{{type: benchmark, datastream: {DS}, profile: standard, ignore_platform: true,"
        " min_score: 80}]"
    )
    got = judge(
        policy,
        [
            make_vm("weak", guest=facts(benchmarks={KEY: WEAK})),
            make_vm("good", guest=facts(benchmarks={KEY: GOOD})),
            make_vm("other-profile", guest=facts(benchmarks={benchmark_key(DS, "x", True): WEAK})),
            make_vm("failed-eval", guest=facts(benchmarks={KEY: {"error": "worker timed out"}})),
            make_vm(
                "other-release",
                guest=facts(benchmarks={KEY: {**WEAK, "platform_applicable": False}}),
            ),
            make_vm("uninspected", guest=None),
        ],
    )
    assert got["weak"] == Verdict.match(
        min_score=80.0,
        benchmark="b",
        profile="p",
        score=40.0,
        failed_count=2,
        failed=["package_cron_installed", "x"],
    )
    assert got["good"] is NO_MATCH
    assert got["other-profile"] == Verdict.unknown(
        "no benchmark results for this datastream and profile"
    )
    assert got["failed-eval"] == Verdict.unknown("benchmark not evaluated: worker timed out")
    assert "platform does not apply" in str(got["other-release"])
    assert got["uninspected"] == Verdict.unknown("not inspected")


def test_benchmark_rules_by_short_or_full_id(policy_with) -> None:
    policy = policy_with(
        f"[{{type: benchmark, datastream: {DS}, profile: standard, ignore_platform: true,"
        f" rules: [{RULE}package_cron_installed, sshd_disable_root_login]}}]"
    )
    got = judge(
        policy,
        [
            make_vm("weak", guest=facts(benchmarks={KEY: WEAK})),
            make_vm("good", guest=facts(benchmarks={KEY: GOOD})),
        ],
    )
    assert got["weak"].evidence["failed"] == ["package_cron_installed"]
    assert got["good"] is NO_MATCH


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("", "give either 'min_score' or 'rules'"),
        (", min_score: 50, rules: [x]", "give either 'min_score' or 'rules'"),
        (", min_score: 150", "score from 0 to 100"),
    ],
)
def test_benchmark_params_are_checked(policy_with, params: str, message: str) -> None:
    from vmwarden.errors import PolicyError

    with pytest.raises(PolicyError, match=message):
        policy_with(f"[{{type: benchmark, datastream: {DS}{params}}}]")
