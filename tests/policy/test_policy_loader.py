"""The loader: every kind of mistake is reported with file, line and dotted field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.policy.conftest import APPROVED, BASE_POLICY
from vmwarden.errors import PolicyError
from vmwarden.model import Severity
from vmwarden.policy import PolicyValidationError, filters, load_policy, parse_policy
from vmwarden.policy.schema import Ocsf, Syslog, Webhook

REPO = Path(__file__).resolve().parents[2]
POLICY_DOC = REPO / "docs" / "POLICY.md"


def error_of(write_policy, text: str) -> PolicyError:
    path = write_policy(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return info.value


def rule(filters: str = "[unregistered]", actions: str = "[]", **fields: str) -> str:
    body = {"name": "r", "resource": "vm", "severity": "high", **fields}
    lines = [f"  - name: {body.pop('name')}"] + [f"    {k}: {v}" for k, v in body.items()]
    return "\n".join([*lines, f"    filters: {filters}", f"    actions: {actions}"]) + "\n"


def test_policy_doc_example_loads(write_policy):
    text = POLICY_DOC.read_text()
    example = text.split("## The policy file", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    example = example.replace("sha256:<hex>", APPROVED)
    policy = load_policy(write_policy(example))
    assert policy.version == 1
    assert policy.catalog() == {APPROVED: "debian12-base"}
    assert [r.name for r in policy.rules] == ["unapproved-template", "forbidden-software"]
    assert policy.rules[0].severity is Severity.HIGH
    assert policy.rules[0].action_names == ["quarantine", "notify"]
    assert [f.type_name for f in policy.gate.hold] == ["dormant", "unregistered"]
    assert policy.gate.unreachable == "allow"
    assert policy.quarantine is not None and policy.quarantine.link_down is True
    assert isinstance(policy.notify[0], Webhook) and isinstance(policy.notify[1], Syslog)
    assert set(policy.zones) == {"internal", "pci"}


def test_demo_policy_loads():
    demo = REPO / "src" / "vmwarden" / "engine" / "demo_policy.yaml"
    text = demo.read_text().replace("@DEBIAN12_BASE_DIGEST@", APPROVED)
    policy = parse_policy(text.replace("@NOTIFY_PATH@", "/tmp/n.jsonl"), "demo_policy.yaml")
    assert isinstance(policy.notify[0], Ocsf)
    assert [r.name for r in policy.rules] == [
        "unapproved-template",
        "forbidden-software",
        "unregistered-vm",
        "outside-zone",
        "mixed-classification-on-host",
        "duplicate-mac",
        "vulnerable-package",
        "expired-account",
        "ssh-root-login",
        "no-time-sync",
        "shared-password-hash",
        "duplicate-ssh-host-key",
        "not-inspected",
        "dormant",
        "orphaned-image",
        "world-readable-image",
    ]
    assert policy.rules[0].remediation == (
        "Rebuild from an approved template (quarantined until then)"
    )


def test_malformed_yaml_names_line_and_column(write_policy):
    err = error_of(write_policy, "version: 1\nrules:\n  - name: x\n   resource: vm\n")
    assert str(err).startswith(f"{write_policy('')}:4:")
    assert "could not parse YAML" in str(err)
    assert str(err).split(":")[2].isdigit()  # column


def test_unknown_filter_lists_valid_filters(write_policy):
    text = BASE_POLICY + "rules:\n" + rule() + rule("[outside-zon]", name="second")
    err = error_of(write_policy, text)
    line = text.splitlines().index("    filters: [outside-zon]") + 1
    valid = ", ".join(filters.names())
    assert "duplicate-mac, duplicate-machine-id" in valid
    assert valid.endswith("value, vulnerable, world-readable")
    assert str(err) == (
        f"{write_policy('')}:{line}: rules[1].filters[0]: unknown filter 'outside-zon' "
        f"(valid: {valid})"
    )


def test_unknown_key_lists_valid_keys(write_policy):
    text = BASE_POLICY + "rules:\n" + rule(severty="high")
    err = error_of(write_policy, text)
    line = text.splitlines().index("    severty: high") + 1
    assert (
        f":{line}: rules[0].severty: unknown key 'severty' (valid: actions, description, "
        "filters, name, remediation, resource, severity)" in str(err)
    )


def test_unknown_top_level_key(write_policy):
    err = error_of(write_policy, "version: 1\nzone: {}\n")
    assert (
        ":2: zone: unknown key 'zone' (valid: gate, notify, quarantine, rules, templates, "
        "version, vulns, zones)" in str(err)
    )


def test_wrong_type_says_expected_and_got(write_policy):
    text = BASE_POLICY.replace("{network: quarantine}", "{network: quarantine, link_down: 3}")
    err = error_of(write_policy, text)
    line = text.splitlines().index("quarantine: {network: quarantine, link_down: 3}") + 1
    assert f":{line}: quarantine.link_down: expected true or false, got an integer 3" in str(err)


def test_bad_severity(write_policy):
    text = BASE_POLICY + "rules:\n" + rule(severity="urgent")
    err = error_of(write_policy, text)
    line = text.splitlines().index("    severity: urgent") + 1
    assert (
        f":{line}: rules[0].severity: invalid severity 'urgent' (valid: info, low, medium, "
        "high, critical)" in str(err)
    )


def test_bad_digest(write_policy):
    text = BASE_POLICY.replace(APPROVED, "sha256:abc")
    err = error_of(write_policy, text)
    assert (
        ":4: templates[0].digest: digest must be 'sha256:' followed by 64 hex digits, "
        "got 'sha256:abc'" in str(err)
    )


def test_duplicate_rule_name(write_policy):
    text = BASE_POLICY + "rules:\n" + rule() + rule()
    err = error_of(write_policy, text)
    lines = [i + 1 for i, t in enumerate(text.splitlines()) if t == "  - name: r"]
    assert (
        f":{lines[1]}: rules[1].name: duplicate rule name 'r' (first at rules[0], line "
        f"{lines[0]})" in str(err)
    )


def test_unknown_action(write_policy):
    text = BASE_POLICY + "rules:\n" + rule(actions="[notify, quarantine, isolate]")
    err = error_of(write_policy, text)
    line = text.splitlines().index("    actions: [notify, quarantine, isolate]") + 1
    assert (
        f":{line}: rules[0].actions[2]: unknown action 'isolate' (valid: notify, pause, "
        "quarantine, shutdown, snapshot, tag)" in str(err)
    )


def test_action_not_supported_by_resource(write_policy):
    text = (
        BASE_POLICY
        + "rules:\n"
        + rule("[{type: value, key: size, op: gt, value: 0}]", "[quarantine]", resource="image")
    )
    err = error_of(write_policy, text)
    assert (
        "rules[0].actions[0]: action 'quarantine' cannot act on resource 'image' "
        "(it acts on: vm)" in str(err)
    )


def test_filter_not_for_resource(write_policy):
    err = error_of(write_policy, BASE_POLICY + "rules:\n" + rule(resource="image"))
    assert (
        "rules[0].filters[0]: filter 'unregistered' does not apply to resource 'image' "
        "(it judges: vm)" in str(err)
    )


def test_bad_filter_params_with_line(write_policy):
    text = (
        BASE_POLICY
        + "rules:\n"
        + rule("\n      - unregistered\n      - type: dormant\n        days: 0\n        weeks: 2")
    )
    err = error_of(write_policy, text)
    days = text.splitlines().index("        days: 0") + 1
    assert f":{days}: rules[0].filters[1].days: should be greater than 0, got an integer 0" in str(
        err
    )
    assert (
        f":{days + 1}: rules[0].filters[1].weeks: unknown key 'weeks' (valid: days, type)"
        in str(err)
    )


def test_filter_missing_param(write_policy):
    err = error_of(write_policy, BASE_POLICY + "rules:\n" + rule("[dormant]"))
    assert "rules[0].filters[0]: missing required key 'days'" in str(err)


def test_nested_filter_errors_have_their_own_line(write_policy):
    text = (
        BASE_POLICY
        + "rules:\n"
        + rule("\n      - or:\n          - unregistered\n          - not: {type: dormant, days: x}")
    )
    err = error_of(write_policy, text)
    line = text.splitlines().index("          - not: {type: dormant, days: x}") + 1
    assert (
        f":{line}: rules[0].filters[0].or[1].not.days: expected an integer, got a string "
        "'x'" in str(err)
    )


def test_typed_combinator_form_and_shorthand_errors(write_policy):
    err = error_of(write_policy, BASE_POLICY + "rules:\n" + rule("[{and: unregistered}]"))
    assert "rules[0].filters[0].and: 'and' needs a list of filters, got a string" in str(err)
    err = error_of(write_policy, BASE_POLICY + "rules:\n" + rule("[{type: or, filters: []}]"))
    assert "rules[0].filters[0].filters: " in str(err)


def test_unknown_zone_referenced(write_policy):
    err = error_of(
        write_policy, BASE_POLICY + "rules:\n" + rule("[{type: outside-zone, zones: [pci, dmz]}]")
    )
    assert "rules[0].filters[0].zones[1]: unknown zone 'dmz' (valid: internal, pci)" in str(err)


def test_version_other_than_1(write_policy):
    err = error_of(write_policy, BASE_POLICY.replace("version: 1", "version: 2"))
    assert ":1: version: unsupported policy version 2 (valid: 1)" in str(err)


def test_missing_version(write_policy):
    err = error_of(write_policy, "rules: []\n")
    assert ":1: missing required key 'version'" in str(err)


def test_unreachable_allow_or_deny(write_policy):
    err = error_of(write_policy, BASE_POLICY + "gate: {unreachable: maybe}\n")
    assert "gate.unreachable: invalid unreachable 'maybe' (valid: allow, deny)" in str(err)


def test_duplicate_yaml_keys(write_policy):
    text = BASE_POLICY + "rules: []\nrules: []\n"
    err = error_of(write_policy, text)
    n = len(text.splitlines())
    assert f":{n}: rules: duplicate key 'rules' (first at line {n - 1})" in str(err)


def test_all_problems_reported_together_in_line_order(write_policy):
    text = (
        BASE_POLICY.replace(APPROVED, "sha256:zz")
        + "rules:\n"
        + rule("[outside-zon]", severity="urgent")
    )
    err = error_of(write_policy, text)
    assert isinstance(err, PolicyValidationError)
    assert len(err.problems) == 3
    assert [p.line for p in err.problems] == sorted(p.line for p in err.problems)
    assert len(str(err).splitlines()) == 3
    assert err.hint


def test_gate_filters_are_checked(write_policy):
    err = error_of(write_policy, BASE_POLICY + "gate: {hold: [{type: dormant}], deny: [nope]}\n")
    assert "gate.hold[0]: missing required key 'days'" in str(err)
    assert "gate.deny[0]: unknown filter 'nope'" in str(err)


def test_notifier_types_and_params(write_policy):
    text = BASE_POLICY + "  - {type: pager, to: x}\n  - {type: syslog, address: nohost}\n"
    err = error_of(write_policy, text)
    assert "notify[1]: unknown notifier type 'pager' (valid: ocsf, smtp, syslog, webhook)" in str(
        err
    )
    assert "notify[2].address: should match pattern" in str(err)


def test_action_needing_a_section(write_policy):
    text = f"version: 1\nrules:\n{rule(actions='[quarantine, notify]')}"
    err = error_of(write_policy, text)
    assert (
        "rules[0].actions[0]: action 'quarantine' needs a top-level 'quarantine:' section"
        in str(err)
    )
    assert "rules[0].actions[1]: action 'notify' needs a top-level 'notify:' section" in str(err)


def test_action_params_checked(write_policy):
    err = error_of(
        write_policy,
        BASE_POLICY
        + "rules:\n"
        + rule(actions="[{type: tag, key: owner}, {type: shutdown, force: true}]"),
    )
    assert "rules[0].actions[0]: missing required key 'value'" in str(err)
    assert "rules[0].actions[1].force: unknown key 'force' (valid: type)" in str(err)


def test_value_key_path_checked_against_the_record(write_policy):
    err = error_of(
        write_policy, BASE_POLICY + "rules:\n" + rule("[{type: value, key: meta.ownr, value: x}]")
    )
    assert (
        "rules[0].filters[0].key: unknown key path 'meta.ownr': 'meta' has no field 'ownr'"
        in str(err)
    )


def test_value_params_checked(write_policy):
    err = error_of(
        write_policy,
        BASE_POLICY + "rules:\n" + rule("[{type: value, key: name, op: regex, value: '('}]"),
    )
    assert "rules[0].filters[0]: invalid regex '('" in str(err)


def test_empty_and_non_mapping_policies(write_policy):
    assert "the policy is empty" in str(error_of(write_policy, "# nothing\n"))
    assert "must be a mapping" in str(error_of(write_policy, "- a\n"))


def test_unreadable_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "missing.yaml")


def test_yaml_keys_stay_strings_and_merge_keys_work():
    policy = parse_policy(
        "version: 1\nzones:\n  on: &z {networks: [a], classifications: [x]}\n"
        "  off: {<<: *z, classifications: [y]}\n"
    )
    assert set(policy.zones) == {"on", "off"}
    assert policy.zones["off"].networks == ["a"]


def test_vulns_path_relative_to_policy_file(write_policy):
    path = write_policy("version: 1\nvulns: feeds/osv\n")
    assert load_policy(path).vulns == path.parent / "feeds" / "osv"


def test_parse_policy_defaults_source():
    with pytest.raises(PolicyError, match=r"^<string>:1: "):
        parse_policy("version: 3\n")


def test_yaml_booleans_are_explained():
    with pytest.raises(PolicyError, match=r"quote the value"):
        parse_policy("version: 1\ngate: {unreachable: no}\n")


def test_unsafe_yaml_tags_are_rejected():
    with pytest.raises(PolicyError, match=r"<string>:2: vulns: unsupported YAML value"):
        parse_policy("version: 1\nvulns: !!python/object:os.system x\n")


def test_alias_bombs_are_refused():
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    with pytest.raises(PolicyError, match="YAML nodes"):
        parse_policy("\n".join(lines) + "\n")


def test_policy_layer_imports_only_model_and_errors():
    import ast

    # vulns is a layer before policy (docs/ARCHITECTURE.md) and as pure: facts in, matches out.
    allowed = ("vmwarden.model", "vmwarden.errors", "vmwarden.policy", "vmwarden.vulns")
    for path in (REPO / "src" / "vmwarden" / "policy").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = [n for n in names if n.startswith("vmwarden") and not n.startswith(allowed)]
            assert not bad, f"{path.name} imports {bad}"


def test_duplicate_digest_and_classification_in_two_zones():
    text = (
        f"version: 1\ntemplates:\n  - {{name: a, digest: {APPROVED}}}\n"
        f"  - {{name: b, digest: {APPROVED.upper().replace('SHA256', 'sha256')}}}\n"
        "zones:\n  a: {classifications: [x]}\n  b: {classifications: [y, x]}\n"
    )
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    assert str(info.value).splitlines() == [
        "p.yaml:4: templates[1].digest: digest already approved by templates[0]",
        "p.yaml:7: zones.b.classifications[1]: classification 'x' is already in zone 'a'; "
        "a classification belongs to one zone",
    ]


def test_empty_not_list_is_reported_not_dropped():
    with pytest.raises(PolicyError, match=r"rules\[0\]\.filters\[0\]\.not: needs at least one"):
        parse_policy("version: 1\nrules:\n" + rule("[{not: []}]"))


def test_recursive_aliases_and_deep_nesting_are_problems():
    with pytest.raises(PolicyError, match=r"<string>:2: zones\.a\.x: recursive YAML alias"):
        parse_policy("version: 1\nzones: {a: &z {x: *z}}\n")
    deep = "version: 1\nrules: " + "[" * 100 + "]" * 100 + "\n"
    with pytest.raises(PolicyError, match="nesting too deep"):
        parse_policy(deep)


def test_quarantine_names_a_target_per_platform() -> None:
    # DESIGN.md's quarantine block: libvirt network, vSphere portgroup, EC2 security group
    policy = parse_policy(
        "version: 1\nquarantine:\n  network: iso\n  link_down: false\n"
        "  vsphere: {portgroup: vmw-quarantine}\n  aws: {security_group: vmwarden-q}\n"
    )
    assert policy.quarantine is not None
    spec = policy.quarantine.spec()
    assert (spec.network, spec.link_down) == ("iso", False)
    assert (spec.vsphere_portgroup, spec.aws_security_group) == ("vmw-quarantine", "vmwarden-q")
    # a vSphere-only estate needs no libvirt network ...
    only = parse_policy("version: 1\nquarantine:\n  vsphere: {portgroup: pg}\n").quarantine
    assert only is not None and only.spec().network == ""
    # ... but a quarantine block that names nowhere is an error, and so is a typo'd key
    with pytest.raises(PolicyError, match="at least one of network"):
        parse_policy("version: 1\nquarantine: {link_down: true}\n")
    with pytest.raises(PolicyError, match="portgrp"):
        parse_policy("version: 1\nquarantine:\n  vsphere: {portgrp: pg}\n")
