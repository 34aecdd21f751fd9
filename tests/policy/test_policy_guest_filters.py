"""Filters over offline guest facts: match, no-match and unknown for each."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.policy.conftest import facts, judge, make_vm
from vmwarden.model import Image, Package, User
from vmwarden.policy import NO_MATCH, Verdict
from vmwarden.vulns import VulnDB

FEED = Path(__file__).parents[1] / "vulns" / "data"


@pytest.fixture(scope="module")
def feed() -> VulnDB:
    return VulnDB.load(FEED)


# --- service --------------------------------------------------------------------------------


def test_service(policy_with):
    policy = policy_with(
        "[{type: service, running: [ssh], enabled: [telnet.socket], disabled: [auditd]}]"
    )
    got = judge(
        policy,
        [
            make_vm("bad", guest=facts(services_enabled=["ssh.service", "telnet.socket"])),
            make_vm("good", guest=facts(services_enabled=["auditd.service", "cron.service"])),
            make_vm("no-auditd", guest=facts(services_enabled=[])),
            make_vm("unread", guest=facts(services_enabled=None)),
            make_vm("uninspected", guest=None),
        ],
    )
    assert got["bad"] == Verdict.match(
        running=["ssh"],
        basis="enabled at boot (read offline)",
        enabled=["telnet.socket"],
        disabled=["auditd"],
    )
    assert got["good"] is NO_MATCH
    assert got["no-auditd"] == Verdict.match(disabled=["auditd"])
    assert got["unread"] == Verdict.unknown("enabled services could not be read")
    assert got["uninspected"] == Verdict.unknown("not inspected")


def test_service_needs_a_list(policy_with):
    from vmwarden.errors import PolicyError

    with pytest.raises(PolicyError, match="give 'running', 'enabled' or 'disabled'"):
        policy_with("[{type: service}]")


# --- no-time-sync ---------------------------------------------------------------------------


def test_no_time_sync(policy_with):
    got = judge(
        policy_with("[no-time-sync]"),
        [
            make_vm("chrony", guest=facts(time_sync={"chrony": True, "ntp": False})),
            make_vm("timesyncd-unit", guest=facts(services_enabled=["systemd-timesyncd.service"])),
            make_vm(
                "none",
                guest=facts(
                    time_sync={"chrony": False, "ntp": False, "timesyncd": False},
                    services_enabled=["cron.service"],
                ),
            ),
            make_vm("configured-only", guest=facts(time_sync={"servers": ["pool.ntp.org"]})),
            make_vm("unread", guest=facts()),
            make_vm("uninspected", guest=None),
        ],
    )
    assert got["chrony"] is NO_MATCH
    assert got["timesyncd-unit"] is NO_MATCH
    assert got["none"] == Verdict.match(time_sync="none of chrony, ntp, systemd-timesyncd enabled")
    assert got["configured-only"].matched
    assert got["unread"].is_unknown
    assert got["uninspected"] == Verdict.unknown("not inspected")


# --- ssh-root-login -------------------------------------------------------------------------

SSHD = "openssh-server=1:9.2p1-2+deb12u3"


def test_ssh_root_login(policy_with):
    vms = [
        make_vm("yes", guest=facts(SSHD, sshd={"permitrootlogin": "yes"})),
        make_vm("key", guest=facts(SSHD, sshd={"permitrootlogin": "prohibit-password"})),
        make_vm("old-key", guest=facts(SSHD, sshd={"permitrootlogin": "without-password"})),
        make_vm("default", guest=facts(SSHD, sshd={})),
        make_vm("no", guest=facts(SSHD, sshd={"permitrootlogin": "no"})),
        make_vm("no-server", guest=facts("openssh-client=1:9.2p1-2", sshd={})),
        make_vm("unread", guest=facts(SSHD, sshd=None)),
        make_vm("nothing-read", guest=facts(packages=None, sshd=None)),
        make_vm("garbage", guest=facts(SSHD, sshd={"permitrootlogin": "maybe"})),
        make_vm("uninspected", guest=None),
    ]
    got = judge(policy_with("[ssh-root-login]"), vms)
    assert got["yes"] == Verdict.match(permit_root_login="yes", default=False)
    assert got["key"] is got["old-key"] is got["default"] is NO_MATCH
    assert got["no"] is NO_MATCH
    assert got["no-server"] is NO_MATCH
    assert got["unread"] == Verdict.unknown("sshd settings could not be read")
    assert got["nothing-read"].is_unknown
    assert got["garbage"].is_unknown
    assert got["uninspected"] == Verdict.unknown("not inspected")

    strict = judge(policy_with("[{type: ssh-root-login, allow_key: false}]"), vms)
    assert strict["key"] == Verdict.match(permit_root_login="prohibit-password", default=False)
    assert strict["old-key"].matched
    assert strict["default"] == Verdict.match(permit_root_login="prohibit-password", default=True)
    assert strict["no"] is NO_MATCH


# --- stale-patches --------------------------------------------------------------------------


def test_stale_patches(policy_with):
    policy = policy_with(
        '[{type: stale-patches, baseline: {openssl: "3.0.11-1~deb12u2", '
        'hello: "1:2.0", openssl-libs: "1:3.0.7-25.el9_3"}}]'
    )
    rpm = "rpm"
    got = judge(
        policy,
        [
            make_vm("old", guest=facts("openssl=3.0.9-1", "bash=5.2.15-2")),
            make_vm("tilde", guest=facts("openssl=3.0.11-1~deb12u1")),
            make_vm("current", guest=facts("openssl=3.0.11-1~deb12u2")),
            make_vm("newer", guest=facts("openssl=3.0.13-1~deb12u1")),
            make_vm("rc", guest=facts("hello=1:2.0~rc1")),
            make_vm("no-epoch", guest=facts("hello=2.10-3")),  # epoch 0 < epoch 1
            make_vm("absent", guest=facts("bash=5.2.15-2")),
            make_vm(
                "rpm-old",
                guest=facts(
                    Package("openssl-libs", "1:3.0.7-24.el9", manager=rpm), os_name="almalinux"
                ),
            ),
            make_vm(
                "rpm-new",
                guest=facts(
                    Package("openssl-libs", "1:3.0.7-27.el9", manager=rpm), os_name="almalinux"
                ),
            ),
            make_vm("garbage", guest=facts(Package("openssl", "", manager="dpkg"))),
            make_vm("no-db", guest=facts(packages=None)),
            make_vm("uninspected", guest=None),
        ],
    )
    assert got["old"] == Verdict.match(
        packages=[{"name": "openssl", "installed": "3.0.9-1", "baseline": "3.0.11-1~deb12u2"}]
    )
    assert got["tilde"].matched
    assert got["current"] is NO_MATCH and got["newer"] is NO_MATCH
    assert got["rc"].matched
    assert got["no-epoch"].matched
    assert got["absent"] is NO_MATCH
    assert got["rpm-old"].matched and got["rpm-new"] is NO_MATCH
    assert got["garbage"].is_unknown and "cannot compare openssl" in got["garbage"].reason
    assert got["no-db"].is_unknown
    assert got["uninspected"] == Verdict.unknown("not inspected")


def test_stale_patches_on_a_dormant_image(policy_with):
    policy = policy_with(
        '[{type: stale-patches, baseline: {openssl: "3.0.11-1~deb12u2"}}]', resource="image"
    )
    image = Image(path="/srv/old.qcow2", host="h1", kind="orphaned", guest=facts("openssl=3.0.9-1"))
    assert judge(policy, [], [image])["/srv/old.qcow2"].matched


# --- expired-account ------------------------------------------------------------------------


def test_expired_account(policy_with):
    # NOW is 2026-11-23
    users = [
        User("alice", password="hash", expires="2026-01-01"),
        User("bob", password="hash", last_change="2026-01-01", max_days=90),
        User("carol", password="hash", last_change="2026-11-01", max_days=90, expires="2027-01-01"),
        User("daemon", password="locked", expires="2001-01-01"),
        User("forever", password="hash", last_change="2001-01-01", max_days=99999),
        User("today", password="empty", expires="2026-11-23"),
    ]
    got = judge(
        policy_with("[expired-account]"),
        [
            make_vm("mixed", guest=facts(users=users)),
            make_vm("fine", guest=facts(users=users[2:5])),
            make_vm("bad-date", guest=facts(users=[User("x", password="hash", expires="soon")])),
            make_vm("unread", guest=facts(users=None)),
            make_vm("uninspected", guest=None),
        ],
    )
    assert got["mixed"] == Verdict.match(
        accounts=[
            {"user": "alice", "reason": "account expired", "expires": "2026-01-01"},
            {
                "user": "bob",
                "reason": "password max age exceeded",
                "last_change": "2026-01-01",
                "max_days": 90,
                "password_expired": "2026-04-01",
            },
            {"user": "today", "reason": "account expired", "expires": "2026-11-23"},
        ]
    )
    assert got["fine"] is NO_MATCH  # carol is within both limits, daemon is locked
    assert got["bad-date"].is_unknown and "unreadable shadow date" in got["bad-date"].reason
    assert got["unread"] == Verdict.unknown("users could not be read")
    assert got["uninspected"] == Verdict.unknown("not inspected")


# --- vulnerable -----------------------------------------------------------------------------


def test_vulnerable(policy_with, feed):
    policy = policy_with("[{type: vulnerable, severity: high}]")
    vms = [
        make_vm(
            "old-openssl",
            guest=facts(Package("libssl3", "3.0.9-1", source="openssl"), "openssl=3.0.9-1"),
        ),
        make_vm("patched", guest=facts("openssl=3.0.11-1~deb12u2")),
        make_vm("other-release", guest=facts("openssl=3.0.9-1", os_version="13")),
        make_vm("uncovered", guest=facts("openssl=1.1.1", os_name="fedora", os_version="40")),
        make_vm("no-db", guest=facts(packages=None)),
        make_vm("uninspected", guest=None),
    ]
    got = judge(policy, vms, vulns=feed)
    old = got["old-openssl"]
    assert old.matched and old.evidence["count"] == 2
    assert [v["id"] for v in old.evidence["vulnerabilities"]] == [
        "DEBIAN-CVE-2023-5363",
        "DSA-5532-1",
    ]
    dsa = old.evidence["vulnerabilities"][1]
    assert dsa == {
        "id": "DSA-5532-1",
        "aliases": [],
        "package": "openssl",
        "installed": "3.0.9-1",
        "fixed": "3.0.11-1~deb12u2",
        "severity": "high",  # from its related CVE's record in the same feed
        "score": 7.5,
    }
    assert got["patched"] is NO_MATCH
    assert got["other-release"].matched  # Debian:13 range: fixed in 3.0.12-1
    assert got["uncovered"] == Verdict.unknown(
        "the vulnerability feed has no advisories for fedora 40"
    )
    assert got["no-db"].is_unknown
    assert got["uninspected"] == Verdict.unknown("not inspected")

    no_feed = judge(policy, vms[:1])
    assert (
        no_feed["old-openssl"].is_unknown
        and "no vulnerability feed" in no_feed["old-openssl"].reason
    )

    critical = judge(policy_with("[{type: vulnerable, severity: critical}]"), vms, vulns=feed)
    assert critical["old-openssl"] is NO_MATCH  # 7.5 is high


def test_vulnerable_unscored_advisories(policy_with):
    db = VulnDB()
    db.add_raw(
        {
            "id": "DSA-0000-1",
            "affected": [
                {
                    "package": {"ecosystem": "Debian:12", "name": "zlib"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
                }
            ],
        },
        "inline",
    )
    vm = make_vm("z", guest=facts(Package("zlib1g", "1:1.2.13.dfsg-1", source="zlib")))
    got = judge(policy_with("[{type: vulnerable, severity: critical}]"), [vm], vulns=db)
    assert got["z"].matched and got["z"].evidence["vulnerabilities"][0]["severity"] is None
    strict = "[{type: vulnerable, severity: critical, unscored: false}]"
    assert judge(policy_with(strict), [vm], vulns=db)["z"] is NO_MATCH
