"""#10.1 end to end on the libvirt test driver: a sweep after quarantine judges the NICs the
quarantine journal recorded, not the quarantine network vmwarden put them on.

The quarantines go through ``PersistingConnector`` (the definition change is written back to
the host file, as a hypervisor keeps it), so each later ``Sweep`` — its own connection —
reads the isolated NICs. Real SQLite, real policy file; nothing mocked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.enforce.conftest import SPEC
from tests.enforce.enforce_fleet import PersistingConnector
from vmwarden.enforce import Quarantiner, mark_held
from vmwarden.engine.fleetgen import FleetMeta, FleetNic, FleetVM, write_fleet
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import ScanResult, Sweep, SweepOptions
from vmwarden.engine.watch.judge import Judge
from vmwarden.model import VM, Estate, Nic, State
from vmwarden.policy import Policy, evaluate, parse_policy
from vmwarden.store import Store

ROGUE = "33333333-3333-4333-8333-000000000001"  # pci VM on prod: a real violator
FINE = "33333333-3333-4333-8333-000000000002"  # pci VM on pci, quarantined by an operator (IR)
MAC_ROGUE, MAC_FINE = "52:54:00:0c:00:01", "52:54:00:0c:00:02"
NO_INSPECT = SweepOptions(inspect=InspectionOptions(enabled=False))
POLICY = """\
version: 1
zones:
  pci: {networks: [pci], classifications: [pci]}
quarantine: {network: quarantine, link_down: true}
rules:
  - name: pci-outside-zone
    resource: vm
    severity: critical
    filters: [outside-zone]
    actions: [quarantine]
