"""#10.9: a VM with nothing to inspect (no disk, PXE boot, only a cdrom) is not judged by
guest-content filters, while a VM whose disks could not be read stays unknown; and the
``not-inspected`` filter tells the two apart, saying why."""

from __future__ import annotations

import pytest

from tests.policy.conftest import disk, facts, judge, make_vm
from vmwarden.errors import PolicyError
from vmwarden.policy import NO_MATCH, Verdict

REMOTE_ERROR = "not readable from here (hv-b is another host)"


def estate():
    """One VM of each kind; a clone pair so duplicate-* filters have something to share."""
    return [
        make_vm("pxe", disks=[], guest=None),
        make_vm("live-cd", disks=[disk("hdc", device="cdrom")], guest=None),
        make_vm("on-b", disks=[disk("vda", error=REMOTE_ERROR)], guest=None),
        make_vm("missing", disks=[disk("vda", error="disk image not found: /x")], guest=None),
        make_vm("unread", guest=None),  # a file disk that inspection did not read
        make_vm("lun-dev", disks=[disk("sda", device="lun", type="block")], guest=None),
        make_vm("read", guest=facts("bash=5.2", machine_id="a" * 32)),
        make_vm("twin", guest=facts("bash=5.2", machine_id="a" * 32)),
    ]


@pytest.mark.parametrize(
    "filters",
    [
        "[{type: package, installed: [telnetd]}]",
        "[{type: package, missing: [clamav]}]",
        "[{type: service, enabled: [telnet.socket]}]",
        "[duplicate-machine-id]",
        "[shared-password-hash]",
        "[no-time-sync]",
    ],
)
def test_guest_filters_skip_a_vm_with_nothing_to_inspect_but_not_an_unread_one(
    policy_with, filters
):
    got = judge(policy_with(filters), estate())
    assert got["pxe"] is NO_MATCH  # nothing a guest filter could find
    assert got["live-cd"] is NO_MATCH
    for name in ("on-b", "missing", "unread", "lun-dev"):  # unknown never clears
        assert got[name] == Verdict.unknown("not inspected"), name


def test_not_inspected_says_why(policy_with):
    got = judge(policy_with("[not-inspected]"), estate())
    assert got["pxe"] == Verdict.match(
        reason="nothing-to-inspect", detail="no disk to inspect (diskless or network boot)"
    )
    assert got["live-cd"] == Verdict.match(
        reason="nothing-to-inspect", detail="no disk to inspect, only cdrom"
    )
    assert got["on-b"] == Verdict.match(reason="remote", detail=f"vda: {REMOTE_ERROR}")
    assert got["missing"] == Verdict.match(
        reason="unreadable", detail="vda: disk image not found: /x"
    )
    assert got["unread"].evidence["reason"] == "unreadable"
    assert "not read" in got["unread"].evidence["detail"]
    assert got["lun-dev"] == Verdict.match(
        reason="unreadable", detail="sda: block disk, only image files are read"
    )
    assert got["read"] is NO_MATCH


def test_not_inspected_reasons_narrow_it(policy_with):
    got = judge(policy_with("[{type: not-inspected, reasons: [remote, unreadable]}]"), estate())
    assert got["pxe"] is NO_MATCH and got["live-cd"] is NO_MATCH
    assert got["on-b"].matched and got["missing"].matched and got["unread"].matched


def test_not_inspected_rejects_an_unknown_reason(policy_with):
    with pytest.raises(PolicyError, match="reasons"):
        policy_with("[{type: not-inspected, reasons: [offline]}]")
