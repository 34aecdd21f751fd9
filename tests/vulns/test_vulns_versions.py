"""univers comparisons as vmwarden uses them: dpkg epochs and tildes, rpm, apk."""

from __future__ import annotations

import pytest

from vmwarden.vulns import MANAGER_VERSIONS, parse_version


def less(manager: str, a: str, b: str) -> bool:
    cls = MANAGER_VERSIONS[manager]
    va, vb = parse_version(cls, a), parse_version(cls, b)
    assert va is not None and vb is not None
    return va < vb


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1:2.0~rc1", "1:2.0"),  # a tilde sorts before the release
        ("2.0", "1:0.1"),  # any epoch beats none
        ("3.0.11-1~deb12u1", "3.0.11-1~deb12u2"),
        ("3.0.11-1~deb12u2", "3.0.11-1"),  # stable's backport is older than the upload
        ("3.0.9-1", "3.0.11-1~deb12u2"),  # numeric, not lexical
        ("1.2.13.dfsg-1", "1:1.2.13.dfsg-1"),
        ("2.36-9+deb12u3", "2.36-9+deb12u4"),
    ],
)
def test_dpkg_order(a, b):
    assert less("dpkg", a, b) and not less("dpkg", b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("3.0.7-24.el9", "3.0.7-25.el9_3"),
        ("3.0.7-25.el9_3", "1:3.0.7-24.el9"),  # the epoch wins
        ("1:3.0.7-24.el9", "1:3.0.7-25.el9_3"),
        ("2.9-1.el9", "2.10-1.el9"),
    ],
)
def test_rpm_order(a, b):
    assert less("rpm", a, b) and not less("rpm", b, a)


def test_apk_order():
    assert less("apk", "3.1.4-r5", "3.1.4-r6")
    assert less("apk", "3.0.8-r0", "3.0.10-r0")


def test_unparseable_versions_are_none():
    assert parse_version(MANAGER_VERSIONS["dpkg"], "not a version!") is None
    assert parse_version(MANAGER_VERSIONS["rpm"], "") is None
