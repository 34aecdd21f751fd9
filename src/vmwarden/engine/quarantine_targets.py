"""Is the quarantine network there on every host? Asked before anything relies on it.

A quarantine onto a network a host does not have fails on that host only, at the moment it
matters most; a report-only scan or a ``watch`` that starts quietly would let an operator
believe the policy is enforceable when it is not. ``scan`` checks the networks its
inventory already read (``from_inventories``: no extra call); ``watch`` checks at start-up
through one short connection per host (``check_hosts``). Both say which host and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vmwarden.connectors import open_connector
from vmwarden.enforce import PlannedAction
from vmwarden.errors import VmwardenError
from vmwarden.model import ActionRecord, HostInventory


@dataclass(frozen=True, slots=True)
class TargetProblem:
    """One host on which quarantine cannot work (or could not be checked)."""

    uri: str
    host: str
    message: str
    fatal: bool = True  # False: could not be checked (host unreachable), not known broken

    def __str__(self) -> str:
        return self.message


def _missing(network: str, host: str, uri: str) -> TargetProblem:
    return TargetProblem(
        uri,
        host,
        f"quarantine network {network!r} does not exist on host {host} ({uri}): "
        "quarantine there will fail until it is defined",
    )


def from_inventories(network: str, inventories: Iterable[HostInventory]) -> list[TargetProblem]:
    """Hosts of a sweep whose inventory has no such network, or has it inactive (a running
    VM's NIC cannot be moved onto an inactive network)."""
    problems = []
    for inv in inventories:
        found = [n for n in inv.networks if n.name == network]
        if not found:
            problems.append(_missing(network, inv.host, inv.uri))
        elif not any(n.active for n in found):
            problems.append(
                TargetProblem(
                    inv.uri,
                    inv.host,
                    f"quarantine network {network!r} on host {inv.host} ({inv.uri}) is not "
                    "active: running VMs cannot be moved onto it (virsh net-start)",
                )
            )
    return problems


def check_hosts(network: str, uris: list[str]) -> list[TargetProblem]:
    """Open each host (concurrently) and ask whether the network exists: ``watch``'s
    start-up check, before its event loop holds any connection."""

    def one(uri: str) -> TargetProblem | None:
        try:
            with open_connector(uri) as conn:
                exists = getattr(conn, "network_exists", None)
                if exists is None or exists(network):
                    return None
                return _missing(network, conn.host, uri)
        except VmwardenError as exc:
            return TargetProblem(
                uri, uri, f"cannot check quarantine network {network!r} on {uri}: {exc}", False
            )

    if not uris:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(uris))) as pool:
        return [p for p in pool.map(one, uris) if p is not None]


def dry_run_records(
    planned: list[PlannedAction], actor: str, problems: list[TargetProblem]
) -> list[ActionRecord]:
    """The plan as ``dry-run`` records; a quarantine on a host whose quarantine network is
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
