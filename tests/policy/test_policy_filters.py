"""One test per filter: match, no-match and unknown, on real model records."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.policy.conftest import (
    APPROVED,
    NOW,
    ROGUE,
    disk,
    facts,
    judge,
    make_estate,
    make_vm,
    nic,
)
from vmwarden.model import Image, Package, State
from vmwarden.policy import NO_MATCH, Verdict
from vmwarden.policy.context import Context

# --- not-approved-template -------------------------------------------------------------------


def test_not_approved_template(policy_with):
    policy = policy_with("[not-approved-template]")
    vms = [
        make_vm("clean", disks=[disk("vda", None, APPROVED)]),
        make_vm("rogue", disks=[disk("vda", APPROVED), disk("vdb", "sha256:x", ROGUE)]),
        make_vm("diskless", disks=[]),
        make_vm(
            "cdrom-only",
            disks=[disk("hda", ROGUE, device="cdrom"), disk("fda", ROGUE, device="floppy")],
        ),
        make_vm("unreadable", disks=[disk("vda", None, None)]),
        make_vm("broken", disks=[disk("vda", None)]),
    ]
    vms[5].disks[0].chain[-1].error = "permission denied"
    got = judge(policy, vms)
    assert got["clean"] is NO_MATCH
    assert got["rogue"] == Verdict.match(
        disk="vdb", root="/var/lib/libvirt/images/vdb-1.qcow2", digest=ROGUE
    )
    assert got["diskless"] is NO_MATCH
    assert got["cdrom-only"] is NO_MATCH
    assert got["unreadable"].is_unknown and "digest not computed" in got["unreadable"].reason
    assert got["broken"].is_unknown and "permission denied" in got["broken"].reason


def test_not_approved_template_uses_estate_catalog_too(policy_with):
    policy = policy_with("[not-approved-template]")
    vm = make_vm("approved-by-cli", disks=[disk("vda", ROGUE)])
    estate = make_estate([vm])
    estate.catalog[ROGUE] = "approved-later"
    assert policy.rules[0].filter.match(vm, Context(estate, policy)) is NO_MATCH


# --- unregistered ---------------------------------------------------------------------------


def test_unregistered(policy_with):
    got = judge(
        policy_with("[unregistered]"),
        [
            make_vm("yes", registered=True),
            make_vm("no", registered=False),
            make_vm("absent", registered=None),
        ],
    )
    assert got["yes"] is NO_MATCH
    assert got["no"] == Verdict.match(registered=False)
    assert got["absent"] == Verdict.match(registered=None)


# --- outside-zone ---------------------------------------------------------------------------


def test_outside_zone(policy_with):
    got = judge(
        policy_with("[outside-zone]"),
        [
            make_vm("in-zone", classification="pci", nics=[nic(network="pci")]),
            make_vm("bridge-in-zone", classification="pci", nics=[nic(network=None, bridge="pci")]),
            make_vm(
                "outside", classification="pci", nics=[nic(network="pci"), nic(network="prod")]
            ),
            make_vm("no-zone", classification="secret", nics=[nic(network="prod")]),
            make_vm("unclassified", classification=None, nics=[nic(network="dmz")]),
            make_vm(
                "direct",
                classification="pci",
                nics=[nic(network=None, type="direct", source_dev="eth0")],
            ),
        ],
    )
    assert got["in-zone"] is NO_MATCH
    assert got["bridge-in-zone"] is NO_MATCH
    assert got["outside"] == Verdict.match(classification="pci", zone="pci", networks=["prod"])
    assert got["no-zone"].matched
    assert got["no-zone"].evidence["reason"] == "no zone for classification"
    assert got["unclassified"] is NO_MATCH
    assert got["direct"].is_unknown and "no network or bridge" in got["direct"].reason


def test_outside_zone_limited_to_zones(policy_with):
    got = judge(
        policy_with("[{type: outside-zone, zones: [internal]}]"),
        [
            make_vm("pci-outside", classification="pci", nics=[nic(network="prod")]),
            make_vm("internal-outside", classification="internal", nics=[nic(network="pci")]),
            make_vm("unzoned", classification="secret", nics=[nic(network="pci")]),
        ],
    )
    assert got["pci-outside"] is NO_MATCH
    assert got["internal-outside"].matched
    assert got["unzoned"] is NO_MATCH


# --- mixed-classification-on-host -----------------------------------------------------------


def test_mixed_classification_on_host_flags_every_vm_involved(policy_with):
    got = judge(
        policy_with("[mixed-classification-on-host]"),
        [
            make_vm("pci-a", host="h1", classification="pci"),
            make_vm("internal-off", host="h1", classification="internal", state=State.SHUTOFF),
            make_vm("plain", host="h1", classification=None),
            make_vm("pci-b", host="h2", classification="pci"),
            make_vm("pci-c", host="h2", classification="pci"),
        ],
    )
    evidence = {"host": "h1", "classifications": ["internal", "pci"]}
    assert got["pci-a"] == Verdict.match(**evidence)
    assert got["internal-off"] == Verdict.match(**evidence)
    assert got["plain"] is NO_MATCH
    assert got["pci-b"] is NO_MATCH and got["pci-c"] is NO_MATCH


# --- duplicate-mac --------------------------------------------------------------------------


def test_duplicate_mac_flags_every_vm_involved(policy_with):
    got = judge(
        policy_with("[duplicate-mac]"),
        [
            make_vm("a", host="h1", nics=[nic("52:54:00:AA:BB:CC")]),
            make_vm("b", host="h2", nics=[nic("52:54:00:aa:bb:cc")]),
            make_vm("c", host="h3", nics=[nic("52:54:00:aa:bb:cc"), nic("52:54:00:00:00:99")]),
            make_vm("unique", nics=[nic("52:54:00:00:00:01")]),
            make_vm("two-nics-same-mac", nics=[nic("52:54:00:00:00:02"), nic("52:54:00:00:00:02")]),
            make_vm("no-mac", nics=[nic(None)]),
        ],
    )
    evidence = {"mac": "52:54:00:aa:bb:cc", "vms": ["h1/a", "h2/b", "h3/c"]}
    assert got["a"] == got["b"] == got["c"] == Verdict.match(**evidence)
    assert got["unique"] is NO_MATCH
    assert got["two-nics-same-mac"] is NO_MATCH
    assert got["no-mac"].is_unknown


# --- dormant --------------------------------------------------------------------------------


def test_dormant(policy_with):
    old, recent = NOW - timedelta(days=45), NOW - timedelta(days=3)
    got = judge(
        policy_with("[{type: dormant, days: 30}]"),
        [
            make_vm("history-old", state=State.SHUTOFF, state_since=old),
            make_vm("history-recent", state=State.SHUTOFF, state_since=recent),
            make_vm("running", state=State.RUNNING, state_since=old),
            make_vm(
                "disk-old",
                state=State.SHUTOFF,
                disks=[
                    disk("vda", mtime=old.replace(tzinfo=None)),
                    disk("hdc", mtime=recent, device="cdrom"),
                ],
            ),
            make_vm(
                "disk-recent",
                state=State.SHUTOFF,
                disks=[disk("vda", mtime=old), disk("vdb", mtime=recent)],
            ),
            make_vm("no-clue", state=State.SHUTOFF, disks=[disk("vda")]),
        ],
    )
    assert got["history-old"] == Verdict.match(days_off=45, since=old.isoformat(), basis="history")
    assert got["history-recent"] is NO_MATCH
    assert got["running"] is NO_MATCH
    assert got["disk-old"].matched and got["disk-old"].evidence["basis"] == "disk mtime"
    assert got["disk-recent"] is NO_MATCH
    assert got["no-clue"].is_unknown


# --- package --------------------------------------------------------------------------------


def test_package(policy_with):
    policy = policy_with("[{type: package, installed: [telnetd], missing: [chrony]}]")
    got = judge(
        policy,
        [
            make_vm("bad", guest=facts("telnetd=0.17-44", "chrony=4.3-2")),
            make_vm("good", guest=facts("chrony=4.3-2")),
            make_vm("no-chrony", guest=facts("bash=5.2.15-2+b2")),
            make_vm("source-only", guest=facts(Package("telnet", "0.17", source="telnetd"))),
            make_vm("uninspected", guest=None),
            make_vm("no-db", guest=facts(packages=None)),
        ],
    )
    assert got["bad"] == Verdict.match(packages=["telnetd"])
    assert got["good"] is NO_MATCH
    assert got["no-chrony"] == Verdict.match(missing=["chrony"])
    assert got["source-only"] == Verdict.match(missing=["chrony"])  # binary names only
    assert got["uninspected"] == Verdict.unknown("not inspected")
    assert got["no-db"] == Verdict.unknown("inspection found no package database")


def test_package_on_images(policy_with):
    policy = policy_with("[{type: package, installed: [telnetd]}]", resource="image")
    images = [
        Image(path="/i/a.qcow2", host="h1", guest=facts("telnetd=0.17-44")),
        Image(path="/i/b.qcow2", host="h1", guest=None),
    ]
    got = judge(policy, [], images)
    assert got["/i/a.qcow2"] == Verdict.match(packages=["telnetd"])
    assert got["/i/b.qcow2"] == Verdict.unknown("not inspected")


# --- value ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("{type: value, key: meta.owner, value: alice}", {"meta.owner": "alice"}),
        ("{type: value, key: meta.owner, op: ne, value: alice}", None),
        ("{type: value, key: memory_kib, op: ge, value: 2097152}", {"memory_kib": 2097152}),
        ("{type: value, key: memory_kib, op: lt, value: 1024}", None),
        ("{type: value, key: vcpus, op: in, value: [1, 2]}", {"vcpus": 2}),
        ("{type: value, key: nics.0.network, op: eq, value: prod}", {"nics.0.network": "prod"}),
        (
            "{type: value, key: nics.0.addresses, op: contains, value: 10.0.0.5}",
            {"nics.0.addresses": ["10.0.0.5"]},
        ),
        ("{type: value, key: name, op: regex, value: '^web'}", {"name": "web01"}),
        ("{type: value, key: state, op: eq, value: running}", {"state": "running"}),
        (
            "{type: value, key: first_seen, op: lt, value: '2026-01-01'}",
            {"first_seen": "2025-06-01T00:00:00+00:00"},
        ),
        ("{type: value, key: guest.os_name, op: eq, value: debian}", {"guest.os_name": "debian"}),
        (
            "{type: value, key: guest.packages.0.version, op: regex, value: '^3[.]0'}",
            {"guest.packages.0.version": "3.0.11-1~deb12u2"},
        ),
        ("{type: value, key: guest.sshd.permitrootlogin, op: eq, value: 'no'}", None),
        ("{type: value, key: meta.template, op: eq, value: null}", {"meta.template": None}),
        ("{type: value, key: meta.owner, op: ne, value: null}", {"meta.owner": "alice"}),
        ("{type: value, key: meta.owner, op: eq, value: null}", None),
    ],
)
def test_value_ops(policy_with, flt, expected):
    from datetime import UTC, datetime

    vm = make_vm(
        "web01",
        first_seen=datetime(2025, 6, 1, tzinfo=UTC),
        guest=facts("openssl=3.0.11-1~deb12u2", sshd={"permitrootlogin": "yes"}),
    )
    vm.nics[0].addresses = ["10.0.0.5"]
    got = judge(policy_with(f"[{flt}]"), [vm])["web01"]
    assert got == (NO_MATCH if expected is None else Verdict.match(**expected))


def test_value_none_and_type_mismatch_are_unknown(policy_with):
    vm = make_vm("web01", owner=None)
    unknown = judge(policy_with("[{type: value, key: meta.owner, value: alice}]"), [vm])["web01"]
    assert unknown == Verdict.unknown("'meta.owner' is missing or null")
    out_of_range = judge(
        policy_with("[{type: value, key: nics.5.mac, op: regex, value: x}]"), [vm]
    )["web01"]
    assert out_of_range.is_unknown
    mismatch = judge(policy_with("[{type: value, key: name, op: gt, value: 3}]"), [vm])["web01"]
    assert mismatch.is_unknown and "cannot apply 'gt'" in mismatch.reason


def test_value_on_images(policy_with):
    images = [
        Image(path="/i/big.qcow2", host="h1", size=10),
        Image(path="/i/small", host="h1", size=1),
    ]
    got = judge(
        policy_with("[{type: value, key: size, op: gt, value: 5}]", resource="image"), [], images
    )
    assert got["/i/big.qcow2"] == Verdict.match(size=10)
    assert got["/i/small"] is NO_MATCH


def test_value_key_check_knows_guest_facts(policy_with):
    from vmwarden.errors import PolicyError

    policy_with("[{type: value, key: guest.os_version, op: eq, value: '12'}]")
    policy_with("[{type: value, key: guest.users.0.shell, op: eq, value: /bin/sh}]")
    policy_with("[{type: value, key: guest.encrypted, op: eq, value: false}]", resource="image")
    with pytest.raises(PolicyError, match=r"'guest' has no field 'os'"):
        policy_with("[{type: value, key: guest.os.family, op: eq, value: debian}]")
    with pytest.raises(PolicyError, match=r"'guest\.packages' is a list"):
        policy_with("[{type: value, key: guest.packages.name, op: eq, value: x}]")
