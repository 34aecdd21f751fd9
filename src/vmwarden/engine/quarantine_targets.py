"""Is the quarantine target there on every host? Asked before anything relies on it.

A quarantine onto a target a host does not have fails on that host only, at the moment it
matters most; a report-only scan or a ``watch`` that starts quietly would let an operator
believe the policy is enforceable when it is not. ``scan`` checks what its inventory
already read (``from_inventories``: no extra call): each connector class declares what it
isolates onto (``quarantine_target``: the spec field, whether the host must already list
it among its networks and have it active); ``watch`` asks each host's connector at start-up
(``check_hosts``: ``Connector.quarantine_target_problem``, one short connection per host).
Both say which host and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vmwarden.connectors import open_connector
from vmwarden.connectors.base import connector_factory
from vmwarden.enforce import PlannedAction
from vmwarden.errors import VmwardenError
from vmwarden.model import ActionRecord, HostInventory
from vmwarden.model.isolation import QuarantineSpec, QuarantineTarget


@dataclass(frozen=True, slots=True)
class TargetProblem:
    """One host on which quarantine cannot work (or could not be checked)."""

    uri: str
    host: str
    message: str
    fatal: bool = True  # False: could not be checked (host unreachable), not known broken

    def __str__(self) -> str:
        return self.message


def target_of(uri: str) -> QuarantineTarget | None:
    """What the platform of ``uri`` isolates onto (None: its connector does not say)."""
    try:
        declared = getattr(connector_factory(uri), "quarantine_target", None)
    except VmwardenError:
        return None
    return declared if isinstance(declared, QuarantineTarget) else None


def problem_in(spec: QuarantineSpec, inv: HostInventory) -> TargetProblem | None:
    """Why quarantine with ``spec`` would fail on ``inv``'s host, from the inventory alone."""
    target = target_of(inv.uri)
    if target is None:
        return None
    name, where = target.name_in(spec), f"host {inv.host} ({inv.uri})"
    if not name:
        return TargetProblem(
            inv.uri,
            inv.host,
            f"the policy names no {target.policy_key} for {where}: quarantine there will fail "
            f"until it does",
        )
    if not target.must_exist:
        return None
    found = [n for n in inv.networks if n.name == name]
    if not found:
        return TargetProblem(
            inv.uri,
            inv.host,
            f"quarantine {target.kind} {name!r} does not exist on {where}: quarantine there "
            "will fail until it is defined",
        )
    if target.must_be_active and not any(n.active for n in found):
        hint = f" ({target.start_hint})" if target.start_hint else ""
        return TargetProblem(
            inv.uri,
            inv.host,
            f"quarantine {target.kind} {name!r} on {where} is not active: running VMs cannot "
            f"be moved onto it{hint}",
        )
    return None


def from_inventories(
    spec: QuarantineSpec, inventories: Iterable[HostInventory]
) -> list[TargetProblem]:
    """Hosts of a sweep on which quarantine with ``spec`` would fail: the policy names no
    target for their platform, or the target their platform needs to exist is not among
    their networks, or is inactive where it must be active."""
    return [p for inv in inventories if (p := problem_in(spec, inv)) is not None]


def check_hosts(spec: QuarantineSpec, uris: list[str]) -> list[TargetProblem]:
    """Open each host (concurrently) and ask its connector whether quarantine with
    ``spec`` would work there: ``watch``'s start-up check, before its event loop holds
    any connection."""

    def one(uri: str) -> TargetProblem | None:
        try:
            with open_connector(uri) as conn:
                problem = conn.quarantine_target_problem(spec)
                if problem is None:
                    return None
                return TargetProblem(
                    uri,
                    conn.host,
                    f"{problem} (host {conn.host}, {uri}): quarantine there will fail until "
                    "it is fixed",
                )
        except VmwardenError as exc:
            return TargetProblem(
                uri, uri, f"cannot check the quarantine target on {uri}: {exc}", False
            )

    if not uris:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(uris))) as pool:
        return [p for p in pool.map(one, uris) if p is not None]


def dry_run_records(
    planned: list[PlannedAction], actor: str, problems: list[TargetProblem]
) -> list[ActionRecord]:
    """The plan as ``dry-run`` records; a quarantine on a host whose quarantine target is
    missing says it would fail, and why."""
    broken = {p.uri: p.message for p in problems if p.fatal}
    return [
        p.unjournaled(
            "dry-run",
            actor,
            error=f"would fail: {broken[p.vm.uri]}"
            if p.action == "quarantine" and p.vm.uri in broken
            else None,
        )
        for p in planned
    ]
