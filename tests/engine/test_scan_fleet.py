"""``Sweep`` end to end over a generated fleet whose verdict is known VM by VM.

Real parts only: test-driver host files, real qcow2 images (many VMs share a few files),
real SQLite. The fleet and its expected findings are built in ``tests/engine/conftest.py``.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import timedelta

import pytest

from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import ScanResult, Sweep, SweepOptions
from vmwarden.policy import load_policy

ACTOR = "pytest"


# This fleet's disks are blank qcow2 files (no filesystem: each would be `uninspectable`);
# these tests are about inventory, lineage and policy, so they sweep without inspection.
# tests/engine/test_scan_inspect.py covers inspection with real filesystems.
NO_INSPECT = SweepOptions(inspect=InspectionOptions(enabled=False))


def sweep(store, fleet, **kw) -> ScanResult:
    policy = load_policy(fleet.policy_path)
    return Sweep(store, policy, actor=ACTOR, options=NO_INSPECT).run(fleet.uris, **kw)


def found(result: ScanResult) -> set[tuple[str, str]]:
    return {(f.rule, f.name) for f in result.findings}


def rows(store, sql: str) -> list[tuple]:
    path = store.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def first(store, scan_fleet) -> ScanResult:
    return sweep(store, scan_fleet)


def test_fleet_is_hundreds_of_vms_on_several_hosts(scan_fleet, first):
    assert len(scan_fleet.hosts) >= 3
    assert len(first.vms) == len(scan_fleet.specs) >= 300
    assert sorted(first.hosts) == sorted(scan_fleet.hosts)
    assert Counter(vm.host for vm in first.vms) == Counter(
        s.host for s in scan_fleet.specs.values()
    )
    states = Counter(str(vm.state) for vm in first.vms)
    assert states["running"] and states["paused"] and states["shutoff"]
    assert any(not vm.persistent for vm in first.vms)
    assert any(not vm.disks for vm in first.vms)


def test_findings_are_exactly_the_planted_ones(scan_fleet, first):
    got = found(first)
    want = scan_fleet.expected()
    assert got - want == set(), "unexpected findings"
    assert want - got == set(), "missed findings"
    assert len(first.findings) == len(got), "one finding per (rule, VM)"
    by_key = {(f.rule, f.name): f for f in first.findings}
    for spec in scan_fleet.specs.values():
        for rule in spec.rules:
            f = by_key[(rule, spec.name)]
            assert f.id == scan_fleet.uuid_of(spec.name)
            assert f.host == spec.host
            assert f.resource == "vm"
            assert ("unknown" in f.evidence) == (rule in spec.unknown), (rule, spec.name)


def test_evidence_says_why(scan_fleet, first):
    by_key = {(f.rule, f.name): f.evidence for f in first.findings}
    rogue = by_key[("unapproved-template", "hv-a-rogue-0")]
    assert rogue["root"] == str(scan_fleet.rogue)
    assert rogue["digest"].startswith("sha256:") and rogue["digest"] != scan_fleet.approved_digest
    assert by_key[("unapproved-template", "hv-a-multi")]["disk"] == "vdb"
    assert by_key[("duplicate-mac", "hv-c-dup")]["vms"] == ["hv-a/hv-a-dup", "hv-c/hv-c-dup"]
    assert by_key[("duplicate-mac", "hv-b-dup3")]["vms"] == [
        "hv-a/hv-a-dup3",
        "hv-b/hv-b-dup3",
        "hv-c/hv-c-dup3",
    ]
    assert by_key[("mixed-classification-on-host", "mix-int")]["classifications"] == [
        "internal",
        "pci",
        "public",
    ]
    dormant = by_key[("dormant", "hv-b-dormant-2")]
    assert dormant["basis"] == "disk mtime" and dormant["days_off"] >= 200
    assert "unknown" in by_key[("dormant", "hv-a-nodisk-off")]


def test_shared_images_are_hashed_once(scan_fleet, store, first):
    # Only chain roots are hashed: the template, the rogue base and the standalone image.
    assert sorted(store.remembered) == sorted(
        map(str, (scan_fleet.approved, scan_fleet.rogue, scan_fleet.disk_files["standalone"]))
    )
    images = {(img.host, img.path): img for img in first.images}
    for host in ("hv-a", "hv-b", "hv-c"):  # an image is listed per host that uses it
        template = images[(host, str(scan_fleet.approved))]
        assert template.digest == scan_fleet.approved_digest
        assert template.template == "approved-base"
        assert images[(host, str(scan_fleet.rogue))].template is None
        on_template = {
            scan_fleet.uuid_of(s.name)
            for s in scan_fleet.specs.values()
            if s.host == host
            and any(d.startswith(("approved", "hv-")) and "rogue" not in d for d in s.disks)
        }
        assert set(template.attached_to) == on_template
        shared = images[(host, str(scan_fleet.disk_files["approved-0"]))]
        assert len(shared.attached_to) > 20
        assert shared.backing == str(scan_fleet.approved)


def test_unreadable_lineage_warns_and_never_follows_out(scan_fleet, store, opened):
    result = sweep(store, scan_fleet)
    assert "/etc/shadow" not in opened
    for name, named_file in scan_fleet.expected_warnings.items():
        hits = [w for w in result.warnings if name in w and named_file in w]
        assert len(hits) == 1, (name, named_file, result.warnings)
    assert len(result.warnings) == len(scan_fleet.expected_warnings), result.warnings
    by_key = {(f.rule, f.name): f.evidence for f in result.findings}
    lost = by_key[("unapproved-template", "hv-c-lost-backing")]["unknown"]
    assert "backing file missing" in lost and "deleted-base.qcow2" in lost
    for name in ("hv-c-shadow", "hv-c-shadow-link"):
        why = by_key[("unapproved-template", name)]["unknown"]
        assert "outside allowed directories" in why, why
    gone = by_key[("unapproved-template", "hv-c-no-file")]["unknown"]
    assert "not found" in gone and "vanished.qcow2" in gone


def test_json_follows_the_contract(scan_fleet, first):
    doc = json.loads(json.dumps(first.to_dict(), default=str))
    assert {"vms", "images", "findings", "actions"} <= set(doc)
    for vm in doc["vms"]:
        assert {"id", "name", "host", "state"} <= set(vm)
        assert vm["state"] in {"running", "paused", "shutoff"}
    for img in doc["images"]:
        assert {"path", "digest", "attached_to"} <= set(img)
        assert isinstance(img["attached_to"], list)
        assert img["digest"] is None or img["digest"].startswith("sha256:")
    for f in doc["findings"]:
        assert {"rule", "resource", "id", "name", "host", "severity", "evidence"} <= set(f)
        assert f["severity"] in {"info", "low", "medium", "high", "critical"}
        assert isinstance(f["evidence"], dict)
    for a in doc["actions"]:
        assert {"action", "id", "status"} <= set(a)
    assert doc["summary"]["vms"] == len(scan_fleet.specs)
    assert doc["summary"]["findings"] == len(scan_fleet.expected())


def test_report_only_plans_actions_without_running_them(scan_fleet, store, first):
    assert {a.status for a in first.actions} == {"dry-run"}
    quarantine = {a.name for a in first.actions if a.action == "quarantine"}
    assert quarantine == {
        name
        for rule, name in scan_fleet.expected()
        if rule in ("unapproved-template", "outside-zone")
    }
    assert (
        Counter(a.name for a in first.actions if a.action == "quarantine").most_common(1)[0][1] == 1
    ), "one quarantine per VM, however many rules ask"
    notify = Counter(a.name for a in first.actions if a.action == "notify")
    assert sum(notify.values()) == sum(
        1
        for rule, _ in scan_fleet.expected()
        if rule not in ("outside-zone", "dormant")  # the rules whose actions include notify
    )
    assert rows(store, "SELECT count(*) FROM journal") == [(0,)]


def test_second_sweep_writes_no_history_and_hashes_nothing(scan_fleet, store, first):
    history = rows(store, "SELECT count(*) FROM vm_history")
    cache = rows(store, "SELECT path, computed_at FROM digest_cache ORDER BY path")
    assert history[0][0] >= len(scan_fleet.specs)
    store.remembered.clear()

    second = sweep(store, scan_fleet)

    assert store.remembered == []
    assert rows(store, "SELECT path, computed_at FROM digest_cache ORDER BY path") == cache
    assert rows(store, "SELECT count(*) FROM vm_history") == history
    assert found(second) == found(first)
    assert {(f.rule, f.name): f.evidence for f in second.findings} == {
        (f.rule, f.name): f.evidence for f in first.findings
    }
    # Report-only: nothing was carried out, so notify is still due and planned again, as is
    # every state-based action; each planned once per VM/finding as in the first sweep.
    assert sorted((a.action, a.name) for a in second.actions) == sorted(
        (a.action, a.name) for a in first.actions
    )
    assert {a.status for a in second.actions} == {"dry-run"}
    assert rows(store, "SELECT count(*) FROM scans") == [(2,)]


def test_a_touched_root_and_only_it_is_hashed_again(scan_fleet, images, store, first):
    store.remembered.clear()
    images.backdate(scan_fleet.rogue, 1)  # same bytes, new mtime: the cache key changed
    again = sweep(store, scan_fleet)
    assert store.remembered == [str(scan_fleet.rogue)]
    assert found(again) == found(first)


def test_state_change_between_sweeps_is_history(scan_fleet, store, first):
    name = "hv-a-vm-000"
    assert scan_fleet.specs[name].state == "running"
    vm_id = scan_fleet.uuid_of(name)
    before = store.vm_history(name)
    assert [(h.field, h.old, h.new) for h in before if h.field == "state"] == [
        ("state", None, "running")
    ]
    scan_fleet.write_host("hv-a", **{name: {"state": "shutoff"}})
    removed = scan_fleet.specs.pop("hv-a-vm-001")
    scan_fleet.write_host("hv-a")

    history = rows(store, "SELECT count(*) FROM vm_history")[0][0]
    later = sweep(store, scan_fleet)

    changes = [h for h in store.vm_history(vm_id) if h.field == "state"]
    assert [(h.old, h.new) for h in changes] == [(None, "running"), ("running", "shutoff")]
    at = changes[-1].at
    assert at.tzinfo is not None and at.utcoffset() == timedelta(0)
    assert later.started_at <= at <= later.finished_at
    assert changes[0].at <= first.finished_at
    gone = [h for h in store.vm_history(removed.name) if h.field == "state"]
    assert [(h.old, h.new) for h in gone][-1] == (removed.state, "gone")
    # shut off just now (history), though its shared disk is older: not dormant
    assert ("dormant", name) not in found(later)
    vm = next(v for v in later.vms if v.id == vm_id)
    assert vm.state_since == at
    assert found(later) == scan_fleet.expected()
    # nothing else changed: one state row for the VM shut off, one for the VM removed
    assert rows(store, "SELECT count(*) FROM vm_history")[0][0] == history + 2


def test_enforce_after_a_report_only_sweep_still_notifies(scan_fleet, store, first):
    """Findings opened by a report-only sweep get their notify on the first --enforce sweep,
    and only once: the journal, not "opened this sweep", decides what is due."""
    enforced = sweep(store, scan_fleet, enforce=True)
    notified = sorted(a.name for a in enforced.actions if a.action == "notify")
    assert notified == sorted(a.name for a in first.actions if a.action == "notify")
    assert notified  # the fleet's policy notifies on some rules
    assert {a.status for a in enforced.actions if a.action == "notify"} == {"done"}
    again = sweep(store, scan_fleet, enforce=True)
    assert [a for a in again.actions if a.action == "notify"] == []


def test_an_approved_exception_suspends_actions_but_not_the_finding(scan_fleet, store, first):
    """An exception (requested by one user, approved by another) stops the rule's actions on
    that VM until it expires; the finding stays reported, marked excepted."""
    from datetime import UTC, datetime, timedelta

    from vmwarden.api.tokens import mint
    from vmwarden.store.exceptions import ExceptionsRepo
    from vmwarden.store.users import UsersRepo

    target = next(a for a in first.actions if a.action == "quarantine")
    _token, tid, token_hash = mint()
    UsersRepo(store).add_user("ciso", "admin", tid, token_hash, actor="root")  # a decider is a user
    repo = ExceptionsRepo(store)
    ex = repo.request_exception(
        target.rule,
        target.id,
        target.name,
        datetime.now(UTC) + timedelta(days=1),
        "vendor appliance, replaced next week",
        actor="ops",
    )
    repo.decide_exception(ex["id"], approve=True, actor="ciso", reason="accepted risk")
    again = sweep(store, scan_fleet)
    excepted = [f for f in again.findings if f.id == target.id and f.rule == target.rule]
    assert excepted and all(f.evidence.get("excepted") is True for f in excepted)
    planned = {(a.action, a.id, a.rule) for a in again.actions}
    assert not any(a_id == target.id and rule == target.rule for _, a_id, rule in planned)
    others = {(a.action, a.id) for a in first.actions if a.id != target.id}
    assert others <= {(a.action, a.id) for a in again.actions}
