"""evaluate(): findings per rule and resource, deterministic, unknown recorded as such."""

from __future__ import annotations

import random

from tests.policy.conftest import APPROVED, BASE_POLICY, ROGUE, disk, make_estate, make_vm
from vmwarden.model import Finding, Image, Severity
from vmwarden.policy import evaluate, parse_policy

POLICY = (
    BASE_POLICY
    + """\
rules:
  - name: unapproved-template
    resource: vm
    severity: high
    filters: [not-approved-template]
    actions: [quarantine, notify]
  - name: unregistered
    resource: vm
    severity: medium
    filters: [unregistered]
    actions: [{type: tag, key: registered, value: "no"}]
  - name: huge-images
    resource: image
    severity: info
    filters: [{type: value, key: size, op: gt, value: 100}]
  - name: crowded-host
    resource: host
    severity: low
    filters: [{type: value, key: vms, op: ge, value: 2}]
"""
)


def estate():
    vms = [
        make_vm("web02", host="h2", disks=[disk("vda", ROGUE)], registered=False),
        make_vm("web01", host="h1", disks=[disk("vda", None, APPROVED)]),
        make_vm("db01", host="h1", disks=[disk("vda", None)]),
    ]
    images = [
        Image(path="/img/b.qcow2", host="h1", size=500),
        Image(path="/img/a.qcow2", host="h1", size=5),
    ]
    return make_estate(vms, images)


def test_findings_per_rule_and_resource():
    findings = evaluate(parse_policy(POLICY), estate())
    got = [(f.rule, f.resource, f.name, f.host) for f in findings]
    assert got == [
        ("unapproved-template", "vm", "db01", "h1"),
        ("unapproved-template", "vm", "web02", "h2"),
        ("unregistered", "vm", "web02", "h2"),
        ("huge-images", "image", "b.qcow2", "h1"),
        ("crowded-host", "host", "h1", "h1"),
    ]
    db01, web02 = findings[0], findings[1]
    assert db01.evidence == {"unknown": db01.evidence["unknown"]}
    assert "digest not computed" in db01.evidence["unknown"]
    assert web02.evidence["digest"] == ROGUE
    assert web02.severity is Severity.HIGH
    assert web02.actions == ("quarantine", "notify")
    assert findings[3].id == "/img/b.qcow2"
    assert isinstance(findings[0], Finding)


def test_order_does_not_depend_on_input_order():
    policy = parse_policy(POLICY)
    shuffled = estate()
    first = evaluate(policy, shuffled)
    random.Random(7).shuffle(shuffled.vms)
    shuffled.vms.reverse()
    shuffled.images.reverse()
    assert [f.to_dict() for f in evaluate(policy, shuffled)] == [f.to_dict() for f in first]


def test_policy_is_reusable_across_evaluations():
    policy = parse_policy(POLICY)
    assert len(evaluate(policy, estate())) == len(evaluate(policy, estate())) == 5
    assert evaluate(policy, make_estate([])) == []


def test_action_params_reach_the_rule():
    policy = parse_policy(POLICY)
    assert policy.rule("unregistered").action_specs() == [
        ("tag", {"key": "registered", "value": "no"})
    ]


GATED = (
    BASE_POLICY
    + """\
gate:
  deny: [not-approved-template]
  hold: [{type: dormant, days: 30}, unregistered]
"""
)


def test_gate_admission():
    from datetime import timedelta

    from tests.policy.conftest import NOW
    from vmwarden.model import State
    from vmwarden.policy import admit

    policy = parse_policy(GATED)
    ok = make_vm("ok")
    rogue = make_vm("rogue", disks=[disk("vda", ROGUE)], registered=False)
    unread = make_vm("unread", disks=[disk("vda", None)])
    old = make_vm("old", state=State.SHUTOFF, state_since=NOW - timedelta(days=40))
    stranger = make_vm("stranger", registered=None)
    estate = make_estate([ok, rogue, unread, old, stranger])
    assert admit(policy, ok, estate).decision == "allow"
    denied = admit(policy, rogue, estate)
    assert denied.decision == "deny"
    assert denied.reasons[0]["filter"] == "not-approved-template"
    assert admit(policy, unread, estate).decision == "deny"  # unknown never admits
    assert admit(policy, old, estate).decision == "hold"
    held = admit(policy, stranger, estate)
    assert held.reasons == [{"filter": "unregistered", "registered": None}]


def test_evaluate_restores_the_garbage_collector():
    import gc

    assert gc.isenabled()
    evaluate(parse_policy(POLICY), estate())
    assert gc.isenabled()
    gc.disable()
    try:
        evaluate(parse_policy(POLICY), estate())
        assert not gc.isenabled()
    finally:
        gc.enable()
