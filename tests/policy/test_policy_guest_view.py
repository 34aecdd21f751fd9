"""Per-evaluation guest views and resource-major evaluation: same verdicts, facts read afresh.

Evaluation judges each resource with every rule before the next and shares one derived view
of a guest's facts between rules; these tests pin what that must not change: verdicts when
facts change between evaluations, multi-arch packages, the first unreadable version named,
and findings in rule order, then (host, name, id).
"""

from __future__ import annotations

from tests.policy.conftest import BASE_POLICY, facts, judge, make_estate, make_vm
from vmwarden.model import Package
from vmwarden.policy import NO_MATCH, Verdict, evaluate, parse_policy
from vmwarden.policy.context import Context

RULES = """\
rules:
  - {name: stale, resource: vm, severity: high,
     filters: [{type: stale-patches, baseline: {openssl: "3.0.11-1~deb12u2"}}]}
  - {name: telnet, resource: vm, severity: high,
     filters: [{type: package, installed: [telnetd], missing: [chrony]}]}
  - {name: root-ssh, resource: vm, severity: high, filters: [ssh-root-login]}
  - {name: no-clock, resource: vm, severity: low, filters: [no-time-sync]}
  - {name: telnet-on, resource: vm, severity: high,
     filters: [{type: service, enabled: [telnet.socket]}]}
"""


def fired(policy, vms) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in evaluate(policy, make_estate(vms)):
        found.setdefault(f.rule, []).append(f.name)
    return found


def test_facts_changed_between_evaluations_are_seen():
    policy = parse_policy(BASE_POLICY + RULES)
    guest = facts(
        "openssl=3.0.11-1~deb12u2",
        "chrony=4.3-2",
        "openssh-server=1:9.2p1-2",
        sshd={"permitrootlogin": "no"},
        services_enabled=["chrony.service"],
        time_sync={"chrony": True},
    )
    vm = make_vm("a", guest=guest)
    assert fired(policy, [vm]) == {}

    guest.packages = [*guest.packages, Package("telnetd", "0.17-44")]  # replaced list
    guest.packages[0].version = "3.0.9-1"  # a record changed in place
    guest.sshd = {"permitrootlogin": "yes"}
    guest.services_enabled.append("telnet.socket")  # a list grown in place
    guest.time_sync = {"chrony": False}
    guest.services_enabled.remove("chrony.service")
    assert fired(policy, [vm]) == {
        "stale": ["a"],
        "telnet": ["a"],
        "root-ssh": ["a"],
        "no-clock": ["a"],
        "telnet-on": ["a"],
    }

    guest.packages = [p for p in guest.packages if p.name != "openssh-server"]
    guest.packages.remove(next(p for p in guest.packages if p.name == "chrony"))
    got = fired(policy, [vm])
    assert "root-ssh" not in got  # no sshd package: root cannot log in over ssh
    assert got["telnet"] == ["a"]
    evidence = [f.evidence for f in evaluate(policy, make_estate([vm])) if f.rule == "telnet"]
    assert evidence == [{"packages": ["telnetd"], "missing": ["chrony"]}]

    guest.packages = None
    unknown = {f.rule: f.evidence for f in evaluate(policy, make_estate([vm]))}
    assert unknown["stale"] == {"unknown": "inspection found no package database"}
    assert unknown["telnet"] == {"unknown": "inspection found no package database"}


def test_a_view_belongs_to_one_facts_object():
    policy = parse_policy(BASE_POLICY + RULES)
    ctx = Context(make_estate([]), policy)
    one = facts("openssl=1", "openssl=2", "bash=5", services_enabled=["ssh.service", "a.socket"])
    two = facts("openssl=1")
    view = ctx.guest(one)
    assert ctx.guest(one) is view
    assert view.packages() == {"openssl": one.packages[0], "bash": one.packages[2]}
    assert view.repeated and view.units() == {"ssh", "a.socket"}
    other = ctx.guest(two)
    assert other is not view and other.facts is two and not other.repeated
    assert ctx.guest(one) is not view and ctx.guest(one).facts is one  # rebuilt, not mixed up
    assert ctx.guest(facts(packages=None, services_enabled=None)).packages() is None


def test_stale_patches_judges_every_record_of_a_multiarch_name(policy_with):
    policy = policy_with('[{type: stale-patches, baseline: {libssl3: "3.0.11-1~deb12u2"}}]')
    amd64 = Package("libssl3", "3.0.11-1~deb12u2", arch="amd64")
    i386 = Package("libssl3", "3.0.9-1", arch="i386")
    got = judge(policy, [make_vm("m", guest=facts(amd64, i386))])
    assert got["m"] == Verdict.match(
        packages=[{"name": "libssl3", "installed": "3.0.9-1", "baseline": "3.0.11-1~deb12u2"}]
    )


def test_stale_patches_names_the_first_unreadable_version_in_the_guests_order(policy_with):
    policy = policy_with('[{type: stale-patches, baseline: {zlib1g: "1:1.2.13", bash: "5.2"}}]')
    guest = facts(Package("bash", "not a version!"), Package("zlib1g", "also not"))
    got = judge(policy, [make_vm("u", guest=guest), make_vm("ok", guest=facts("bash=5.2.15"))])
    assert got["u"] == Verdict.unknown(
        "cannot compare bash 'not a version!' with '5.2' as dpkg versions"
    )
    assert got["ok"] is NO_MATCH
    stale_wins = facts(Package("bash", "??"), "zlib1g=1:1.2.11")
    assert judge(policy, [make_vm("s", guest=stale_wins)])["s"].matched  # stale beats unknown


def test_findings_are_in_rule_order_then_host_name_id():
    policy = parse_policy(
        BASE_POLICY + RULES + "  - {name: everyone, resource: host, severity: low,"
        " filters: [{type: value, key: vms, op: ge, value: 0}]}\n"
    )
    bare = facts("telnetd=1")  # no chrony, no openssh-server, nothing else read
    vms = [
        make_vm("b", host="h2", guest=bare),
        make_vm("a", host="h2", guest=bare),
        make_vm("z", host="h1", guest=bare),
        make_vm("n", host="h1", guest=None),
    ]
    got = [(f.rule, f.host, f.name) for f in evaluate(policy, make_estate(vms))]
    order = [("h1", "n"), ("h1", "z"), ("h2", "a"), ("h2", "b")]
    expected = [("stale", "h1", "n")]  # the others have no openssl: not stale
    expected += [("telnet", h, n) for h, n in order]
    expected += [("root-ssh", "h1", "n")]  # the others have no openssh-server
    expected += [(r, h, n) for r in ("no-clock", "telnet-on") for h, n in order]  # unread
    expected += [("everyone", "h1", "h1"), ("everyone", "h2", "h2")]
    assert got == expected
