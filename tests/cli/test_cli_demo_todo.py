"""The demo's "What to do" summary: findings grouped by each rule's remediation, worst first."""

from __future__ import annotations

from vmwarden.cli.demo import todo_groups
from vmwarden.model import Finding, Severity
from vmwarden.policy import parse_policy

POLICY = """
version: 1
rules:
  - {name: rogue, resource: vm, severity: high, filters: [unregistered],
     remediation: Rebuild from an approved template}
  - {name: telnet, resource: vm, severity: critical, filters: [unregistered],
     remediation: Rebuild from an approved template}
  - {name: clock, resource: vm, severity: low, filters: [no-time-sync]}
"""


def finding(rule: str, name: str, severity: Severity) -> Finding:
    return Finding(rule=rule, resource="vm", id=name, name=name, host="h", severity=severity)


def test_groups_by_remediation_worst_first_each_name_once() -> None:
    rules = parse_policy(POLICY, "p.yaml").rules
    found = [
        finding("clock", "web1", Severity.LOW),
        finding("rogue", "web2", Severity.HIGH),
        finding("telnet", "web2", Severity.CRITICAL),
        finding("rogue", "web3", Severity.HIGH),
    ]
    assert todo_groups(found, rules) == [
        ("Rebuild from an approved template", ["web2", "web3"]),
        ("Review: clock", ["web1"]),
    ]
