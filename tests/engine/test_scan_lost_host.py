"""A host lost between its inventory and enforcement fails its own actions only (#10.6).

Two test-driver hosts; the real store below moves one host's file away when the sweep
records its findings (after inventory, before any action), so that host's connection for
enforcement cannot be opened, exactly as a hypervisor that died mid-sweep.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmwarden.engine.fleetgen import FleetNic, FleetVM, write_fleet
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.policy import parse_policy
from vmwarden.store import Store


class LosingStore(Store):
    """The real store; ``lose`` (a host file) is moved away once findings are recorded."""

    lose: Path | None = None

    def record_findings(self, *args: Any, **kw: Any) -> Any:
        delta = super().record_findings(*args, **kw)
        if self.lose is not None:
            self.lose.rename(self.lose.with_suffix(".gone"))
            self.lose = None
        return delta


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LosingStore]:
    with LosingStore.open(f"sqlite:///{tmp_path / 'vmwarden.db'}") as opened:
        yield opened


def host(tmp_path: Path, name: str) -> Path:
    vm = FleetVM(
        uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
        name=f"{name}-vm",
        state="shutoff",
        nics=[FleetNic("52:54:00:cc:00:01", "prod")],
    )
    return write_fleet(tmp_path / f"{name}.xml", [vm], networks=["prod", "quarantine"])


def test_lost_host_fails_its_actions_and_the_other_is_enforced(tmp_path, store):
    kept, lost = host(tmp_path, "kept"), host(tmp_path, "lost")
    store.lose = lost
    policy = parse_policy(
        "version: 1\nquarantine: {network: quarantine}\nrules:\n"
        "  - {name: u, resource: vm, severity: high, filters: [unregistered],"
        " actions: [quarantine]}\n"
    )
    options = SweepOptions(inspect=InspectionOptions(enabled=False))
    result = Sweep(store, policy, actor="t", options=options).run(
        [f"test://{kept}", f"test://{lost}"], enforce=True
    )
    by_name = {a.name: a for a in result.actions}
    assert by_name["kept-vm"].status == "done"
    assert by_name["lost-vm"].status == "failed"
    assert by_name["lost-vm"].error.startswith(f"host lost: cannot connect to test://{lost}")
    assert result.exit_code() == 1 and result.unreachable == []
    assert [e.name for e in store.journal_entries()] == ["kept-vm"]
