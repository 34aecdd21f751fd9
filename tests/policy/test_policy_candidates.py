"""Filters that name their ``candidates`` judge only those: evaluation must still give
exactly the findings of the plain loop (every rule's ``match`` on every resource).

The estate is varied on purpose: the cases where a cross-VM filter's index alone cannot
clear a VM (not inspected, diskless, values unreadable, a NIC without a MAC, no host, no
classification, the same VM listed twice) are the ones a wrong candidate list would drop.
"""

from __future__ import annotations

import dataclasses
import random

from tests.policy.conftest import BASE_POLICY, disk, facts, make_estate, make_vm, nic
from vmwarden.model import VM, Finding, HostKey, User
from vmwarden.policy import evaluate, parse_policy
from vmwarden.policy.context import Context
from vmwarden.policy.evaluate import RESOURCES
from vmwarden.policy.filters import clones, mac
from vmwarden.policy.rules import Policy

FILTERS = [
    "duplicate-mac",
    "shared-password-hash",
    "duplicate-ssh-host-key",
    "duplicate-machine-id",
    "mixed-classification-on-host",
    "{and: [duplicate-mac, shared-password-hash]}",
    "{and: [unregistered, duplicate-ssh-host-key]}",
    "{or: [duplicate-machine-id, mixed-classification-on-host]}",
    "{or: [duplicate-mac, unregistered]}",
    "{not: duplicate-mac}",
]


def policy() -> Policy:
    rules = "".join(
        f"  - {{name: r{i}, resource: vm, severity: low, filters: [{f}]}}\n"
        for i, f in enumerate(FILTERS)
    )
    return parse_policy(BASE_POLICY + "rules:\n" + rules)


def varied_vm(i: int, rnd: random.Random) -> VM:
    """One VM drawn from every case the cross-VM filters treat apart."""
    pick = rnd.random
    users = (
        None
        if pick() < 0.1
        else [
            User(
                "root",
                password=rnd.choice(["hash", "locked", "empty"]),
                password_fingerprint=f"p{rnd.randrange(40)}",
            ),
            User("u", password="hash", password_fingerprint=rnd.choice([None, f"q{i}"])),
        ]
    )
    keys = None if pick() < 0.1 else [HostKey("ssh-ed25519", f"SHA256:k{rnd.randrange(60)}")]
    machine_id = rnd.choice([None, "", "uninitialized", f"M{rnd.randrange(50)}", f"m-{i}"])
    guest = facts(users=users, ssh_host_keys=keys, machine_id=machine_id)
    macs = [
        rnd.choice(
            [
                None,
                f"52:54:00:00:00:{rnd.randrange(200):02X}",
                f"52:54:00:01:{i // 256:02x}:{i % 256:02x}",
            ]
        )
        for _ in range(rnd.randrange(3))
    ]
    return make_vm(
        f"vm{i}",
        host=rnd.choice(["h1", "h2", "h3", ""]),
        classification=rnd.choice([None, "pci", "internal", "public"]),
        registered=rnd.choice([True, False, None]),
        nics=[nic(mac=m) for m in macs],
        disks=rnd.choice([[disk()], [disk()], [], [disk(device="cdrom")]]),
        guest=None if pick() < 0.15 else guest,
    )


def plain(policy: Policy, vms: list[VM]) -> list[Finding]:
    """The loop ``evaluate`` replaces: every rule's ``match`` on every resource, in order."""
    ctx = Context(make_estate(vms), policy)
    for rule in policy.rules:
        rule.filter.prepare(ctx)
    resources = RESOURCES["vm"](ctx)
    found = []
    for rule in policy.rules:
        for (rid, name, host), vm in resources:
            verdict = rule.filter.match(vm, ctx)
            if verdict.fires:
                found.append(
                    Finding(
                        rule.name,
                        "vm",
                        rid,
                        name,
                        host,
                        rule.severity,
                        verdict.finding_evidence(),
                        tuple(rule.action_names),
                    )
                )
    return found


def test_evaluation_over_candidates_gives_the_plain_loops_findings():
    loaded = policy()
    for seed in range(5):
        rnd = random.Random(seed)
        vms = [varied_vm(i, rnd) for i in range(300)]
        vms.append(vms[7])  # the same VM listed twice is no clone of itself
        expected = plain(loaded, vms)
        assert evaluate(loaded, make_estate(vms)) == expected
        assert {f.rule for f in expected} == {f"r{i}" for i in range(len(FILTERS))}


def test_cross_vm_filters_narrow_to_their_candidates():
    """The shortcut is taken: on an estate of mostly unique values, few VMs are candidates."""
    loaded = policy()
    vms = [
        make_vm(
            f"u{i}",
            host=f"h{i % 3}",
            classification="pci",
            guest=facts(users=[], ssh_host_keys=[], machine_id=f"m{i}"),
        )
        for i in range(100)
    ]
    vms[1].nics[0].mac = vms[0].nics[0].mac
    ctx = Context(make_estate(vms), loaded)
    resources = RESOURCES["vm"](ctx)
    sizes = {}
    for rule in loaded.rules:
        rule.filter.prepare(ctx)
        found = rule.filter.candidates(resources, ctx)
        sizes[rule.name] = None if found is None else len(found)
    assert sizes["r0"] == 2  # duplicate-mac: the two VMs sharing one
    assert sizes["r1"] == sizes["r2"] == sizes["r3"] == 0
    assert sizes["r4"] == 0  # one classification per host
    assert sizes["r5"] == 0 and sizes["r7"] == 0  # and: narrowed; or: union of both
    assert sizes["r6"] == 0 and sizes["r8"] is None and sizes["r9"] is None


def test_indexes_built_elsewhere_give_the_plain_loops_findings():
    """A streaming sweep hands evaluation indexes it built (``evaluate(indexes=)``), which
    do not know their unread VMs: the candidates then come from a walk over the VMs."""
    loaded = policy()
    rnd = random.Random(11)
    vms = [varied_vm(i, rnd) for i in range(300)]
    elsewhere = Context(make_estate(vms), loaded)
    indexes = {"duplicate-macs": mac.duplicated_macs(elsewhere)}
    for key, values in (
        ("duplicate-password-hashes", clones.password_hashes),
        ("duplicate-ssh-host-keys", clones.host_keys),
        ("duplicate-machine-ids", clones.machine_ids),
    ):
        built = clones.duplicates(values)(elsewhere)
        assert built.unread  # the varied estate has VMs whose values were not read
        indexes[key] = dataclasses.replace(built, unread=None)
    assert evaluate(loaded, make_estate(vms), indexes=indexes) == plain(loaded, vms)
