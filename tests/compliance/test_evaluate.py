"""The evaluator's judgement of process controls and exceptions, on real stores and policies:
the power-on gate (DISA VMM SRG V-207474), scan freshness, and approved exceptions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.cli.conftest import Cli
from vmwarden.compliance import HookFacts, evaluate, gather, load_framework
from vmwarden.engine.fleetgen import FleetNic, FleetVM, write_fleet
from vmwarden.policy.loader import parse_policy
from vmwarden.store import Store
from vmwarden.store.exceptions import ExceptionsRepo
from vmwarden.store.users import UsersRepo

RULES = """\
rules:
  - {name: rogue, resource: vm, severity: high, filters: [unregistered]}
"""


def _gate_policy(gate: str) -> str:
    return f"version: 1\ngate:\n{gate}{RULES}"


def _disa(db_url: str, policy_text: str | None, hook: HookFacts | None) -> tuple[str, list[str]]:
    policy = parse_policy(policy_text, "p.yaml") if policy_text is not None else None
    store = Store.open(db_url)
    try:
        evidence = gather(store, hook=hook)
    finally:
        store.close()
    report = evaluate(load_framework("disa-vmm-srg"), policy, evidence, policy_source="p.yaml")
    (result,) = report.controls
    return result.status, result.reasons


def test_the_stale_vm_gate_passes_only_with_dormant_gated_and_the_hook_installed(db_url: str):
    held = _gate_policy("  hold: [{type: dormant, days: 30}]\n  unreachable: deny\n")
    assert _disa(db_url, held, HookFacts(True, "the hook predates its start")) == (
        "pass",
        ["the gate holds dormant VMs and the libvirt hook is installed"],
    )
    status, reasons = _disa(db_url, held, HookFacts(False, "no vmwarden hook at /x"))
    assert status == "fail" and "not installed (no vmwarden hook at /x)" in reasons[0]
    status, reasons = _disa(db_url, held, HookFacts(None, "unknown"))
    assert status == "not-assessed"
    # inside a combinator still counts; a fail-open gate passes with the caveat stated
    denied = _gate_policy("  deny: [{or: [{type: dormant, days: 90}, unregistered]}]\n")
    status, reasons = _disa(db_url, denied, HookFacts(True))
    assert status == "pass" and "gate.unreachable is allow" in reasons[0]
    ungated = _gate_policy("  deny: [not-approved-template]\n")
    assert _disa(db_url, ungated, HookFacts(True))[0] == "fail"
    assert _disa(db_url, None, HookFacts(True))[0] == "not-assessed"


def _scanned(tmp_path: Path, names: list[str]) -> tuple[Cli, str]:
    vms = [
        FleetVM(uuid=f"4e000000-0000-4000-8000-00000000000{i}", name=n,
                nics=[FleetNic(f"52:54:00:4e:00:0{i}", "prod")])
        for i, n in enumerate(names)
    ]  # fmt: skip
    host = write_fleet(tmp_path / "hv1.xml", vms, networks=["prod"])
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\n" + RULES)
    cli = Cli(f"sqlite:///{tmp_path / 'v.db'}", tmp_path)
    assert cli("scan", "-c", f"test://{host}", "-p", policy).code == 0
    return cli, policy.read_text()


def _cis(db: str, policy_text: str, now: datetime | None = None) -> dict[str, object]:
    store = Store.open(db)
    try:
        evidence = gather(store, now=now)
    finally:
        store.close()
    report = evaluate(
        load_framework("cis-controls-v8"), parse_policy(policy_text), evidence, policy_source="p"
    )
    return {r.control.id: r for r in report.controls}


def test_an_old_scan_fails_the_controls_that_ask_for_a_frequency(tmp_path: Path):
    cli, policy = _scanned(tmp_path, ["a"])
    now = _cis(cli.db, policy)
    assert now["1.3"].status == "pass"  # daily active discovery: the scan just ran
    later = _cis(cli.db, policy, datetime.now(UTC) + timedelta(days=100))
    assert later["1.3"].status == "fail" and "every 1" in later["1.3"].reasons[0]
    assert later["7.5"].status == "fail"  # quarterly vulnerability scans (92 days)
    assert later["1.1"].status == "pass"  # bi-annual inventory review (182 days)


def test_findings_under_an_approved_exception_do_not_fail_a_control(tmp_path: Path):
    cli, policy = _scanned(tmp_path, ["a", "b"])
    store = Store.open(cli.db)
    try:
        # the two-person rule: the approver is a user the requester did not create
        UsersRepo(store).add_user("bob", "admin", "tok-bob", "unused-hash", actor="root")
        repo = ExceptionsRepo(store)
        vm = store.get_vm("a")
        assert vm is not None
        ex = repo.request_exception(
            "rogue", vm["id"], "a", datetime.now(UTC) + timedelta(days=7), "lab", actor="alice"
        )
        repo.decide_exception(ex["id"], approve=True, actor="bob", reason="ok")
    finally:
        store.close()
    control = _cis(cli.db, policy)["1.2"]
    assert (control.status, control.open, control.excepted) == ("fail", 1, 1)
    assert [x["name"] for x in control.examples] == ["b"]
    assert "(1 under an approved exception)" in control.reasons[0]
