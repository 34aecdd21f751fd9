"""A stop request (Ctrl-C) during ``Sweep.run(enforce=True)`` finishes the VM in flight (#10.7).

The signal is real and lands at a chosen point: the real store below sends this process
SIGINT right after the first VM's quarantine journals its first NIC step (live done, the
persistent definition still to change) — the moment at which stopping would leave that VM
half quarantined. The handler does what ``vmwarden scan``'s does: ``stop.request(signum)``.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmwarden.enforce.runner import StopRequest
from vmwarden.engine.fleetgen import FleetNic, FleetVM, write_fleet
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.quarantine_targets import from_inventories
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.model import HostInventory, Network
from vmwarden.model.isolation import QuarantineSpec
from vmwarden.policy import parse_policy
from vmwarden.store import Store


class SignallingStore(Store):
    """The real store; SIGINTs its own process once, after the first NIC step is journaled."""

    fired_after: str | None = None
    signum: int = signal.SIGINT

    def journal_update(self, entry_id: int, **kw: Any) -> None:
        super().journal_update(entry_id, **kw)
        if self.fired_after is None and kw.get("status") == "pending":
            self.fired_after = self.journal_get(entry_id).name
            os.kill(os.getpid(), self.signum)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SignallingStore]:
    with SignallingStore.open(f"sqlite:///{tmp_path / 'vmwarden.db'}") as opened:
        yield opened


@pytest.fixture
def stop() -> Iterator[StopRequest]:
    """A stop request that SIGINT and SIGTERM make, as ``vmwarden scan`` installs it."""
    request = StopRequest()
    sigs = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda n, _f: request.request(n)) for s in sigs}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_mid_quarantine_finishes_that_vm_and_reports_the_rest(
    tmp_path, store, stop, signum, code
):
    store.signum = signum
    vms = [
        FleetVM(
            uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, f"stop-{i}")),
            name=f"vm{i}",
            state="shutoff",
            nics=[FleetNic(f"52:54:00:aa:00:{i:02x}", "prod")],
        )
        for i in range(5)
    ]
    uri = f"test://{write_fleet(tmp_path / 'hv.xml', vms, networks=['prod', 'quarantine'])}"
    alerts = tmp_path / "alerts.jsonl"
    policy = parse_policy(
        "version: 1\n"
        "quarantine: {network: quarantine}\n"
        f"notify: [{{type: ocsf, path: {json.dumps(str(alerts))}}}]\n"
        "rules:\n"
        "  - {name: unregistered-vm, resource: vm, severity: high, filters: [unregistered],\n"
        "     actions: [notify, quarantine]}\n"
    )
    options = SweepOptions(inspect=InspectionOptions(enabled=False))
    result = Sweep(store, policy, actor="t", options=options).run([uri], enforce=True, stop=stop)

    assert store.fired_after is not None and result.interrupted_by == signum
    assert result.exit_code() == code
    in_flight = store.fired_after
    done = {(a.name, a.action): a.status for a in result.actions if a.status != "interrupted"}
    # the VM the signal hit got both of its actions, its alert first; no other VM started
    assert done == {(in_flight, "notify"): "done", (in_flight, "quarantine"): "done"}
    left = sorted((a.name, a.action) for a in result.not_done())
    others = sorted(vm.name for vm in vms if vm.name != in_flight)
    assert left == sorted((n, act) for n in others for act in ("notify", "quarantine"))
    (entry,) = store.journal_entries(action="quarantine")
    assert entry.status == "done" and store.incomplete_actions() == []
    assert [(n["live"], n["config"]) for n in entry.changes["nics"]] == [("skipped", "done")]
    assert len(alerts.read_text().splitlines()) == 1
    assert result.to_dict()["interrupted"] == signal.Signals(signum).name


def test_stop_before_enforcement_raises_at_once():
    """Nothing changed yet: the request ends the run where it is (the CLI says so)."""
    stop = StopRequest()
    with pytest.raises(KeyboardInterrupt):
        stop.request(signal.SIGINT)
    assert stop.requested and not stop.armed


def test_inactive_quarantine_network_is_a_problem_too():
    def inv(host: str, *nets: Network) -> HostInventory:
        return HostInventory(uri=f"test:///{host}.xml", host=host, networks=list(nets))

    problems = from_inventories(
        QuarantineSpec(network="quarantine"),
        [
            inv("ok", Network("quarantine", None, True)),
            inv("off", Network("quarantine", None, False)),
            inv("none", Network("prod", None, True)),
        ],
    )
    assert [
        (p.host, "not active" in p.message, "does not exist" in p.message) for p in problems
    ] == [
        ("off", True, False),
        ("none", False, True),
    ]
