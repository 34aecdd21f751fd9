"""Matching guests' packages against the feed: ecosystems, source names, ranges, severity."""

from __future__ import annotations

import pytest

from tests.vulns.conftest import guest, record
from vmwarden.model import Package
from vmwarden.vulns import VulnDB, VulnMatch


def test_old_openssl_on_debian_12_matches_dsa_and_cve(feed):
    facts = guest(Package("libssl3", "3.0.9-1", source="openssl"), "bash=5.2.15-2+b2")
    assert feed.match(facts) == [
        VulnMatch(
            id="DEBIAN-CVE-2023-5363",
            aliases=(),
            package="openssl",
            installed="3.0.9-1",
            fixed="3.0.11-1~deb12u2",
            severity="high",
            score=7.5,
        ),
        VulnMatch(
            id="DSA-5532-1",
            aliases=(),
            package="openssl",
            installed="3.0.9-1",
            fixed="3.0.11-1~deb12u2",
            severity="high",  # the DSA has none: taken from its related CVE in the feed
            score=7.5,
        ),
    ]


@pytest.mark.parametrize(
    ("installed", "hit"),
    [
        ("3.0.11-1~deb12u1", True),
        ("3.0.11-1~deb12u2", False),  # the fix
        ("3.0.13-1~deb12u1", False),
        ("3.0.11-1", False),  # newer than the bookworm fix (tilde)
    ],
)
def test_fixed_boundary(feed, installed, hit):
    assert bool(feed.match(guest(f"openssl={installed}"))) is hit


def test_source_with_version_and_binary_named_like_source(feed):
    binnmu = Package("libssl3", "3.0.9-1+b1", source="openssl (3.0.9-1)")
    assert {m.package for m in feed.match(guest(binnmu))} == {"openssl"}
    # a binary whose *name* is an advisory's source package, but whose source is another
    other = Package("openssl", "3.0.9-1", source="not-openssl")
    assert feed.match(guest(other)) == []


def test_release_selects_the_ecosystem(feed):
    assert len(feed.match(guest("openssl=3.0.11-1~deb12u2", os_version="13"))) == 1
    assert feed.match(guest("openssl=3.0.12-1", os_version="13")) == []
    assert feed.match(guest("openssl=3.0.9-1", os_version="11")) == []
    assert not feed.covers(guest(os_version="11"))
    assert feed.covers(guest(os_version="12.7"))  # point release → 12
    assert feed.match(guest("openssl=3.0.9-1", os_name="ubuntu", os_version="22.04")) == []


@pytest.mark.parametrize(
    ("version", "fixed"),
    [
        ("2.10-1", "2.10-3+deb12u9"),
        ("2.10-3+deb12u8", "2.10-3+deb12u9"),
        ("2.12-4", None),  # last_affected: no fix known
        ("1:2.0~rc1", "1:2.0"),
        ("1:2.0~rc2", "1:2.0"),
    ],
)
def test_multiple_intervals_epochs_and_tildes(feed, version, fixed):
    (hit,) = feed.match(guest(f"hello={version}"))
    assert (hit.id, hit.fixed, hit.severity, hit.score) == ("VMW-TEST-0001", fixed, "critical", 10)
    assert hit.aliases == ("CVE-0000-0001",)


@pytest.mark.parametrize("version", ["2.9-1", "2.10-3+deb12u9", "2.11-1", "2.12-5", "1:2.0"])
def test_outside_every_interval(feed, version):
    assert feed.match(guest(f"hello={version}")) == []


def test_rpm_almalinux_with_epochs(feed):
    def alma(*pkgs: Package):
        return guest(*pkgs, os_name="almalinux", os_version="9.3")

    old = alma(Package("openssl-libs", "1:3.0.7-24.el9", manager="rpm"))
    (hit,) = feed.match(old)
    assert (hit.id, hit.package, hit.fixed) == (
        "ALSA-2024:0310",
        "openssl-libs",
        "1:3.0.7-25.el9_3",
    )
    assert hit.severity == "medium"  # from the "Moderate:" summary
    assert feed.match(alma(Package("openssl-libs", "1:3.0.7-25.el9_3", manager="rpm"))) == []
    # rpm advisories name binary packages: the source rpm does not match
    assert feed.match(alma(Package("libfoo", "1.0-1.el9", source="openssl", manager="rpm"))) == []


def test_ubuntu_alpine_and_red_hat_ecosystems():
    db = VulnDB()
    db.add_raw(
        record(
            "Ubuntu:22.04:LTS", "curl", {"introduced": "0"}, {"fixed": "7.81.0-1ubuntu1.15"}, id="U"
        ),
        "u",
    )
    db.add_raw(
        record("Alpine:v3.18", "openssl", {"introduced": "0"}, {"fixed": "3.1.4-r0"}, id="A"), "a"
    )
    db.add_raw(
        record(
            "Red Hat:enterprise_linux:9::baseos",
            "sudo",
            {"introduced": "0"},
            {"fixed": "1.9.5p2-10.el9_3"},
            id="R",
        ),
        "r",
    )
    assert db.ecosystems() == ["alpine:3.18", "rhel:9", "ubuntu:22.04"]
    curl = Package("libcurl4", "7.81.0-1ubuntu1.14", source="curl")
    assert [m.id for m in db.match(guest(curl, os_name="ubuntu", os_version="22.04"))] == ["U"]
    ssl = Package("libcrypto3", "3.1.3-r0", source="openssl", manager="apk")
    assert [m.id for m in db.match(guest(ssl, os_name="alpine", os_version="3.18.4"))] == ["A"]
    sudo = Package("sudo", "1.9.5p2-9.el9", manager="rpm")
    assert [m.id for m in db.match(guest(sudo, os_name="rhel", os_version="9.2"))] == ["R"]


def test_explicit_versions_list_and_semver_ranges():
    db = VulnDB()
    rec = record("Debian:12", "zlib", {"introduced": "0"}, {"fixed": "1:1.2.13.dfsg-1"})
    rec["affected"][0]["versions"] = ["1:1.3.dfsg-9"]
    db.add_raw(rec, "v")
    zlib = Package("zlib1g", "1:1.3.dfsg-9", source="zlib")
    (hit,) = db.match(guest(zlib))
    assert hit.fixed is None
    semver = record("Debian:12", "rustc", {"introduced": "1.70.0"}, {"fixed": "1.72.1"}, id="S")
    semver["affected"][0]["ranges"][0]["type"] = "SEMVER"
    db.add_raw(semver, "s")
    assert [m.id for m in db.match(guest("rustc=1.71.0"))] == ["S"]


def test_unknown_os_or_packages_match_nothing(feed):
    assert feed.match(guest("openssl=3.0.9-1", os_name=None)) == []
    facts = guest(os_name="debian")
    facts.packages = None
    assert feed.match(facts) == []


def test_matches_are_memoised_per_version(feed):
    facts = guest("openssl=3.0.9-1")
    first = feed.match(facts)
    assert feed.match(guest("openssl=3.0.9-1")) == first
    assert any(("openssl", "3.0.9-1") in per_os for per_os in feed._cache.values())
