"""``plan``: state-based actions once per VM per sweep, event-based once per open finding."""

from __future__ import annotations

from vmwarden.enforce import plan
from vmwarden.model import VM, Finding, State
from vmwarden.model.finding import Severity

VMS = {
    i: VM(id=i, name=f"vm-{i}", host="hv1", uri="test:///hv1.xml", state=State.RUNNING)
    for i in ("a", "b")
}
ACTIONS = {
    "low-rule": [("pause", {}), ("snapshot", {}), ("notify", {})],
    "high-rule": [("pause", {}), ("quarantine", {}), ("snapshot", {})],
    "img-rule": [("notify", {})],
}


def _f(rule: str, vm: str, sev: Severity = Severity.LOW) -> Finding:
    return Finding(rule, "vm", vm, f"vm-{vm}", "hv1", sev)


def _summary(planned) -> list[tuple[str, str, tuple[str, ...]]]:
    return sorted((p.action, p.vm.id, p.rules) for p in planned)


def test_state_based_actions_run_once_per_vm_naming_every_rule():
    findings = [_f("low-rule", "a"), _f("high-rule", "a", Severity.HIGH), _f("low-rule", "b")]
    planned = plan(findings, VMS, ACTIONS, due=None)
    pauses = [p for p in planned if p.action == "pause"]
    assert sorted((p.vm.id, p.rules) for p in pauses) == [
        ("a", ("high-rule", "low-rule")),  # most severe first
        ("b", ("low-rule",)),
    ]
    assert next(p for p in pauses if p.vm.id == "a").finding.rule == "high-rule"


def test_event_based_actions_run_once_per_opened_finding():
    findings = [_f("low-rule", "a"), _f("high-rule", "a", Severity.HIGH)]
    planned = plan(findings, VMS, ACTIONS, due=None)
    snaps = [p for p in planned if p.action == "snapshot"]
    assert sorted(p.rules for p in snaps) == [("high-rule",), ("low-rule",)]
    assert [p.rules for p in planned if p.action == "notify"] == [("low-rule",)]


def test_only_due_event_actions_are_planned():
    findings = [_f("low-rule", "a"), _f("high-rule", "a", Severity.HIGH)]
    key = ("low-rule", "vm", "a")
    planned = plan(findings, VMS, ACTIONS, due={(key, "notify"), (key, "snapshot")})
    assert _summary(planned) == [
        ("notify", "a", ("low-rule",)),
        ("pause", "a", ("high-rule", "low-rule")),  # state-based: every sweep
        ("quarantine", "a", ("high-rule",)),
        ("snapshot", "a", ("low-rule",)),
    ]
    still_open = plan(findings, VMS, ACTIONS, due=set())
    assert {p.action for p in still_open} == {"pause", "quarantine"}


def test_findings_of_vms_not_in_the_sweep_plan_nothing():
    assert plan([_f("high-rule", "gone")], VMS, ACTIONS, due=None) == []


def test_rules_without_actions_plan_nothing():
    assert plan([_f("no-actions", "a")], VMS, ACTIONS, due=None) == []


def test_image_findings_notify_through_a_vm_shaped_carrier():
    f = Finding("img-rule", "image", "/srv/x.qcow2", "x.qcow2", "hv1", Severity.MEDIUM)
    (p,) = plan([f], VMS, ACTIONS, due=None)
    assert (p.action, p.vm.id, p.vm.name, p.vm.host) == ("notify", "/srv/x.qcow2", "x.qcow2", "hv1")


def test_tags_with_other_keys_are_separate_states_one_key_is_merged():
    actions = {
        "dormant": [("tag", {"key": "dormant", "value": "yes"})],
        "ownerless": [("tag", {"key": "owner-missing", "value": "yes"})],
        "dormant-too": [("tag", {"key": "dormant", "value": "very"})],
    }
    findings = [_f("dormant", "a"), _f("ownerless", "a"), _f("dormant-too", "a", Severity.HIGH)]
    planned = plan(findings, VMS, actions, due=None)
    assert sorted((p.params["key"], p.params["value"], p.rules) for p in planned) == [
        ("dormant", "very", ("dormant-too", "dormant")),  # one key: the most severe value
        ("owner-missing", "yes", ("ownerless",)),
    ]