"""


@pytest.fixture
def host(tmp_path: Path) -> Path:
    pci = FleetMeta(owner="alice", classification="pci", registered=True)
    vms = [
        FleetVM(ROGUE, "rogue", "shutoff", nics=[FleetNic(MAC_ROGUE, "prod")], metadata=pci),
        FleetVM(FINE, "fine", "shutoff", nics=[FleetNic(MAC_FINE, "pci")], metadata=pci),
    ]
    return write_fleet(tmp_path / "hv-held.xml", vms, ["prod", "pci", "quarantine"])


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY, source="held-policy.yaml")


def sweep(store: Store, policy: Policy, host: Path) -> ScanResult:
    return Sweep(store, policy, actor="pytest", options=NO_INSPECT).run([f"test://{host}"])


def outside(result: ScanResult) -> dict[str, list[str]]:
    return {f.name: f.evidence["networks"] for f in result.findings if f.rule == "pci-outside-zone"}


def quarantine(store: Store, host: Path, vm_id: str, actor: str) -> None:
    with PersistingConnector(host) as conn:
        rec = Quarantiner(store, actor).quarantine(
            conn, conn.lookup(vm_id), SPEC, reason="IR-7", rule=None
        )
    assert rec.status == "done"


def test_sweep_after_quarantine_judges_the_recorded_nics(tmp_path: Path, host: Path, policy):
    with Store.open(f"sqlite:///{tmp_path / 'db'}") as store:
        assert outside(sweep(store, policy, host)) == {"rogue": ["prod"]}
        quarantine(store, host, ROGUE, "vmwarden-scan")
        quarantine(store, host, FINE, "operator")

        after = sweep(store, policy, host)

        # the violator keeps the finding it had; quarantine created none for the other VM
        assert outside(after) == {"rogue": ["prod"]}
        # where each NIC is, and where it belongs, in the stored record (the API's VM)
        (rogue_nic,) = store.get_vm(ROGUE)["nics"]
        assert (rogue_nic["network"], rogue_nic["link"]) == ("quarantine", "down")
        assert rogue_nic["quarantined_from"]["network"] == "prod"
        assert rogue_nic["quarantined_from"]["link"] == "up"
        assert store.get_vm(FINE)["nics"][0]["quarantined_from"]["network"] == "pci"

        # an unchanged re-sweep rebuilds the VMs from the store: same judgement
        again = sweep(store, policy, host)
        assert outside(again) == {"rogue": ["prod"]}


def test_gate_judges_a_held_vm_that_passes_fit_for_release(tmp_path: Path, host: Path, policy):
    with Store.open(f"sqlite:///{tmp_path / 'db'}") as store:
        sweep(store, policy, host)
        quarantine(store, host, FINE, "vmwarden-gate")
        quarantine(store, host, ROGUE, "vmwarden-gate")
        result = sweep(store, policy, host)
        estate = Estate(vms=result.vms, images=[], catalog={}, now=result.finished_at)
        judge = Judge(policy, store)
        vms = {vm.id: vm for vm in result.vms}
        fine = judge.after_sweep(vms[FINE], result.findings, estate)
        assert not fine.hold and fine.evidence["gate"] == "allow"  # the gate releases it
        rogue = judge.after_sweep(vms[ROGUE], result.findings, estate)
        assert rogue.hold and rogue.reasons[0]["networks"] == ["prod"]


def test_release_clears_the_recorded_origin(tmp_path: Path, host: Path, policy):
    with Store.open(f"sqlite:///{tmp_path / 'db'}") as store:
        quarantine(store, host, FINE, "operator")
        sweep(store, policy, host)
        with PersistingConnector(host) as conn:
            Quarantiner(store, "operator").release(conn, FINE, reason="IR-7 closed")
        after = sweep(store, policy, host)
        assert outside(after) == {"rogue": ["prod"]}
        (nic,) = store.get_vm(FINE)["nics"]
        assert (nic["network"], nic["quarantined_from"]) == ("pci", None)


def _entry(store: Store, vm: VM, status: str, nics: list[dict[str, Any]]) -> int:
    entry = store.journal_begin(
        "quarantine", vm_id=vm.id, vm_name=vm.name, host=vm.host, uri=vm.uri, actor="op",
        changes={"network": "quarantine", "link_down": True, "nics": nics},
    )  # fmt: skip
    store.journal_update(entry, status=status)
    return entry


def _vm(vm_id: str, *nics: Nic) -> VM:
    return VM(vm_id, f"vm-{vm_id}", "h", "test:///h", State.SHUTOFF, nics=list(nics))


def _on(network: str, mac: str) -> Nic:
    return Nic(mac=mac, type="network", network=network)


IFACE = "<interface type='network'><mac address='{mac}'/><source network='{net}'/></interface>"


def test_held_quarantines_agrees_with_active_quarantine(tmp_path: Path):
    with Store.open(f"sqlite:///{tmp_path / 'db'}") as store:
        held, released, again, partial, failed = (_vm(str(i)) for i in range(5))
        _entry(store, held, "done", [])
        first = _entry(store, released, "done", [])
        store.journal_begin(
            "release", vm_id=released.id, vm_name="x", host="h", uri="u", actor="op",
            parent_id=first, status="done",
        )  # fmt: skip
        old = _entry(store, again, "done", [])
        store.journal_update(old, status="released")
        newer = _entry(store, again, "done", [])
        _entry(store, partial, "partial", [])
        _entry(store, failed, "failed", [])
        got = {k: v.journal_id for k, v in store.held_quarantines().items()}
        expected = {
            vm.id: store.active_quarantine(vm.id).journal_id
            for vm in (held, released, again, partial, failed)
            if store.active_quarantine(vm.id) is not None
        }
        assert got == expected and set(got) == {held.id, again.id, partial.id}
        assert got[again.id] == newer


def test_only_nics_still_where_quarantine_put_them_are_judged_by_their_origin(tmp_path: Path):
    mac_a, mac_b, mac_c = "52:54:00:0d:00:01", "52:54:00:0d:00:02", "52:54:00:0d:00:03"
    recorded = [
        {"mac": mac, "config_before": IFACE.format(mac=mac, net="prod"), "live_before": None}
        for mac in (mac_a, mac_b)
    ] + [{"mac": mac_c, "config_before": "<interface><unclosed", "live_before": None}]
    with Store.open(f"sqlite:///{tmp_path / 'db'}") as store:
        vm = _vm("9", _on("quarantine", mac_a), _on("pci", mac_b), _on("quarantine", mac_c))
        _entry(store, vm, "done", recorded)
        mark_held(store, [vm])
    a, b, c = vm.nics
    assert a.quarantined_from is not None and a.quarantined_from.network == "prod"
    assert b.quarantined_from is None  # moved elsewhere since: judged where it is
    # an unreadable record is judged unplaceable (unknown), never as the quarantine network
    assert c.quarantined_from is not None and c.quarantined_from.type == "unknown"
    policy = parse_policy(POLICY, source="p.yaml")
    vm.meta.classification = "pci"
    (finding,) = evaluate(policy, Estate(vms=[vm], images=[], catalog={}, now=datetime.now(UTC)))
    assert finding.evidence["networks"] == ["prod"]  # a: prod; b: pci is in the zone
