"""Image filters: orphaned, world-readable, unencrypted, template-changed."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.policy.conftest import APPROVED, ROGUE, facts, judge
from vmwarden.model import Image
from vmwarden.policy import NO_MATCH, Verdict


def image(name: str, **kw) -> Image:
    return Image(path=f"/var/lib/libvirt/images/{name}", host="h1", **kw)


def test_orphaned(policy_with):
    mtime = datetime(2025, 1, 2, tzinfo=UTC)
    got = judge(
        policy_with("[orphaned]", resource="image"),
        [],
        [
            image("lost.qcow2", kind="orphaned", size=10, mtime=mtime, digest=ROGUE),
            image("approved.qcow2", kind="orphaned", digest=APPROVED.upper()),
            image("used.qcow2", kind="attached", attached_to=["vm-1"]),
            image("base.qcow2", kind="template"),
            image("unclassified.qcow2"),
        ],
    )
    assert got["/var/lib/libvirt/images/lost.qcow2"] == Verdict.match(
        path="/var/lib/libvirt/images/lost.qcow2", size=10, mtime=mtime.isoformat()
    )
    assert got["/var/lib/libvirt/images/approved.qcow2"] is NO_MATCH
    assert got["/var/lib/libvirt/images/used.qcow2"] is NO_MATCH
    assert got["/var/lib/libvirt/images/base.qcow2"] is NO_MATCH
    assert got["/var/lib/libvirt/images/unclassified.qcow2"].is_unknown


def test_world_readable(policy_with):
    got = judge(
        policy_with("[world-readable]", resource="image"),
        [],
        [image("open", mode=0o100644), image("closed", mode=0o100600), image("unread")],
    )
    assert got["/var/lib/libvirt/images/open"] == Verdict.match(mode="0o644")
    assert got["/var/lib/libvirt/images/closed"] is NO_MATCH
    assert got["/var/lib/libvirt/images/unread"].is_unknown


def test_unencrypted(policy_with):
    got = judge(
        policy_with("[unencrypted]", resource="image"),
        [],
        [
            image("plain", guest=facts(encrypted=False)),
            image("luks", guest=facts(encrypted=True)),
            image("undetermined", guest=facts()),
            image("uninspected"),
        ],
    )
    assert got["/var/lib/libvirt/images/plain"] == Verdict.match(encrypted=False)
    assert got["/var/lib/libvirt/images/luks"] is NO_MATCH
    assert got["/var/lib/libvirt/images/undetermined"].is_unknown
    assert got["/var/lib/libvirt/images/uninspected"] == Verdict.unknown("not inspected")


def test_template_changed(policy_with):
    base = "/var/lib/libvirt/images/base.qcow2"
    paths = {
        "/var/lib/libvirt/images/./base.qcow2": ("debian12-base", APPROVED),
        "/var/lib/libvirt/images/other.qcow2": ("other", APPROVED),
        "/var/lib/libvirt/images/gone.qcow2": ("gone", APPROVED),
    }
    got = judge(
        policy_with("[template-changed]", resource="image"),
        [],
        [
            image("base.qcow2", digest=ROGUE),
            image("other.qcow2", digest=APPROVED),
            image("gone.qcow2"),
            image("clone.qcow2", digest=ROGUE),
        ],
        catalog_paths=paths,
    )
    assert got[base] == Verdict.match(template="debian12-base", approved=APPROVED, digest=ROGUE)
    assert got["/var/lib/libvirt/images/other.qcow2"] is NO_MATCH
    assert got["/var/lib/libvirt/images/gone.qcow2"].is_unknown
    assert got["/var/lib/libvirt/images/clone.qcow2"] is NO_MATCH
