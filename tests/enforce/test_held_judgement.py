"""#10.1 end to end on the libvirt test driver: a sweep after quarantine judges the NICs the
quarantine journal recorded, not the quarantine network vmwarden put them on.

The quarantines go through ``PersistingConnector`` (the definition change is written back to
the host file, as a hypervisor keeps it), so each later ``Sweep`` — its own connection —
reads the isolated NICs. Real SQLite, real policy file; nothing mocked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.enforce.conftest import SPEC
from tests.enforce.enforce_fleet import PersistingConnector
from vmwarden.enforce import Quarantiner
from vmwarden.engine.fleetgen import FleetMeta, FleetNic, FleetVM, write_fleet
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import ScanResult, Sweep, SweepOptions
from vmwarden.engine.watch.judge import Judge
from vmwarden.model import Estate
from vmwarden.policy import Policy, parse_policy
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
