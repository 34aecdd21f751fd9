"""#10.1: a VM vmwarden holds in quarantine is judged by the NICs it had before quarantine.

Judged as found, every quarantined VM got a fresh critical ``outside-zone`` finding on the
quarantine network, and a VM held by the power-on gate could never pass again.
"""

from __future__ import annotations

from tests.policy.conftest import make_estate, make_vm, nic
from vmwarden.engine.admission_records import vm_from_record
from vmwarden.model import VM, NicOrigin
from vmwarden.policy import admit, evaluate, load_policy


def held(name: str, home: str, **kw: object) -> VM:
    """A pci VM whose only NIC vmwarden moved from ``home`` to the quarantine network."""
    vm = make_vm(name, classification="pci", nics=[nic(network="quarantine", link="down")], **kw)
    vm.nics[0].quarantined_from = NicOrigin(type="network", network=home, portgroup="web")
    return vm


def by_name(findings: list) -> dict[str, dict]:
    return {f.name: f.evidence for f in findings}


def test_outside_zone_judges_a_held_nic_where_it_was(policy_with):
    policy = policy_with("[outside-zone]")
    violator, compliant = held("violator", "prod"), held("compliant", "pci")
    stray = make_vm("stray", classification="pci", nics=[nic(network="quarantine")])
    found = by_name(evaluate(policy, make_estate([violator, compliant, stray])))
    assert found["violator"]["networks"] == ["prod"]  # the finding it had before quarantine
    assert "compliant" not in found  # quarantine itself makes no finding
    # a NIC on the quarantine network that vmwarden did not put there is judged as it is
    assert found["stray"]["networks"] == ["quarantine"]
    # judging changed nothing in the records themselves: the NIC *is* on quarantine
    assert violator.nics[0].network == "quarantine" and violator.nics[0].link == "down"


def test_listing_quarantine_in_the_zone_no_longer_lets_a_held_violator_pass(write_policy):
    text = """\
version: 1
zones:
  pci: {networks: [pci, quarantine], classifications: [pci]}
quarantine: {network: quarantine}
rules:
  - {name: r, resource: vm, severity: critical, filters: [outside-zone], actions: [quarantine]}
"""
    policy = load_policy(write_policy(text))
    found = by_name(evaluate(policy, make_estate([held("violator", "prod")])))
    assert found["violator"]["networks"] == ["prod"]  # still a violator: no release/re-hold flap


def test_value_on_nics_sees_the_pre_quarantine_network(policy_with):
    policy = policy_with("[{type: value, key: nics.0.network, op: eq, value: prod}]")
    found = by_name(evaluate(policy, make_estate([held("violator", "prod"), held("ok", "pci")])))
    assert set(found) == {"violator"}


def test_power_on_gate_condition_judges_held_nics_where_they_were(write_policy):
    text = """\
version: 1
zones:
  pci: {networks: [pci], classifications: [pci]}
quarantine: {network: quarantine}
gate:
  hold: [outside-zone]
"""
    policy = load_policy(write_policy(text))
    violator, compliant = held("violator", "prod"), held("compliant", "pci")
    estate = make_estate([violator, compliant])
    assert admit(policy, compliant, estate).decision == "allow"
    verdict = admit(policy, violator, estate)
    assert verdict.decision == "hold" and verdict.reasons[0]["networks"] == ["prod"]


def test_record_shows_where_the_nic_is_and_where_it_belongs_and_reads_back():
    vm = held("violator", "prod")
    record = vm.to_dict()
    (shown,) = record["nics"]
    assert (shown["network"], shown["link"]) == ("quarantine", "down")
    assert shown["quarantined_from"] == {
        "type": "network",
        "network": "prod",
        "bridge": None,
        "source_dev": None,
        "portgroup": "web",
        "vlan": [],
        "link": "up",
    }
    assert vm_from_record(record).to_dict() == record
    free = make_vm("free").to_dict()
    assert free["nics"][0]["quarantined_from"] is None
