"""Native dpkg version keys agree with dpkg itself and with univers, on this machine's packages.

The versions are every ``Version:`` of this machine's dpkg status file plus hand-picked edge
cases (tildes, epochs, leading zeros, letters vs punctuation, several hyphens, huge numbers).
Sorting them by key and asking ``dpkg --compare-versions`` about each adjacent pair proves the
whole order: dpkg's order is total, so agreeing on every neighbour means agreeing everywhere.
"""

from __future__ import annotations

import itertools
import random
import re
import subprocess
from pathlib import Path

import pytest
from univers.versions import DebianVersion

from vmwarden.vulns import MANAGER_VERSIONS, parse_version
from vmwarden.vulns.versions import compare, dpkg_key, part_key, version_key

STATUS = Path("/var/lib/dpkg/status")
EDGE = [
    "0", "00", "0:0", "1:0", "10:1", "2:1.0", "01.0", "1.0", "1.00", "1.0.", "1.0+", "1.0~",
    "1.0~~", "1.0~~a", "1.0~a", "1.0a", "1.0A", "1.0Z", "1.0z", "1.0aa", "1.0-0", "1.0-00",
    "1.0-1", "1.0-a", "1.0-~", "1.0-1~", "1.0-~1", "1.0~rc1-1", "1.0+dfsg-1", "1.0.dfsg-1",
    "1.0-1ubuntu1", "1.0-1+b1", "1a1", "1~", "1+~", "1.~", "1.2.3-4.5-6", "1.2.3-4.5-7",
    "9.99999999999999999999", "9.100000000000000000000", "1-0.1", "1:1.0-1~bpo12+1",
    "3.0.11-1~deb12u2", "3.0.11-1", "3.0.9-1", "1:9.2p1-2", "1:9.2p1-2+deb12u3",
]  # fmt: skip


def machine_versions() -> list[str]:
    found = re.findall(r"^Version: (\S+)$", STATUS.read_text(), re.M) if STATUS.exists() else []
    return sorted(set(found) | set(EDGE))


def dpkg_says(pairs: list[tuple[str, str, str]]) -> list[bool]:
    """``dpkg --compare-versions a op b`` for each (a, op, b), in one shell."""
    script = 'while read -r a op b; do dpkg --compare-versions "$a" "$op" "$b"; echo $?; done'
    lines = "".join(f"{a} {op} {b}\n" for a, op, b in pairs)
    out = subprocess.run(
        ["bash", "-c", script], input=lines, capture_output=True, text=True, check=True
    )
    codes = out.stdout.split()
    assert len(codes) == len(pairs), out.stderr
    assert set(codes) <= {"0", "1"}, out.stderr  # anything else: dpkg refused a version
    return [c == "0" for c in codes]


@pytest.fixture(scope="module")
def versions() -> list[str]:
    found = machine_versions()
    assert len(found) >= len(EDGE)
    assert all(dpkg_key(v) is not None for v in found)
    return found


def test_sorted_by_key_is_dpkgs_order(versions):
    ordered = sorted(versions, key=dpkg_key)
    pairs = []
    for a, b in itertools.pairwise(ordered):
        pairs.append((a, "eq" if dpkg_key(a) == dpkg_key(b) else "lt", b))
    verdicts = dpkg_says(pairs)
    wrong = [p for p, ok in zip(pairs, verdicts, strict=True) if not ok]
    assert wrong == []
    assert any(op == "eq" for _, op, _ in pairs)  # "1.0" = "1.00", "0" = "00" = "0:0"


def test_agrees_with_univers_on_random_pairs(versions):
    rng = random.Random(6)
    cls = MANAGER_VERSIONS["dpkg"]
    for _ in range(3000):
        a, b = rng.choice(versions), rng.choice(versions)
        ua, ub = parse_version(cls, a), parse_version(cls, b)
        assert ua is not None and ub is not None
        expected = 1 if ua > ub else -1 if ua < ub else 0
        assert compare("dpkg", a, b) == expected, (a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1.0~", "1.0"),  # a tilde sorts before the end of a part
        ("1.0~~", "1.0~"),
        ("1.0~~a", "1.0~"),
        ("1.0", "1.0a"),  # the end sorts before a letter
        ("1.0a", "1.0+"),  # letters before punctuation
        ("1.0Z", "1.0a"),  # ASCII among letters
        ("1.0", "1.0."),
        ("9.2p1", "1:0"),  # the epoch first
        ("9.99999999999999999999", "9.100000000000000000000"),  # numbers, not digits
        ("3.0.11-1~deb12u2", "3.0.11-1"),
        ("1.2.3-4.5-6", "1.2.3-4.5-7"),  # the revision is after the last hyphen
    ],
)
def test_dpkg_order(a, b):
    assert compare("dpkg", a, b) == -1 and compare("dpkg", b, a) == 1


@pytest.mark.parametrize(("a", "b"), [("1.0", "1.00"), ("0", "0:0"), ("1.0-0", "1.0"), ("1", "01")])
def test_equal_versions(a, b):
    assert compare("dpkg", a, b) == 0


def test_an_empty_part_reads_as_zero():  # a revision "" (univers accepts "1.0-") is "0"
    assert part_key("") == part_key("0") == part_key("00") < part_key("0.1")
    assert part_key("~") < part_key("")


@pytest.mark.parametrize(
    "text",
    ["", " ", "v1.0", "V2:1.0", "1.0 -1", "a1.0", "1.0-", "-1", "1:", ":1", "1.0_1", "1.0-1:2",
     "1::0", "1.0\n", "٣.0", "x", "1.0-a_b"],
)  # fmt: skip
def test_parses_exactly_what_univers_parses(text):
    univers = parse_version(DebianVersion, text)
    native = dpkg_key(text)
    assert (native is None) == (univers is None), text
    if native is not None and univers is not None:
        one = DebianVersion("1.0")
        assert compare("dpkg", text, "1.0") == (univers > one) - (univers < one)


def test_rpm_and_apk_keys_are_univers_versions():
    assert compare("rpm", "3.0.7-24.el9", "1:3.0.7-24.el9") == -1
    assert compare("apk", "3.0.8-r0", "3.0.10-r0") == -1
    assert version_key("rpm", "") is None
    assert version_key("pacman", "1.0") is None  # a manager vmwarden does not compare
    assert compare("dpkg", "1.0", "not a version!") is None


def test_keys_are_cached_per_manager_and_text():
    assert version_key("dpkg", "3.0.11-1~deb12u2") is version_key("dpkg", "3.0.11-1~deb12u2")
    assert version_key("dpkg", "1.0") != version_key("rpm", "1.0")


def test_windows_versions_compare_by_their_dotted_numbers() -> None:
    assert compare("windows", "8.6.2", "8.6.10") == -1  # numerically, not as text
    assert compare("windows", "0.76.0.0", "0.76") == 0  # trailing zeros do not count
    assert compare("windows", "10.0.19041.1", "10.0.19041") == 1
    for text in ("21H2", "1.2 beta", "", "2024-01-01", "1..2"):
        assert version_key("windows", text) is None, text  # unknown, never guessed
